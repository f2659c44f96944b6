"""Rough edges an LXD user hit trying issue 5's features through mc (user-level review):
each test fails without its fix. Container names carry the prefix t5u."""

from __future__ import annotations

import os

import pytest
import yaml

pytestmark = pytest.mark.system


def fails(daemon, *args: str, timeout: float = 60) -> str:
    """mc fails with exit 1 and one line `Error: ...`; that line."""
    res = daemon.mc(*args, timeout=timeout)
    assert res.code == 1, f"mc {' '.join(args)} should fail: {res.out}{res.err}"
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.err
    return lines[0]


@pytest.fixture
def stopped(daemon, busybox_image):
    daemon.ok("init", busybox_image, "t5u-same")
    yield "t5u-same"
    daemon.mc("delete", "--force", "t5u-same", timeout=60)


def test_rename_to_its_own_name_is_refused_and_leaves_the_instance_usable(daemon, stopped):
    # It took the instance's lock twice: the request never ended and every later operation
    # on the instance (start, delete...) waited forever.
    assert "already exists" in fails(daemon, "rename", stopped, stopped, timeout=20)
    assert "already exists" in fails(daemon, "move", stopped, stopped, timeout=20)
    daemon.mc("start", stopped, timeout=20)
    daemon.ok("delete", "--force", stopped, timeout=20)


def test_storage_info_shows_snapshot_names_as_typed(daemon, busybox_image):
    daemon.ok("init", busybox_image, "t5u-spc")
    try:
        daemon.ok("snapshot", "t5u-spc", "before upgrade")
        used = yaml.safe_load(daemon.ok("storage", "info", "default"))["used by"]
        assert "t5u-spc/before upgrade" in used["snapshots"]  # not before%20upgrade
    finally:
        daemon.mc("delete", "--force", "t5u-spc")


def test_bad_btrfs_mount_options_are_a_clear_error_and_change_nothing(daemon, btrfs_pool):
    before = yaml.safe_load(daemon.ok("storage", "show", btrfs_pool))["config"]
    line = fails(daemon, "storage", "set", btrfs_pool, "btrfs.mount_options=nosuchoption")
    assert "Invalid btrfs.mount_options 'nosuchoption'" in line and "dmesg" in line
    assert "Internal error" not in line
    assert yaml.safe_load(daemon.ok("storage", "show", btrfs_pool))["config"] == before
    line = fails(daemon, "storage", "create", "t5u-opts", "btrfs", "size=1GiB",
                 "btrfs.mount_options=nosuchoption")
    assert "Invalid btrfs.mount_options 'nosuchoption'" in line
    assert not (daemon.root / "disks" / "t5u-opts.img").exists()
    assert daemon.mc("storage", "show", "t5u-opts").code == 1


def test_a_loop_file_the_filesystem_cannot_hold_leaves_nothing(daemon):
    disks = daemon.root / "disks"
    disks.mkdir(parents=True, exist_ok=True, mode=0o700)
    # ext4's largest file is 16 TiB; other filesystems (xfs, btrfs) take a sparse 100 TiB.
    probe = disks / "t5u-probe"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, 100 << 40)
        pytest.skip("this filesystem holds a 100 TiB sparse file")
    except OSError:
        pass
    finally:
        os.close(fd)
        probe.unlink()
    line = fails(daemon, "storage", "create", "t5u-huge", "btrfs", "size=100TiB")
    assert "Invalid size '100TiB'" in line and "smaller size" in line
    assert not (disks / "t5u-huge.img").exists()  # a retry is not told "a leftover? remove it"
    assert "Invalid size" in fails(daemon, "storage", "create", "t5u-huge", "btrfs",
                                   "size=100TiB")


def test_a_snapshot_copied_after_a_move_lands_on_the_instances_pool(daemon, busybox_image,
                                                                  btrfs_pool):
    # The snapshot was taken on `default` and moved with its instance; its own devices still
    # say `default`. Like `mc copy c1 c2`, `mc copy c1/snap c3` lands on the source's pool.
    names = ["t5u-mvs", "t5u-mvs2", "t5u-mvs3"]
    try:
        daemon.ok("init", busybox_image, names[0])
        daemon.ok("snapshot", names[0], "s1")
        daemon.ok("move", names[0], "-s", btrfs_pool)
        daemon.ok("copy", f"{names[0]}/s1", names[1])
        pools = {i["name"]: i["expanded_devices"]["root"]["pool"] for i in daemon.instances()}
        assert pools[names[1]] == btrfs_pool
        daemon.ok("copy", f"{names[0]}/s1", names[2], "-s", "default")  # -s still decides
        pools = {i["name"]: i["expanded_devices"]["root"]["pool"] for i in daemon.instances()}
        assert pools[names[2]] == "default"
        assert daemon.ok("list", "-c", "b", "-f", "csv", names[1]).strip() == btrfs_pool
    finally:
        for name in names:
            daemon.mc("delete", "--force", name)
