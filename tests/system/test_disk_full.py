"""A full disk under the database: writes fail with one clear sentence (HTTP 507
"Insufficient storage: No space left on device ..."), nothing is half-written or corrupt
(PRAGMA integrity_check, DB and disk agree), reads keep working, and writes work again as
soon as space is freed, without a restart.

The database directory is a 4 MiB tmpfs mounted ONLY in a mount namespace made for this
test's daemon (`unshare -m --propagation private` around machined, which then enters its
own private namespace below it); the test fills it from inside that namespace (nsenter).
Nothing is ever mounted in the host's namespace. Containers: t7d-*."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.errors import ApiError
from tests.conftest import BIN, Daemon, _teardown, built_image, is_root

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(not is_root or not shutil.which("unshare")
                                 or not shutil.which("nsenter"),
                                 reason="needs root, unshare and nsenter")]

FULL = ("Error: Insufficient storage: No space left on device for the database (nothing was "
        "changed): free some space and try again\n")


class TmpfsDatabaseDaemon(Daemon):
    """A machined whose database directory is a small tmpfs in a namespace of its own."""

    def start(self) -> None:
        dbdir = self.root / "database"
        dbdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        script = 'mount -t tmpfs -o size=4m,mode=0700 t7d-database "$1" && exec "$2"'
        argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script,
                "sh", os.fspath(dbdir), os.fspath(BIN / "machined")]
        with open(self.root.parent / "machined.stderr", "ab") as log:
            self.proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("machined exited at start: "
                                   + (self.root.parent / "machined.stderr").read_text()[-2000:])
            if self.socket.exists() and self.mc("info").code == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("machined did not become ready in 30 s")

    def inside(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run argv in the daemon's mount namespace (where the tmpfs is)."""
        assert self.proc is not None
        return subprocess.run(["nsenter", f"--mount=/proc/{self.proc.pid}/ns/mnt", "--",
                               *argv], capture_output=True, text=True, timeout=60)

    def fill(self) -> None:
        filler = os.fspath(self.root / "database" / "filler")
        res = self.inside("dd", "if=/dev/zero", f"of={filler}", "bs=64k")
        assert "No space left on device" in res.stderr, res.stderr
        res = self.inside("df", "--output=avail", "-B1", os.fspath(self.root / "database"))
        assert res.stdout.split()[-1] == "0", res.stdout

    def free(self) -> None:
        res = self.inside("rm", "-f", os.fspath(self.root / "database" / "filler"))
        assert res.returncode == 0, res.stderr

    def sql(self, query: str) -> list[dict]:
        proc = subprocess.run([os.fspath(BIN / "machined"), "sql", "--format", "json", query],
                              env=self.env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def d() -> Iterator[TmpfsDatabaseDaemon]:
    base = Path(tempfile.mkdtemp(prefix="machined-test-"))
    os.chmod(base, 0o711)
    daemon = TmpfsDatabaseDaemon(base / "state")
    daemon.start()
    try:
        paths = built_image("busybox", "unified")
        daemon.ok("image", "import", *map(os.fspath, paths), "--alias", "busybox")
        yield daemon
    finally:
        with contextlib.suppress(Exception):
            daemon.free()
        _teardown(daemon, base)
    # The tmpfs lived only in the daemon's namespaces: the host never saw it.
    assert "t7d-database" not in Path("/proc/self/mountinfo").read_text()


def volumes_agree(d: Daemon) -> None:
    rows = {v["volume"] for v in d.sql("SELECT volume FROM instances")}
    disk = {p.name for p in (d.root / "storage-pools/default/containers").iterdir()}
    assert rows == disk


def test_database_is_on_a_private_tmpfs(d):
    assert "t7d-database" not in Path("/proc/self/mountinfo").read_text()
    res = d.inside("findmnt", "-n", "-o", "FSTYPE,SIZE", os.fspath(d.root / "database"))
    assert res.stdout.split() == ["tmpfs", "4M"], res.stdout


def test_writes_fail_cleanly_while_full_and_work_once_space_is_freed(d):
    d.ok("init", "busybox", "t7d-c1")
    d.fill()
    try:
        # A config change: one sentence, exit status 1, HTTP 507; nothing stored.
        res = d.mc("config", "set", "t7d-c1", "user.color", "blue")
        assert (res.code, res.err) == (1, FULL)
        with pytest.raises(ApiError) as err:
            d.api("PATCH", "/1.0/instances/t7d-c1", {"config": {"user.color": "blue"}})
        assert err.value.status == 507
        # A create (an operation): the volume it copied is removed again, no row.
        res = d.mc("init", "busybox", "t7d-c2")
        assert res.code == 1 and res.err == FULL, res.err
        res = d.mc("profile", "create", "t7d-p")
        assert (res.code, res.err) == (1, FULL)
        # Reads still work, and nothing is corrupt or half-made.
        assert [i["name"] for i in d.instances()] == ["t7d-c1"]
        assert "user.color" not in d.api("GET", "/1.0/instances/t7d-c1")["config"]
        assert d.sql("PRAGMA integrity_check") == [{"integrity_check": "ok"}]
        volumes_agree(d)
    finally:
        d.free()
    # The same daemon, no restart: writes work again.
    d.ok("config", "set", "t7d-c1", "user.color", "blue")
    d.ok("init", "busybox", "t7d-c2")
    d.ok("profile", "create", "t7d-p")
    assert d.sql("PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    volumes_agree(d)
    log = (d.root / "logs" / "machined.log").read_text()
    assert "Insufficient storage: No space left on device" in log
    assert "Traceback" not in log
    # Committed to the file (another connection sees it), not only to the daemon's cache.
    db = os.fspath(d.root / "database" / "machined.db")
    code = ("import sqlite3, sys; c = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True)"
            "; print(c.execute(\"SELECT value FROM instances_config WHERE key = "
            "'user.color'\").fetchall(), c.execute('SELECT name FROM instances ORDER BY name')"
            ".fetchall())")
    res = d.inside(os.fspath(BIN / "python"), "-c", code, db)
    assert res.stdout.strip() == "[('blue',)] [('t7d-c1',), ('t7d-c2',)]", res.stderr
    d.ok("delete", "t7d-c1", "t7d-c2")
    d.ok("profile", "delete", "t7d-p")
