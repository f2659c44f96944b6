"""storage/model.py: pool names, driver config, volume names, loop sizes, overlaps."""

from __future__ import annotations

from pathlib import PurePath

import pytest

from machined.errors import BadRequest
from machined.storage import model

GiB = 1 << 30


@pytest.mark.parametrize("name", ["default", "fast", "a", "pool-1", "my_pool.2", "x" * 63])
def test_pool_names_accepted(name):
    assert model.check_pool_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "-x", "_x", "a/b", "a b", "x" * 64, "é", "a\n",
                                  "a\nb", None, 3])
def test_pool_names_refused(name):
    with pytest.raises(BadRequest, match="Invalid storage pool name.*letters, digits"):
        model.check_pool_name(name)


def test_unknown_driver_names_the_accepted_ones():
    with pytest.raises(BadRequest, match=r"Unknown storage driver 'zfs': use one of dir, "
                                         r"btrfs"):
        model.validate_pool("zfs", {})


@pytest.mark.parametrize("driver,config", [
    ("dir", {}), ("dir", {"source": "/srv/mc"}), ("btrfs", {}), ("btrfs", {"size": "3GiB"}),
    ("btrfs", {"size": "20GB"}), ("btrfs", {"source": "/dev/vdb"}),
    ("btrfs", {"source": "/srv/btrfs/pool"}),
    ("btrfs", {"size": "5GiB", "btrfs.mount_options": "user_subvol_rm_allowed,compress=zstd"}),
])
def test_valid_configs(driver, config):
    model.validate_pool(driver, config)


@pytest.mark.parametrize("driver,config,match", [
    ("dir", {"size": "1GiB"}, r"Invalid storage pool config key 'size' for driver dir: "
                              r"use source"),
    ("dir", {"btrfs.mount_options": "x"}, "key 'btrfs.mount_options' for driver dir"),
    ("btrfs", {"zfs.pool_name": "x"}, r"use source, size, btrfs.mount_options"),
    ("btrfs", {"size": "lots"}, r"Invalid size 'lots': use a size such as 512MiB"),
    ("btrfs", {"size": "1MiB"}, r"Invalid size '1MiB': use a size from 256MiB to 1PiB"),
    ("btrfs", {"size": "2EiB"}, r"from 256MiB to 1PiB"),
    ("btrfs", {"size": "1GiB", "source": "/dev/vdb"}, r"size applies only to pools on a loop"),
    ("btrfs", {"source": "relative/dir"}, r"Invalid source 'relative/dir': use an absolute"),
    ("btrfs", {"source": "/srv/../etc"}, r"without '.' or '..'"),
    ("dir", {"source": "/srv/./x"}, r"without '.' or '..'"),
    ("btrfs", {"btrfs.mount_options": "loop=/dev/sda"}, r"Invalid btrfs.mount_options"),
    ("btrfs", {"btrfs.mount_options": "ro"}, r"not loop, ro or subvol options"),
    ("btrfs", {"btrfs.mount_options": "subvol=/x"}, r"Invalid btrfs.mount_options"),
    ("btrfs", {"btrfs.mount_options": "compress=zstd,,"}, r"Invalid btrfs.mount_options"),
    ("btrfs", {"btrfs.mount_options": "a b"}, r"Invalid btrfs.mount_options"),
    ("btrfs", {"btrfs.mount_options": "compress\n"}, r"Invalid btrfs.mount_options"),
    ("btrfs", {"size": 3}, r"'size' must be a string"),
])
def test_invalid_configs_say_what_is_accepted(driver, config, match):
    with pytest.raises(BadRequest, match=match) as e:
        model.validate_pool(driver, config)
    assert "\n" not in e.value.message


def test_update_allows_only_mount_options():
    old = {"source": "/var/lib/machined/disks/f.img", "size": "3GiB"}
    model.check_update("btrfs", old, {**old, "btrfs.mount_options": "compress=zstd"})
    model.check_update("btrfs", old, dict(old))
    with pytest.raises(BadRequest, match=r"key 'size' cannot be changed \(can: "
                                         r"btrfs.mount_options\)"):
        model.check_update("btrfs", old, {**old, "size": "5GiB"})
    with pytest.raises(BadRequest, match=r"key 'source' cannot be changed"):
        model.check_update("btrfs", old, {"size": "3GiB"})  # a PUT dropping source
    with pytest.raises(BadRequest, match=r"'source' cannot be changed \(can: only the "
                                         r"description\)"):
        model.check_update("dir", {"source": "/a"}, {"source": "/b"})
    with pytest.raises(BadRequest, match=r"Invalid storage pool config key 'bogus'"):
        model.check_update("dir", {"source": "/a"}, {"source": "/a", "bogus": "1"})
    with pytest.raises(BadRequest, match=r"Invalid btrfs.mount_options"):
        model.check_update("btrfs", old, {**old, "btrfs.mount_options": "loop"})


@pytest.mark.parametrize("free,size", [
    (0, 5 * GiB), (10 * GiB, 5 * GiB), (25 * GiB, 5 * GiB), (50 * GiB, 10 * GiB),
    (79 * GiB, 15 * GiB), (150 * GiB, 30 * GiB), (10 << 40, 30 * GiB),
])
def test_default_loop_size_is_lxds_rule(free, size):
    assert model.default_loop_size(free) == size


def test_format_size_round_trips():
    for size in (3 * GiB, 256 << 20, 5 * GiB + (1 << 20), 1234567):
        assert model.loop_size(model.format_size(size)) == size if size >= 256 << 20 else True
    assert model.format_size(3 * GiB) == "3GiB"
    assert model.format_size(300 << 20) == "300MiB"


def test_new_volume_names_are_unique_safe_components():
    names = {model.new_volume_name("c01") for _ in range(200)}
    assert len(names) == 200
    for name in names:
        assert name.startswith("c01-") and len(name) == len("c01-") + 8
        model.check_volume_name(name)
    for label in ("c01-snap 0", "c01-../../etc", "c01-a/b", "c01-\n", ".hidden", "é-x", "",
                  "x" * 300):
        name = model.new_volume_name(label)
        model.check_volume_name(name)
        assert "/" not in name and name not in (".", "..") and len(name) <= 110


@pytest.mark.parametrize("volume", ["", ".", "..", "../x", "a/b", "-a", "a\n", "x" * 201])
def test_volume_names_refused(volume):
    with pytest.raises(BadRequest, match="Invalid volume name"):
        model.check_volume_name(volume)


def test_root_pool_of_devices():
    assert model.used_by_root_pool({}) is None
    assert model.used_by_root_pool({"root": {"type": "disk", "path": "/"}}) == "default"
    assert model.used_by_root_pool({"r": {"type": "disk", "path": "/", "pool": "fast"},
                                    "d": {"type": "disk", "path": "/mnt",
                                          "pool": "x"}}) == "fast"


def test_fingerprints():
    assert model.is_fingerprint("a" * 64)
    assert not model.is_fingerprint("A" * 64)
    assert not model.is_fingerprint("a" * 63)
    assert not model.is_fingerprint("spare.1234")


STATE = PurePath("/var/lib/machined")
OWN = STATE / "storage-pools" / "new"
OTHERS = {"default": STATE / "storage-pools" / "default", "slow": PurePath("/srv/mc")}


@pytest.mark.parametrize("root,problem", [
    (PurePath("/srv/other"), None),
    (OWN, None),
    (PurePath("/srv/mcx"), None),
    (PurePath("/var/lib/machined/x"), "overlaps machined's state directory"),
    (PurePath("/var/lib"), "overlaps machined's state directory"),
    (PurePath("/"), "overlaps machined's state directory"),
    (PurePath("/srv/mc/sub"), "overlaps storage pool 'slow' at /srv/mc"),
    (PurePath("/srv"), "overlaps storage pool 'slow'"),
    (PurePath("/srv/mc"), "overlaps storage pool 'slow'"),
])
def test_source_overlap(root, problem):
    found = model.source_overlap(root, STATE, OWN, OTHERS)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
