"""Server configuration (the `config` table)."""

from __future__ import annotations

from sqlite_utils import Database


def get_all(db: Database) -> dict[str, str]:
    return dict(db.execute("SELECT key, value FROM config").fetchall())


def replace(db: Database, values: dict[str, str]) -> None:
    with db.atomic():
        db.execute("DELETE FROM config")
        db.conn.executemany("INSERT INTO config VALUES (?, ?)", list(values.items()))
