"""metadata.yaml validation, architecture names, fingerprints, archive-kind detection."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from machined.images import format as fmt
from machined.images.format import ArchiveKind, ImageFormatError, parse_metadata

GOOD = b"""\
architecture: x86_64
creation_date: 1424284563
expiry_date: 1524284563
properties:
  description: Debian 12 Intel 64bit
  os: Debian
  release: 12
templates:
  /etc/hosts:
    when: [create, rename]
    template: hosts.tpl
    properties:
      foo: bar
  /home/foo/setup.sh:
    when: [create]
    template: setup.sh.tpl
    create_only: true
    uid: 1000
    gid: "1000"
    mode: 755
  /etc/motd:
    when: [start]
    template: motd.tpl
    mode: 0640
"""


def test_good_metadata() -> None:
    meta = parse_metadata(GOOD)
    assert meta.architecture == "x86_64"
    assert meta.creation_date == 1424284563
    assert meta.expiry_date == 1524284563
    assert meta.properties == {"description": "Debian 12 Intel 64bit", "os": "Debian",
                               "release": "12"}
    setup = meta.templates["/home/foo/setup.sh"]
    assert (setup.when, setup.create_only, setup.uid, setup.gid, setup.mode) == (
        ("create",), True, 1000, 1000, 0o755)
    assert meta.templates["/etc/motd"].mode == 0o640  # "0640" is octal text, as in LXD
    assert meta.templates["/etc/hosts"].properties == {"foo": "bar"}
    with pytest.raises(AttributeError):
        meta.architecture = "aarch64"  # type: ignore[misc]


def test_round_trip() -> None:
    meta = parse_metadata(GOOD)
    assert parse_metadata(meta.to_yaml()) == meta


def test_minimal_and_alias_architecture() -> None:
    meta = parse_metadata("architecture: amd64\ncreation_date: 0\n")
    assert meta.architecture == "x86_64"
    assert meta.properties == {} and meta.templates == {} and meta.expiry_date is None


@pytest.mark.parametrize(("text", "words"), [
    ("creation_date: 1\n", ["lacks", "architecture"]),
    ("architecture: x86_64\n", ["lacks", "creation_date"]),
    ("architecture: vax\ncreation_date: 1\n", ["vax", "x86_64", "aarch64"]),
    ("architecture: 64\ncreation_date: 1\n", ["string", "x86_64"]),
    ("architecture: x86_64\ncreation_date: yesterday\n", ["creation_date", "integer"]),
    ("architecture: x86_64\ncreation_date: true\n", ["creation_date", "integer"]),
    ("architecture: x86_64\ncreation_date: -5\n", ["non-negative"]),
    ("architecture: x86_64\ncreation_date: 1\nexpiry_date: soon\n", ["expiry_date"]),
    ("- a\n- b\n", ["mapping"]),
    ("architecture: [x86_64\n", ["not valid YAML", "line"]),
    ("architecture: x86_64\ncreation_date: 1\nproperties: [a]\n", ["properties", "mapping"]),
    ("architecture: x86_64\ncreation_date: 1\nproperties: {os: [a]}\n", ["'os'", "string"]),
    ("architecture: x86_64\ncreation_date: 1\ntemplates: [a]\n", ["templates", "mapping"]),
    ("architecture: x86_64\ncreation_date: 1\ntemplates: {etc/x: {when: [create], "
     "template: x}}\n", ["absolute"]),
    ("architecture: x86_64\ncreation_date: 1\ntemplates: {/etc/../x: {when: [create], "
     "template: x}}\n", ["'..'"]),
    ("architecture: x86_64\ncreation_date: 1\ntemplates: {/x: {when: [boot], template: x}}\n",
     ["when", "create, copy, start, rename"]),
    ("architecture: x86_64\ncreation_date: 1\ntemplates: {/x: {when: [], template: x}}\n",
     ["non-empty"]),
    ("architecture: x86_64\ncreation_date: 1\ntemplates: {/x: {when: [create], "
     "template: ../../etc/shadow}}\n", ["file name inside templates/"]),
    ("architecture: x86_64\ncreation_date: 1\ntemplates: {/x: {when: [create]}}\n",
     ["template"]),
    ("architecture: x86_64\ncreation_date: 1\ntemplates: {/x: {when: [create], template: t, "
     "mode: 999}}\n", ["octal"]),
    ("architecture: x86_64\ncreation_date: 1\ntemplates: {/x: {when: [create], template: t, "
     "uid: -1}}\n", ["uid", "non-negative"]),
    ("architecture: x86_64\ncreation_date: 1\ntemplates: {/x: {when: [create], template: t, "
     "create_only: maybe}}\n", ["create_only", "true or false"]),
])
def test_bad_metadata_says_what_is_accepted(text: str, words: list[str]) -> None:
    with pytest.raises(ImageFormatError) as e:
        parse_metadata(text)
    message = str(e.value)
    for word in words:
        assert word in message
    assert "\n" not in message


def test_metadata_size_cap(tmp_path: Path) -> None:
    big = b"architecture: x86_64\ncreation_date: 1\n#" + b"x" * fmt.METADATA_MAX_BYTES
    with pytest.raises(ImageFormatError, match="larger"):
        parse_metadata(big)
    path = tmp_path / "metadata.yaml"
    path.write_bytes(big)
    with pytest.raises(ImageFormatError, match="larger"):
        fmt.load_metadata(path)


def test_load_metadata_refuses_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").write_text("architecture: x86_64\ncreation_date: 1\n")
    (tmp_path / "metadata.yaml").symlink_to(tmp_path / "real")
    with pytest.raises(OSError):
        fmt.load_metadata(tmp_path / "metadata.yaml")


def test_architecture_names() -> None:
    assert fmt.debian_arch("x86_64") == "amd64"
    assert fmt.debian_arch("amd64") == "amd64"
    assert fmt.kernel_arch("arm64") == "aarch64"
    assert fmt.kernel_arch("ppc64el") == "ppc64le"
    assert fmt.debian_arch("armv7l") == "armhf"
    assert fmt.host_arch() in {"x86_64", "aarch64", "ppc64le", "s390x", "riscv64"}
    with pytest.raises(ImageFormatError, match="accepted are"):
        fmt.debian_arch("pdp11")


def test_fingerprints(tmp_path: Path) -> None:
    meta, rootfs = tmp_path / "meta.tar.xz", tmp_path / "rootfs.squashfs"
    meta.write_bytes(b"M" * 3_000_000 + b"end-of-meta")
    rootfs.write_bytes(bytes(range(256)) * 20_000)
    expected = hashlib.sha256(meta.read_bytes() + rootfs.read_bytes()).hexdigest()
    assert fmt.fingerprint_split(meta, rootfs) == expected
    assert fmt.fingerprint_split(rootfs, meta) != expected  # order matters
    assert fmt.fingerprint_file(meta) == hashlib.sha256(meta.read_bytes()).hexdigest()
    # A known vector: sha256("abc").
    (tmp_path / "abc").write_bytes(b"abc")
    assert fmt.fingerprint_file(tmp_path / "abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert fmt.is_fingerprint(expected)
    assert not fmt.is_fingerprint(expected[:63]) and not fmt.is_fingerprint(expected.upper())


def _tar_bytes() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("metadata.yaml")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"a: 1"))
    return buf.getvalue()


def test_detect_kind(tmp_path: Path) -> None:
    import bz2
    import lzma

    plain = _tar_bytes()
    cases = {
        ArchiveKind.TAR: plain,
        ArchiveKind.GZIP: gzip.compress(plain),
        ArchiveKind.XZ: lzma.compress(plain),
        ArchiveKind.BZIP2: bz2.compress(plain),
        ArchiveKind.ZSTD: b"\x28\xb5\x2f\xfd" + b"\0" * 20,
        ArchiveKind.SQUASHFS: b"hsqs" + b"\0" * 92,
    }
    for kind, data in cases.items():
        assert fmt.detect_kind(data[:fmt.MAGIC_BYTES]) is kind
        path = tmp_path / kind.value
        path.write_bytes(data)
        assert fmt.detect_file(path) is kind
    assert not ArchiveKind.SQUASHFS.is_tar and ArchiveKind.XZ.is_tar
    with pytest.raises(ImageFormatError, match="accepted are gzip, xz, zstd"):
        fmt.detect_kind(b"PK\x03\x04 a zip file")
