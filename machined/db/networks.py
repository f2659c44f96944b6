"""Managed networks: name, type and config. Raises NotFound/Conflict, never HTTP."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlite_utils import Database

from machined.errors import Conflict, NotFound


@dataclass
class NetworkRecord:
    name: str
    type: str = "bridge"
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)
    created_at: str = ""


def names(db: Database) -> list[str]:
    return [r[0] for r in db.execute("SELECT name FROM networks ORDER BY name").fetchall()]


def exists(db: Database, name: str) -> bool:
    return db.execute("SELECT 1 FROM networks WHERE name = ?", [name]).fetchone() is not None


def get(db: Database, name: str) -> NetworkRecord:
    row = db.execute("SELECT name, type, description, config, created_at FROM networks "
                     "WHERE name = ?", [name]).fetchone()
    if row is None:
        raise NotFound(f"Network {name!r} not found")
    return NetworkRecord(row[0], row[1], row[2], json.loads(row[3]), row[4])


def list_all(db: Database) -> list[NetworkRecord]:
    return [get(db, n) for n in names(db)]


def create(db: Database, rec: NetworkRecord) -> None:
    with db.atomic():
        if exists(db, rec.name):
            raise Conflict(f"Network {rec.name!r} already exists")
        db.execute("INSERT INTO networks (name, type, description, config, created_at) "
                   "VALUES (?, ?, ?, ?, ?)", [rec.name, rec.type, rec.description,
                                              json.dumps(rec.config, sort_keys=True),
                                              rec.created_at])


def update(db: Database, rec: NetworkRecord) -> None:
    if db.execute("UPDATE networks SET description = ?, config = ? WHERE name = ?",
                  [rec.description, json.dumps(rec.config, sort_keys=True),
                   rec.name]).rowcount == 0:
        raise NotFound(f"Network {rec.name!r} not found")


def rename(db: Database, name: str, new: str) -> None:
    with db.atomic():
        if exists(db, new):
            raise Conflict(f"Network {new!r} already exists")
        if db.execute("UPDATE networks SET name = ? WHERE name = ?", [new, name]).rowcount == 0:
            raise NotFound(f"Network {name!r} not found")


def delete(db: Database, name: str) -> None:
    if db.execute("DELETE FROM networks WHERE name = ?", [name]).rowcount == 0:
        raise NotFound(f"Network {name!r} not found")
