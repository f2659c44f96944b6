"""Snapshots, restore, copy and move on real containers, on the `dir` pool and on btrfs: the
round trip (files and config), independence of every copy, freezing while a running
container is copied on dir (not on btrfs), copies, moves between pools, --reuse, publishing
a snapshot, and the API's refusals. Driven through the REST API (the LXD shapes)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from cli.client import Client
from cli.errors import ApiError
from tests.conftest import Daemon, delete_pool

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def api(daemon):
    client = Client(os.fspath(daemon.socket))
    yield client
    client.close()


@pytest.fixture(scope="module")
def made(daemon):
    """Instances and images the tests create, deleted at the end."""
    names: dict[str, list[str]] = {"instances": [], "images": []}
    yield names
    for name in names["instances"]:
        daemon.mc("delete", "--force", name)
    for fp in names["images"]:
        daemon.mc("image", "delete", fp)


# ------------------------------------------------------------------------------ helpers

def launch(daemon: Daemon, made, image: str, name: str, pool: str = "default",
           start: bool = True) -> str:
    daemon.api("POST", "/1.0/instances", {
        "name": name, "source": {"type": "image", "alias": image}, "start": start,
        "devices": {"root": {"type": "disk", "path": "/", "pool": pool}}})
    made["instances"].append(name)
    return name


def sh(daemon: Daemon, name: str, script: str) -> str:
    return daemon.ok("exec", name, "--", "sh", "-c", script)


def snapshot(daemon: Daemon, name: str, snap: str | None = None, **body: object) -> str:
    if snap is not None:
        body["name"] = snap
    op = daemon.api("POST", f"/1.0/instances/{name}/snapshots", body)
    return op["metadata"]["name"]


def restore(daemon: Daemon, name: str, snap: str) -> None:
    daemon.api("PUT", f"/1.0/instances/{name}", {"restore": snap})


def copy(daemon: Daemon, made, source: str, target: str, **extra: object) -> None:
    src = {"type": "copy", "source": source}
    for key in ("instance_only",):
        if key in extra:
            src[key] = extra.pop(key)
    made["instances"].append(target)
    daemon.api("POST", "/1.0/instances", {"name": target, "source": src, **extra})


def config(daemon: Daemon, name: str) -> dict[str, str]:
    return daemon.api("GET", f"/1.0/instances/{name}")["config"]


def set_key(daemon: Daemon, name: str, key: str, value: str) -> None:
    daemon.api("PATCH", f"/1.0/instances/{name}", {"config": {key: value}})


def status(daemon: Daemon, name: str) -> str:
    return daemon.api("GET", f"/1.0/instances/{name}")["status"]


def snapshot_names(daemon: Daemon, name: str) -> list[str]:
    return [s["name"] for s in daemon.api("GET", f"/1.0/instances/{name}/snapshots?recursion=1")]


def db_rows(daemon: Daemon, sql: str, args: list[object]) -> list[tuple]:
    db = sqlite3.connect(f"file:{daemon.root / 'database/machined.db'}?mode=ro", uri=True)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def volumes_of(daemon: Daemon, name: str) -> tuple[str, str, dict[str, str]]:
    """(pool, instance volume, {snapshot: volume}) from the daemon's database."""
    rows = db_rows(daemon, "SELECT id, storage_pool, volume FROM instances WHERE name = ?",
                   [name])
    assert rows, f"no instance {name}"
    iid, pool, volume = rows[0]
    snaps = dict(db_rows(daemon, "SELECT name, volume FROM instances_snapshots WHERE "
                         "instance_id = ?", [iid]))
    return pool, volume, snaps


def pool_root(daemon: Daemon, pool: str) -> Path:
    return daemon.root / "storage-pools" / pool


def on_disk(daemon: Daemon, pool: str, kind: str) -> set[str]:
    """Volume names in <pool>/<kind> as the daemon sees them (btrfs loop pools are mounted
    in its own mount namespace only)."""
    path = pool_root(daemon, pool) / kind
    if pool == "default":
        return {p.name for p in path.iterdir()}
    assert daemon.proc is not None
    out = subprocess.run(["nsenter", f"--mount=/proc/{daemon.proc.pid}/ns/mnt", "ls", "-1",
                          "--", os.fspath(path)], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def wait_for(api: Client, op: dict) -> dict:
    return api.wait_operation(f"/1.0/operations/{op['id']}")


def big_files(daemon: Daemon, name: str, mib: int) -> None:
    """Data that takes a dir copy a while on this disk (zeros written: not sparse)."""
    sh(daemon, name, f"dd if=/dev/zero of=/root/big bs=1M count={mib} 2>/dev/null && sync")


POOLS = ["default", "btrfs"]


@pytest.fixture(params=POOLS)
def pool(request):
    if request.param == "btrfs":
        return request.getfixturevalue("btrfs_pool")
    return "default"


# ------------------------------------------------------------------------------ round trip

def test_round_trip(daemon, busybox_image, made, pool):
    """Files and config back as they were; identity (volatile.uuid) kept; the container
    running again after a restore of a running one; later snapshots kept."""
    name = launch(daemon, made, busybox_image, f"t5b-rt-{pool[:5]}", pool)
    sh(daemon, name, "echo one > /root/f")
    set_key(daemon, name, "user.k", "one")
    uuid = config(daemon, name)["volatile.uuid"]
    assert snapshot(daemon, name, "s1", expires_at="") == "s1"
    shot = daemon.api("GET", f"/1.0/instances/{name}/snapshots/s1")
    assert shot["config"]["user.k"] == "one"
    assert shot["expires_at"] == "0001-01-01T00:00:00Z" and shot["stateful"] is False
    assert shot["expanded_devices"]["root"]["pool"] == pool

    sh(daemon, name, "echo two > /root/f && echo new > /root/new")
    set_key(daemon, name, "user.k", "two")
    set_key(daemon, name, "user.added", "x")
    snapshot(daemon, name, "s2")

    restore(daemon, name, "s1")
    assert status(daemon, name) == "Running"
    assert sh(daemon, name, "cat /root/f") == "one\n"
    assert sh(daemon, name, "ls /root/new 2>&1 || true").strip().endswith("No such file or "
                                                                          "directory")
    conf = config(daemon, name)
    assert conf["user.k"] == "one" and "user.added" not in conf
    assert conf["volatile.uuid"] == uuid
    assert snapshot_names(daemon, name) == ["s1", "s2"]  # later snapshots stay (LXD)

    # And forward again, stopped this time: stays stopped.
    daemon.ok("stop", "--force", name)
    restore(daemon, name, "s2")
    assert status(daemon, name) == "Stopped"
    assert config(daemon, name)["user.k"] == "two"
    daemon.ok("start", name)
    assert sh(daemon, name, "cat /root/f /root/new") == "two\nnew\n"

    # The old instance volumes are gone: exactly one in containers/ is this instance's.
    pool_name, volume, snaps = volumes_of(daemon, name)
    ours = {v for v in on_disk(daemon, pool_name, "containers") if v.startswith(name + "-")}
    assert ours == {volume}
    assert set(snaps.values()) <= on_disk(daemon, pool_name, "snapshots")


# ------------------------------------------------------------------------------ independence

def test_independence(daemon, busybox_image, made):
    name = launch(daemon, made, busybox_image, "t5b-ind")
    for n in (1, 2, 3):
        sh(daemon, name, f"echo {n} > /root/f")
        snapshot(daemon, name, f"s{n}")
    daemon.ok("stop", "--force", name)
    _, volume, snaps = volumes_of(daemon, name)

    daemon.api("DELETE", f"/1.0/instances/{name}/snapshots/s2")
    assert snapshot_names(daemon, name) == ["s1", "s3"]
    assert snaps["s2"] not in on_disk(daemon, "default", "snapshots")
    copy(daemon, made, f"{name}/s3", "t5b-ind-c3")
    daemon.ok("start", "t5b-ind-c3")
    assert sh(daemon, "t5b-ind-c3", "cat /root/f") == "3\n"

    # The container's own volume destroyed at storage level: the snapshots do not need it.
    shutil.rmtree(pool_root(daemon, "default") / "containers" / volume)
    copy(daemon, made, f"{name}/s1", "t5b-ind-c1")
    daemon.ok("start", "t5b-ind-c1")
    assert sh(daemon, "t5b-ind-c1", "cat /root/f") == "1\n"
    restore(daemon, name, "s3")  # and the instance comes back from one
    daemon.ok("start", name)
    assert sh(daemon, name, "cat /root/f") == "3\n"

    # Deleting the instance deletes its snapshots' volumes: nothing left on disk.
    _, volume, snaps = volumes_of(daemon, name)
    daemon.ok("delete", "--force", name)
    assert not {volume} & on_disk(daemon, "default", "containers")
    assert not set(snaps.values()) & on_disk(daemon, "default", "snapshots")
    # The copies made from its snapshots live on.
    assert sh(daemon, "t5b-ind-c1", "cat /root/f") == "1\n"


# ------------------------------------------------------------------------------ copies

def _copy_watching(daemon, api, made, source: str, target: str) -> set[str]:
    """Copy `source` (async) and collect the statuses it shows while the copy runs."""
    op = api.post("/1.0/instances", {"name": target,
                                     "source": {"type": "copy", "source": source}}, wait=False)
    made["instances"].append(target)
    seen = set()
    while True:
        seen.add(status(daemon, source))
        current = api.get(f"/1.0/operations/{op['id']}")
        if current["status_code"] >= 200:
            break
        time.sleep(0.02)
    wait_for(api, op)
    return seen


def test_copy_of_a_running_container_on_dir_freezes_it(daemon, busybox_image, made, api):
    name = launch(daemon, made, busybox_image, "t5b-cpd")
    big_files(daemon, name, 150)
    snapshot(daemon, name, "s1")
    seen = _copy_watching(daemon, api, made, name, "t5b-cpd-2")
    assert "Frozen" in seen, seen
    assert status(daemon, name) == "Running"  # thawed after
    _check_copy(daemon, name, "t5b-cpd-2", snapshots=["s1"])


def test_copy_of_a_running_container_on_btrfs_is_not_frozen(daemon, busybox_image, made, api,
                                                            btrfs_pool):
    name = launch(daemon, made, busybox_image, "t5b-cpb", btrfs_pool)
    big_files(daemon, name, 150)
    snapshot(daemon, name, "s1")
    started = time.monotonic()
    seen = _copy_watching(daemon, api, made, name, "t5b-cpb-2")
    took = time.monotonic() - started
    assert seen == {"Running"}, seen
    print(f"btrfs copy of a running container with 150 MiB and 1 snapshot: {took:.2f} s")
    _check_copy(daemon, name, "t5b-cpb-2", snapshots=["s1"])
    assert volumes_of(daemon, "t5b-cpb-2")[0] == btrfs_pool

    # To another pool: copied from a read-only btrfs snapshot taken first (still no freeze),
    # which is dropped after.
    before = on_disk(daemon, btrfs_pool, "snapshots")
    op = api.post("/1.0/instances", {
        "name": "t5b-cpb-3", "source": {"type": "copy", "source": name},
        "devices": {"root": {"type": "disk", "path": "/", "pool": "default"}}}, wait=False)
    made["instances"].append("t5b-cpb-3")
    seen = set()
    while api.get(f"/1.0/operations/{op['id']}")["status_code"] < 200:
        seen.add(status(daemon, name))
        time.sleep(0.02)
    wait_for(api, op)
    assert seen <= {"Running"}, seen
    assert on_disk(daemon, btrfs_pool, "snapshots") == before
    assert volumes_of(daemon, "t5b-cpb-3")[0] == "default"
    _check_copy(daemon, name, "t5b-cpb-3", snapshots=["s1"])


def test_failed_copy_of_a_running_container_thaws_it(daemon, busybox_image, made):
    """A copy that fails half-way (the target pool fills up) leaves the source running
    (thawed), no target instance and nothing in the target pool."""
    small = "t5bsmall"
    daemon.api("POST", "/1.0/storage-pools",
               {"name": small, "driver": "btrfs", "config": {"size": "256MiB"}})
    try:
        name = launch(daemon, made, busybox_image, "t5b-full")
        big_files(daemon, name, 300)
        with pytest.raises(ApiError, match=f"Copying a volume into pool '{small}' failed "
                           r"\(nothing was changed\): .*No space left on device"):
            copy(daemon, made, name, "t5b-full-2",
                 devices={"root": {"type": "disk", "path": "/", "pool": small}})
        assert status(daemon, name) == "Running"
        assert not db_rows(daemon, "SELECT 1 FROM instances WHERE name = ?", ["t5b-full-2"])
        for kind in ("containers", "snapshots", "tmp"):
            assert on_disk(daemon, small, kind) == set(), kind
        assert sh(daemon, name, "echo alive") == "alive\n"
    finally:
        delete_pool(daemon, small)


def _check_copy(daemon, source: str, target: str, snapshots: list[str]) -> None:
    src, dst = config(daemon, source), config(daemon, target)
    assert status(daemon, target) == "Stopped"
    assert dst["volatile.uuid"] != src["volatile.uuid"]
    assert dst["volatile.last_state.power"] == "STOPPED"
    assert dst["volatile.base_image"] == src["volatile.base_image"]
    assert snapshot_names(daemon, target) == snapshots
    daemon.ok("start", target)
    # The image's `copy` template gave it its own hostname.
    assert sh(daemon, target, "cat /etc/hostname") == f"{target}\n"
    assert sh(daemon, target, "ls -l /root/big | awk '{print $5}'") == \
        sh(daemon, source, "ls -l /root/big | awk '{print $5}'")
    # Independent volumes.
    assert volumes_of(daemon, target)[1] != volumes_of(daemon, source)[1]
    assert not set(volumes_of(daemon, target)[2].values()) & \
        set(volumes_of(daemon, source)[2].values())


def test_copy_from_a_snapshot_and_instance_only(daemon, busybox_image, made):
    name = launch(daemon, made, busybox_image, "t5b-cps")
    sh(daemon, name, "echo then > /root/f")
    set_key(daemon, name, "user.when", "then")
    snapshot(daemon, name, "s1")
    sh(daemon, name, "echo now > /root/f")
    set_key(daemon, name, "user.when", "now")
    snapshot(daemon, name, "s2")

    copy(daemon, made, f"{name}/s1", "t5b-cps-a", config={"user.extra": "1"})
    conf = config(daemon, "t5b-cps-a")
    assert conf["user.when"] == "then" and conf["user.extra"] == "1"
    assert snapshot_names(daemon, "t5b-cps-a") == []  # a snapshot's copy has none
    daemon.ok("start", "t5b-cps-a")
    assert sh(daemon, "t5b-cps-a", "cat /root/f") == "then\n"

    copy(daemon, made, name, "t5b-cps-b", instance_only=True)
    assert snapshot_names(daemon, "t5b-cps-b") == []
    copy(daemon, made, name, "t5b-cps-c")
    assert snapshot_names(daemon, "t5b-cps-c") == ["s1", "s2"]
    shot = daemon.api("GET", "/1.0/instances/t5b-cps-c/snapshots/s1")
    assert shot["config"]["user.when"] == "then"
    restore(daemon, "t5b-cps-c", "s1")
    daemon.ok("start", "t5b-cps-c")
    assert sh(daemon, "t5b-cps-c", "cat /root/f") == "then\n"


# ------------------------------------------------------------------------------ move

def test_move_between_pools(daemon, busybox_image, made, btrfs_pool):
    name = launch(daemon, made, busybox_image, "t5b-mv")
    sh(daemon, name, "echo one > /root/f")
    snapshot(daemon, name, "s1")
    sh(daemon, name, "echo two > /root/f")
    snapshot(daemon, name, "s2")
    with pytest.raises(ApiError, match="is running: stop it before moving it"):
        daemon.api("POST", f"/1.0/instances/{name}", {"pool": btrfs_pool})
    daemon.ok("stop", "--force", name)
    _, old_volume, old_snaps = volumes_of(daemon, name)

    daemon.api("POST", f"/1.0/instances/{name}", {"pool": btrfs_pool, "name": "t5b-mv2"})
    made["instances"].append("t5b-mv2")
    pool, volume, snaps = volumes_of(daemon, "t5b-mv2")
    assert pool == btrfs_pool and set(snaps) == {"s1", "s2"}
    assert volume in on_disk(daemon, btrfs_pool, "containers")
    assert set(snaps.values()) <= on_disk(daemon, btrfs_pool, "snapshots")
    # The old volumes are gone from the dir pool.
    assert old_volume not in on_disk(daemon, "default", "containers")
    assert not set(old_snaps.values()) & on_disk(daemon, "default", "snapshots")
    inst = daemon.api("GET", "/1.0/instances/t5b-mv2")
    assert inst["expanded_devices"]["root"]["pool"] == btrfs_pool
    daemon.ok("start", "t5b-mv2")
    assert sh(daemon, "t5b-mv2", "cat /root/f") == "two\n"
    daemon.ok("stop", "--force", "t5b-mv2")
    restore(daemon, "t5b-mv2", "s1")  # snapshots came along and restore on the new pool
    daemon.ok("start", "t5b-mv2")
    assert sh(daemon, "t5b-mv2", "cat /root/f") == "one\n"
    assert volumes_of(daemon, "t5b-mv2")[0] == btrfs_pool

    # And back, keeping the name; a move to the pool it is on is a no-op.
    daemon.ok("stop", "--force", "t5b-mv2")
    daemon.api("POST", "/1.0/instances/t5b-mv2", {"pool": "default"})
    daemon.api("POST", "/1.0/instances/t5b-mv2", {"pool": "default"})
    assert volumes_of(daemon, "t5b-mv2")[0] == "default"
    daemon.ok("start", "t5b-mv2")
    assert sh(daemon, "t5b-mv2", "cat /root/f") == "one\n"


# ------------------------------------------------------------------------------ reuse

def test_reuse_replaces_atomically(daemon, busybox_image, made):
    name = launch(daemon, made, busybox_image, "t5b-reuse")
    sh(daemon, name, "echo one > /root/f")
    snapshot(daemon, name, "nightly")
    first = volumes_of(daemon, name)[2]["nightly"]
    created = daemon.api("GET", f"/1.0/instances/{name}/snapshots/nightly")["created_at"]
    sh(daemon, name, "echo two > /root/f")
    with pytest.raises(ApiError, match="'nightly' of instance 't5b-reuse' already exists.*"
                       "--reuse") as err:
        snapshot(daemon, name, "nightly")
    assert err.value.status == 409
    time.sleep(0.01)
    snapshot(daemon, name, "nightly", reuse=True)
    second = volumes_of(daemon, name)[2]["nightly"]
    assert second != first and first not in on_disk(daemon, "default", "snapshots")
    assert daemon.api("GET", f"/1.0/instances/{name}/snapshots/nightly")["created_at"] > created
    assert snapshot_names(daemon, name) == ["nightly"]
    copy(daemon, made, f"{name}/nightly", "t5b-reuse-c")
    daemon.ok("start", "t5b-reuse-c")
    assert sh(daemon, "t5b-reuse-c", "cat /root/f") == "two\n"


# ------------------------------------------------------------------------------ names, expiry

def test_pattern_expiry_rename_update(daemon, busybox_image, made):
    name = launch(daemon, made, busybox_image, "t5b-pat", start=False)
    assert snapshot(daemon, name) == "snap0"
    assert snapshot(daemon, name) == "snap1"
    set_key(daemon, name, "snapshots.pattern", "auto-%d")
    set_key(daemon, name, "snapshots.expiry", "1d")
    assert snapshot(daemon, name) == "auto-0"
    shot = daemon.api("GET", f"/1.0/instances/{name}/snapshots/auto-0")
    assert shot["expires_at"] > shot["created_at"]
    assert shot["expires_at"][:10] != shot["created_at"][:10]  # a day later
    assert snapshot(daemon, name, "keep", expires_at="") == "keep"
    assert daemon.api("GET", f"/1.0/instances/{name}/snapshots/keep")["expires_at"] == \
        "0001-01-01T00:00:00Z"

    daemon.api("PATCH", f"/1.0/instances/{name}/snapshots/keep",
               {"description": "golden", "expires_at": "2040-01-01T00:00:00Z"})
    shot = daemon.api("GET", f"/1.0/instances/{name}/snapshots/keep")
    assert (shot["description"], shot["expires_at"]) == ("golden", "2040-01-01T00:00:00Z")
    daemon.api("PUT", f"/1.0/instances/{name}/snapshots/keep", shot | {"expires_at": ""})
    shot = daemon.api("GET", f"/1.0/instances/{name}/snapshots/keep")
    assert (shot["description"], shot["expires_at"]) == ("golden", "0001-01-01T00:00:00Z")

    volume = volumes_of(daemon, name)[2]["keep"]
    daemon.api("POST", f"/1.0/instances/{name}/snapshots/keep", {"name": "kept 2024"})
    assert volumes_of(daemon, name)[2]["kept 2024"] == volume  # volumes keep their names
    urls = daemon.api("GET", f"/1.0/instances/{name}/snapshots")
    assert f"/1.0/instances/{name}/snapshots/kept%202024" in urls
    assert daemon.api("GET", f"/1.0/instances/{name}/snapshots/kept%202024")["name"] == \
        "kept 2024"
    full = daemon.api("GET", f"/1.0/instances/{name}?recursion=2")
    assert [s["name"] for s in full["snapshots"]] == ["snap0", "snap1", "auto-0", "kept 2024"]


# ------------------------------------------------------------------------------ publish

def test_publish_from_a_snapshot(daemon, busybox_image, made):
    name = launch(daemon, made, busybox_image, "t5b-pub")
    sh(daemon, name, "echo published > /root/f")
    snapshot(daemon, name, "gold")
    sh(daemon, name, "echo later > /root/f")
    op = daemon.api("POST", "/1.0/images", {"source": {"type": "snapshot",
                                                       "name": f"{name}/gold"},
                                            "aliases": [{"name": "t5b-gold"}]})
    fp = op["metadata"]["fingerprint"]
    made["images"].append(fp)
    assert status(daemon, name) == "Running"  # no stop needed for a snapshot
    launch(daemon, made, "t5b-gold", "t5b-pub-new")
    assert sh(daemon, "t5b-pub-new", "cat /root/f /etc/hostname") == "published\nt5b-pub-new\n"


# ------------------------------------------------------------------------------ refusals

@pytest.fixture(scope="module")
def victim(daemon, busybox_image, made):
    name = launch(daemon, made, busybox_image, "t5b-err")
    snapshot(daemon, name, "s1")
    return name


@pytest.mark.parametrize("method, path, body, status_code, message", [
    ("POST", "/1.0/instances/t5b-err/snapshots", {"name": "a/b"}, 400,
     "Invalid snapshot name 'a/b'"),
    ("POST", "/1.0/instances/t5b-err/snapshots", {"name": ".."}, 400, "not '.' or '..'"),
    ("POST", "/1.0/instances/t5b-err/snapshots", {"name": "x", "stateful": True}, 400,
     "Stateful snapshots need CRIU"),
    ("POST", "/1.0/instances/t5b-err/snapshots", {"name": "x", "expires_at": "soon"}, 400,
     "Invalid expires_at 'soon'"),
    ("POST", "/1.0/instances/t5b-err/snapshots", {"name": "s1"}, 409, "already exists"),
    ("POST", "/1.0/instances/t5b-nope/snapshots", {"name": "x"}, 404,
     "Instance 't5b-nope' not found"),
    ("GET", "/1.0/instances/t5b-err/snapshots/nope", None, 404,
     "Snapshot 'nope' of instance 't5b-err' not found"),
    ("DELETE", "/1.0/instances/t5b-err/snapshots/nope", None, 404, "'nope'"),
    ("POST", "/1.0/instances/t5b-err/snapshots/s1", {"name": "a/b"}, 400,
     "Invalid snapshot name"),
    ("POST", "/1.0/instances/t5b-err/snapshots/s1", {}, 400, "needs its new name"),
    ("PUT", "/1.0/instances/t5b-err/snapshots/s1", {"config": {"user.a": "b"}}, 400,
     "snapshot's config cannot be changed"),
    ("PUT", "/1.0/instances/t5b-err/snapshots/s1", {"expires_at": "x"}, 400,
     "Invalid expires_at"),
    ("PUT", "/1.0/instances/t5b-err", {"restore": "nope"}, 404, "'nope'"),
    ("PUT", "/1.0/instances/t5b-err", {"restore": "s1", "stateful": True}, 400, "CRIU"),
    ("POST", "/1.0/instances", {"name": "t5b-err", "source": {"type": "copy",
                                                              "source": "t5b-err"}}, 409,
     "Instance 't5b-err' already exists"),
    ("POST", "/1.0/instances", {"name": "t5b-x", "source": {"type": "copy",
                                                            "source": "t5b-nope"}}, 404,
     "Instance 't5b-nope' not found"),
    ("POST", "/1.0/instances", {"name": "t5b-x", "source": {"type": "copy",
                                                            "source": "t5b-err/nope"}}, 404,
     "Snapshot 'nope'"),
    ("POST", "/1.0/instances", {"name": "t5b-x", "source": {"type": "copy",
                                                            "source": "t5b-err"},
                                "devices": {"root": {"type": "disk", "path": "/",
                                                     "pool": "t5b-nopool"}}}, 404,
     "Storage pool 't5b-nopool' not found"),
    ("POST", "/1.0/instances", {"name": "t5b-x", "source": {"type": "copy",
                                                            "source": "t5b-err"},
                                "config": {"volatile.uuid": "x"}}, 400, "read-only"),
    ("POST", "/1.0/instances", {"name": "t5b-x", "source": {"type": "copy",
                                                            "source": "t5b-err",
                                                            "refresh": True}}, 400,
     "--refresh"),
    ("POST", "/1.0/instances/t5b-err", {"pool": "t5b-nopool"}, 404,
     "Storage pool 't5b-nopool' not found"),
    ("POST", "/1.0/instances/t5b-err", {"pool": "default", "name": "bad name"}, 400,
     "Invalid instance name"),
])
def test_api_refusals(daemon, victim, method, path, body, status_code, message):
    before = (daemon.api("GET", "/1.0/instances"), snapshot_names(daemon, victim),
              on_disk(daemon, "default", "containers"), on_disk(daemon, "default", "snapshots"))
    with pytest.raises(ApiError, match=message) as err:
        daemon.api(method, path, body)
    assert err.value.status == status_code
    after = (daemon.api("GET", "/1.0/instances"), snapshot_names(daemon, victim),
             on_disk(daemon, "default", "containers"), on_disk(daemon, "default", "snapshots"))
    assert after == before  # nothing half-made
    assert status(daemon, victim) == "Running"
    # Nothing half-made in tmp/ (spare copies of images may be on their way there, and
    # volumes earlier tests made unreferenced on their way out).
    tmp = daemon.root / "tmp"
    assert [p.name for p in tmp.iterdir()
            if not p.name.startswith(("spare-", "deleted-"))] == []


def test_operations_have_lxd_descriptions(daemon, busybox_image, made, api):
    name = launch(daemon, made, busybox_image, "t5b-ops", start=False)
    descriptions = []
    for method, path, body in [
            ("POST", f"/1.0/instances/{name}/snapshots", {"name": "a"}),
            ("POST", f"/1.0/instances/{name}/snapshots/a", {"name": "b"}),
            ("PUT", f"/1.0/instances/{name}", {"restore": "b"}),
            ("POST", "/1.0/instances", {"name": "t5b-ops2",
                                        "source": {"type": "copy", "source": name}}),
            ("DELETE", f"/1.0/instances/{name}/snapshots/b", None)]:
        envelope = api.query(method, path, body)
        assert envelope["type"] == "async", (method, path)
        descriptions.append(envelope["metadata"]["description"])
        wait_for(api, envelope["metadata"])
    made["instances"].append("t5b-ops2")
    assert descriptions == ["Snapshotting instance", "Renaming snapshot", "Restoring snapshot",
                            "Creating instance", "Deleting snapshot"]
    print(json.dumps(descriptions))
