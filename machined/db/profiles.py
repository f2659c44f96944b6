"""Profiles: named config + devices applied to instances in order."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlite_utils import Database

from machined.errors import Conflict, NotFound


@dataclass
class ProfileRecord:
    name: str
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)
    devices: dict[str, dict[str, str]] = field(default_factory=dict)


def get(db: Database, name: str) -> ProfileRecord:
    row = db.execute("SELECT id, description FROM profiles WHERE name = ?", [name]).fetchone()
    if row is None:
        raise NotFound(f"Profile {name!r} not found")
    config = dict(db.execute("SELECT key, value FROM profiles_config WHERE profile_id = ?",
                             [row[0]]).fetchall())
    devices = {n: json.loads(c) for n, c in db.execute(
        "SELECT name, config FROM profiles_devices WHERE profile_id = ?", [row[0]]).fetchall()}
    return ProfileRecord(name, row[1], config, devices)


def names(db: Database) -> list[str]:
    return [r[0] for r in db.execute("SELECT name FROM profiles ORDER BY name").fetchall()]


def create(db: Database, rec: ProfileRecord) -> None:
    with db.atomic():
        if db.execute("SELECT 1 FROM profiles WHERE name = ?", [rec.name]).fetchone():
            raise Conflict(f"Profile {rec.name!r} already exists")
        cur = db.execute("INSERT INTO profiles (name, description) VALUES (?, ?)",
                         [rec.name, rec.description])
        pid = cur.lastrowid
        db.conn.executemany("INSERT INTO profiles_config VALUES (?, ?, ?)",
                            [(pid, k, v) for k, v in rec.config.items()])
        db.conn.executemany("INSERT INTO profiles_devices VALUES (?, ?, ?)",
                            [(pid, n, json.dumps(c, sort_keys=True))
                             for n, c in rec.devices.items()])
