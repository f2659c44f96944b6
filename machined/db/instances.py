"""Instances and their config, devices and profiles. Raises NotFound/Conflict, never HTTP."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlite_utils import Database

from machined.errors import Conflict, NotFound


@dataclass
class InstanceRecord:
    name: str
    architecture: str
    created_at: str
    type: str = "container"
    description: str = ""
    ephemeral: bool = False
    last_used_at: str = ""
    config: dict[str, str] = field(default_factory=dict)
    devices: dict[str, dict[str, str]] = field(default_factory=dict)
    profiles: list[str] = field(default_factory=list)
    # Where the root volume lives: the pool and the volume's name there (set at create,
    # changed only by restore/move, which switch it in one transaction).
    storage_pool: str = "default"
    volume: str = ""
    id: int = 0


def names(db: Database) -> list[str]:
    return [r[0] for r in db.execute("SELECT name FROM instances ORDER BY name").fetchall()]


def exists(db: Database, name: str) -> bool:
    return db.execute("SELECT 1 FROM instances WHERE name = ?", [name]).fetchone() is not None


def get(db: Database, name: str) -> InstanceRecord:
    row = db.execute(
        "SELECT id, name, type, architecture, description, ephemeral, created_at, last_used_at,"
        " storage_pool, volume FROM instances WHERE name = ?", [name]).fetchone()
    if row is None:
        raise NotFound(f"Instance {name!r} not found")
    rec = InstanceRecord(id=row[0], name=row[1], type=row[2], architecture=row[3],
                         description=row[4], ephemeral=bool(row[5]), created_at=row[6],
                         last_used_at=row[7], storage_pool=row[8], volume=row[9])
    rec.config = dict(db.execute(
        "SELECT key, value FROM instances_config WHERE instance_id = ?", [rec.id]).fetchall())
    rec.devices = {n: json.loads(c) for n, c in db.execute(
        "SELECT name, config FROM instances_devices WHERE instance_id = ?", [rec.id]).fetchall()}
    rec.profiles = [r[0] for r in db.execute(
        "SELECT p.name FROM instances_profiles ip JOIN profiles p ON p.id = ip.profile_id "
        "WHERE ip.instance_id = ? ORDER BY ip.apply_order", [rec.id]).fetchall()]
    return rec


def list_all(db: Database) -> list[InstanceRecord]:
    return [get(db, n) for n in names(db)]


def create(db: Database, rec: InstanceRecord) -> InstanceRecord:
    with db.atomic():
        if exists(db, rec.name):
            raise Conflict(f"Instance {rec.name!r} already exists")
        cur = db.execute(
            "INSERT INTO instances (name, type, architecture, description, ephemeral, created_at,"
            " last_used_at, storage_pool, volume) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [rec.name, rec.type, rec.architecture, rec.description, int(rec.ephemeral),
             rec.created_at, rec.last_used_at, rec.storage_pool, rec.volume or rec.name])
        rec.id = int(cur.lastrowid or 0)
        _write_config(db, rec.id, rec.config)
        _write_devices(db, rec.id, rec.devices)
        for order, profile in enumerate(rec.profiles):
            pid = db.execute("SELECT id FROM profiles WHERE name = ?", [profile]).fetchone()
            if pid is None:
                raise NotFound(f"Profile {profile!r} not found")
            db.execute("INSERT INTO instances_profiles VALUES (?, ?, ?)", [rec.id, pid[0], order])
    return rec


def _write_config(db: Database, instance_id: int, config: dict[str, str]) -> None:
    db.execute("DELETE FROM instances_config WHERE instance_id = ?", [instance_id])
    db.conn.executemany("INSERT INTO instances_config VALUES (?, ?, ?)",
                        [(instance_id, k, v) for k, v in config.items()])


def _write_devices(db: Database, instance_id: int, devices: dict[str, dict[str, str]]) -> None:
    db.execute("DELETE FROM instances_devices WHERE instance_id = ?", [instance_id])
    db.conn.executemany("INSERT INTO instances_devices VALUES (?, ?, ?)",
                        [(instance_id, n, json.dumps(c, sort_keys=True))
                         for n, c in devices.items()])


def update(db: Database, rec: InstanceRecord) -> None:
    """Replace description, ephemeral, config, devices and profiles in one transaction."""
    with db.atomic():
        db.execute("UPDATE instances SET description = ?, ephemeral = ? WHERE id = ?",
                   [rec.description, int(rec.ephemeral), rec.id])
        _write_config(db, rec.id, rec.config)
        _write_devices(db, rec.id, rec.devices)
        db.execute("DELETE FROM instances_profiles WHERE instance_id = ?", [rec.id])
        for order, profile in enumerate(rec.profiles):
            pid = db.execute("SELECT id FROM profiles WHERE name = ?", [profile]).fetchone()
            if pid is None:
                raise NotFound(f"Profile {profile!r} not found")
            db.execute("INSERT INTO instances_profiles VALUES (?, ?, ?)", [rec.id, pid[0], order])


def set_config_keys(db: Database, name: str, values: dict[str, str | None]) -> None:
    """Set (or with None, remove) a few keys, e.g. volatile state, atomically."""
    with db.atomic():
        row = db.execute("SELECT id FROM instances WHERE name = ?", [name]).fetchone()
        if row is None:
            raise NotFound(f"Instance {name!r} not found")
        for key, value in values.items():
            if value is None:
                db.execute("DELETE FROM instances_config WHERE instance_id = ? AND key = ?",
                           [row[0], key])
            else:
                db.execute("INSERT OR REPLACE INTO instances_config VALUES (?, ?, ?)",
                           [row[0], key, value])


def touch(db: Database, name: str, when: str) -> None:
    db.execute("UPDATE instances SET last_used_at = ? WHERE name = ?", [when, name])


def rename(db: Database, old: str, new: str) -> None:
    with db.atomic():
        if exists(db, new):
            raise Conflict(f"Instance {new!r} already exists")
        if db.execute("UPDATE instances SET name = ? WHERE name = ?", [new, old]).rowcount == 0:
            raise NotFound(f"Instance {old!r} not found")


def delete(db: Database, name: str) -> None:
    if db.execute("DELETE FROM instances WHERE name = ?", [name]).rowcount == 0:
        raise NotFound(f"Instance {name!r} not found")


def switch_volume(db: Database, name: str, pool: str, volume: str,
                  config: dict[str, str] | None = None) -> str:
    """Point instance `name` at another (complete) root volume, and with `config` replace its
    config, in one transaction: the commit point of restore and of a move between pools.
    Returns the previous volume's name (the caller deletes it after the commit)."""
    with db.atomic():
        row = db.execute("SELECT id, volume FROM instances WHERE name = ?", [name]).fetchone()
        if row is None:
            raise NotFound(f"Instance {name!r} not found")
        db.execute("UPDATE instances SET storage_pool = ?, volume = ? WHERE id = ?",
                   [pool, volume, row[0]])
        if config is not None:
            _write_config(db, row[0], config)
    return str(row[1])


def pools_from_image(db: Database, fingerprint: str) -> list[str]:
    """Pools holding instances made from image `fingerprint` (volatile.base_image)."""
    return [r[0] for r in db.execute(
        "SELECT DISTINCT i.storage_pool FROM instances i JOIN instances_config c ON "
        "c.instance_id = i.id WHERE c.key = 'volatile.base_image' AND c.value = ? "
        "ORDER BY i.storage_pool", [fingerprint]).fetchall()]
