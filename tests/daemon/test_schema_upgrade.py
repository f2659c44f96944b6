"""Schema upgrades at the daemon level: a daemon started on a database an old machined
wrote (tests/fixtures/db/m0002.sql: schema step m0002, with rows) upgrades it in place after
a .bak copy and serves its data; one started on a database a newer machined wrote refuses
it with a clear message, exit status 1, and leaves the file untouched."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest

from machined.db.migrations import MIGRATIONS
from tests.conftest import BIN, REPO, Daemon, _teardown, is_root

pytestmark = [pytest.mark.daemon,
              pytest.mark.skipif(not is_root, reason="machined needs root")]

FIXTURE = REPO / "tests" / "fixtures" / "db" / "m0002.sql"


def state_dir() -> tuple[Path, Daemon]:
    base = Path(tempfile.mkdtemp(prefix="machined-test-"))
    os.chmod(base, 0o711)
    return base, Daemon(base / "state")


def old_database(root: Path) -> Path:
    path = root / "database" / "machined.db"
    path.parent.mkdir(parents=True, mode=0o700)
    conn = sqlite3.connect(path)
    conn.executescript(FIXTURE.read_text())
    conn.close()
    return path


def migrations(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    finally:
        conn.close()


def dump(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_a_database_from_m0002_is_upgraded_with_a_backup():
    base, d = state_dir()
    db = old_database(d.root)
    # The volume layout of those days: the instance's directory named after it.
    rootfs = d.root / "storage-pools" / "default" / "containers" / "t7old" / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "hostname").write_text("t7old\n")
    try:
        d.start()
        assert migrations(db) == [m.name for m in MIGRATIONS._migrations]
        backup = db.with_name("machined.db.bak")
        assert migrations(backup) == ["m0001_initial", "m0002_remote_images_and_trust"]
        inst = d.api("GET", "/1.0/instances/t7old")
        assert inst["description"] == "made at m0002"
        assert inst["profiles"] == ["default", "t7old-extra"]
        assert inst["config"]["user.note"] == "kept"
        assert inst["expanded_config"]["limits.cpu"] == "1"
        assert inst["devices"]["data"] == {"type": "disk", "path": "/mnt",
                                           "source": "/srv/nowhere"}
        assert d.ok("file", "pull", "t7old/etc/hostname", "-") == "t7old\n"
        alias = d.api("GET", "/1.0/images/aliases/old-alias")
        image = d.api("GET", f"/1.0/images/{alias['target']}")
        assert image["properties"] == {"os": "old", "release": "1"}
        assert image["update_source"]["alias"] == "old/1"
        assert d.api("GET", "/1.0")["config"]["images.auto_update_interval"] == "12"
        # New tables work on the upgraded file: a snapshot row (m0003), a network (m0004).
        d.ok("snapshot", "t7old", "after-upgrade")
        d.ok("network", "create", "t7oldbr0", "ipv4.address=none", "ipv6.address=none")
        d.ok("network", "delete", "t7oldbr0")
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        conn.close()
    finally:
        _teardown(d, base)


def test_a_database_from_a_newer_machined_is_refused():
    base, d = state_dir()
    db = old_database(d.root)
    conn = sqlite3.connect(db)
    for step in [m.name for m in MIGRATIONS._migrations][2:]:  # as if all were applied
        conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                     "VALUES ('machined', ?, 'x')", [step])
    conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                 "VALUES ('machined', 'm9999_from_the_future', 'x')")
    conn.commit()
    conn.close()
    before = dump(db)
    try:
        proc = subprocess.run([os.fspath(BIN / "machined")], env=d.env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines()[-1] == (
            f"Error: Database {db} was written by a newer machined (unknown schema step "
            f"'m9999_from_the_future'); upgrade machined or restore {db}.bak")
        assert dump(db) == before  # nothing migrated, nothing written
        assert not db.with_name("machined.db.bak").exists()
        assert not d.socket.exists()
    finally:
        import shutil
        shutil.rmtree(base, ignore_errors=True)


def test_the_fixture_is_really_from_m0002():
    """It stands for old installs: regenerating it with newer code would hide a broken
    upgrade."""
    text = FIXTURE.read_text()
    applied = [json.loads(f'"{n}"') for n in
               (line.split(",")[2].strip("'") for line in text.splitlines()
                if line.startswith('INSERT INTO "_sqlite_migrations"'))]
    assert applied == ["m0001_initial", "m0002_remote_images_and_trust"]
    assert "storage_pool" not in text and "CREATE TABLE networks" not in text
