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


def exists(db: Database, name: str) -> bool:
    return db.execute("SELECT 1 FROM profiles WHERE name = ?", [name]).fetchone() is not None


def list_all(db: Database) -> list[ProfileRecord]:
    return [get(db, n) for n in names(db)]


def update(db: Database, rec: ProfileRecord) -> None:
    """Replace description, config and devices in one transaction."""
    with db.atomic():
        row = db.execute("SELECT id FROM profiles WHERE name = ?", [rec.name]).fetchone()
        if row is None:
            raise NotFound(f"Profile {rec.name!r} not found")
        pid = row[0]
        db.execute("UPDATE profiles SET description = ? WHERE id = ?", [rec.description, pid])
        db.execute("DELETE FROM profiles_config WHERE profile_id = ?", [pid])
        db.execute("DELETE FROM profiles_devices WHERE profile_id = ?", [pid])
        db.conn.executemany("INSERT INTO profiles_config VALUES (?, ?, ?)",
                            [(pid, k, v) for k, v in rec.config.items()])
        db.conn.executemany("INSERT INTO profiles_devices VALUES (?, ?, ?)",
                            [(pid, n, json.dumps(c, sort_keys=True))
                             for n, c in rec.devices.items()])


def rename(db: Database, old: str, new: str) -> None:
    """Instances refer to profiles by id: they follow the rename without being touched."""
    with db.atomic():
        if exists(db, new):
            raise Conflict(f"Profile {new!r} already exists")
        if db.execute("UPDATE profiles SET name = ? WHERE name = ?", [new, old]).rowcount == 0:
            raise NotFound(f"Profile {old!r} not found")


def used_by(db: Database, name: str) -> list[str]:
    """Names of the instances that apply this profile, sorted."""
    return [r[0] for r in db.execute(
        "SELECT i.name FROM instances_profiles ip JOIN instances i ON i.id = ip.instance_id "
        "JOIN profiles p ON p.id = ip.profile_id WHERE p.name = ? ORDER BY i.name",
        [name]).fetchall()]


def delete(db: Database, name: str) -> None:
    """Delete an unused profile; the schema refuses (RESTRICT) to drop one still applied."""
    with db.atomic():
        users = used_by(db, name)
        if users:
            raise Conflict(f"Profile {name!r} is in use by instance(s) {', '.join(users)}")
        if db.execute("DELETE FROM profiles WHERE name = ?", [name]).rowcount == 0:
            raise NotFound(f"Profile {name!r} not found")
