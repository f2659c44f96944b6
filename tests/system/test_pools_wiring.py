"""Instances on storage pools: the root disk's pool decides where an instance's volume lives;
volumes are named once (renames keep them), deleted with their row, and a volume no row
names is removed at the next daemon start."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest

from cli.errors import ApiError
from tests.conftest import Daemon, built_image, delete_pool, spawn_daemon

pytestmark = pytest.mark.system

POOL = "t5wdir"


@pytest.fixture(scope="module")
def pool(daemon: Daemon):
    """A second dir pool at a fresh directory outside MACHINED_DIR."""
    source = Path(tempfile.mkdtemp(prefix="machined-t5w-"))
    daemon.api("POST", "/1.0/storage-pools",
               {"name": POOL, "driver": "dir", "config": {"source": os.fspath(source)}})
    yield POOL, source
    delete_pool(daemon, POOL)
    shutil.rmtree(source, ignore_errors=True)


def root_on(pool: str) -> dict[str, dict[str, str]]:
    return {"root": {"type": "disk", "path": "/", "pool": pool}}


def create_on(daemon: Daemon, image: str, name: str, pool: str, **extra: object) -> None:
    """What `mc launch -s <pool>` sends: an instance root disk device naming the pool."""
    daemon.api("POST", "/1.0/instances", {
        "name": name, "source": {"type": "image", "alias": image},
        "devices": root_on(pool), **extra})


def test_instance_lives_on_the_pool_its_root_disk_names(daemon, busybox_image, pool):
    name, source = pool
    create_on(daemon, busybox_image, "t5w-a", name)
    try:
        volume = daemon.instance_dir("t5w-a")
        assert volume.parent == source / "containers"
        # Named once from the instance name, with a random suffix (never renamed).
        assert volume.name.startswith("t5w-a-") and len(volume.name) == len("t5w-a-") + 8
        assert (volume / "rootfs/bin/busybox").exists()
        # The image was unpacked into that pool for it.
        fp = daemon.api("GET", f"/1.0/images/aliases/{busybox_image}")["target"]
        assert (source / "images" / fp / "rootfs").is_dir()
        daemon.ok("start", "t5w-a")
        # Templates were rendered into the pool's copy (at the first start, as LXD).
        assert (volume / "rootfs/etc/hostname").read_text().strip() == "t5w-a"
        assert daemon.ok("exec", "t5w-a", "--", "cat", "/etc/hostname").strip() == "t5w-a"
        daemon.ok("file", "push", "-", "t5w-a/root/pushed", input="on the second pool\n")
        assert (volume / "rootfs/root/pushed").read_text() == "on the second pool\n"
        assert daemon.ok("exec", "t5w-a", "--", "cat", "/root/pushed") == "on the second pool\n"
        assert daemon.ok("file", "pull", "t5w-a/root/pushed", "-") == "on the second pool\n"
        daemon.ok("stop", "--force", "t5w-a")

        daemon.ok("rename", "t5w-a", "t5w-b")
        assert daemon.instance_dir("t5w-b") == volume and volume.is_dir()
        daemon.ok("start", "t5w-b")
        assert daemon.ok("exec", "t5w-b", "--", "cat", "/root/pushed") == "on the second pool\n"
        assert daemon.ok("exec", "t5w-b", "--", "hostname").strip() == "t5w-b"
        daemon.ok("delete", "--force", "t5w-b")
        assert not volume.exists()
        assert not os.listdir(source / "containers")
    finally:
        for n in ("t5w-a", "t5w-b"):
            daemon.mc("delete", "--force", n)


def in_daemon_ns(daemon: Daemon, *argv: object) -> str:
    """Run a command in the daemon's mount namespace (where it mounts btrfs pools)."""
    assert daemon.proc is not None
    return subprocess.run(["nsenter", f"--mount=/proc/{daemon.proc.pid}/ns/mnt", "--",
                           *map(os.fspath, argv)], check=True, capture_output=True,
                          text=True).stdout


def test_instance_on_a_btrfs_pool(daemon, busybox_image, btrfs_pool):
    """The image is unpacked into a read-only subvolume of the pool, the instance is a
    writable snapshot of it; files, exec, rename and delete work as on dir."""
    create_on(daemon, busybox_image, "t5w-bt", btrfs_pool)
    try:
        daemon.ok("start", "t5w-bt")
        assert daemon.ok("exec", "t5w-bt", "--", "cat", "/etc/hostname").strip() == "t5w-bt"
        daemon.ok("file", "push", "-", "t5w-bt/root/pushed", input="on btrfs\n")
        assert daemon.ok("exec", "t5w-bt", "--", "cat", "/root/pushed") == "on btrfs\n"
        daemon.ok("stop", "--force", "t5w-bt")
        daemon.ok("rename", "t5w-bt", "t5w-bt2")
        daemon.ok("start", "t5w-bt2")
        assert daemon.ok("file", "pull", "t5w-bt2/root/pushed", "-") == "on btrfs\n"
        pool = daemon.api("GET", f"/1.0/storage-pools/{btrfs_pool}")
        assert "/1.0/instances/t5w-bt2" in pool["used_by"]
        volume = daemon.instance_dir("t5w-bt2")
        assert volume.name.startswith("t5w-bt-")  # named at create, kept by the rename
        assert volume.name in in_daemon_ns(daemon, "ls", volume.parent).split()
        daemon.ok("delete", "--force", "t5w-bt2")
        pool = daemon.api("GET", f"/1.0/storage-pools/{btrfs_pool}")
        assert "/1.0/instances/t5w-bt2" not in pool["used_by"]
        assert volume.name not in in_daemon_ns(daemon, "ls", volume.parent).split()
    finally:
        for n in ("t5w-bt", "t5w-bt2"):
            daemon.mc("delete", "--force", n)


def test_create_on_a_missing_pool_is_refused_before_anything_is_made(daemon, busybox_image):
    with pytest.raises(ApiError) as e:
        create_on(daemon, busybox_image, "t5w-nopool", "t5wnosuch")
    assert e.value.status == 404
    assert "Storage pool 't5wnosuch' not found" in str(e.value)
    assert "t5w-nopool" not in [i["name"] for i in daemon.instances()]
    assert not list((daemon.root / "storage-pools/default/containers").glob("t5w-nopool-*"))


def test_the_root_pool_cannot_be_changed_in_place(daemon, busybox_image, pool):
    name, _source = pool
    daemon.ok("profile", "create", "t5wprof")
    try:
        daemon.api("PUT", "/1.0/profiles/t5wprof", {"devices": root_on(name)})
        daemon.api("POST", "/1.0/instances", {
            "name": "t5w-p", "source": {"type": "image", "alias": busybox_image},
            "profiles": ["t5wprof"]})
        assert daemon.instance_dir("t5w-p").parent.parent == _source
        move = f"Instance 't5w-p' is on pool '{name}'; move it with: mc move t5w-p --storage"
        # Through the instance's own devices...
        res = daemon.mc("config", "device", "add", "t5w-p", "root", "disk", "path=/",
                        "pool=default")
        assert res.code == 1 and f"{move} default" in res.err, res.err
        # ...through its profiles (the default profile's root disk is on 'default')...
        res = daemon.mc("profile", "assign", "t5w-p", "default")
        assert res.code == 1 and f"{move} default" in res.err, res.err
        # ...and through a change of a profile it uses.
        with pytest.raises(ApiError) as e:
            daemon.api("PATCH", "/1.0/profiles/t5wprof", {"devices": root_on("default")})
        assert e.value.status == 400
        assert f"Profile 't5wprof' not changed: {move} default" in str(e.value)
        profile = daemon.api("GET", "/1.0/profiles/t5wprof")
        assert profile["devices"]["root"]["pool"] == name
        # A pool that does not exist is named as such, for instances and profiles alike.
        res = daemon.mc("config", "device", "add", "t5w-p", "root", "disk", "path=/",
                        "pool=t5wnosuch")
        assert res.code == 1 and "Device 'root': storage pool 't5wnosuch' not found" in res.err
        res = daemon.mc("profile", "device", "set", "t5wprof", "root", "pool=t5wnosuch")
        assert res.code == 1 and "Device 'root': storage pool 't5wnosuch' not found" in res.err
        # Naming the same pool again is no change.
        daemon.ok("config", "device", "add", "t5w-p", "root", "disk", "path=/",
                  f"pool={name}")
        daemon.ok("start", "t5w-p")
        assert daemon.ok("exec", "t5w-p", "--", "hostname").strip() == "t5w-p"
    finally:
        daemon.mc("delete", "--force", "t5w-p")
        daemon.mc("profile", "delete", "t5wprof")


def test_disk_sources_inside_a_pool_are_refused(daemon, busybox_image, pool):
    name, source = pool
    create_on(daemon, busybox_image, "t5w-d", "default")
    try:
        res = daemon.mc("config", "device", "add", "t5w-d", "s", "disk",
                        f"source={source / 'containers'}", "path=/mnt/s")
        assert res.code == 1 and f"is inside storage pool '{name}'" in res.err, res.err
        assert "s" not in daemon.api("GET", "/1.0/instances/t5w-d")["devices"]
    finally:
        daemon.mc("delete", "--force", "t5w-d")


def _db(daemon: Daemon) -> sqlite3.Connection:
    return sqlite3.connect(daemon.root / "database/machined.db")


def test_restart_removes_unreferenced_volumes_and_keeps_pre_m0003_instances():
    """A volume no row names (an interrupted create or delete) goes at the next start, in
    every pool; an instance made before volumes had their own names (volume = instance
    name, as migration m0003 recorded it) still starts. Deleting the image removes its
    volume from every pool."""
    source = Path(tempfile.mkdtemp(prefix="machined-t5w-restart-"))
    try:
        with spawn_daemon() as d:
            d.ok("image", "import", *map(os.fspath, built_image("busybox", "unified")),
                 "--alias", "bb")
            d.api("POST", "/1.0/storage-pools",
                  {"name": "t5wother", "driver": "dir", "config": {"source": os.fspath(source)}})
            d.ok("init", "bb", "t5w-old")
            create_on(d, "bb", "t5w-keep", "t5wother")
            keep = d.instance_dir("t5w-keep")
            (keep / "rootfs/root/kept").write_text("kept\n")
            fp = d.api("GET", "/1.0/images/aliases/bb")["target"]
            d.kill()

            # An instance as migration m0003 left it: volume named like the instance.
            old = d.instance_dir("t5w-old")
            os.rename(old, old.parent / "t5w-old")
            with _db(d) as db:
                db.execute("UPDATE instances SET volume = 't5w-old' WHERE name = 't5w-old'")
            # Leftovers no row names, in both pools.
            orphans = [d.root / "storage-pools/default/containers/t5w-gone-0badf00d",
                       source / "containers/t5w-gone-1badf00d"]
            for orphan in orphans:
                (orphan / "rootfs/etc").mkdir(parents=True)
                (orphan / "rootfs/etc/hostname").write_text("gone\n")
                os.symlink("/", orphan / "rootfs/hostroot")  # removal never follows links

            d.start()
            assert not any(o.exists() for o in orphans)
            assert os.path.isdir("/etc") and os.path.isdir("/usr")
            assert d.instance_dir("t5w-old") == old.parent / "t5w-old"
            d.ok("start", "t5w-old")
            assert d.ok("exec", "t5w-old", "--", "hostname").strip() == "t5w-old"
            d.ok("start", "t5w-keep")
            assert d.ok("exec", "t5w-keep", "--", "cat", "/root/kept") == "kept\n"
            d.ok("delete", "--force", "t5w-old")
            assert not (old.parent / "t5w-old").exists()
            d.ok("delete", "--force", "t5w-keep")
            assert (source / "images" / fp).is_dir()
            d.ok("image", "delete", "bb")
            assert not (source / "images" / fp).exists()
            assert not (d.root / "storage-pools/default/images" / fp).exists()
            d.api("DELETE", "/1.0/storage-pools/t5wother")
    finally:
        shutil.rmtree(source, ignore_errors=True)
