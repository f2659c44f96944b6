"""Warnings (LXD's /1.0/warnings): one row per (type, entity); a repeat bumps its count and
last message. Raises NotFound, never HTTP."""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass

from sqlite_utils import Database

from machined import clock
from machined.errors import NotFound

STATUSES = ("new", "acknowledged")
SEVERITIES = ("low", "moderate", "high")


@dataclass
class WarningRecord:
    uuid: str
    type: str
    entity_url: str
    status: str
    severity: str
    count: int
    first_seen_at: str
    last_seen_at: str
    last_message: str

    def to_api(self) -> dict[str, object]:
        return {"uuid": self.uuid, "type": self.type, "entity_url": self.entity_url,
                "project": "default", "location": "none", "status": self.status,
                "severity": self.severity, "count": self.count,
                "first_seen_at": self.first_seen_at, "last_seen_at": self.last_seen_at,
                "last_message": self.last_message}


_COLUMNS = ("uuid, type, entity_url, status, severity, count, first_seen_at, last_seen_at, "
            "last_message")


def list_all(db: Database, entity_url: str | None = None) -> list[WarningRecord]:
    if entity_url is None:
        rows = db.execute(f"SELECT {_COLUMNS} FROM warnings ORDER BY id").fetchall()
    else:
        rows = db.execute(f"SELECT {_COLUMNS} FROM warnings WHERE entity_url = ? ORDER BY id",
                          [entity_url]).fetchall()
    return [WarningRecord(*row) for row in rows]


def get(db: Database, uuid: str) -> WarningRecord:
    row = db.execute(f"SELECT {_COLUMNS} FROM warnings WHERE uuid = ?", [uuid]).fetchone()
    if row is None:
        raise NotFound(f"Warning {uuid!r} not found")
    return WarningRecord(*row)


def upsert(db: Database, type: str, entity_url: str, message: str,
           severity: str = "low") -> WarningRecord:
    """Record a warning, or count a repeat of the same type for the same entity (a repeat
    of an acknowledged one makes it new again, as LXD)."""
    now = clock.now_iso()
    with db.atomic():
        found = db.execute("SELECT uuid FROM warnings WHERE type = ? AND entity_url = ?",
                           [type, entity_url]).fetchone()
        if found is None:
            db.execute(
                "INSERT INTO warnings (uuid, type, entity_url, status, severity, count, "
                "first_seen_at, last_seen_at, last_message) VALUES (?, ?, ?, 'new', ?, 1, ?, "
                "?, ?)", [str(uuidlib.uuid4()), type, entity_url, severity, now, now, message])
        else:
            db.execute("UPDATE warnings SET count = count + 1, last_seen_at = ?, "
                       "last_message = ?, severity = ?, status = 'new' WHERE uuid = ?",
                       [now, message, severity, found[0]])
    row = db.execute("SELECT uuid FROM warnings WHERE type = ? AND entity_url = ?",
                     [type, entity_url]).fetchone()
    return get(db, row[0])


def set_status(db: Database, uuid: str, status: str) -> None:
    if db.execute("UPDATE warnings SET status = ? WHERE uuid = ?",
                  [status, uuid]).rowcount == 0:
        raise NotFound(f"Warning {uuid!r} not found")


def resolve(db: Database, type: str, entity_url: str) -> None:
    """The condition is over (say the instance started at last): its warning goes."""
    db.execute("DELETE FROM warnings WHERE type = ? AND entity_url = ?", [type, entity_url])


def delete(db: Database, uuid: str) -> None:
    if db.execute("DELETE FROM warnings WHERE uuid = ?", [uuid]).rowcount == 0:
        raise NotFound(f"Warning {uuid!r} not found")


def forget_entity(db: Database, entity_url: str) -> None:
    """The entity is gone (an instance deleted): so are its warnings."""
    db.execute("DELETE FROM warnings WHERE entity_url = ?", [entity_url])


def move_entity(db: Database, old: str, new: str) -> None:
    """The entity was renamed: its warnings follow it."""
    db.execute("UPDATE warnings SET entity_url = ? WHERE entity_url = ?", [new, old])
