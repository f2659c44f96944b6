"""Storage pools: faithful copies, the btrfs driver on a loop file made here, the daemon's own
mount namespace, pools through the API (dir and btrfs), refusals, start-up reconciliation.

Mounts happen only in private mount namespaces: driver-level scenarios run as a child python
that enters one the daemon's way (runtime.mounts), and daemon pools are looked at through
`nsenter --mount=/proc/<daemon>/ns/mnt`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.errors import ApiError
from tests.conftest import REPO, Daemon, built_image, needs_root, spawn_daemon

pytestmark = needs_root

# -- A tree with every case a copy must keep, and a checker ---------------------------------

ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 1, 2, 4, 8, 0x10, 0x20
NO_ID = 0xFFFFFFFF


def acl_xattr(entries: list[tuple[int, int, int]]) -> bytes:
    """The kernel's POSIX ACL xattr format (version 2): what setfacl writes."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def build_tree(root: Path) -> None:
    root.mkdir()
    (root / "plain").write_bytes(b"hello\n" * 1000)
    os.chown(root / "plain", 1234, 5678)
    os.chmod(root / "plain", 0o640)
    (root / "suid").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "suid", 0o4755)
    (root / "sgid-by-user").write_bytes(b"x")
    os.chown(root / "sgid-by-user", 1000, 1000)
    os.chmod(root / "sgid-by-user", 0o6711)  # chown after chmod would clear these
    (root / "sgid-dir").mkdir()
    os.chown(root / "sgid-dir", 100, 100)
    os.chmod(root / "sgid-dir", 0o2775)
    (root / "sticky").mkdir(mode=0o755)
    os.chmod(root / "sticky", 0o1777)
    (root / "nomode").mkdir()
    (root / "nomode" / "inner").write_text("in")
    os.chmod(root / "nomode", 0)
    x = root / "xattrs"
    x.write_text("x")
    os.chown(x, 1000, 1000)
    os.setxattr(x, "user.foo", b"bar\x00baz")
    os.setxattr(x, "trusted.overlay.opaque", b"y")
    for name, caps, owner, mode in (("ping", "cap_net_raw+ep", 0, 0o755),
                                    ("caps-user", "cap_net_admin,cap_sys_time+eip", 1000,
                                     0o4750)):
        (root / name).write_bytes(b"\x7fELF" + name.encode())
        os.chown(root / name, owner, owner)
        os.chmod(root / name, mode)
        subprocess.run(["setcap", caps, os.fspath(root / name)], check=True)
    (root / "acl-file").write_text("a")
    os.chown(root / "acl-file", 1000, 1000)
    os.setxattr(root / "acl-file", "system.posix_acl_access", acl_xattr([
        (ACL_USER_OBJ, 6, NO_ID), (ACL_USER, 4, 2000), (ACL_GROUP_OBJ, 4, NO_ID),
        (ACL_GROUP, 6, 3000), (ACL_MASK, 6, NO_ID), (ACL_OTHER, 0, NO_ID)]))
    (root / "acl-dir").mkdir()
    os.setxattr(root / "acl-dir", "system.posix_acl_default", acl_xattr([
        (ACL_USER_OBJ, 7, NO_ID), (ACL_USER, 5, 2000), (ACL_GROUP_OBJ, 5, NO_ID),
        (ACL_MASK, 5, NO_ID), (ACL_OTHER, 0, NO_ID)]))
    (root / "hl").mkdir()
    (root / "hl" / "one").write_text("linked")
    os.link(root / "hl" / "one", root / "hl" / "two")
    os.link(root / "hl" / "one", root / "three")
    os.chown(root / "hl" / "one", 7, 7)
    os.link(root / "suid", root / "suid-link")
    with open(root / "sparse", "wb") as f:
        f.truncate(64 << 20)
        f.seek(32 << 20)
        f.write(b"data" * 1024)
    with open(root / "sparse-tail", "wb") as f:
        f.write(b"head" * 2048)
        f.truncate(16 << 20)
    os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(root / "blk", 0o660 | stat.S_IFBLK, os.makedev(7, 200))
    os.chown(root / "blk", 0, 6)
    os.mkfifo(root / "fifo", 0o620)
    os.chown(root / "fifo", 5, 5)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(os.fspath(root / "sock"))
    os.chown(root / "sock", 33, 33)
    os.symlink("plain", root / "rel-link")
    os.symlink("/etc/shadow", root / "abs-link")
    os.symlink("../../nowhere", root / "dangling")
    os.lchown(root / "dangling", 1000, 1000)
    os.setxattr(root / "abs-link", "trusted.on-link", b"l", follow_symlinks=False)
    (root / os.fsdecode(b"bad\xffname\nnl")).write_text("w")
    deep = root.joinpath(*["d"] * 50)
    deep.mkdir(parents=True)
    (deep / "leaf").write_text("leaf")
    for p in (root / "plain", root / "rel-link", root / "sgid-dir", root / "fifo"):
        os.utime(p, ns=(1_000_000_123, 2_000_000_456), follow_symlinks=False)
    os.utime(root / "nomode", ns=(3_000_000_789, 4_000_000_987))
    os.utime(root, ns=(5, 6))


def tree_state(root: Path) -> tuple[dict[str, dict[str, object]], list[list[str]]]:
    """Every entry's type, mode, owner, mtime, xattrs (ACLs and capabilities are xattrs),
    content hash, device numbers, link target, link count; and the hard link groups."""
    entries: dict[str, dict[str, object]] = {}
    inodes: dict[int, list[str]] = {}
    todo = [(root, ".")]
    while todo:
        path, rel = todo.pop()
        st = os.lstat(path)
        e: dict[str, object] = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid,
                                "mtime": st.st_mtime_ns}
        e["xattrs"] = {n: os.getxattr(path, n, follow_symlinks=False)
                       for n in sorted(os.listxattr(path, follow_symlinks=False))}
        if stat.S_ISREG(st.st_mode):
            e.update(size=st.st_size, nlink=st.st_nlink,
                     sha=hashlib.sha256(path.read_bytes()).hexdigest())
            inodes.setdefault(st.st_ino, []).append(rel)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            e["rdev"] = st.st_rdev
        elif stat.S_ISLNK(st.st_mode):
            e["target"] = os.readlink(path)
        elif stat.S_ISDIR(st.st_mode):
            todo += [(path / n, f"{rel}/{n}") for n in os.listdir(path)]
        entries[rel] = e
    return entries, sorted(sorted(v) for v in inodes.values() if len(v) > 1)


def assert_same_tree(source: Path, copy: Path) -> None:
    want, want_links = tree_state(source)
    got, got_links = tree_state(copy)
    diffs = [(k, want.get(k), got.get(k)) for k in sorted(set(want) | set(got))
             if want.get(k) != got.get(k)]
    assert not diffs, diffs[:5]
    assert got_links == want_links
    for name in ("sparse", "sparse-tail"):  # holes stay holes
        if (source / name).exists():
            assert os.lstat(copy / name).st_blocks * 512 <= \
                os.lstat(source / name).st_blocks * 512 + (64 << 10)


def check_tree_has_every_case(root: Path) -> None:
    """The checker compares what is there: make sure the cases really are."""
    entries, links = tree_state(root)
    assert entries["./caps-user"]["mode"] == stat.S_IFREG | 0o4750
    assert b"security.capability" in str(entries["./caps-user"]["xattrs"]).encode()
    assert "system.posix_acl_access" in entries["./acl-file"]["xattrs"]  # type: ignore[operator]
    assert "system.posix_acl_default" in entries["./acl-dir"]["xattrs"]  # type: ignore[operator]
    assert "trusted.overlay.opaque" in entries["./xattrs"]["xattrs"]  # type: ignore[operator]
    assert ["./hl/one", "./hl/two", "./three"] in links
    assert os.lstat(root / "sparse").st_blocks * 512 < 1 << 20
    assert stat.S_ISSOCK(os.lstat(root / "sock").st_mode)


@pytest.fixture(scope="module")
def special_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("t5a-tree") / "src"
    build_tree(root)
    check_tree_has_every_case(root)
    return root


def test_dir_copy_keeps_everything(special_tree, tmp_path):
    from machined.storage.dir import DirPool

    pool = DirPool("t5a", tmp_path / "pool", tmp_path / "pool" / "tmp", {})
    pool.prepare()
    copy = asyncio.run(pool.copy_volume(special_tree, "snapshots", "t5a-copy-0001"))
    assert copy == tmp_path / "pool" / "snapshots" / "t5a-copy-0001"
    assert_same_tree(special_tree, copy)
    assert os.listdir(pool.tmp) == []
    assert pool.volumes("snapshots") == ["t5a-copy-0001"]
    asyncio.run(pool.delete_volume("snapshots", "t5a-copy-0001"))
    assert pool.volumes("snapshots") == [] and os.listdir(pool.tmp) == []


def test_dir_copy_refuses_an_existing_volume_and_keeps_it(special_tree, tmp_path):
    from machined.errors import Conflict
    from machined.storage.dir import DirPool

    pool = DirPool("t5a", tmp_path / "pool", tmp_path / "pool" / "tmp", {})
    pool.prepare()
    (tmp_path / "pool" / "containers" / "t5a-v-1").mkdir()
    (tmp_path / "pool" / "containers" / "t5a-v-1" / "keep").write_text("k")
    with pytest.raises(Conflict, match="already exists"):
        asyncio.run(pool.copy_volume(special_tree, "containers", "t5a-v-1"))
    assert (tmp_path / "pool" / "containers" / "t5a-v-1" / "keep").read_text() == "k"
    with pytest.raises(Exception, match="Invalid volume name"):
        pool.volume_path("containers", "../images")


# -- Children in a private mount namespace --------------------------------------------------

def in_private_namespace(func: str, *args: str, timeout: float = 300) -> str:
    """Run `func(*args)` of this module in a child python that first enters its own mount
    namespace the daemon's way; its stdout. Mounts made there never reach the host and go
    when the child exits."""
    code = ("import sys\n"
            "from machined.runtime import mounts\n"
            "mounts.enter_private_mount_namespace()\n"
            "from tests.system import test_storage as t\n"
            f"t.{func}(*sys.argv[1:])\n")
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def test_daemon_mount_namespace_hides_its_mounts(tmp_path):
    target = tmp_path / "mnt"
    target.mkdir()
    code = ("import os, sys\n"
            "from machined.runtime import linux, mounts\n"
            "mounts.enter_private_mount_namespace()\n"
            f"linux.mount('tmpfs', {os.fspath(target)!r}, 'tmpfs', 0, 'size=1m')\n"
            f"open(os.path.join({os.fspath(target)!r}, 'marker'), 'w').close()\n"
            "print(open('/proc/self/mountinfo').read(), flush=True)\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n")
    with subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None and child.stdin is not None
        lines = []
        for line in child.stdout:
            if line.strip() == "READY":
                break
            lines.append(line)
        else:
            pytest.fail(f"child failed: {child.stderr.read() if child.stderr else ''}")
        inside = [ln.split() for ln in lines if ln.strip()]
        assert any(f[4] == os.fspath(target) for f in inside), "the child sees its mount"
        # Nothing in the child's namespace propagates to a peer group (slave or private).
        assert not [f for f in inside if any(o.startswith("shared:") for o in f[6:])]
        host = Path("/proc/self/mountinfo").read_text()
        assert os.fspath(target) not in host
        assert not (target / "marker").exists()
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(timeout=30)
    assert child.returncode == 0


def test_mount_pool_refuses_outside_its_own_namespace(tmp_path):
    from machined.runtime import mounts

    assert not mounts.in_private_namespace()
    img = tmp_path / "x.img"
    img.write_bytes(b"")
    with pytest.raises(OSError, match="not in its own mount namespace"):
        mounts.mount_pool(img, tmp_path, "btrfs", "")
    assert not mounts.is_mounted(tmp_path)


def child_copy_fails_loudly(mnt: str, src: str) -> None:
    """On a filesystem that cannot hold xattrs (ramfs) a copy fails; plain `cp -a` would
    drop them without a word."""
    from machined.runtime import linux
    from machined.storage.dir import DirPool
    from machined.sys.run import CommandError

    linux.mount("ramfs", mnt, "ramfs")
    pool = DirPool("t5a", Path(mnt), Path(mnt) / "tmp", {})
    pool.prepare()
    try:
        asyncio.run(pool.copy_volume(Path(src), "containers", "t5a-c-1"))
    except CommandError as e:
        assert "Operation not supported" in e.stderr, e.stderr
    else:
        raise AssertionError("the copy dropped xattrs silently")
    assert pool.volumes("containers") == [] and os.listdir(pool.tmp) == []


def test_copy_fails_when_xattrs_cannot_be_kept(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("f")
    os.setxattr(src / "f", "user.keep", b"me")
    (tmp_path / "mnt").mkdir()
    in_private_namespace("child_copy_fails_loudly", os.fspath(tmp_path / "mnt"),
                         os.fspath(src))


# -- The btrfs driver on a loop file made here ----------------------------------------------

@pytest.fixture
def loop_file(tmp_path):
    """A 2 GiB sparse btrfs image; at the end no loop device may be left on it."""
    img = tmp_path / "t5a-pool.img"
    with open(img, "wb") as f:
        f.truncate(2 << 30)
    subprocess.run(["mkfs.btrfs", "-q", os.fspath(img)], check=True, capture_output=True)
    yield img
    deadline = time.monotonic() + 10
    while True:  # autoclear detaches once the child's namespace (its last user) is gone
        attached = subprocess.run(["losetup", "-j", os.fspath(img)], capture_output=True,
                                  text=True).stdout
        if not attached or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    img.unlink()
    assert not attached, f"loop device left on {img}: {attached}"


def _ro(path: Path) -> bool:
    return subprocess.run(["btrfs", "property", "get", "-ts", os.fspath(path), "ro"],
                          capture_output=True, text=True, check=True).stdout.strip() \
        == "ro=true"


def _fill_image(volume: Path) -> None:
    (volume / "rootfs" / "etc").mkdir(parents=True)
    (volume / "rootfs" / "etc" / "hostname").write_text("image\n")
    (volume / "metadata.yaml").write_text("architecture: x86_64\ncreation_date: 1\n")


def child_btrfs_driver(img: str, mnt: str, tree: str) -> None:
    """Image volume read-only; instances writable snapshots of it; snapshots read-only
    point-in-time copies that outlive their instance and copy into a new one; copies from
    outside the pool are faithful; nested subvolumes go with their volume."""
    from machined.runtime import mounts
    from machined.storage.btrfs import BtrfsPool, is_subvolume
    from machined.sys.run import run

    mounts.mount_pool(Path(img), Path(mnt), "btrfs", "user_subvol_rm_allowed")
    assert mounts.is_mounted(Path(mnt))
    pool = BtrfsPool("t5a", Path(mnt), {"source": img})
    pool.prepare()
    fp = "ab" * 32
    image = pool.create_image_volume(fp, _fill_image)
    assert image == Path(mnt) / "images" / fp and is_subvolume(image) and _ro(image)
    assert pool.image_volume_exists(fp) and os.listdir(pool.tmp) == []
    try:
        (image / "rootfs" / "x").write_text("no")
        raise AssertionError("image volume is writable")
    except OSError as e:
        assert e.errno == 30  # EROFS

    c1 = asyncio.run(pool.create_from_image(fp, "t5a-c1-0001"))
    assert is_subvolume(c1) and not _ro(c1)
    (c1 / "rootfs" / "etc" / "hostname").write_text("c1\n")
    assert (image / "rootfs" / "etc" / "hostname").read_text() == "image\n"

    started = time.monotonic()
    s1 = asyncio.run(pool.copy_volume(c1, "snapshots", "t5a-c1-s1-0001", readonly=True))
    snap_seconds = time.monotonic() - started
    assert is_subvolume(s1) and _ro(s1)
    (c1 / "rootfs" / "etc" / "hostname").write_text("changed\n")
    assert (s1 / "rootfs" / "etc" / "hostname").read_text() == "c1\n"

    # A container's own nested subvolumes (machinectl, docker's btrfs driver...).
    run(["btrfs", "subvolume", "create", os.fspath(c1 / "rootfs" / "nested")])
    run(["btrfs", "subvolume", "create", os.fspath(c1 / "rootfs" / "nested" / "deeper")])
    (c1 / "rootfs" / "nested" / "deeper" / "f").write_text("deep")
    run(["btrfs", "subvolume", "snapshot", "-r", os.fspath(c1 / "rootfs" / "nested"),
         os.fspath(c1 / "rootfs" / "nested-ro")])
    run(["btrfs", "subvolume", "create", os.fspath(c1 / "rootfs" / "outer")])
    run(["btrfs", "subvolume", "create", os.fspath(c1 / "rootfs" / "outer" / "inner")])
    run(["btrfs", "property", "set", "-ts", os.fspath(c1 / "rootfs" / "outer"), "ro", "true"])
    # A name forging a line of `btrfs subvolume list` that points at the image volume.
    forged = c1 / "rootfs" / "x\nID 256 gen 7 top level 5 path images"
    forged.mkdir()
    run(["btrfs", "subvolume", "create", os.fspath(forged / fp)])
    os.symlink(image, c1 / "rootfs" / "to-image")
    asyncio.run(pool.delete_volume("containers", "t5a-c1-0001"))
    assert pool.volumes("containers") == [] and os.listdir(pool.tmp) == []
    left = run(["btrfs", "subvolume", "list", mnt]).stdout.decode()
    assert "nested" not in left and "t5a-c1-0001" not in left and "outer" not in left, left
    assert pool.image_volume_exists(fp) and _ro(image)

    # The snapshot outlived its instance and becomes a new, writable instance volume.
    c2 = asyncio.run(pool.copy_volume(s1, "containers", "t5a-c2-0001"))
    assert not _ro(c2) and (c2 / "rootfs" / "etc" / "hostname").read_text() == "c1\n"
    (c2 / "rootfs" / "new").write_text("c2")
    assert not (s1 / "rootfs" / "new").exists()

    # From outside the pool: a new subvolume filled by a faithful copy.
    c3 = asyncio.run(pool.copy_volume(Path(tree), "snapshots", "t5a-ext-0001", readonly=True))
    assert is_subvolume(c3) and _ro(c3)
    assert_same_tree(Path(tree), c3)

    # Leftovers in tmp/ (an interrupted copy, a read-only one too) go at prepare.
    run(["btrfs", "subvolume", "snapshot", "-r", os.fspath(s1), os.fspath(pool.tmp / "ro")])
    run(["btrfs", "subvolume", "create", os.fspath(pool.tmp / "rw")])
    (pool.tmp / "plain").mkdir()
    pool.prepare()
    assert os.listdir(pool.tmp) == []

    for kind, volume in (("snapshots", "t5a-c1-s1-0001"), ("snapshots", "t5a-ext-0001"),
                         ("containers", "t5a-c2-0001")):
        pool.delete_volume_blocking(kind, volume)  # type: ignore[arg-type]
        asyncio.run(pool.delete_volume(kind, volume))  # type: ignore[arg-type]  # missing: fine
    pool.delete_image_volume(fp)
    left = run(["btrfs", "subvolume", "list", mnt]).stdout.decode()
    assert left == "", left
    assert pool.resources()["space"]["total"] > 1 << 30
    mounts.unmount(Path(mnt))
    assert not mounts.is_mounted(Path(mnt))
    print(json.dumps({"snapshot_seconds": snap_seconds}))


def test_btrfs_driver_on_a_loop_file(loop_file, special_tree, tmp_path):
    (tmp_path / "mnt").mkdir()
    out = in_private_namespace("child_btrfs_driver", os.fspath(loop_file),
                               os.fspath(tmp_path / "mnt"), os.fspath(special_tree))
    figures = json.loads(out.strip().splitlines()[-1])
    print(f"\nbtrfs read-only snapshot of a small volume: "
          f"{figures['snapshot_seconds'] * 1000:.1f} ms")
    assert not any(os.fspath(tmp_path) in line
                   for line in Path("/proc/self/mountinfo").read_text().splitlines())


# -- Pools through the daemon ---------------------------------------------------------------

def api_error(daemon: Daemon, method: str, path: str, data: object = None) -> ApiError:
    with pytest.raises(ApiError) as e:
        daemon.api(method, path, data)
    return e.value


def in_daemon_ns(daemon: Daemon, *argv: str) -> subprocess.CompletedProcess[str]:
    assert daemon.proc is not None
    return subprocess.run(["nsenter", f"--mount=/proc/{daemon.proc.pid}/ns/mnt", *argv],
                          capture_output=True, text=True)


def instance_volume(daemon: Daemon, pool_root: Path, name: str) -> Path:
    """The instance's volume directory (its name carries the instance name at creation)."""
    found = [p for p in (pool_root / "containers").iterdir() if p.name.startswith(f"{name}-")]
    assert len(found) == 1, found
    return found[0]


def test_dir_pool_at_a_source_directory(daemon, busybox_image, tmp_path):
    source = tmp_path / "t5a-dir-src"
    daemon.api("POST", "/1.0/storage-pools",
               {"name": "t5a-dir", "driver": "dir", "description": "slow disk",
                "config": {"source": os.fspath(source)}})
    try:
        assert "/1.0/storage-pools/t5a-dir" in daemon.api("GET", "/1.0/storage-pools")
        info = daemon.api("GET", "/1.0/storage-pools/t5a-dir")
        assert info == {"name": "t5a-dir", "driver": "dir", "description": "slow disk",
                        "config": {"source": os.fspath(source)}, "status": "Created",
                        "used_by": [], "locations": ["none"]}
        space = daemon.api("GET", "/1.0/storage-pools/t5a-dir/resources")["space"]
        assert 0 < space["used"] < space["total"]
        assert sorted(os.listdir(source)) == [".machined-pool", "containers", "images",
                                              "snapshots", "spares", "tmp"]

        daemon.ok("launch", busybox_image, "t5a-dir-c1", "-s", "t5a-dir")
        volume = instance_volume(daemon, source, "t5a-dir-c1")
        assert (volume / "rootfs" / "bin" / "busybox").exists()
        assert daemon.ok("exec", "t5a-dir-c1", "--", "cat", "/etc/hostname").strip() \
            == "t5a-dir-c1"
        assert daemon.api("GET", "/1.0/storage-pools/t5a-dir")["used_by"] == \
            ["/1.0/instances/t5a-dir-c1"]
        err = api_error(daemon, "DELETE", "/1.0/storage-pools/t5a-dir")
        assert err.status == 409
        assert "Storage pool 't5a-dir' is in use by instances/t5a-dir-c1" in str(err)
        daemon.ok("delete", "--force", "t5a-dir-c1")
        assert not volume.exists()
    finally:
        daemon.mc("delete", "--force", "t5a-dir-c1")
        daemon.api("DELETE", "/1.0/storage-pools/t5a-dir")
    assert "/1.0/storage-pools/t5a-dir" not in daemon.api("GET", "/1.0/storage-pools")
    assert source.is_dir() and os.listdir(source) == []  # the user's directory stays


@pytest.mark.parametrize("body,status,message", [
    ({"name": "t5a-x", "driver": "zfs"}, 400,
     "Unknown storage driver 'zfs': use one of dir, btrfs"),
    ({"name": "t5a-x", "driver": "btrfs", "config": {"size": "huge"}}, 400,
     "Invalid size 'huge': use a size such as 512MiB"),
    ({"name": "t5a-x", "driver": "btrfs", "config": {"size": "1MiB"}}, 400,
     "use a size from 256MiB to 1PiB"),
    ({"name": "t5a-x", "driver": "dir", "config": {"size": "1GiB"}}, 400,
     "Invalid storage pool config key 'size' for driver dir: use source"),
    ({"name": "t5a/x", "driver": "dir"}, 400, "Invalid storage pool name 't5a/x'"),
    ({"name": "default", "driver": "dir"}, 409, "Storage pool 'default' already exists"),
    ({"name": "t5a-x", "driver": "dir", "config": {"source": "relative"}}, 400,
     "use an absolute path"),
    ({"name": "t5a-x", "driver": "dir", "config": {"source": "/"}}, 400,
     "overlaps machined's state directory"),
    ({"name": "t5a-x"}, 400, "A storage pool needs a driver: dir or btrfs"),
    ({"name": "t5a-x", "driver": "dir", "config": {"source": 1}}, 400,
     "config must be an object of string keys and string values"),
])
def test_create_refusals(daemon, body, status, message):
    err = api_error(daemon, "POST", "/1.0/storage-pools", body)
    assert err.status == status and message in str(err), str(err)
    assert "t5a-x" not in json.dumps(daemon.api("GET", "/1.0/storage-pools"))


def test_more_refusals(daemon, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "data").write_text("mine")
    err = api_error(daemon, "POST", "/1.0/storage-pools",
                    {"name": "t5a-busy", "driver": "dir", "config": {"source": os.fspath(busy)}})
    assert err.status == 400 and "is not empty" in str(err)
    assert os.listdir(busy) == ["data"]
    inside = daemon.root / "t5a-inside"
    err = api_error(daemon, "POST", "/1.0/storage-pools",
                    {"name": "t5a-in", "driver": "dir", "config": {"source": os.fspath(inside)}})
    assert "overlaps machined's state directory" in str(err) and not inside.exists()
    err = api_error(daemon, "POST", "/1.0/storage-pools",
                    {"name": "t5a-nb", "driver": "btrfs", "config": {"source": os.fspath(busy)}})
    assert err.status == 400 and "is not empty" in str(err)
    ext4 = tmp_path / "ext4-dir"
    err = api_error(daemon, "POST", "/1.0/storage-pools",
                    {"name": "t5a-nb", "driver": "btrfs", "config": {"source": os.fspath(ext4)}})
    assert "is not on a btrfs filesystem" in str(err) and not ext4.exists()
    err = api_error(daemon, "POST", "/1.0/storage-pools",
                    {"name": "t5a-nomount", "driver": "btrfs",
                     "config": {"size": "512MiB", "btrfs.mount_options": "compress=bogus"}})
    assert err.status == 400 and "Invalid btrfs.mount_options 'compress=bogus': the kernel " \
        "refused them" in str(err) and "\n" not in str(err), str(err)
    assert not (daemon.root / "disks" / "t5a-nomount.img").exists()
    assert not (daemon.root / "storage-pools" / "t5a-nomount").exists()
    err = api_error(daemon, "DELETE", "/1.0/storage-pools/default")
    assert err.status == 400 and "The default storage pool cannot be deleted" in str(err)
    err = api_error(daemon, "DELETE", "/1.0/storage-pools/t5a-none")
    assert err.status == 404 and "Storage pool 't5a-none' not found" in str(err)
    err = api_error(daemon, "PUT", "/1.0/storage-pools/default",
                    {"config": {"source": "/srv"}, "description": "x"})
    assert err.status == 400 and "key 'source' cannot be changed" in str(err)
    res = daemon.mc("storage", "create", "t5a-x", "btrfs", "size=1MiB")
    assert res.code != 0 and "use a size from 256MiB to 1PiB" in res.err, res


def test_btrfs_pool_through_the_daemon(daemon, btrfs_pool, busybox_image):
    info = daemon.api("GET", f"/1.0/storage-pools/{btrfs_pool}")
    img = Path(info["config"]["source"])
    assert info["driver"] == "btrfs" and info["status"] == "Created"
    assert img == daemon.root / "disks" / f"{btrfs_pool}.img" and info["config"]["size"] == "3GiB"
    assert os.stat(img).st_blocks * 512 < 1 << 30  # sparse
    attached = subprocess.run(["losetup", "-j", os.fspath(img)], capture_output=True,
                              text=True).stdout.splitlines()
    assert len(attached) == 1, attached
    root = daemon.root / "storage-pools" / btrfs_pool
    host = Path("/proc/self/mountinfo").read_text()
    assert os.fspath(root) not in host  # mounted in the daemon's namespace only

    daemon.ok("launch", busybox_image, "t5a-b1", "-s", btrfs_pool)
    try:
        listing = in_daemon_ns(daemon, "btrfs", "subvolume", "list", os.fspath(root))
        assert listing.returncode == 0, listing.stderr
        assert "path containers/t5a-b1-" in listing.stdout
        assert "path images/" in listing.stdout
        fp = next(line.split("images/")[1] for line in listing.stdout.splitlines()
                  if "images/" in line)
        ro = in_daemon_ns(daemon, "btrfs", "property", "get", "-ts",
                          os.fspath(root / "images" / fp), "ro")
        assert ro.stdout.strip() == "ro=true"
        assert daemon.api("GET", f"/1.0/storage-pools/{btrfs_pool}")["used_by"] == \
            ["/1.0/instances/t5a-b1"]
        daemon.ok("exec", "t5a-b1", "--", "sh", "-c", "echo hi > /root/f")

        # Mount options can change (remounted), nothing else.
        daemon.api("PATCH", f"/1.0/storage-pools/{btrfs_pool}",
                   {"config": {"btrfs.mount_options": "user_subvol_rm_allowed,noatime"},
                    "description": "fast"})
        mountinfo = in_daemon_ns(daemon, "cat", "/proc/self/mountinfo").stdout
        line = next(ln for ln in mountinfo.splitlines() if f" {root} " in ln)
        assert "noatime" in line
        err = api_error(daemon, "PATCH", f"/1.0/storage-pools/{btrfs_pool}",
                        {"config": {"size": "5GiB"}})
        assert "key 'size' cannot be changed (can: btrfs.mount_options)" in str(err)
        info = daemon.api("GET", f"/1.0/storage-pools/{btrfs_pool}")
        assert info["description"] == "fast" and info["config"]["size"] == "3GiB"
        daemon.api("PATCH", f"/1.0/storage-pools/{btrfs_pool}",
                   {"config": {"btrfs.mount_options": ""}})
        assert "btrfs.mount_options" not in \
            daemon.api("GET", f"/1.0/storage-pools/{btrfs_pool}")["config"]
        assert daemon.ok("exec", "t5a-b1", "--", "cat", "/root/f").strip() == "hi"
    finally:
        daemon.mc("delete", "--force", "t5a-b1")
    listing = in_daemon_ns(daemon, "btrfs", "subvolume", "list", os.fspath(root)).stdout
    assert "containers/" not in listing


def test_btrfs_pool_create_and_delete_leave_nothing(daemon):
    img = daemon.root / "disks" / "t5a-lb.img"
    root = daemon.root / "storage-pools" / "t5a-lb"
    started = time.monotonic()
    daemon.api("POST", "/1.0/storage-pools",
               {"name": "t5a-lb", "driver": "btrfs", "config": {"size": "512MiB"}})
    print(f"\nbtrfs pool on a 512MiB loop file created in {time.monotonic() - started:.2f} s")
    assert img.exists()
    assert in_daemon_ns(daemon, "findmnt", "-n", os.fspath(root)).returncode == 0
    daemon.api("DELETE", "/1.0/storage-pools/t5a-lb")
    assert not img.exists() and not root.exists()
    assert in_daemon_ns(daemon, "findmnt", "-n", os.fspath(root)).returncode != 0
    deadline = time.monotonic() + 10
    while os.fspath(img) in subprocess.run(["losetup", "-a"], capture_output=True,
                                           text=True).stdout:
        assert time.monotonic() < deadline, "loop device left attached"
        time.sleep(0.1)


def test_reconcile_removes_unreferenced_volumes_at_start():
    with spawn_daemon() as d:
        paths = built_image("busybox", "unified")
        d.ok("image", "import", *map(os.fspath, paths), "--alias", "busybox")
        d.ok("launch", "busybox", "t5a-keep")
        d.api("POST", "/1.0/storage-pools",
              {"name": "t5a-rb", "driver": "btrfs", "config": {"size": "512MiB"}})
        d.ok("launch", "busybox", "t5a-keepb", "-s", "t5a-rb")
        pool = d.root / "storage-pools" / "default"
        kept = instance_volume(d, pool, "t5a-keep")
        stray = [pool / "containers" / "t5a-stray-0badf00d",
                 pool / "snapshots" / "t5a-keep-snap0-0badf00d",
                 pool / "images" / ("0" * 64), pool / "spares" / ("1" * 64 + ".0badf00d")]
        for path in stray:
            (path / "rootfs").mkdir(parents=True)
        (d.root / "tmp" / "copy-t5a.12345678").mkdir()
        broot = d.root / "storage-pools" / "t5a-rb"
        made = in_daemon_ns(d, "btrfs", "subvolume", "create",
                            os.fspath(broot / "snapshots" / "t5a-bstray-0badf00d"))
        assert made.returncode == 0, made.stderr
        d.kill()
        d.start()
        for path in stray:
            assert not path.exists(), path
        # (tmp/ may already hold the spare copy the new daemon started)
        assert not (d.root / "tmp" / "copy-t5a.12345678").exists()
        assert kept.is_dir()
        listing = in_daemon_ns(d, "btrfs", "subvolume", "list", os.fspath(broot)).stdout
        assert "t5a-bstray" not in listing and "containers/t5a-keepb-" in listing
        log = (d.root / "logs" / "machined.log").read_text()
        assert "Removed unreferenced volume default/containers/t5a-stray-0badf00d" in log
        assert "Removed unreferenced volume t5a-rb/snapshots/t5a-bstray-0badf00d" in log
        assert f"Removed unreferenced volume default/spares/{'1' * 64}" in log
        d.ok("restart", "--force", "t5a-keep")
        d.ok("restart", "--force", "t5a-keepb")
        d.ok("delete", "--force", "t5a-keepb")
        d.api("DELETE", "/1.0/storage-pools/t5a-rb")


def test_a_pool_that_cannot_open_is_unavailable_not_fatal(tmp_path):
    """A loop file gone, a dir pool's disk not mounted: the daemon starts, lists the pool as
    Unavailable with the reason, refuses to use it, and can delete it."""
    with spawn_daemon() as d:
        source = tmp_path / "t5a-disk"
        d.api("POST", "/1.0/storage-pools",
              {"name": "t5a-ub", "driver": "btrfs", "config": {"size": "512MiB"}})
        d.api("POST", "/1.0/storage-pools",
              {"name": "t5a-ud", "driver": "dir", "config": {"source": os.fspath(source)}})
        d.kill()
        img = d.root / "disks" / "t5a-ub.img"
        os.rename(img, tmp_path / "away.img")
        os.rename(source, tmp_path / "away-dir")
        source.mkdir()  # the mount point of a disk that is not mounted
        d.start()
        pools = {p["name"]: p for p in d.api("GET", "/1.0/storage-pools?recursion=1")}
        assert pools["default"]["status"] == "Created"
        assert pools["t5a-ub"]["status"] == "Unavailable"
        assert pools["t5a-ud"]["status"] == "Unavailable"
        assert os.listdir(source) == []  # no new, empty pool on the wrong disk
        err = api_error(d, "GET", "/1.0/storage-pools/t5a-ud/resources")
        assert err.status == 503
        assert f"Storage pool 't5a-ud' is unavailable: {source} holds no storage pool " \
               "(is its filesystem mounted?)" in str(err)
        err = api_error(d, "GET", "/1.0/storage-pools/t5a-ub/resources")
        assert err.status == 503 and "does not exist" in str(err), str(err)
        d.api("DELETE", "/1.0/storage-pools/t5a-ub")
        d.api("DELETE", "/1.0/storage-pools/t5a-ud")
        assert [p["name"] for p in d.api("GET", "/1.0/storage-pools?recursion=1")] == \
            ["default"]
        assert not (d.root / "storage-pools" / "t5a-ub").exists()
    os.unlink(tmp_path / "away.img")


@pytest.fixture
def loop_device(tmp_path):
    """make(fs) -> /dev/loopN: a 512 MiB file attached to a loop device (formatted with
    `fs` unless ""); every device is detached and its file removed at the end."""
    made: list[tuple[str, Path]] = []

    def make(fs: str) -> str:
        img = tmp_path / f"dev{len(made)}.img"
        with open(img, "wb") as f:
            f.truncate(512 << 20)
        if fs:
            subprocess.run([f"mkfs.{fs}", "-q", os.fspath(img)], check=True,
                           capture_output=True)
        dev = subprocess.run(["losetup", "-f", "--show", os.fspath(img)], check=True,
                             capture_output=True, text=True).stdout.strip()
        made.append((dev, img))
        return dev

    yield make
    for dev, img in made:
        subprocess.run(["losetup", "-d", dev], check=False)
        img.unlink()


def test_btrfs_pool_on_a_block_device(daemon, busybox_image, loop_device):
    dev = loop_device("")
    daemon.api("POST", "/1.0/storage-pools",
               {"name": "t5a-blk", "driver": "btrfs", "config": {"source": dev}})
    try:
        fs = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", dev],
                            capture_output=True, text=True).stdout.strip()
        assert fs == "btrfs"  # an empty device is formatted
        assert daemon.api("GET", "/1.0/storage-pools/t5a-blk")["config"] == {"source": dev}
        daemon.ok("launch", busybox_image, "t5a-blk1", "-s", "t5a-blk")
        assert daemon.ok("exec", "t5a-blk1", "--", "hostname").strip() == "t5a-blk1"
        err = api_error(daemon, "POST", "/1.0/storage-pools",
                        {"name": "t5a-blk2", "driver": "btrfs", "config": {"source": dev}})
        assert err.status == 409 and f"source {dev} is already storage pool 't5a-blk'" in str(err)
        daemon.ok("delete", "--force", "t5a-blk1")
    finally:
        daemon.mc("delete", "--force", "t5a-blk1")
        daemon.api("DELETE", "/1.0/storage-pools/t5a-blk")
    root = daemon.root / "storage-pools" / "t5a-blk"
    assert in_daemon_ns(daemon, "findmnt", "-n", os.fspath(root)).returncode != 0
    ext4 = loop_device("ext4")
    err = api_error(daemon, "POST", "/1.0/storage-pools",
                    {"name": "t5a-ext4", "driver": "btrfs", "config": {"source": ext4}})
    assert err.status == 400 and f"Block device {ext4} holds a ext4 filesystem" in str(err)
    assert not (daemon.root / "storage-pools" / "t5a-ext4").exists()
    err = api_error(daemon, "POST", "/1.0/storage-pools",
                    {"name": "t5a-nodev", "driver": "btrfs", "config": {"source": "/dev/null"}})
    assert err.status == 400 and "/dev/null is not a block device" in str(err)


def test_btrfs_pool_in_a_directory_of_a_mounted_btrfs(daemon, busybox_image, loop_file,
                                                      tmp_path):
    """source=<directory on a btrfs> is used in place (mounted here in the daemon's own
    namespace, as an admin's btrfs would be)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = in_daemon_ns(daemon, "mount", "-o", "loop", os.fspath(loop_file),
                           os.fspath(mnt))
    assert mounted.returncode == 0, mounted.stderr
    try:
        source = mnt / "pool"
        daemon.api("POST", "/1.0/storage-pools",
                   {"name": "t5a-bd", "driver": "btrfs", "config": {"source": os.fspath(source)}})
        try:
            daemon.ok("launch", busybox_image, "t5a-bd1", "-s", "t5a-bd")
            listing = in_daemon_ns(daemon, "btrfs", "subvolume", "list", os.fspath(mnt)).stdout
            assert "path pool/containers/t5a-bd1-" in listing, listing
            daemon.ok("delete", "--force", "t5a-bd1")
        finally:
            daemon.mc("delete", "--force", "t5a-bd1")
            daemon.api("DELETE", "/1.0/storage-pools/t5a-bd")
        assert in_daemon_ns(daemon, "ls", "-A", os.fspath(source)).stdout == ""
        listing = in_daemon_ns(daemon, "btrfs", "subvolume", "list", os.fspath(mnt)).stdout
        assert listing == "", listing
    finally:
        in_daemon_ns(daemon, "umount", os.fspath(mnt))
