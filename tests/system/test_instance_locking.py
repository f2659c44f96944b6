"""Conflicting operations on one instance never interleave: fired at the same time from
threads, each pair ends with one winner and a clear error for the other, or with the second
run after the first; afterwards the database and the disk agree. A synchronous request
(config change, file push, profile change) waits briefly for a busy instance, then gets a
409 naming what holds it; a forced stop does not queue behind a hanging clean stop.

One private daemon (MACHINED_BUSY_WAIT=1: the 409 comes after one second), containers
t7l-*. The last tests check the daemon's log lines and that operations cancelled by a
daemon stop are recorded."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli.client import Client
from cli.errors import ApiError
from tests.conftest import BIN, Daemon, built_image, is_root, spawn_daemon

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(not is_root, reason="needs root")]

SLOW_INITTAB = """::sysinit:/etc/init.d/rcS
::respawn:/bin/sh -c '/bin/sh -l; sleep 1'
::shutdown:/bin/sleep 60
"""


@pytest.fixture(scope="module")
def d() -> Daemon:
    with spawn_daemon(env={"MACHINED_BUSY_WAIT": "1"}) as daemon:
        paths = built_image("busybox", "unified")
        daemon.ok("image", "import", *map(os.fspath, paths), "--alias", "busybox")
        yield daemon


def client(d: Daemon) -> Client:
    return Client(os.fspath(d.socket))


def race(d: Daemon, *calls: Callable[[Client], Any]) -> list[tuple[str, Any]]:
    """Run each call in its own thread with its own connection, released together;
    ("ok", result) or ("error", ApiError) each."""
    barrier = threading.Barrier(len(calls))
    results: list[tuple[str, Any]] = [("none", None)] * len(calls)

    def run(i: int, call: Callable[[Client], Any]) -> None:
        c = client(d)
        try:
            barrier.wait()
            results[i] = ("ok", call(c))
        except ApiError as e:
            results[i] = ("error", e)
        finally:
            c.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return results


def db_rows(d: Daemon, sql: str, args: tuple = ()) -> list[tuple]:
    db = sqlite3.connect(f"file:{d.root / 'database/machined.db'}?mode=ro", uri=True)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def assert_disk_agrees(d: Daemon, timeout: float = 10.0) -> None:
    """Every volume in the default pool is named by a row and every row's volume exists
    (volumes a commit made unreferenced leave containers/ and snapshots/ at once)."""
    pool = d.root / "storage-pools" / "default"
    deadline = time.monotonic() + timeout
    while True:
        rows = {("containers", v) for (v,) in db_rows(d, "SELECT volume FROM instances")}
        rows |= {("snapshots", v) for (v,) in db_rows(
            d, "SELECT volume FROM instances_snapshots")}
        disk = {(kind, p.name) for kind in ("containers", "snapshots")
                for p in (pool / kind).iterdir()}
        if rows == disk or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert rows == disk, f"rows without volume: {rows - disk}; volumes without row: " \
                         f"{disk - rows}"
    assert db_rows(d, "PRAGMA integrity_check") == [("ok",)]


def status(d: Daemon, name: str) -> str | None:
    try:
        return d.api("GET", f"/1.0/instances/{name}")["status"]
    except ApiError as e:
        assert e.status == 404, e
        return None


def start_op(c: Client, method: str, path: str, data: Any = None) -> str:
    """An async request, not waited for: its operation URL."""
    envelope = c.query(method, path, data if data is not None else {})
    assert envelope["type"] == "async", envelope
    return str(envelope["operation"])


def wait_op(d: Daemon, url: str) -> tuple[str, Any]:
    c = client(d)
    try:
        return "ok", c.wait_operation(url)
    except ApiError as e:
        return "error", e
    finally:
        c.close()


def op_json(d: Daemon, url: str) -> dict:
    return d.api("GET", url)


def wait_running(d: Daemon, url: str, extra: float = 0.3) -> None:
    deadline = time.monotonic() + 30
    while op_json(d, url)["status"] != "Running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(extra)


def push(d: Daemon, name: str, path: str, data: bytes) -> None:
    d.ok("file", "push", "-", f"{name}{path}", input=data.decode())


def pull(d: Daemon, name: str, path: str) -> str:
    return d.ok("file", "pull", f"{name}{path}", "-")


# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("round_", range(3))
def test_start_while_delete(d, round_):
    name = f"t7l-sd{round_}"
    d.ok("init", "busybox", name)
    start, delete = race(
        d, lambda c: c.put(f"/1.0/instances/{name}/state", {"action": "start"}),
        lambda c: c.delete(f"/1.0/instances/{name}"))
    assert (start[0] == "ok") != (delete[0] == "ok"), (start, delete)
    if delete[0] == "ok":
        assert status(d, name) is None
        assert "not found" in start[1].message
    else:
        assert status(d, name) == "Running"
        assert "is running" in delete[1].message
        d.ok("delete", "--force", name)
    assert_disk_agrees(d)


def test_two_restores_at_once(d):
    """Both run, one after the other: the instance ends as one snapshot left it, files
    and config together (never the files of one and the config of the other)."""
    name = "t7l-rs"
    d.ok("launch", "busybox", name)
    for mark in ("1", "2"):
        d.ok("config", "set", name, "user.mark", mark)
        push(d, name, "/root/mark", mark.encode())
        d.ok("snapshot", name, f"s{mark}")
    d.ok("config", "set", name, "user.mark", "3")
    push(d, name, "/root/mark", b"3")
    for _round in range(2):
        first, second = race(
            d, lambda c: c.put(f"/1.0/instances/{name}", {"restore": "s1"}),
            lambda c: c.put(f"/1.0/instances/{name}", {"restore": "s2"}))
        assert first[0] == second[0] == "ok", (first, second)
        config = d.api("GET", f"/1.0/instances/{name}")["config"]
        assert config["user.mark"] in ("1", "2")
        assert pull(d, name, "/root/mark") == config["user.mark"]
        assert status(d, name) == "Running"
        assert_disk_agrees(d)
    d.ok("delete", "--force", name)
    assert_disk_agrees(d)


def test_delete_waits_for_a_snapshot_being_copied(d):
    name = "t7l-ds"
    d.ok("launch", "busybox", name)
    d.ok("exec", name, "--", "dd", "if=/dev/urandom", "of=/root/big", "bs=1M", "count=96")
    d.ok("stop", name)
    c = client(d)
    try:
        snap = start_op(c, "POST", f"/1.0/instances/{name}/snapshots", {"name": "s1"})
        wait_running(d, snap, extra=0.05)
        delete = start_op(c, "DELETE", f"/1.0/instances/{name}")
    finally:
        c.close()
    asked = op_json(d, delete)["created_at"]
    snap_result, delete_result = wait_op(d, snap), wait_op(d, delete)
    assert snap_result[0] == "ok", snap_result
    assert delete_result[0] == "ok", delete_result
    # The delete was asked while the copy ran, and ran after it: no snapshot row or volume
    # of a deleted instance, no half-copied volume.
    assert asked < op_json(d, snap)["updated_at"]
    assert status(d, name) is None
    assert db_rows(d, "SELECT count(*) FROM instances_snapshots") == [(0,)]
    assert_disk_agrees(d)


def test_copy_rechecks_its_profiles_before_it_commits(d, tmp_path):
    """A profile the copy names may change while the volume copies (it has no users yet):
    the copy is checked again before its rows are written, so it never commits a root
    disk in one pool with its volume in another."""
    source, target = "t7l-cp", "t7l-cp2"
    d.api("POST", "/1.0/storage-pools", {"name": "t7lpool", "driver": "dir",
                                         "config": {"source": os.fspath(tmp_path / "pool")}})
    d.api("POST", "/1.0/profiles", {"name": "t7l-root", "devices": {
        "root": {"type": "disk", "path": "/", "pool": "default"}}})
    try:
        d.ok("launch", "busybox", source)
        d.ok("exec", source, "--", "dd", "if=/dev/urandom", "of=/root/big", "bs=1M",
             "count=160")
        d.ok("stop", source)
        c = client(d)
        try:
            copy = start_op(c, "POST", "/1.0/instances", {
                "name": target, "profiles": ["t7l-root"],
                "source": {"type": "copy", "source": source}})
            wait_running(d, copy, extra=0.05)
            c.patch("/1.0/profiles/t7l-root", {"devices": {
                "root": {"type": "disk", "path": "/", "pool": "t7lpool"}}})
        finally:
            c.close()
        result = wait_op(d, copy)
        assert result[0] == "error", result
        assert result[1].message == (f"The root disk pool of {target!r} changed while it was "
                                     "copied (a profile changed): nothing was made; try again")
        assert status(d, target) is None
        assert_disk_agrees(d)
    finally:
        d.mc("delete", "--force", source)
        d.mc("profile", "delete", "t7l-root")
        d.mc("storage", "delete", "t7lpool")


def test_rename_while_starting(d):
    for round_ in range(2):
        name, new = f"t7l-rn{round_}", f"t7l-rn{round_}x"
        d.ok("init", "busybox", name)
        start, rename = race(
            d, lambda c, n=name: c.put(f"/1.0/instances/{n}/state", {"action": "start"}),
            lambda c, n=name, m=new: c.post(f"/1.0/instances/{n}", {"name": m}))
        assert (start[0] == "ok") != (rename[0] == "ok"), (start, rename)
        if start[0] == "ok":
            assert "is running" in rename[1].message
            assert (status(d, name), status(d, new)) == ("Running", None)
            d.ok("delete", "--force", name)
        else:
            assert "not found" in start[1].message
            assert (status(d, name), status(d, new)) == (None, "Stopped")
            d.ok("delete", new)
        assert_disk_agrees(d)


class SlowBody:
    """A request body that arrives over ~0.5 s (1 MiB every 20 ms), so that another request
    lands while it streams."""

    def __init__(self, chunks: int = 24) -> None:
        self.left = chunks

    def read(self, _size: int = -1) -> bytes:
        if self.left == 0:
            return b""
        self.left -= 1
        time.sleep(0.02)
        return b"x" * (1 << 20)


def test_file_push_during_delete(d):
    """A push holds the instance for its whole upload: it lands wholly before the delete,
    or finds the instance gone; never in a volume being removed."""
    log = d.root / "logs" / "machined.log"
    for round_, delay in enumerate((0.2, 0.0)):  # the delete mid-push; both at once
        name = f"t7l-fp{round_}"
        d.ok("init", "busybox", name)

        def upload(c: Client, n: str = name) -> Any:
            return c.upload(f"/1.0/instances/{n}/files?path=/root/blob", SlowBody(), None,
                            headers={"X-LXD-type": "file"})

        def delete(c: Client, n: str = name, delay: float = delay) -> Any:
            time.sleep(delay)
            return c.delete(f"/1.0/instances/{n}")

        before = len(log.read_text())
        pushed, deleted = race(d, upload, delete)
        assert deleted[0] == "ok", deleted
        if pushed[0] == "error":  # the delete first: a clear answer, not a path error
            assert pushed[1].message == f"Instance {name!r} not found" or \
                "is busy (deleting instance" in pushed[1].message, pushed
        else:
            lines = log.read_text()[before:]
            assert lines.index(f"Pushed a file to /root/blob in instance {name}") < \
                lines.index(f"Deleted instance {name}"), lines
        assert status(d, name) is None
        assert_disk_agrees(d)
        assert not list((d.root / "tmp").iterdir())  # nothing left of the volume


def test_publish_during_delete(d):
    name = "t7l-pb"
    d.ok("init", "busybox", name)
    body = {"source": {"type": "instance", "name": name},
            "aliases": [{"name": "t7l-published"}]}
    published, deleted = race(d, lambda c: c.post("/1.0/images", body),
                              lambda c: c.delete(f"/1.0/instances/{name}"))
    assert deleted[0] == "ok", deleted
    if published[0] == "ok":  # it ran first: a whole image
        image = d.api("GET", "/1.0/images/aliases/t7l-published")
        d.ok("image", "delete", image["target"])
    else:
        assert "not found" in published[1].message, published
        assert d.mc("image", "info", "t7l-published").code != 0
    assert not [p for p in (d.root / "tmp").iterdir() if p.name.startswith("publish-")]
    assert status(d, name) is None
    assert_disk_agrees(d)


def test_nic_added_while_its_network_is_deleted(d):
    """The network goes and the instance does not use it, or the instance uses it and the
    network stays: never an instance naming a deleted network."""
    name = "t7l-nd"
    d.ok("init", "busybox", name)
    nic = {"eth1": {"type": "nic", "network": "t7lnet", "name": "eth1"}}
    for _round in range(3):
        d.ok("network", "create", "t7lnet", "ipv4.address=10.217.93.1/24", "ipv4.nat=false",
             "ipv6.address=none")
        update, delete = race(
            d, lambda c: c.patch(f"/1.0/instances/{name}", {"devices": nic}),
            lambda c: c.delete("/1.0/networks/t7lnet"))
        assert (update[0] == "ok") != (delete[0] == "ok"), (update, delete)
        devices = d.api("GET", f"/1.0/instances/{name}")["devices"]
        if delete[0] == "ok":
            assert "eth1" not in devices
            assert "t7lnet" in update[1].message
        else:
            assert devices["eth1"]["network"] == "t7lnet"
            assert "in use" in delete[1].message
            d.ok("config", "device", "remove", name, "eth1")
            d.ok("network", "delete", "t7lnet")
    d.ok("delete", name)


@pytest.fixture
def slow_stopper(d):
    """A running busybox whose init takes 60 s to shut down (a ::shutdown: action): a
    clean stop holds its lock that long."""
    name = "t7l-slow"
    d.ok("init", "busybox", name)
    d.ok("profile", "create", "t7l-limits")
    d.ok("profile", "add", name, "t7l-limits")
    push(d, name, "/etc/inittab", SLOW_INITTAB.encode())
    d.ok("start", name)
    yield name
    d.mc("delete", "--force", name)
    d.mc("profile", "delete", "t7l-limits")


def test_busy_instance_answers_409_and_force_stop_goes_through(d, slow_stopper):
    name = slow_stopper
    c = client(d)
    try:
        stop = start_op(c, "PUT", f"/1.0/instances/{name}/state",
                        {"action": "stop", "timeout": 120})
    finally:
        c.close()
    wait_running(d, stop, extra=0.5)
    # Synchronous requests: a clear 409 after MACHINED_BUSY_WAIT (1 s), nothing changed.
    started = time.monotonic()
    res = d.mc("config", "set", name, "user.x", "1")
    assert res.code == 1
    assert res.err.startswith(f"Error: Instance '{name}' is busy (stopping instance for ")
    assert res.err.rstrip().endswith("try again once that has finished")
    assert 0.9 < time.monotonic() - started < 10
    res = d.mc("file", "push", "-", f"{name}/root/x", input="x")
    assert res.code == 1 and "is busy (stopping instance" in res.err, res.err
    res = d.mc("profile", "set", "t7l-limits", "limits.processes", "500")
    assert res.code == 1 and f"instance '{name}' could not take the change" in res.err
    assert "limits.processes" not in d.api("GET", "/1.0/profiles/t7l-limits")["config"]
    assert "user.x" not in d.api("GET", f"/1.0/instances/{name}")["config"]
    assert op_json(d, stop)["status"] == "Running"
    # A forced stop does not queue behind the clean one (LXD neither).
    started = time.monotonic()
    d.ok("stop", "--force", name)
    assert time.monotonic() - started < 10
    assert wait_op(d, stop)[0] == "ok"
    assert status(d, name) == "Stopped"
    d.ok("config", "set", name, "user.x", "1")  # not busy any more
    assert_disk_agrees(d)


def test_start_queued_behind_a_stop_runs_after_it(d, slow_stopper):
    name = slow_stopper
    c = client(d)
    try:
        stop = start_op(c, "PUT", f"/1.0/instances/{name}/state",
                        {"action": "stop", "timeout": 2})
        wait_running(d, stop, extra=0.2)
        start = start_op(c, "PUT", f"/1.0/instances/{name}/state", {"action": "start"})
    finally:
        c.close()
    assert wait_op(d, stop)[0] == "ok"  # init killed after its 2 s
    assert wait_op(d, start)[0] == "ok"
    assert status(d, name) == "Running"
    assert op_json(d, start)["updated_at"] >= op_json(d, stop)["updated_at"]


def test_exec_does_not_block_a_stop(d):
    name = "t7l-ex"
    d.ok("launch", "busybox", name)
    c = client(d)
    try:
        exe = start_op(c, "POST", f"/1.0/instances/{name}/exec",
                       {"command": ["sleep", "300"], "wait-for-websocket": False})
    finally:
        c.close()
    wait_running(d, exe)
    started = time.monotonic()
    d.ok("stop", name)
    assert time.monotonic() - started < 15
    result = wait_op(d, exe)
    # Ended with the container (killed: a signal's exit code), or a clear error.
    if result[0] == "ok":
        assert result[1]["metadata"]["return"] in (128 + 9, 128 + 15), result
    else:
        assert "stopped" in result[1].message, result
    d.ok("delete", name)
    assert_disk_agrees(d)


def test_operations_log_a_line_with_the_instance_name(d):
    name = "t7l-log"
    d.ok("launch", "busybox", name)
    d.ok("config", "set", name, "user.color", "blue")
    push(d, name, "/root/note", b"hello")
    d.ok("snapshot", name, "s1")
    d.ok("restore", name, "s1")
    d.ok("file", "delete", f"{name}/root/note")
    d.ok("pause", name)
    d.ok("resume", name)
    d.ok("copy", name, f"{name}c", "--instance-only")
    d.ok("delete", "--force", name, f"{name}c")
    text = (d.root / "logs" / "machined.log").read_text()
    for line in (f"Created instance {name} from image",
                 f"Started instance {name}",
                 f"Updated instance {name}: config user.color",
                 f"Pushed a file to /root/note in instance {name} (5 bytes)",
                 f"Snapshotted instance {name} as s1",
                 f"Restored instance {name} from snapshot s1",
                 f"Deleted /root/note in instance {name}",
                 f"Froze instance {name}", f"Unfroze instance {name}",
                 f"Copied {name} to {name}c",
                 f"Deleted instance {name}c"):
        assert line in text, line


def test_operations_cancelled_by_a_daemon_stop_are_recorded(d):
    name = "t7l-cancel"
    d.ok("launch", "busybox", name)
    c = client(d)
    try:
        exe = start_op(c, "POST", f"/1.0/instances/{name}/exec",
                       {"command": ["sleep", "300"], "wait-for-websocket": False})
    finally:
        c.close()
    wait_running(d, exe)
    log = d.root / "logs" / "machined.log"
    before = log.read_text()
    d.kill()  # SIGTERM: containers keep running
    d.start()
    op_id = exe.rsplit("/", 1)[1]
    proc = subprocess.run([os.fspath(BIN / "machined"), "sql", "--format", "json",
                           f"SELECT status_code, err FROM operations WHERE id = '{op_id}'"],
                          env=d.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [{"status_code": 401, "err": "Operation cancelled"}]
    tail = Path(log).read_text()[len(before):]
    assert "Could not record operation" not in tail
    assert status(d, name) == "Running"
    d.ok("delete", "--force", name)
