"""The publish plan (machined/images/pack.py): request checks, the new metadata.yaml, the
tar and compressor command lines, progress text. Pure; no program is started."""

from __future__ import annotations

import io
import lzma
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from machined.images import format as fmt
from machined.images import pack
from machined.images.unpack import unpack_unified

NOW = datetime(2026, 3, 1, 12, 30, 5, tzinfo=UTC)
ORIGINAL = fmt.parse_metadata(
    "architecture: x86_64\ncreation_date: 1700000000\nexpiry_date: 1800000000\n"
    "properties:\n  os: busybox\n  release: '1.35'\n  description: BusyBox 1.35\n"
    "  serial: '20240101_00:00'\n"
    "templates:\n  /etc/hostname:\n    when: [create, copy]\n    template: hostname.tpl\n")


def test_plan_defaults_to_the_server_compression() -> None:
    plan = pack.plan("c01", aliases=None, properties=None, compression=None,
                     server_default="xz")
    assert plan == pack.PublishPlan("c01", (), {}, "xz")
    assert pack.plan("c01", aliases=[], properties={}, compression="").compression == "gzip"
    assert pack.plan("c01", aliases=[], properties={}, compression="none",
                     server_default="xz").compression == "none"


@pytest.mark.parametrize("algorithm", pack.COMPRESSIONS)
def test_every_documented_compression_has_a_command(algorithm: str) -> None:
    argv = pack.compressor_argv(algorithm)
    assert (argv is None) == (algorithm == "none")
    if argv is not None:
        assert "-c" in argv  # to stdout


def test_bad_compression_says_what_is_accepted() -> None:
    with pytest.raises(ValueError, match="Invalid compression algorithm 'rar': accepted are "
                       "bzip2, gzip, lz4, lzma, xz, zstd, none"):
        pack.plan("c01", aliases=None, properties=None, compression="rar")
    with pytest.raises(ValueError, match="accepted are"):
        pack.plan("c01", aliases=None, properties=None, compression="gzip -9")


def test_snapshot_sources_are_accepted_and_empty_names_refused() -> None:
    assert pack.plan("c01/snap0", aliases=None, properties=None,
                     compression=None).name == "c01/snap0"
    for bad in ("", "/snap0", "c01/"):
        with pytest.raises(ValueError, match="needs an instance name"):
            pack.plan(bad, aliases=None, properties=None, compression=None)


@pytest.mark.parametrize("aliases, message", [
    ("x", "must be a list"),
    (["x"], "must be an object"),
    ([{"name": ""}], "Invalid alias name"),
    ([{"name": "a:b"}], "Invalid alias name"),
    ([{"name": " a"}], "Invalid alias name"),
    ([{"name": "a", "description": 3}], "description must be a string"),
    ([{"name": "a"}, {"name": "a"}], "listed twice"),
])
def test_bad_aliases(aliases: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pack.plan("c01", aliases=aliases, properties=None, compression=None)


def test_aliases_and_properties_are_normalised() -> None:
    plan = pack.plan("c01", aliases=[{"name": "web", "description": "d"}, {"name": "b/1"}],
                     properties={"os": "x", "n": 3, "flag": True}, compression="xz")
    assert plan.aliases == (("web", "d"), ("b/1", ""))
    assert plan.properties == {"os": "x", "n": "3", "flag": "true"}
    with pytest.raises(ValueError, match="must be a string"):
        pack.plan("c01", aliases=None, properties={"a": ["x"]}, compression=None)
    with pytest.raises(ValueError, match="must be an object"):
        pack.plan("c01", aliases=None, properties=["a"], compression=None)


def test_metadata_keeps_templates_and_merges_properties() -> None:
    config = {"image.os": "busybox", "image.release": "1.36", "image.": "ignored",
              "limits.cpu": "1", "volatile.base_image": "ab"}
    meta = pack.published_metadata(ORIGINAL, architecture="amd64", config=config,
                                   properties={"description": "mine", "extra": "1"},
                                   name="c01", now=NOW)
    assert meta.architecture == "x86_64"
    assert meta.creation_date == int(NOW.timestamp())
    assert meta.expiry_date is None  # published images never expire on their own
    assert meta.templates == ORIGINAL.templates
    assert meta.properties == {"os": "busybox", "release": "1.36", "description": "mine",
                               "serial": "20260301_12:30", "extra": "1"}
    assert fmt.parse_metadata(meta.to_yaml()) == meta  # what the unpacker will read


def test_metadata_description_defaults_to_its_origin() -> None:
    meta = pack.published_metadata(ORIGINAL, architecture="x86_64", config={}, properties={},
                                   name="c01", now=NOW)
    assert meta.properties["description"] == "busybox 1.35 (published from c01)"
    bare = pack.published_metadata(None, architecture="x86_64", config={}, properties={},
                                   name="c01", now=NOW)
    assert bare.properties["description"] == "Image (published from c01)"
    assert not bare.templates
    given = pack.published_metadata(None, architecture="x86_64", config={},
                                    properties={"serial": "s1"}, name="c01", now=NOW)
    assert given.properties["serial"] == "s1"


def test_metadata_too_large_is_refused() -> None:
    with pytest.raises(fmt.ImageFormatError, match="larger than"):
        pack.published_metadata(None, architecture="x86_64", config={},
                                properties={"big": "x" * fmt.METADATA_MAX_BYTES},
                                name="c01", now=NOW)


def test_tar_never_follows_links_and_names_only_fixed_paths() -> None:
    argv = pack.tar_argv("/s/tmp/publish-x", "/s/pool/containers/c01", templates=True)
    assert argv[0] == "tar"
    for flag in ("--numeric-owner", "--xattrs", "--format=posix", "--one-file-system"):
        assert flag in argv
    assert not {"-h", "--dereference", "--hard-dereference", "-P"} & set(argv)
    assert argv[-7:] == ["-C", "/s/tmp/publish-x", "metadata.yaml", "-C",
                         "/s/pool/containers/c01", "templates", "rootfs"]
    assert pack.tar_argv("/s", "/c", templates=False)[-2:] == ["/c", "rootfs"]


def test_tools_get_a_clean_environment() -> None:
    assert pack.tool_env("/usr/bin") == {"PATH": "/usr/bin", "LC_ALL": "C"}


def test_checkpoints_and_errors_from_tar() -> None:
    line = "tar: machined-checkpoint 30709760 (30MiB, 9.8GiB/s)\n"
    assert pack.checkpoint_bytes(line) == 30709760
    assert pack.checkpoint_bytes("tar: rootfs/x: Cannot open: Permission denied\n") is None
    assert pack.tar_error([line, "tar: rootfs/x: Cannot open: Permission denied\n", line,
                           "tar: Exiting with failure status due to previous errors\n"]) \
        == "tar: Exiting with failure status due to previous errors"
    assert pack.tar_error([line]) == "no error output"
    assert pack.tar_error(["x" * 1000]).endswith("...")


def test_progress_text() -> None:
    assert pack.progress_text(45_000_000, 100_000_000, 2.0) == "Image pack: 45% (22.5 MB/s)"
    assert pack.progress_text(200, 100, 1.0).startswith("Image pack: 99% ")  # an estimate
    assert pack.progress_text(12_300_000, 0, 1.0) == "Image pack: 12.3 MB (12.3 MB/s)"
    assert pack.progress_text(0, 0, 0.0) == "Image pack: 0.0 MB (0.0 MB/s)"


def test_tar_size_estimate() -> None:
    assert pack.tar_size_estimate([0, 1, 512, 513]) == 4 * 512 + 512 + 512 + 1024


# The unpacker reads what publish can write: lzma (legacy .lzma) and lz4 are recognised.

def _image_tar() -> bytes:
    buf = io.BytesIO()
    meta = b"architecture: x86_64\ncreation_date: 1700000000\n"
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("metadata.yaml")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
        rootfs = tarfile.TarInfo("rootfs")
        rootfs.type, rootfs.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(rootfs)
        data = b"marker\n"
        marker = tarfile.TarInfo("rootfs/marker")
        marker.size = len(data)
        tar.addfile(marker, io.BytesIO(data))
    return buf.getvalue()


def test_lzma_alone_and_lz4_are_detected() -> None:
    assert fmt.detect_kind(lzma.compress(b"x" * 100, format=lzma.FORMAT_ALONE)) \
        is fmt.ArchiveKind.LZMA
    assert fmt.detect_kind(b"\x04\x22\x4d\x18" + b"\0" * 20) is fmt.ArchiveKind.LZ4
    assert fmt.detect_kind(_image_tar()) is fmt.ArchiveKind.TAR
    assert fmt.ArchiveKind.LZMA.is_tar and fmt.ArchiveKind.LZ4.is_tar


def test_lzma_alone_image_unpacks(tmp_path: Path) -> None:
    path = tmp_path / "image.tar.lzma"
    path.write_bytes(lzma.compress(_image_tar(), format=lzma.FORMAT_ALONE))
    unpack_unified(path, tmp_path / "volume")
    assert (tmp_path / "volume" / "rootfs" / "marker").read_bytes() == b"marker\n"
