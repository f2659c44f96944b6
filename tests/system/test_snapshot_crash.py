"""A daemon killed (SIGKILL) in the middle of a snapshot or a restore on the `dir` pool
leaves the old state, complete, and no half-copied volume: no snapshot row, no volume in
snapshots/ or containers/ that no row names, an empty tmp/, no cp left writing. A private
daemon (its own MACHINED_DIR) is killed and started again on the same directory."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.client import Client
from tests.conftest import Daemon, built_image, spawn_daemon

pytestmark = pytest.mark.system

NAME = "t5b-crash"
DATA_MIB = 200


@pytest.fixture(scope="module")
def private(daemon) -> Iterator[Daemon]:
    """Its own daemon (the shared one must not be killed), with busybox and an instance
    holding ~200 MB in 50 files."""
    with spawn_daemon() as d:
        d.ok("image", "import", *map(os.fspath, built_image("busybox", "unified")),
             "--alias", "busybox")
        d.api("POST", "/1.0/instances", {"name": NAME,
                                         "source": {"type": "image", "alias": "busybox"}})
        data = d.instance_dir(NAME) / "rootfs/root/data"
        data.mkdir()
        chunk = os.urandom(1 << 20)
        for i in range(50):
            with open(data / f"f{i:02d}", "wb") as fh:
                for _ in range(DATA_MIB // 50):
                    fh.write(chunk)
        os.sync()
        yield d


def rows(d: Daemon, sql: str, args: list[object] = ()) -> list[tuple]:  # type: ignore[assignment]
    db = sqlite3.connect(f"file:{d.root / 'database/machined.db'}?mode=ro", uri=True)
    try:
        return db.execute(sql, list(args)).fetchall()
    finally:
        db.close()


def pool_dir(d: Daemon, kind: str) -> Path:
    return d.root / "storage-pools/default" / kind


def tmp_entries(d: Daemon) -> list[str]:
    """tmp/ minus spare copies of images (the daemon starts those on its own at start)."""
    return sorted(p.name for p in (d.root / "tmp").iterdir() if not p.name.startswith("spare-"))


def copying_in_tmp(d: Daemon) -> Path | None:
    entries = [p for p in (d.root / "tmp").iterdir() if p.name.startswith("copy-")]
    return entries[0] if entries else None


def tree_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def kill_mid_copy(d: Daemon, client: Client, method: str, path: str, body: dict) -> None:
    """Send the request, wait until its copy is writing into tmp/ (and has some way to
    go), SIGKILL the daemon."""
    op = client.query(method, path, body)["metadata"]
    assert op["status_code"] in (100, 103, 105), op
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tmp = copying_in_tmp(d)
        if tmp is not None and tree_bytes(tmp) > (DATA_MIB << 20) // 10:
            break
        time.sleep(0.02)
    else:
        pytest.fail("the copy never showed up in tmp/")
    written = tree_bytes(tmp)
    assert written < (DATA_MIB << 20) * 9 // 10, "the copy finished before the kill"
    assert d.proc is not None
    d.kill(signal.SIGKILL)
    time.sleep(0.2)  # cp gets SIGKILL from the kernel when the daemon dies (pdeathsig)
    writers = cp_processes(d.root)
    assert writers == [], f"cp still running after the daemon died: {writers}"
    print(f"killed the daemon with {written >> 20} MiB of {DATA_MIB} MiB copied")


def cp_processes(root: Path) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"cp" and any(
                os.fspath(root).encode() in a for a in argv):
            found.append(b" ".join(argv).decode(errors="replace"))
    return found


def test_kill_during_snapshot(private):
    d = private
    volume_before = d.instance_dir(NAME).name
    client = Client(os.fspath(d.socket))
    try:
        kill_mid_copy(d, client, "POST", f"/1.0/instances/{NAME}/snapshots", {"name": "s1"})
    finally:
        client.close()
    d.start()
    assert d.api("GET", f"/1.0/instances/{NAME}/snapshots") == []
    assert rows(d, "SELECT count(*) FROM instances_snapshots") == [(0,)]
    assert list(pool_dir(d, "snapshots").iterdir()) == []
    assert tmp_entries(d) == []
    assert sorted(p.name for p in pool_dir(d, "containers").iterdir()) == [volume_before]
    # And the next snapshot is whole.
    started = time.monotonic()
    d.api("POST", f"/1.0/instances/{NAME}/snapshots", {"name": "s1"})
    took = time.monotonic() - started
    (volume,) = [p for p in pool_dir(d, "snapshots").iterdir()]
    assert tree_bytes(volume / "rootfs/root/data") == DATA_MIB << 20
    print(f"snapshot of {DATA_MIB} MiB on dir after the crash: {took:.1f} s")


def test_kill_during_restore(private):
    d = private
    if not d.api("GET", f"/1.0/instances/{NAME}/snapshots"):
        d.api("POST", f"/1.0/instances/{NAME}/snapshots", {"name": "s1"})
    rootfs = d.instance_dir(NAME) / "rootfs"
    (rootfs / "root/marker").write_text("after the snapshot\n")
    d.api("PATCH", f"/1.0/instances/{NAME}", {"config": {"user.state": "new"}})
    volume_before = d.instance_dir(NAME).name
    client = Client(os.fspath(d.socket))
    try:
        kill_mid_copy(d, client, "PUT", f"/1.0/instances/{NAME}", {"restore": "s1"})
    finally:
        client.close()
    d.start()
    # The old state, whole: same volume, its files and config.
    assert d.instance_dir(NAME).name == volume_before
    assert (d.instance_dir(NAME) / "rootfs/root/marker").read_text() == "after the snapshot\n"
    assert d.api("GET", f"/1.0/instances/{NAME}")["config"]["user.state"] == "new"
    assert sorted(p.name for p in pool_dir(d, "containers").iterdir()) == [volume_before]
    assert tmp_entries(d) == []
    assert [s["name"] for s in d.api("GET", f"/1.0/instances/{NAME}/snapshots?recursion=1")] \
        == ["s1"]
    # Then a restore goes through.
    d.api("PUT", f"/1.0/instances/{NAME}", {"restore": "s1"})
    assert not (d.instance_dir(NAME) / "rootfs/root/marker").exists()
    assert "user.state" not in d.api("GET", f"/1.0/instances/{NAME}")["config"]
    assert sorted(p.name for p in pool_dir(d, "containers").iterdir()) == \
        [d.instance_dir(NAME).name]
    assert tree_bytes(d.instance_dir(NAME) / "rootfs/root/data") == DATA_MIB << 20


def test_kill_while_frozen_for_a_snapshot_thaws_at_restart(private):
    """A running instance on dir is frozen while it is copied; a daemon killed then must
    not leave it frozen for ever: the next daemon thaws it (the user did not pause it)."""
    d = private
    d.ok("start", NAME)
    try:
        client = Client(os.fspath(d.socket))
        try:
            kill_mid_copy(d, client, "POST", f"/1.0/instances/{NAME}/snapshots",
                          {"name": "while-running"})
        finally:
            client.close()
        d.start()
        state = d.api("GET", f"/1.0/instances/{NAME}/state")
        assert state["status"] == "Running", state
        assert d.mc("exec", NAME, "--", "true").code == 0
        assert "while-running" not in [
            s["name"] for s in d.api("GET", f"/1.0/instances/{NAME}/snapshots?recursion=1")]
        # A container the user paused stays paused across a restart.
        d.ok("pause", NAME)
        d.kill(signal.SIGKILL)
        d.start()
        assert d.api("GET", f"/1.0/instances/{NAME}/state")["status"] == "Frozen"
        d.ok("resume", NAME)
    finally:
        d.mc("stop", "--force", NAME)
