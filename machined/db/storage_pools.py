"""Storage pools: name, driver and driver config. Raises NotFound/Conflict, never HTTP."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlite_utils import Database

from machined.errors import Conflict, NotFound


@dataclass
class PoolRecord:
    name: str
    driver: str
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)
    created_at: str = ""


def names(db: Database) -> list[str]:
    return [r[0] for r in db.execute("SELECT name FROM storage_pools ORDER BY name").fetchall()]


def get(db: Database, name: str) -> PoolRecord:
    row = db.execute("SELECT name, driver, description, config, created_at FROM storage_pools "
                     "WHERE name = ?", [name]).fetchone()
    if row is None:
        raise NotFound(f"Storage pool {name!r} not found")
    return PoolRecord(row[0], row[1], row[2], json.loads(row[3]), row[4])


def list_all(db: Database) -> list[PoolRecord]:
    return [get(db, n) for n in names(db)]


def create(db: Database, rec: PoolRecord) -> None:
    with db.atomic():
        if db.execute("SELECT 1 FROM storage_pools WHERE name = ?", [rec.name]).fetchone():
            raise Conflict(f"Storage pool {rec.name!r} already exists")
        db.execute("INSERT INTO storage_pools (name, driver, description, config, created_at) "
                   "VALUES (?, ?, ?, ?, ?)", [rec.name, rec.driver, rec.description,
                                              json.dumps(rec.config, sort_keys=True),
                                              rec.created_at])


def update(db: Database, rec: PoolRecord) -> None:
    if db.execute("UPDATE storage_pools SET description = ?, config = ? WHERE name = ?",
                  [rec.description, json.dumps(rec.config, sort_keys=True),
                   rec.name]).rowcount == 0:
        raise NotFound(f"Storage pool {rec.name!r} not found")


def delete(db: Database, name: str) -> None:
    if db.execute("DELETE FROM storage_pools WHERE name = ?", [name]).rowcount == 0:
        raise NotFound(f"Storage pool {name!r} not found")


def instances_using(db: Database, name: str) -> list[str]:
    return [r[0] for r in db.execute(
        "SELECT name FROM instances WHERE storage_pool = ? ORDER BY name", [name]).fetchall()]


def volumes_in_pool(db: Database, name: str) -> set[str]:
    """Instance volumes the DB names in pool `name` (what start-up reconciliation keeps)."""
    return {r[0] for r in db.execute(
        "SELECT volume FROM instances WHERE storage_pool = ?", [name]).fetchall()}
