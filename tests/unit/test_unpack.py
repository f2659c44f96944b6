"""Unpacking hostile and honest image tarballs (built here with tarfile; no subprocesses).

Every hostile case must raise or skip, write nothing outside the destination, and leave no
destination (or temporary sibling) behind after a failure."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from machined.images.format import ImageFormatError
from machined.images.unpack import split_name, unpack_split, unpack_unified

META = b"architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: test\n"
META_TPL = META + b"templates:\n  /etc/hostname:\n    when: [create]\n    template: h.tpl\n"

Member = tuple[tarfile.TarInfo, bytes | None]


def reg(name: str, data: bytes = b"", mode: int = 0o644) -> Member:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 1_600_000_000
    return info, data


def node(name: str, kind: bytes, linkname: str = "", mode: int = 0o755) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, linkname, mode, 1_500_000_000
    return info, None


def write_tar(path: Path, members: Sequence[Member], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def base() -> list[Member]:
    return [reg("metadata.yaml", META), node("rootfs", tarfile.DIRTYPE),
            node("rootfs/bin", tarfile.DIRTYPE), reg("rootfs/bin/sh", b"#!sh", 0o755)]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    images = tmp_path / "images"
    images.mkdir()
    return {"tmp": tmp_path, "outside": outside, "images": images, "dest": images / "vol"}


def assert_untouched(env: dict[str, Path]) -> None:
    assert list(env["outside"].iterdir()) == []
    assert list(env["images"].iterdir()) == []  # no dest, no temporary sibling
    assert sorted(p.name for p in env["tmp"].iterdir()) == ["a.tar.gz", "images", "outside"]


def hostile(env: dict[str, Path], members: Sequence[Member], match: str) -> None:
    archive = write_tar(env["tmp"] / "a.tar.gz", members)
    with pytest.raises(ImageFormatError, match=match) as e:
        unpack_unified(archive, env["dest"])
    assert "\n" not in str(e.value)
    assert_untouched(env)


@pytest.mark.parametrize("mode", ["w:gz", "w:xz", "w:bz2", "w"])
def test_honest_archive(env: dict[str, Path], mode: str) -> None:
    members = [*base(), node("rootfs/etc", tarfile.DIRTYPE, mode=0o750),
               reg("rootfs/etc/big", os.urandom(3 * 1024 * 1024 + 7)),
               node("rootfs/bin/ls", tarfile.SYMTYPE, "/bin/sh"),
               node("rootfs/bin/sh2", tarfile.LNKTYPE, "rootfs/bin/sh"),
               node("rootfs/run/fifo", tarfile.FIFOTYPE, mode=0o600),
               node("./templates/", tarfile.DIRTYPE), reg("templates/h.tpl", b"{{ x }}")]
    members[0] = reg("metadata.yaml", META_TPL)
    archive = write_tar(env["tmp"] / "a.tar.gz", members, mode)
    report = unpack_unified(archive, env["dest"])
    root = env["dest"] / "rootfs"
    assert report.metadata.properties == {"os": "test"}
    assert (root / "bin/sh").read_bytes() == b"#!sh"
    assert os.readlink(root / "bin/ls") == "/bin/sh"
    assert os.stat(root / "bin/sh2").st_ino == os.stat(root / "bin/sh").st_ino
    assert stat.S_ISFIFO(os.lstat(root / "run/fifo").st_mode)
    assert stat.S_IMODE(os.stat(root / "etc").st_mode) == 0o750
    assert os.stat(root / "etc").st_mtime == 1_500_000_000  # set after its children
    assert os.stat(root / "etc/big").st_size == 3 * 1024 * 1024 + 7
    assert stat.S_IMODE(os.stat(root / "run").st_mode) == 0o755  # implied parent
    assert (env["dest"] / "templates/h.tpl").read_bytes() == b"{{ x }}"
    assert list(env["outside"].iterdir()) == []


def test_dest_must_not_exist(env: dict[str, Path]) -> None:
    archive = write_tar(env["tmp"] / "a.tar.gz", base())
    env["dest"].mkdir()
    with pytest.raises(FileExistsError):
        unpack_unified(archive, env["dest"])


def test_dotdot(env: dict[str, Path]) -> None:
    hostile(env, [*base(), reg("../../x", b"evil")], "'..'")


def test_dotdot_inside_name(env: dict[str, Path]) -> None:
    hostile(env, [*base(), reg("rootfs/bin/../../../outside/x", b"evil")], "'..'")


def test_metadata_dotdot(env: dict[str, Path]) -> None:
    hostile(env, [*base(), reg("metadata.yaml/../../x", b"evil")], "'..'")


def test_absolute(env: dict[str, Path]) -> None:
    hostile(env, [*base(), reg(str(env["outside"] / "x"), b"evil")], "absolute")
    hostile(env, [*base(), reg("/etc/x", b"evil")], "absolute")


def test_rootfs_symlink(env: dict[str, Path]) -> None:
    hostile(env, [reg("metadata.yaml", META),
                  node("rootfs", tarfile.SYMTYPE, str(env["outside"])),
                  reg("rootfs/evil", b"evil")], "must be a directory")


def test_rootfs_symlink_after_dir(env: dict[str, Path]) -> None:
    hostile(env, [*base(), node("rootfs", tarfile.SYMTYPE, str(env["outside"]))],
            "must be a directory")


def test_templates_symlink(env: dict[str, Path]) -> None:
    hostile(env, [*base(), node("templates", tarfile.SYMTYPE, str(env["outside"])),
                  reg("templates/x.tpl", b"evil")], "must be a directory")


def test_template_file_symlink(env: dict[str, Path]) -> None:
    hostile(env, [*base(), node("templates", tarfile.DIRTYPE),
                  node("templates/h.tpl", tarfile.SYMTYPE, "/etc/shadow")], "templates/")


def test_through_earlier_symlink(env: dict[str, Path]) -> None:
    hostile(env, [*base(), node("rootfs/a", tarfile.SYMTYPE, str(env["outside"])),
                  reg("rootfs/a/evil", b"evil")], "not a directory")


def test_through_relative_symlink(env: dict[str, Path]) -> None:
    hostile(env, [*base(), node("rootfs/a", tarfile.SYMTYPE, "../../../outside"),
                  node("rootfs/a/sub", tarfile.DIRTYPE)], "not a directory")


def test_file_replacing_symlink_is_not_followed(env: dict[str, Path]) -> None:
    target = env["outside"] / "victim"
    archive = write_tar(env["tmp"] / "a.tar.gz", [
        *base(), node("rootfs/a", tarfile.SYMTYPE, str(target)), reg("rootfs/a", b"new")])
    unpack_unified(archive, env["dest"])
    assert (env["dest"] / "rootfs/a").read_bytes() == b"new"
    assert not (env["dest"] / "rootfs/a").is_symlink()
    assert list(env["outside"].iterdir()) == []


def test_hardlink_to_host_file(env: dict[str, Path]) -> None:
    hostile(env, [*base(), node("rootfs/passwd", tarfile.LNKTYPE, "/etc/passwd")],
            "absolute")


def test_hardlink_to_unextracted(env: dict[str, Path]) -> None:
    hostile(env, [*base(), node("rootfs/passwd", tarfile.LNKTYPE, "rootfs/etc/passwd")],
            "not an earlier file")


def test_hardlink_outside_layout(env: dict[str, Path]) -> None:
    hostile(env, [*base(), node("rootfs/x", tarfile.LNKTYPE, "elsewhere/passwd")],
            "not an earlier file")


def test_hardlink_through_symlink(env: dict[str, Path]) -> None:
    victim = env["outside"] / "passwd"
    hostile(env, [*base(), node("rootfs/d", tarfile.SYMTYPE, str(env["outside"])),
                  node("rootfs/x", tarfile.LNKTYPE, "rootfs/d/passwd")], "not an earlier")
    assert not victim.exists()


def test_hardlink_to_symlink_does_not_follow(env: dict[str, Path]) -> None:
    victim = env["tmp"] / "victim"
    victim.write_text("host")
    archive = write_tar(env["tmp"] / "a.tar.gz", [
        *base(), reg("rootfs/f", b"x"), node("rootfs/f", tarfile.SYMTYPE, str(victim)),
        node("rootfs/g", tarfile.LNKTYPE, "rootfs/f")])
    unpack_unified(archive, env["dest"])
    assert os.readlink(env["dest"] / "rootfs/g") == str(victim)  # a link to the symlink
    assert os.stat(victim).st_nlink == 1


def test_devices_skipped(env: dict[str, Path]) -> None:
    null = node("rootfs/dev/null", tarfile.CHRTYPE, mode=0o666)[0]
    null.devmajor, null.devminor = 1, 3
    sda = node("rootfs/dev/sda", tarfile.BLKTYPE, mode=0o660)[0]
    sda.devmajor, sda.devminor = 8, 0
    archive = write_tar(env["tmp"] / "a.tar.gz", [*base(), (null, None), (sda, None)])
    report = unpack_unified(archive, env["dest"])
    assert report.devices_skipped == 2
    assert not os.path.lexists(env["dest"] / "rootfs/dev/null")
    assert not os.path.lexists(env["dest"] / "rootfs/dev/sda")


def test_huge_metadata(env: dict[str, Path]) -> None:
    hostile(env, [reg("metadata.yaml", META + b"#" + b"x" * (2 * 1024 * 1024)),
                  node("rootfs", tarfile.DIRTYPE)], "larger")


def test_metadata_symlink(env: dict[str, Path]) -> None:
    hostile(env, [node("metadata.yaml", tarfile.SYMTYPE, "/etc/passwd"),
                  node("rootfs", tarfile.DIRTYPE)], "regular file")


def test_entries_outside_layout_are_ignored(env: dict[str, Path]) -> None:
    archive = write_tar(env["tmp"] / "a.tar.gz", [*base(), reg("README", b"hi"),
                                                  reg("backup/x", b"hi")])
    report = unpack_unified(archive, env["dest"])
    assert report.ignored == 2
    assert sorted(p.name for p in env["dest"].iterdir()) == ["metadata.yaml", "rootfs"]


def test_missing_parts(env: dict[str, Path]) -> None:
    hostile(env, [node("rootfs", tarfile.DIRTYPE)], "no metadata.yaml")
    hostile(env, [reg("metadata.yaml", META)], "no rootfs")
    hostile(env, [*base()[:2], reg("metadata.yaml", META_TPL)], "missing")


def test_replacing_directory_refused(env: dict[str, Path]) -> None:
    hostile(env, [*base(), node("rootfs/bin", tarfile.SYMTYPE, str(env["outside"]))],
            "replace the directory")


def test_corrupt_and_truncated(env: dict[str, Path]) -> None:
    good = write_tar(env["tmp"] / "a.tar.gz", [*base(), reg("rootfs/x", os.urandom(200_000))])
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageFormatError, match="not a readable tarball"):
        unpack_unified(good, env["dest"])
    assert_untouched(env)
    good.write_bytes(b"\x1f\x8b" + b"garbage" * 100)
    with pytest.raises(ImageFormatError, match="not a readable tarball"):
        unpack_unified(good, env["dest"])
    assert_untouched(env)
    good.write_bytes(b"PK\x03\x04" + b"zip" * 100)
    with pytest.raises(ImageFormatError, match="Unrecognised"):
        unpack_unified(good, env["dest"])
    assert_untouched(env)


def test_split_tar_rootfs(env: dict[str, Path]) -> None:
    meta = write_tar(env["tmp"] / "meta.tar.xz", [
        reg("metadata.yaml", META_TPL), node("templates", tarfile.DIRTYPE),
        reg("templates/h.tpl", b"{{ n }}"),
        node("rootfs", tarfile.SYMTYPE, str(env["outside"])),  # ignored: rootfs is separate
        reg("rootfs/evil", b"ignored")], "w:xz")
    rootfs = write_tar(env["tmp"] / "rootfs.tar.gz", [
        node(".", tarfile.DIRTYPE, mode=0o711), node("./bin", tarfile.DIRTYPE),
        reg("./bin/sh", b"#!sh", 0o755), node("./sbin/init", tarfile.SYMTYPE, "/bin/sh"),
        node("bin/sh.hard", tarfile.LNKTYPE, "./bin/sh")])
    report = unpack_split(meta, rootfs, env["dest"])
    root = env["dest"] / "rootfs"
    assert report.ignored == 2
    assert (root / "bin/sh").read_bytes() == b"#!sh"
    assert os.readlink(root / "sbin/init") == "/bin/sh"
    assert os.stat(root / "bin/sh.hard").st_ino == os.stat(root / "bin/sh").st_ino
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o711
    assert (env["dest"] / "templates/h.tpl").read_bytes() == b"{{ n }}"
    assert list(env["outside"].iterdir()) == []


@pytest.mark.parametrize("members", [
    [reg("../x", b"evil")],
    [node("a", tarfile.SYMTYPE, "/tmp"), reg("a/evil", b"evil")],
    [node("x", tarfile.LNKTYPE, "/etc/passwd")],
    [node("x", tarfile.LNKTYPE, "../metadata.yaml")],
])
def test_split_hostile_rootfs(env: dict[str, Path], members: list[Member]) -> None:
    meta = write_tar(env["tmp"] / "meta.tar.xz", [reg("metadata.yaml", META)], "w:xz")
    rootfs = write_tar(env["tmp"] / "a.tar.gz", members)
    with pytest.raises(ImageFormatError):
        unpack_split(meta, rootfs, env["dest"])
    meta.unlink()
    assert_untouched(env)


def test_split_name() -> None:
    assert split_name("./rootfs//bin/./sh") == ("rootfs", "bin", "sh")
    assert split_name("./") == ()
    for bad in ("/x", "a/../b", ".."):
        with pytest.raises(ImageFormatError):
            split_name(bad)


def test_user_xattr_preserved(env: dict[str, Path]) -> None:
    info, data = reg("rootfs/f", b"x")
    info.pax_headers = {"SCHILY.xattr.user.machined": "yes",
                        "SCHILY.xattr.trusted.overlay.opaque": "y"}
    archive = write_tar(env["tmp"] / "a.tar.gz", [*base(), (info, data)])
    unpack_unified(archive, env["dest"])
    path = env["dest"] / "rootfs/f"
    try:
        assert os.getxattr(path, "user.machined") == b"yes"
    except OSError:
        pytest.skip("the filesystem of tmp_path has no user xattrs")
    assert "trusted.overlay.opaque" not in os.listxattr(path)  # not restored on purpose


@pytest.mark.parametrize("target", ["metadata.yaml", "templates/hosts.tpl"])
def test_rootfs_hard_link_to_metadata_or_templates(env: dict[str, Path], target: str) -> None:
    """Container root could otherwise rewrite what the host reads and renders at each start."""
    members = [*base(), node("templates", tarfile.DIRTYPE), reg("templates/hosts.tpl", b"x"),
               node("rootfs/etc", tarfile.DIRTYPE),
               node("rootfs/etc/motd", tarfile.LNKTYPE, target)]
    hostile(env, members, "outside its own part of the image")
