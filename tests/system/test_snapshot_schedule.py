"""Scheduled snapshots and expiry on a private daemon whose clock the test moves
(MACHINED_TEST_CLOCK) and whose task loop ticks every 0.2 s: snapshots.schedule fires once per
scheduled minute, names follow snapshots.pattern, expires_at follows snapshots.expiry, stopped
instances are skipped unless snapshots.schedule.stopped, expired snapshots go (row and
volume) while a --no-expiry one stays, and @startup fires when the daemon starts."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, built_image, needs_root, spawn_daemon

pytestmark = needs_root

TICK = 0.2
SCHEDULED = {"snapshots.schedule": "0 * * * *", "snapshots.expiry": "2H",
             "snapshots.pattern": "auto%d"}


class Clocked:
    def __init__(self, daemon: Daemon, clock: Path) -> None:
        self.d = daemon
        self.clock = clock

    def set(self, when: str) -> None:
        self.clock.write_text(when)

    def snapshots(self, name: str) -> dict[str, dict]:
        shots = self.d.api("GET", f"/1.0/instances/{name}/snapshots?recursion=1")
        assert isinstance(shots, list)
        return {s["name"]: s for s in shots}

    def names(self, name: str) -> set[str]:
        return set(self.snapshots(name))

    def wait_names(self, name: str, expected: set[str], timeout: float = 30) -> None:
        wait_for(lambda: self.names(name) == expected, timeout,
                 lambda: f"{name}: {sorted(self.names(name))} != {sorted(expected)}")

    def settle(self) -> None:
        """Long enough for several ticks: what has not happened by then does not."""
        time.sleep(TICK * 6)

    def volumes(self) -> tuple[set[str], set[str]]:
        """(snapshot volumes the DB names, snapshot volume directories on disk)."""
        db = sqlite3.connect(f"file:{self.d.root / 'database/machined.db'}?mode=ro", uri=True)
        try:
            named = {r[0] for r in db.execute("SELECT volume FROM instances_snapshots")}
        finally:
            db.close()
        shots = self.d.root / "storage-pools" / "default" / "snapshots"
        return named, {p.name for p in shots.iterdir()} if shots.exists() else set()


def wait_for(check: Callable[[], bool], timeout: float, describe: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s: {describe()}")


@pytest.fixture(scope="module")
def clocked(tmp_path_factory) -> Iterator[Clocked]:
    clock = tmp_path_factory.mktemp("t5c") / "clock"
    clock.write_text("2030-01-01T10:30:00Z")
    with spawn_daemon(env={"MACHINED_TEST_CLOCK": os.fspath(clock),
                           "MACHINED_TASK_TICK": str(TICK)}) as d:
        d.ok("image", "import", *map(os.fspath, built_image("busybox", "unified")),
             "--alias", "busybox")
        yield Clocked(d, clock)


def config_args(config: dict[str, str]) -> list[str]:
    return [arg for k, v in config.items() for arg in ("-c", f"{k}={v}")]


def test_schedule_pattern_stopped_rule_and_expiry(clocked):
    c, d = clocked, clocked.d
    d.ok("launch", "busybox", "t5c-run")
    d.ok("init", "busybox", "t5c-off", *config_args(SCHEDULED))
    d.ok("init", "busybox", "t5c-offok", *config_args(SCHEDULED),
         "-c", "snapshots.schedule.stopped=true")
    # Keys set on a running instance take effect without a restart of anything.
    d.ok("config", "set", "t5c-run", *[f"{k}={v}" for k, v in SCHEDULED.items()])
    # Manual snapshots: one that never expires, one that takes snapshots.expiry (LXD).
    d.api("POST", "/1.0/instances/t5c-run/snapshots", {"name": "keep", "expires_at": ""})
    d.api("POST", "/1.0/instances/t5c-run/snapshots", {"name": "manual"})
    shots = c.snapshots("t5c-run")
    assert shots["keep"]["expires_at"] == "0001-01-01T00:00:00Z"
    assert shots["manual"]["expires_at"] == "2030-01-01T12:30:00Z"
    c.settle()  # nothing is due at 10:30
    assert c.names("t5c-run") == {"keep", "manual"}
    assert c.names("t5c-offok") == set()

    c.set("2030-01-01T11:00:30Z")
    c.wait_names("t5c-run", {"keep", "manual", "auto0"})
    c.wait_names("t5c-offok", {"auto0"})
    auto0 = c.snapshots("t5c-run")["auto0"]
    assert auto0["created_at"] == "2030-01-01T11:00:30Z"
    assert auto0["expires_at"] == "2030-01-01T13:00:30Z"  # taken + 2H
    c.settle()  # the same scheduled minute never fires twice
    assert c.names("t5c-run") == {"keep", "manual", "auto0"}
    assert c.names("t5c-off") == set()  # stopped, and snapshots.schedule.stopped unset

    c.set("2030-01-01T12:00:10Z")
    c.wait_names("t5c-run", {"keep", "manual", "auto0", "auto1"})
    c.wait_names("t5c-offok", {"auto0", "auto1"})

    c.set("2030-01-01T12:45:00Z")  # past 12:30: the manual one expired
    c.wait_names("t5c-run", {"keep", "auto0", "auto1"})

    c.set("2030-01-01T13:00:40Z")  # auto2 taken; auto0 (13:00:30) expired
    c.wait_names("t5c-run", {"keep", "auto1", "auto2"})
    c.wait_names("t5c-offok", {"auto1", "auto2"})
    assert c.names("t5c-off") == set()
    named, on_disk = c.volumes()
    assert named == on_disk and len(named) == 5  # deleted rows took their volumes along

    # Days later (a daemon asleep, a suspended host): one snapshot for all the missed hours,
    # numbered after the highest in use, and everything that expired meanwhile gone.
    c.set("2030-01-05T09:30:00Z")
    c.wait_names("t5c-run", {"keep", "auto3"})
    c.wait_names("t5c-offok", {"auto3"})
    c.settle()
    assert c.names("t5c-run") == {"keep", "auto3"}
    named, on_disk = c.volumes()
    assert named == on_disk and len(named) == 3

    # Dropping the schedule stops it; expiry still applies to what exists.
    d.ok("config", "unset", "t5c-run", "snapshots.schedule")
    c.set("2030-01-05T10:00:05Z")
    c.wait_names("t5c-offok", {"auto3", "auto4"})
    assert c.names("t5c-run") == {"keep", "auto3"}
    for name in ("t5c-run", "t5c-off", "t5c-offok"):
        d.ok("delete", "--force", name)


def test_schedule_from_a_profile_and_lists(clocked):
    """snapshots.* in a profile apply to its instances; a list fires on any entry."""
    c, d = clocked, clocked.d
    c.set("2030-02-01T05:10:00Z")
    d.ok("profile", "create", "t5c-prof")
    d.ok("profile", "set", "t5c-prof", "snapshots.schedule=0 6 * * *, 30 5 * * *",
         'snapshots.pattern=at-{{ creation_date|date:"2006-01-02_15-04" }}')
    d.ok("launch", "busybox", "t5c-prof1", "-p", "default", "-p", "t5c-prof")
    try:
        c.settle()
        assert c.names("t5c-prof1") == set()
        c.set("2030-02-01T05:30:00Z")
        c.wait_names("t5c-prof1", {"at-2030-02-01_05-30"})
        c.set("2030-02-01T06:00:00Z")
        c.wait_names("t5c-prof1", {"at-2030-02-01_05-30", "at-2030-02-01_06-00"})
        shot = c.snapshots("t5c-prof1")["at-2030-02-01_06-00"]
        assert shot["expires_at"] == "0001-01-01T00:00:00Z"  # no snapshots.expiry: never
    finally:
        d.ok("delete", "--force", "t5c-prof1")
        d.ok("profile", "delete", "t5c-prof")


def test_startup_entries_fire_when_the_daemon_starts(clocked):
    c, d = clocked, clocked.d
    c.set("2030-03-01T08:15:00Z")
    d.ok("launch", "busybox", "t5c-boot", "-c", "snapshots.schedule=@startup")
    d.ok("init", "busybox", "t5c-bootoff", "-c", "snapshots.schedule=@startup")
    try:
        c.settle()
        assert c.names("t5c-boot") == set()  # only at daemon start
        d.kill()
        d.start()  # the container keeps running across the restart
        c.wait_names("t5c-boot", {"snap0"})
        c.settle()
        assert c.names("t5c-boot") == {"snap0"}
        assert c.names("t5c-bootoff") == set()
    finally:
        d.ok("delete", "--force", "t5c-boot")
        d.ok("delete", "--force", "t5c-bootoff")


def test_a_failing_instance_does_not_stop_the_others(clocked):
    """A pattern stored before validation refused it (an upgrade from a laxer version):
    that instance's scheduled snapshot fails and is logged; the others still get theirs,
    and the loop keeps going."""
    c, d = clocked, clocked.d
    c.set("2030-04-01T10:10:00Z")
    d.ok("launch", "busybox", "t5c-bad", *config_args(SCHEDULED))
    d.ok("launch", "busybox", "t5c-good", *config_args(SCHEDULED))
    try:
        db = sqlite3.connect(d.root / "database/machined.db")
        with db:
            db.execute("UPDATE instances_config SET value = 'a/%d' WHERE key = "
                       "'snapshots.pattern' AND instance_id = (SELECT id FROM instances "
                       "WHERE name = 't5c-bad')")
        db.close()
        c.set("2030-04-01T11:00:00Z")
        c.wait_names("t5c-good", {"auto0"})
        c.set("2030-04-01T12:00:00Z")
        c.wait_names("t5c-good", {"auto0", "auto1"})
        assert c.names("t5c-bad") == set()
        log = (d.root.parent / "machined.stderr").read_text()
        assert "Scheduled snapshot of t5c-bad failed: Invalid snapshots.pattern 'a/%d'" in log
    finally:
        d.ok("delete", "--force", "t5c-bad")
        d.ok("delete", "--force", "t5c-good")
