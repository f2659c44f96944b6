"""Unpacking as root with real tools: ownership, setuid, file capabilities and other xattrs
from a GNU tar archive; squashfs and zstd rootfs files."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import pytest

from machined.images.format import ImageFormatError
from machined.images.unpack import unpack_split, unpack_unified
from machined.sys.run import run

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

META = "architecture: x86_64\ncreation_date: 1700000000\n"
# VFS_CAP_REVISION_2 | EFFECTIVE, permitted = CAP_NET_RAW (13): what `setcap cap_net_raw+ep`
# writes for ping.
CAP_NET_RAW = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)
MTIME = 1_234_567_890


def make_tree(top: Path) -> None:
    top.mkdir()
    (top / "metadata.yaml").write_text(META)
    root = top / "rootfs"
    (root / "usr/bin").mkdir(parents=True)
    ping = root / "usr/bin/ping"
    ping.write_bytes(b"\x7fELF ping")
    os.setxattr(ping, "security.capability", CAP_NET_RAW)
    os.setxattr(ping, "user.note", b"kept")
    su = root / "usr/bin/su"
    su.write_bytes(b"\x7fELF su")
    os.chown(su, 0, 0)
    os.chmod(su, 0o4755)
    sg = root / "usr/bin/wall"
    sg.write_bytes(b"\x7fELF wall")
    os.chown(sg, 0, 5)
    os.chmod(sg, 0o2755)
    home = root / "home/user"
    home.mkdir(parents=True)
    (home / "file").write_text("mine")
    os.chown(home / "file", 1000, 1001)
    os.chown(home, 1000, 1001)
    os.chmod(home, 0o700)
    os.symlink("file", home / "link")
    os.chown(home / "link", 1000, 1001, follow_symlinks=False)
    os.link(su, root / "usr/bin/su.hard")
    os.mkfifo(root / "fifo", 0o640)
    os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    for path in (ping, su, home / "file", home):
        os.utime(path, (MTIME, MTIME))
    tmp = root / "tmp"
    tmp.mkdir()
    os.chmod(tmp, 0o1777)


def check_tree(root: Path) -> None:
    ping = root / "usr/bin/ping"
    assert os.getxattr(ping, "security.capability") == CAP_NET_RAW
    assert os.getxattr(ping, "user.note") == b"kept"
    assert os.stat(ping).st_mtime == MTIME
    su = os.stat(root / "usr/bin/su")
    assert stat.S_IMODE(su.st_mode) == 0o4755 and (su.st_uid, su.st_gid) == (0, 0)
    assert su.st_nlink == 2
    assert os.stat(root / "usr/bin/su.hard").st_ino == su.st_ino
    wall = os.stat(root / "usr/bin/wall")
    assert stat.S_IMODE(wall.st_mode) == 0o2755 and wall.st_gid == 5
    home = os.stat(root / "home/user")
    assert (home.st_uid, home.st_gid, stat.S_IMODE(home.st_mode)) == (1000, 1001, 0o700)
    assert home.st_mtime == MTIME
    f = os.stat(root / "home/user/file")
    assert (f.st_uid, f.st_gid) == (1000, 1001)
    link = os.lstat(root / "home/user/link")
    assert stat.S_ISLNK(link.st_mode) and (link.st_uid, link.st_gid) == (1000, 1001)
    assert stat.S_ISFIFO(os.lstat(root / "fifo").st_mode)
    assert stat.S_IMODE(os.stat(root / "tmp").st_mode) == 0o1777
    assert not os.path.lexists(root / "null")


TAR = ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--format=posix"]


def test_gnu_tar_unified_preserves_everything(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    archive = tmp_path / "image.tar.gz"
    run([*TAR, "-czf", str(archive), "-C", str(src), "metadata.yaml", "rootfs"])
    report = unpack_unified(archive, tmp_path / "vol")
    assert report.devices_skipped == 1 and report.xattrs_failed == 0
    check_tree(tmp_path / "vol/rootfs")


def test_split_tar_zstd(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    meta = tmp_path / "meta.tar.xz"
    run([*TAR, "-cJf", str(meta), "-C", str(src), "metadata.yaml"])
    rootfs = tmp_path / "rootfs.tar.zst"
    run([*TAR, "--zstd", "-cf", str(rootfs), "-C", str(src / "rootfs"), "."])
    unpack_split(meta, rootfs, tmp_path / "vol")
    check_tree(tmp_path / "vol/rootfs")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "meta.tar.xz", "rootfs.tar.zst", "src", "vol"]  # the scratch .tar is gone


def test_split_squashfs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    meta = tmp_path / "meta.tar.xz"
    run([*TAR, "-cJf", str(meta), "-C", str(src), "metadata.yaml"])
    squash = tmp_path / "rootfs.squashfs"
    run(["mksquashfs", str(src / "rootfs"), str(squash), "-noappend", "-quiet",
         "-no-progress", "-p", "dev d 755 0 0", "-p", "dev/sda b 660 0 6 8 0"])
    outside = tmp_path / "outside"
    outside.mkdir()
    report = unpack_split(meta, squash, tmp_path / "vol")
    assert report.devices_skipped == 2  # /null and the pseudo dev/sda
    check_tree(tmp_path / "vol/rootfs")
    assert not os.path.lexists(tmp_path / "vol/rootfs/dev/sda")
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "meta.tar.xz", "outside", "rootfs.squashfs", "src", "vol"]


def test_bad_squashfs(tmp_path: Path) -> None:
    meta = tmp_path / "meta.tar.xz"
    (tmp_path / "metadata.yaml").write_text(META)
    run(["tar", "-cJf", str(meta), "-C", str(tmp_path), "metadata.yaml"])
    bad = tmp_path / "rootfs.squashfs"
    bad.write_bytes(b"hsqs" + os.urandom(4096))
    with pytest.raises(ImageFormatError, match="unsquashfs"):
        unpack_split(meta, bad, tmp_path / "vol")
    assert not (tmp_path / "vol").exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []
