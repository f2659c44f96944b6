"""Issue 5 security review, on real daemons: what a pool opens and deletes must be its own
(another filesystem at its source, links in its directories, a symlinked state directory),
copies into btrfs are closed while they fill, a partitioned disk is never formatted, a
restored snapshot's config is checked like any config, and the expiry loop re-checks a
snapshot under the instance's lock before deleting it.

Mounts happen only in the daemons' own namespaces; btrfs pools are looked at through nsenter.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.errors import ApiError
from tests.conftest import Daemon, _teardown, built_image, needs_root, spawn_daemon

pytestmark = needs_root

TICK = 0.2


def api_error(daemon: Daemon, method: str, path: str, data: object = None) -> ApiError:
    with pytest.raises(ApiError) as e:
        daemon.api(method, path, data)
    return e.value


def pool_status(daemon: Daemon, name: str) -> str:
    info = daemon.api("GET", f"/1.0/storage-pools/{name}")
    assert isinstance(info, dict)
    return info["status"]


def unavailable_reason(daemon: Daemon, name: str) -> str:
    assert pool_status(daemon, name) == "Unavailable"
    err = api_error(daemon, "GET", f"/1.0/storage-pools/{name}/resources")
    assert err.status == 503
    return str(err)


@pytest.fixture(scope="module")
def priv(tmp_path_factory) -> Iterator[tuple[Daemon, Path]]:
    """A private daemon (restarted by the tests, its files edited while it is down) whose
    clock the tests move and whose task loop ticks every TICK seconds."""
    clock = tmp_path_factory.mktemp("t5s-clock") / "clock"
    clock.write_text("2030-01-01T10:00:00Z")
    with spawn_daemon(env={"MACHINED_TEST_CLOCK": os.fspath(clock),
                           "MACHINED_TASK_TICK": str(TICK)}) as d:
        d.ok("image", "import", *map(os.fspath, built_image("busybox", "unified")),
             "--alias", "busybox")
        yield d, clock


def test_a_pool_opens_only_on_its_own_filesystem(priv, tmp_path):
    """Another filesystem found at a pool's source (a disk that came back as another
    /dev/sdX, another tool's pool with its own containers/ and images/<fp>/) is not taken
    for the pool: start-up would empty its tmp/ and delete every volume no row names."""
    d, _ = priv
    src = tmp_path / "t5s-src"
    d.api("POST", "/1.0/storage-pools",
          {"name": "t5s-d", "driver": "dir", "config": {"source": os.fspath(src)}})
    d.kill()
    os.rename(src, tmp_path / "t5s-ours")
    foreign = {src / "containers" / "web" / "rootfs" / "index.html": "site",
               src / "images" / ("ab" * 32) / "metadata.yaml": "image",
               src / "snapshots" / "web-snap0" / "rootfs" / "f": "snap",
               src / "tmp" / "keep": "theirs"}
    for path, text in foreign.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    d.start()
    assert "holds no storage pool (is its filesystem mounted?)" in unavailable_reason(d, "t5s-d")
    assert {p: p.read_text() for p in foreign} == foreign

    d.kill()  # the same, with the marker of a pool of that name made elsewhere
    (src / ".machined-pool").write_text("machined storage pool t5s-d\ncreated "
                                        "2020-01-01T00:00:00.000000Z\n")
    d.start()
    assert "holds another storage pool ('machined storage pool t5s-d'" in \
        unavailable_reason(d, "t5s-d")
    assert {p: p.read_text() for p in foreign} == foreign

    d.kill()  # its own filesystem back
    shutil.rmtree(src)
    os.rename(tmp_path / "t5s-ours", src)
    d.start()
    assert pool_status(d, "t5s-d") == "Created"
    d.api("DELETE", "/1.0/storage-pools/t5s-d")
    assert os.listdir(src) == []


def test_pool_directories_that_lead_elsewhere_are_refused(priv, tmp_path):
    """A link in place of containers/ (or a pool directory other users can change, who
    could put one there) would steer start-up reconciliation's deletes out of the pool."""
    d, _ = priv
    victim = tmp_path / "victim"
    (victim / "precious").mkdir(parents=True)
    (victim / "precious" / "data").write_text("keep")
    (victim / "notes").write_text("keep too")
    src = tmp_path / "t5s-l"
    d.api("POST", "/1.0/storage-pools",
          {"name": "t5s-l", "driver": "dir", "config": {"source": os.fspath(src)}})
    d.kill()
    os.rmdir(src / "containers")
    os.symlink(victim, src / "containers")
    d.start()
    assert f"{src / 'containers'} is not a directory (a link?)" in \
        unavailable_reason(d, "t5s-l")
    assert (victim / "precious" / "data").read_text() == "keep"
    assert (victim / "notes").read_text() == "keep too"

    d.kill()
    os.unlink(src / "containers")
    os.mkdir(src / "containers", 0o711)
    os.chmod(src / "tmp", 0o777)
    d.start()
    assert f"{src / 'tmp'} can be changed by users other than root" in \
        unavailable_reason(d, "t5s-l")

    d.kill()
    os.chmod(src / "tmp", 0o711)
    d.start()
    assert pool_status(d, "t5s-l") == "Created"
    d.api("DELETE", "/1.0/storage-pools/t5s-l")

    shared = tmp_path / "t5s-shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    err = api_error(d, "POST", "/1.0/storage-pools",
                    {"name": "t5s-w", "driver": "dir", "config": {"source": os.fspath(shared)}})
    assert err.status == 400 and "can be changed by users other than root" in str(err)
    assert os.listdir(shared) == []


def test_overlap_checks_see_through_a_symlinked_state_directory():
    """$MACHINED_DIR reached through a symlink (/var/lib/machined -> a data disk): a pool
    source given by its real path is still inside the state directory, here inside the
    default pool's containers/, where start-up would delete it as an unknown volume."""
    base = Path(tempfile.mkdtemp(prefix="machined-test-"))
    os.chmod(base, 0o711)
    (base / "real").mkdir()
    os.symlink(base / "real", base / "link")
    d = Daemon(base / "link" / "state")
    d.start()
    try:
        inside = base / "real" / "state" / "storage-pools" / "default" / "containers" / "t5s-in"
        err = api_error(d, "POST", "/1.0/storage-pools",
                        {"name": "t5s-in", "driver": "dir",
                         "config": {"source": os.fspath(inside)}})
        assert err.status == 400 and "overlaps machined's state directory" in str(err)
        assert not inside.exists()
    finally:
        _teardown(d, base)


POLL = r"""
import os, stat, sys, time
tmp = sys.argv[1]
print("ready", flush=True)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    for e in os.scandir(tmp):
        if e.name.startswith("copy-") and os.path.lexists(os.path.join(e.path, "rootfs")):
            print(oct(stat.S_IMODE(os.lstat(e.path).st_mode)), flush=True)
            sys.exit(0)
    time.sleep(0.0005)
print("never saw a copy in progress", flush=True)
"""


def test_a_copy_into_btrfs_is_closed_while_it_fills(daemon, busybox_image, btrfs_pool):
    """cp fills a new subvolume and gives it the source's mode only at the end; until then
    it was 0755 (umask), with host-root setuid files of a container in it, at a path anyone
    can read in cp's command line (/proc/<pid>/cmdline)."""
    daemon.ok("init", busybox_image, "t5s-big")
    try:
        big = daemon.instance_dir("t5s-big") / "rootfs" / "root" / "big"
        with open(big, "wb") as f:  # enough for the copy to take a while
            for _ in range(160):
                f.write(b"\xa5" * (1 << 20))
        assert daemon.proc is not None
        tmp = daemon.root / "storage-pools" / btrfs_pool / "tmp"
        poller = subprocess.Popen(
            ["nsenter", f"--mount=/proc/{daemon.proc.pid}/ns/mnt", sys.executable, "-c", POLL,
             os.fspath(tmp)], stdout=subprocess.PIPE, text=True)
        try:
            assert poller.stdout is not None and poller.stdout.readline() == "ready\n"
            daemon.api("POST", "/1.0/instances", {
                "name": "t5s-big2", "source": {"type": "copy", "source": "t5s-big"},
                "devices": {"root": {"type": "disk", "path": "/", "pool": btrfs_pool}}})
            seen = poller.communicate(timeout=120)[0].strip()
        finally:
            poller.kill()
            poller.wait()
        assert seen == "0o700", seen
    finally:
        daemon.mc("delete", "--force", "t5s-big2")
        daemon.mc("delete", "--force", "t5s-big")


@pytest.fixture
def partitioned_device(tmp_path) -> Iterator[str]:
    """A loop device whose first sector is a DOS partition table (no filesystem of its own):
    data blkid does not report as a TYPE."""
    img = tmp_path / "t5s-parted.img"
    with open(img, "wb") as f:
        f.truncate(512 << 20)
        mbr = bytearray(512)
        mbr[446:462] = struct.pack("<B3sB3sII", 0, b"\0\2\0", 0x83, b"\xff\xff\xff", 2048,
                                   1 << 20)
        mbr[510:512] = b"\x55\xaa"
        f.write(mbr)
    dev = subprocess.run(["losetup", "-f", "--show", os.fspath(img)], check=True,
                         capture_output=True, text=True).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def test_a_partitioned_disk_is_refused_not_formatted(daemon, partitioned_device):
    dev = partitioned_device
    err = api_error(daemon, "POST", "/1.0/storage-pools",
                    {"name": "t5s-pt", "driver": "btrfs", "config": {"source": dev}})
    assert err.status == 400, str(err)
    assert f"Block device {dev} holds a dos partition table; machined uses a device with " \
           "btrfs on it or formats an empty one" in str(err)
    probe = subprocess.run(["blkid", "-p", "-o", "export", dev], capture_output=True, text=True)
    assert "PTTYPE=dos" in probe.stdout and "TYPE=btrfs" not in probe.stdout
    assert "/1.0/storage-pools/t5s-pt" not in daemon.api("GET", "/1.0/storage-pools")


def test_restore_checks_the_snapshot_config_it_writes_back(priv):
    """A snapshot's config is written back as the instance's by a restore: checked like any
    config written now (it may predate a rule, here the one refusing '=' in environment
    variable names, that keeps it from injecting another variable)."""
    d, _ = priv
    d.ok("launch", "busybox", "t5s-r")
    try:
        d.ok("snapshot", "t5s-r", "s0")
        d.kill()
        db = sqlite3.connect(d.root / "database" / "machined.db")
        with db:
            db.execute("UPDATE instances_snapshots SET config = ? WHERE name = 's0'",
                       [json.dumps({"environment.A=B": "x"})])
        db.close()
        d.start()
        err = api_error(d, "PUT", "/1.0/instances/t5s-r", {"restore": "s0"})
        assert "Invalid environment variable name 'A=B'" in str(err), str(err)
        inst = d.api("GET", "/1.0/instances/t5s-r")
        assert isinstance(inst, dict) and inst["status"] == "Running"  # not even stopped
        assert not any(k.startswith("environment.") for k in inst["config"])
    finally:
        d.mc("delete", "--force", "t5s-r")


def test_expiry_rechecks_a_snapshot_before_deleting_it(priv):
    """The loop lists the expired snapshots, then deletes them one by one, each under the
    instance's lock: one whose expiry was pushed back meanwhile stays."""
    d, clock = priv
    clock.write_text("2030-01-01T10:00:00Z")
    d.ok("launch", "busybox", "t5s-e")
    try:
        # An init that ignores the stop signal: `stop --timeout 6` holds the lock for 6 s.
        d.ok("exec", "t5s-e", "--", "sh", "-c",
             "rm /sbin/init && printf '#!/bin/sh\\nexec sleep 100000\\n' > /sbin/init && "
             "chmod 755 /sbin/init")
        d.ok("restart", "--force", "t5s-e")
        for snap, expires in (("a", "2030-01-01T11:00:00Z"), ("b", "2030-01-01T11:01:00Z")):
            d.api("POST", "/1.0/instances/t5s-e/snapshots",
                  {"name": snap, "expires_at": expires})
        stopper = threading.Thread(target=d.mc, args=("stop", "--timeout", "6", "t5s-e"))
        stopper.start()
        time.sleep(0.7)  # the stop holds the lock
        clock.write_text("2030-01-01T12:00:00Z")
        time.sleep(TICK * 5)  # the loop has listed a and b, and waits for the lock for a
        keeper = threading.Thread(target=d.api, args=(
            "PATCH", "/1.0/instances/t5s-e/snapshots/b", {"expires_at": "2031-01-01T00:00:00Z"}))
        keeper.start()
        time.sleep(0.5)  # queued for the lock behind the loop's delete of a
        assert stopper.is_alive(), "the stop ended before the race was set up"
        stopper.join(30)
        keeper.join(30)
        time.sleep(TICK * 5)
        shots = d.api("GET", "/1.0/instances/t5s-e/snapshots?recursion=1")
        assert isinstance(shots, list)
        assert {s["name"]: s["expires_at"] for s in shots} == {"b": "2031-01-01T00:00:00Z"}
    finally:
        d.mc("delete", "--force", "t5s-e")


def test_pool_marker_is_root_only(priv, tmp_path):
    d, _ = priv
    src = tmp_path / "t5s-m"
    d.api("POST", "/1.0/storage-pools",
          {"name": "t5s-m", "driver": "dir", "config": {"source": os.fspath(src)}})
    try:
        st = os.lstat(src / ".machined-pool")
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    finally:
        d.api("DELETE", "/1.0/storage-pools/t5s-m")
    assert os.listdir(src) == []
