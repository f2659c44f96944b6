"""What a user does with snapshots, copies, moves and storage pools through mc, on a dir pool
(`default`) and on a btrfs pool (a loop file): every step through the CLI, every result checked
the way the user would (mc exec, mc info, mc config show, mc storage ...)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.system

SNAP_NAME = "Instance snapshot name is: "


@pytest.fixture(scope="module")
def made(daemon):
    """Instances and images the tests make, deleted at the end (snapshots go with them)."""
    names: dict[str, list[str]] = {"instances": [], "images": []}
    yield names
    for name in reversed(names["instances"]):
        daemon.mc("delete", "--force", name)
    for alias in names["images"]:
        daemon.mc("image", "delete", alias)


@pytest.fixture(params=["dir", "btrfs"])
def pool(request, daemon) -> str:
    """The pool a test runs on: `default` (dir) or the session's btrfs loop pool."""
    if request.param == "dir":
        return "default"
    return request.getfixturevalue("btrfs_pool")


def tag(pool: str) -> str:
    return "d" if pool == "default" else "b"


def launch(daemon, made, image: str, name: str, pool: str, *flags: str) -> str:
    made["instances"].append(name)
    daemon.ok("launch", image, name, "-s", pool, *flags)
    return name


def cat(daemon, name: str, path: str = "/root/file") -> str:
    return daemon.ok("exec", name, "--", "cat", path).strip()


def write(daemon, name: str, text: str, path: str = "/root/file") -> None:
    daemon.ok("exec", name, "--", "sh", "-c", f"echo '{text}' > {path}")


def instance(daemon, name: str) -> dict:
    return daemon.api("GET", f"/1.0/instances/{name}")  # type: ignore[return-value]


def snapshots(daemon, name: str) -> list[str]:
    return sorted(s["name"] for s in daemon.api("GET", f"/1.0/instances/{name}/snapshots"
                                                "?recursion=1"))  # type: ignore[union-attr]


def root_pool(daemon, name: str) -> str:
    devices = instance(daemon, name)["expanded_devices"]
    return next(d["pool"] for d in devices.values() if d.get("type") == "disk"
                and d.get("path") == "/")


def fails(daemon, *args: str) -> str:
    """mc fails with exit 1 and one line `Error: ...`; that line."""
    res = daemon.mc(*args)
    assert res.code == 1, f"mc {' '.join(args)} should fail: {res.out}{res.err}"
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.err
    return lines[0]


# -- snapshot, info, config show, restore ---------------------------------------------------
def test_snapshot_restore_round_trip(daemon, busybox_image, made, pool):
    c1 = launch(daemon, made, busybox_image, f"t5d-{tag(pool)}-rt", pool)
    write(daemon, c1, "first")
    daemon.ok("config", "set", c1, "user.version=1")

    daemon.ok("snapshot", c1, "before")  # while running
    out = daemon.ok("snapshot", c1)  # no name: snapshots.pattern (snap%d)
    assert out == f"{SNAP_NAME}snap0\n"
    assert snapshots(daemon, c1) == ["before", "snap0"]

    info = daemon.ok("info", c1)
    table = info.split("Snapshots:\n", 1)[1]
    assert "TAKEN AT" in table and "EXPIRES AT" in table and "STATEFUL" in table
    assert "| before " in table and "| snap0 " in table

    shown = yaml.safe_load(daemon.ok("config", "show", f"{c1}/before"))
    assert shown["name"] == "before"
    assert shown["config"]["user.version"] == "1"
    assert shown["expires_at"] == "0001-01-01T00:00:00Z"  # snapshots.expiry is unset
    assert daemon.ok("config", "get", f"{c1}/before", "user.version") == "1\n"

    write(daemon, c1, "second")
    daemon.ok("exec", c1, "--", "touch", "/root/added-later")
    daemon.ok("config", "set", c1, "user.version=2")
    daemon.ok("restore", c1, "before")

    assert instance(daemon, c1)["status"] == "Running"  # stopped and started again
    assert cat(daemon, c1) == "first"
    assert daemon.mc("exec", c1, "--", "test", "-e", "/root/added-later").code == 1
    assert daemon.ok("config", "get", c1, "user.version") == "1\n"
    assert snapshots(daemon, c1) == ["before", "snap0"]  # restoring keeps every snapshot


def test_expiry_flags_and_config_edit(daemon, busybox_image, made, pool):
    c1 = launch(daemon, made, busybox_image, f"t5d-{tag(pool)}-exp", pool)
    daemon.ok("config", "set", c1, "snapshots.expiry=2d")
    daemon.ok("snapshot", c1, "auto")
    daemon.ok("snapshot", c1, "kept", "--no-expiry")
    daemon.ok("snapshot", c1, "week", "--expiry", "1w")
    expiry = {s["name"]: s["expires_at"] for s in
              daemon.api("GET", f"/1.0/instances/{c1}/snapshots?recursion=1")}
    assert expiry["kept"] == "0001-01-01T00:00:00Z"
    assert expiry["auto"] > "2000" and expiry["week"] > expiry["auto"]  # 2 days < 1 week

    doc = daemon.ok("config", "show", f"{c1}/week").replace(
        f"expires_at: '{expiry['week']}'", "expires_at: ''").replace(
        "description: ''", "description: for the record")
    daemon.ok("config", "edit", f"{c1}/week", input=doc)
    week = daemon.api("GET", f"/1.0/instances/{c1}/snapshots/week")
    assert week["expires_at"] == "0001-01-01T00:00:00Z"
    assert week["description"] == "for the record"

    assert "Can't use both --no-expiry and --expiry" in fails(
        daemon, "snapshot", c1, "x", "--no-expiry", "--expiry", "1d")
    assert 'Invalid expiry "soon"' in fails(daemon, "snapshot", c1, "x", "--expiry", "soon")
    assert "only its expires_at and description can" in fails(
        daemon, "config", "set", f"{c1}/week", "user.a=b")


def test_reuse_replaces_a_snapshot(daemon, busybox_image, made, pool):
    c1 = launch(daemon, made, busybox_image, f"t5d-{tag(pool)}-reuse", pool)
    write(daemon, c1, "old")
    daemon.ok("snapshot", c1, "nightly")
    write(daemon, c1, "new")
    line = fails(daemon, "snapshot", c1, "nightly")
    assert "nightly" in line
    daemon.ok("snapshot", c1, "nightly", "--reuse")
    write(daemon, c1, "newest")
    daemon.ok("restore", c1, "nightly")
    assert cat(daemon, c1) == "new"


# -- copy --------------------------------------------------------------------------------------
def test_copies_of_instances_and_snapshots_boot_with_their_files(daemon, busybox_image, made,
                                                                   pool):
    t = tag(pool)
    src = launch(daemon, made, busybox_image, f"t5d-{t}-src", pool)
    write(daemon, src, "at snapshot")
    daemon.ok("snapshot", src, "s1")
    write(daemon, src, "now")

    made["instances"].append(f"t5d-{t}-cp1")
    daemon.ok("copy", src, f"t5d-{t}-cp1")  # a running source
    made["instances"].append(f"t5d-{t}-cp2")
    daemon.ok("cp", f"{src}/s1", f"t5d-{t}-cp2", "-c", "user.origin=snapshot")
    for name, text in ((f"t5d-{t}-cp1", "now"), (f"t5d-{t}-cp2", "at snapshot")):
        assert instance(daemon, name)["status"] == "Stopped"
        daemon.ok("start", name)
        assert cat(daemon, name) == text
        assert root_pool(daemon, name) == pool  # the source's pool
    assert snapshots(daemon, f"t5d-{t}-cp1") == ["s1"]  # snapshots come along
    assert snapshots(daemon, f"t5d-{t}-cp2") == []  # not from a snapshot
    assert daemon.ok("config", "get", f"t5d-{t}-cp2", "user.origin") == "snapshot\n"
    uuids = {instance(daemon, n)["config"].get("volatile.uuid")
             for n in (src, f"t5d-{t}-cp1", f"t5d-{t}-cp2")}
    assert len(uuids) == 3  # regenerated

    made["instances"].append(f"t5d-{t}-cp3")
    daemon.ok("copy", src, f"t5d-{t}-cp3", "--instance-only")
    assert snapshots(daemon, f"t5d-{t}-cp3") == []

    out = daemon.ok("copy", f"{src}/s1")  # the server picks the name
    assert out.startswith("Instance name is: ")
    generated = out.split(": ", 1)[1].strip()
    made["instances"].append(generated)
    assert instance(daemon, generated)["name"] == generated

    line = fails(daemon, "copy", src, f"t5d-{t}-cp1")
    assert f"t5d-{t}-cp1" in line and "already exists" in line


def test_copy_and_launch_onto_another_pool(daemon, busybox_image, made, btrfs_pool):
    src = launch(daemon, made, busybox_image, "t5d-x-src", "default")
    write(daemon, src, "crossing")
    daemon.ok("snapshot", src, "s1")
    made["instances"].append("t5d-x-cp")
    daemon.ok("copy", f"{src}/s1", "t5d-x-cp", "-s", btrfs_pool)
    assert root_pool(daemon, "t5d-x-cp") == btrfs_pool
    daemon.ok("start", "t5d-x-cp")
    assert cat(daemon, "t5d-x-cp") == "crossing"


# -- move, rename, delete ------------------------------------------------------------------
def test_move_between_pools_keeps_files_and_snapshots(daemon, busybox_image, made, btrfs_pool,
                                                      dir_pool_factory):
    slow = dir_pool_factory("t5d-slow")
    c1 = launch(daemon, made, busybox_image, "t5d-mv", "default")
    write(daemon, c1, "moving")
    daemon.ok("snapshot", c1, "s1")
    assert "stop" in fails(daemon, "move", c1, "--storage", btrfs_pool).lower()

    daemon.ok("stop", c1)
    daemon.ok("move", c1, "--storage", btrfs_pool)
    assert root_pool(daemon, c1) == btrfs_pool
    made["instances"].append("t5d-mv2")
    daemon.ok("move", c1, "t5d-mv2", "-s", slow)  # rename and move at once
    assert daemon.mc("info", c1).code == 1
    assert root_pool(daemon, "t5d-mv2") == slow
    assert snapshots(daemon, "t5d-mv2") == ["s1"]
    daemon.ok("start", "t5d-mv2")
    assert cat(daemon, "t5d-mv2") == "moving"
    daemon.ok("restore", "t5d-mv2", "s1")  # the snapshot moved along, and works
    assert cat(daemon, "t5d-mv2") == "moving"
    info = daemon.ok("storage", "info", slow)
    assert "instances: 1" in info and "snapshots: 1" in info and "- t5d-mv2" in info
    daemon.ok("delete", "--force", "t5d-mv2")


def test_delete_and_rename_snapshots(daemon, busybox_image, made, pool):
    c1 = launch(daemon, made, busybox_image, f"t5d-{tag(pool)}-dr", pool)
    for n in ("a", "b", "c"):
        write(daemon, c1, f"state {n}")
        daemon.ok("snapshot", c1, n)
    daemon.ok("delete", f"{c1}/b")
    assert snapshots(daemon, c1) == ["a", "c"]
    daemon.ok("rename", f"{c1}/a", f"{c1}/first")
    daemon.ok("move", f"{c1}/c", f"{c1}/last")
    assert snapshots(daemon, c1) == ["first", "last"]
    daemon.ok("restore", c1, "first")
    assert cat(daemon, c1) == "state a"
    daemon.ok("restore", c1, "last")
    assert cat(daemon, c1) == "state c"
    assert "b" in fails(daemon, "restore", c1, "b")


def test_publish_a_snapshot(daemon, busybox_image, made):
    c1 = launch(daemon, made, busybox_image, "t5d-pub", "default")
    write(daemon, c1, "golden")
    daemon.ok("snapshot", c1, "s1")
    write(daemon, c1, "later")
    made["images"].append("t5d-golden")
    daemon.ok("publish", f"{c1}/s1", "--alias", "t5d-golden")  # no stop needed
    assert instance(daemon, c1)["status"] == "Running"
    c2 = launch(daemon, made, "t5d-golden", "t5d-pub2", "default")
    assert cat(daemon, c2) == "golden"


# -- errors --------------------------------------------------------------------------------
def test_clear_errors_for_bad_input(daemon, busybox_image, made):
    c1 = launch(daemon, made, busybox_image, "t5d-err", "default")
    assert "nope" in fails(daemon, "restore", c1, "nope")
    assert "t5d-none" in fails(daemon, "snapshot", "t5d-none", "s")
    assert "nope" in fails(daemon, "copy", f"{c1}/nope", "t5d-err2")
    assert "nope" in fails(daemon, "delete", f"{c1}/nope")
    assert "nope" in fails(daemon, "config", "show", f"{c1}/nope")
    assert "t5d-nopool" in fails(daemon, "copy", c1, "t5d-err3", "-s", "t5d-nopool")
    assert "t5d-nopool" in fails(daemon, "launch", busybox_image, "t5d-err4", "-s",
                                 "t5d-nopool")
    assert 'Invalid snapshot name "a/b"' in fails(daemon, "snapshot", c1, "a/b")
    assert "CRIU" in fails(daemon, "snapshot", c1, "st", "--stateful")
    daemon.ok("snapshot", c1, "s1")
    assert "CRIU" in fails(daemon, "restore", c1, "s1", "--stateful")
    for name in ("t5d-err2", "t5d-err3", "t5d-err4"):
        assert daemon.mc("info", name).code == 1  # nothing half-made


# -- storage pools -------------------------------------------------------------------------
def test_storage_pool_lifecycle(daemon, btrfs_pool):
    pools = {p["name"]: p for p in json.loads(daemon.ok("storage", "list", "-f", "json"))}
    assert pools["default"]["driver"] == "dir" and pools[btrfs_pool]["driver"] == "btrfs"
    table = daemon.ok("storage", "list")
    for column in ("NAME", "DRIVER", "SOURCE", "DESCRIPTION", "USED BY", "STATE"):
        assert column in table
    assert "CREATED" in table

    info = yaml.safe_load(daemon.ok("storage", "info", btrfs_pool, "--bytes"))
    assert info["info"]["driver"] == "btrfs"
    assert 0 < info["info"]["space used"] < info["info"]["total space"] <= 3 << 30

    source = Path(tempfile.mkdtemp(prefix="machined-t5d-"))
    try:
        daemon.ok("storage", "create", "t5d-p1", "dir", f"source={source}",
                  "--description", "scratch")
        shown = yaml.safe_load(daemon.ok("storage", "show", "t5d-p1"))
        assert shown["config"]["source"] == str(source) and shown["description"] == "scratch"
        daemon.ok("storage", "set", "t5d-p1", "-p", "description=changed")
        assert daemon.ok("storage", "get", "t5d-p1", "-p", "description") == "changed\n"
        assert "source" in fails(daemon, "storage", "set", "t5d-p1", "source=/tmp")
        assert "t5d-p1" in fails(daemon, "storage", "create", "t5d-p1", "dir",
                                 f"source={source}")
        daemon.ok("storage", "delete", "t5d-p1")
        names = [p["name"] for p in json.loads(daemon.ok("storage", "list", "-f", "json"))]
        assert "t5d-p1" not in names
    finally:
        daemon.mc("storage", "delete", "t5d-p1")
        shutil.rmtree(source, ignore_errors=True)

    assert "accepted are dir, btrfs" in fails(daemon, "storage", "create", "t5d-p2", "zfs")
    assert "size" in fails(daemon, "storage", "create", "t5d-p2", "btrfs", "size=lots")
    assert "t5d-p2" in fails(daemon, "storage", "info", "t5d-p2")
    assert "default" in fails(daemon, "storage", "delete", "default")
    names = [p["name"] for p in json.loads(daemon.ok("storage", "list", "-f", "json"))]
    assert "t5d-p2" not in names
