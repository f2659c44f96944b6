"""Instance snapshots: the config an instance had when its root volume was copied, and the
name of that copy's volume (in the instance's pool). Raises NotFound/Conflict, never HTTP."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlite_utils import Database

from machined.errors import Conflict, NotFound

_COLUMNS = ("id, instance_id, name, volume, created_at, expires_at, stateful, description, "
            "architecture, ephemeral, config, devices, profiles")


@dataclass
class SnapshotRecord:
    instance: str
    name: str
    volume: str
    created_at: str
    architecture: str
    expires_at: str = ""  # ISO time, "" = never
    stateful: bool = False
    description: str = ""
    ephemeral: bool = False
    config: dict[str, str] = field(default_factory=dict)
    devices: dict[str, dict[str, str]] = field(default_factory=dict)
    profiles: list[str] = field(default_factory=list)
    id: int = 0


def _instance_id(db: Database, instance: str) -> int:
    row = db.execute("SELECT id FROM instances WHERE name = ?", [instance]).fetchone()
    if row is None:
        raise NotFound(f"Instance {instance!r} not found")
    return int(row[0])


def _record(instance: str, row: tuple) -> SnapshotRecord:  # type: ignore[type-arg]
    return SnapshotRecord(
        id=row[0], instance=instance, name=row[2], volume=row[3], created_at=row[4],
        expires_at=row[5], stateful=bool(row[6]), description=row[7], architecture=row[8],
        ephemeral=bool(row[9]), config=json.loads(row[10]), devices=json.loads(row[11]),
        profiles=json.loads(row[12]))


def list_for(db: Database, instance: str) -> list[SnapshotRecord]:
    """An instance's snapshots, oldest first."""
    iid = _instance_id(db, instance)
    rows = db.execute(f"SELECT {_COLUMNS} FROM instances_snapshots WHERE instance_id = ? "
                      "ORDER BY created_at, id", [iid]).fetchall()
    return [_record(instance, r) for r in rows]


def get(db: Database, instance: str, name: str) -> SnapshotRecord:
    iid = _instance_id(db, instance)
    row = db.execute(f"SELECT {_COLUMNS} FROM instances_snapshots WHERE instance_id = ? AND "
                     "name = ?", [iid, name]).fetchone()
    if row is None:
        raise NotFound(f"Snapshot {name!r} of instance {instance!r} not found")
    return _record(instance, row)


def exists(db: Database, instance: str, name: str) -> bool:
    try:
        get(db, instance, name)
    except NotFound:
        return False
    return True


def _insert(db: Database, iid: int, rec: SnapshotRecord) -> None:
    cur = db.execute(
        "INSERT INTO instances_snapshots (instance_id, name, volume, created_at, expires_at, "
        "stateful, description, architecture, ephemeral, config, devices, profiles) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [iid, rec.name, rec.volume, rec.created_at, rec.expires_at, int(rec.stateful),
         rec.description, rec.architecture, int(rec.ephemeral),
         json.dumps(rec.config, sort_keys=True), json.dumps(rec.devices, sort_keys=True),
         json.dumps(rec.profiles)])
    rec.id = int(cur.lastrowid or 0)


def create(db: Database, rec: SnapshotRecord, *, replace: bool = False) -> str | None:
    """Record a snapshot whose volume is complete. With replace, a snapshot of the same name
    is swapped out in the same transaction; its volume name is returned (for the caller to
    delete after the commit)."""
    with db.atomic():
        iid = _instance_id(db, rec.instance)
        old = db.execute("SELECT volume FROM instances_snapshots WHERE instance_id = ? AND "
                         "name = ?", [iid, rec.name]).fetchone()
        if old is not None and not replace:
            raise Conflict(f"Snapshot {rec.name!r} of instance {rec.instance!r} already exists")
        if old is not None:
            db.execute("DELETE FROM instances_snapshots WHERE instance_id = ? AND name = ?",
                       [iid, rec.name])
        _insert(db, iid, rec)
    return old[0] if old is not None else None


def create_many(db: Database, records: list[SnapshotRecord]) -> None:
    """Record several snapshots (of one new instance, after a copy) in one transaction."""
    with db.atomic():
        for rec in records:
            _insert(db, _instance_id(db, rec.instance), rec)


def update(db: Database, rec: SnapshotRecord) -> None:
    """Description and expiry are the only things that change after creation."""
    db.execute("UPDATE instances_snapshots SET description = ?, expires_at = ? WHERE id = ?",
               [rec.description, rec.expires_at, rec.id])


def rename(db: Database, instance: str, old: str, new: str) -> None:
    with db.atomic():
        iid = _instance_id(db, instance)
        if exists(db, instance, new):
            raise Conflict(f"Snapshot {new!r} of instance {instance!r} already exists")
        if db.execute("UPDATE instances_snapshots SET name = ? WHERE instance_id = ? AND "
                      "name = ?", [new, iid, old]).rowcount == 0:
            raise NotFound(f"Snapshot {old!r} of instance {instance!r} not found")


def delete(db: Database, instance: str, name: str) -> str:
    """Remove the row; returns the volume name (deleted by the caller after this commit)."""
    with db.atomic():
        rec = get(db, instance, name)
        db.execute("DELETE FROM instances_snapshots WHERE id = ?", [rec.id])
    return rec.volume


def expired(db: Database, now_iso: str) -> list[tuple[str, str]]:
    """(instance, snapshot) pairs whose expires_at is set and not after now."""
    return [(r[0], r[1]) for r in db.execute(
        "SELECT i.name, s.name FROM instances_snapshots s JOIN instances i ON "
        "i.id = s.instance_id WHERE s.expires_at != '' AND s.expires_at <= ? "
        "ORDER BY s.expires_at", [now_iso]).fetchall()]


def volumes_in_pool(db: Database, pool: str) -> set[str]:
    """Every snapshot volume the DB names in `pool` (what start-up reconciliation keeps)."""
    return {r[0] for r in db.execute(
        "SELECT s.volume FROM instances_snapshots s JOIN instances i ON i.id = s.instance_id "
        "WHERE i.storage_pool = ?", [pool]).fetchall()}


def set_volume(db: Database, snapshot_id: int, volume: str) -> None:
    """Point a snapshot row at another (complete) volume: part of a move's commit."""
    if db.execute("UPDATE instances_snapshots SET volume = ? WHERE id = ?",
                  [volume, snapshot_id]).rowcount == 0:
        raise NotFound(f"Snapshot {snapshot_id} not found")
