"""The database: one SQLite file, the source of truth. open() applies migrations after taking
a .bak copy, and refuses a database written by a newer machined."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from sqlite_utils import Database

from machined.db.migrations import MIGRATIONS
from machined.errors import InternalError


class SchemaTooNew(InternalError):
    pass


def open_database(path: Path) -> Database:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    existed = path.exists() and path.stat().st_size > 0
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    db = Database(conn)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA busy_timeout=5000")
    db.execute("PRAGMA synchronous=NORMAL")
    _refuse_newer(db, path)
    pending = MIGRATIONS.pending(db)
    if pending and existed:
        _backup(conn, path)
    MIGRATIONS.apply(db)
    return db


def _refuse_newer(db: Database, path: Path) -> None:
    known = {m.name for m in MIGRATIONS._migrations}
    unknown = [m.name for m in MIGRATIONS.applied(db) if m.name not in known]
    if unknown:
        raise SchemaTooNew(
            f"Database {path} was written by a newer machined (unknown schema step "
            f"{unknown[-1]!r}); upgrade machined or restore {path}.bak")


def _backup(conn: sqlite3.Connection, path: Path) -> None:
    """A consistent copy via SQLite's backup API, written aside and renamed into place."""
    tmp = path.with_name(path.name + ".bak.tmp")
    dest = sqlite3.connect(tmp)
    try:
        conn.backup(dest)
    finally:
        dest.close()
    shutil.move(tmp, path.with_name(path.name + ".bak"))
