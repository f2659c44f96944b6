"""Images and image aliases."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlite_utils import Database

from machined.errors import BadRequest, Conflict, NotFound

_COLS = ("id, fingerprint, filename, size, public, architecture, type, split, auto_update, "
         "cached, properties, created_at, uploaded_at, last_used_at, expires_at")


@dataclass
class ImageRecord:
    fingerprint: str
    size: int
    architecture: str
    uploaded_at: str
    filename: str = ""
    public: bool = False
    type: str = "container"
    split: bool = False
    auto_update: bool = False
    cached: bool = False
    properties: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    last_used_at: str = ""
    expires_at: str = ""
    aliases: list[dict[str, str]] = field(default_factory=list)
    id: int = 0


def _record(db: Database, row: tuple) -> ImageRecord:  # type: ignore[type-arg]
    rec = ImageRecord(id=row[0], fingerprint=row[1], filename=row[2], size=row[3],
                      public=bool(row[4]), architecture=row[5], type=row[6], split=bool(row[7]),
                      auto_update=bool(row[8]), cached=bool(row[9]),
                      properties=json.loads(row[10]), created_at=row[11], uploaded_at=row[12],
                      last_used_at=row[13], expires_at=row[14])
    rec.aliases = [{"name": n, "description": d} for n, d in db.execute(
        "SELECT name, description FROM images_aliases WHERE image_id = ? ORDER BY name",
        [rec.id]).fetchall()]
    return rec


def list_all(db: Database) -> list[ImageRecord]:
    rows = db.execute(f"SELECT {_COLS} FROM images ORDER BY uploaded_at").fetchall()
    return [_record(db, r) for r in rows]


def get(db: Database, fingerprint: str) -> ImageRecord:
    row = db.execute(f"SELECT {_COLS} FROM images WHERE fingerprint = ?",
                     [fingerprint]).fetchone()
    if row is None:
        raise NotFound(f"Image {fingerprint!r} not found")
    return _record(db, row)


def find_by_prefix(db: Database, prefix: str) -> ImageRecord:
    """A unique fingerprint prefix, as LXD accepts."""
    if not prefix or any(c not in "0123456789abcdef" for c in prefix):
        raise NotFound(f"Image {prefix!r} not found")
    rows = db.execute(f"SELECT {_COLS} FROM images WHERE fingerprint LIKE ?",
                      [prefix + "%"]).fetchall()
    if not rows:
        raise NotFound(f"Image {prefix!r} not found")
    if len(rows) > 1:
        raise BadRequest(f"Image fingerprint prefix {prefix!r} matches more than one image")
    return _record(db, rows[0])


def exists(db: Database, fingerprint: str) -> bool:
    return db.execute("SELECT 1 FROM images WHERE fingerprint = ?",
                      [fingerprint]).fetchone() is not None


def create(db: Database, rec: ImageRecord) -> None:
    with db.atomic():
        if exists(db, rec.fingerprint):
            raise Conflict(f"Image with fingerprint {rec.fingerprint} already exists")
        db.execute(
            "INSERT INTO images (fingerprint, filename, size, public, architecture, type, split,"
            " auto_update, cached, properties, created_at, uploaded_at, last_used_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [rec.fingerprint, rec.filename, rec.size, int(rec.public), rec.architecture,
             rec.type, int(rec.split), int(rec.auto_update), int(rec.cached),
             json.dumps(rec.properties, sort_keys=True), rec.created_at, rec.uploaded_at,
             rec.last_used_at, rec.expires_at])


def update(db: Database, rec: ImageRecord) -> None:
    db.execute("UPDATE images SET public = ?, auto_update = ?, properties = ?, expires_at = ?, "
               "last_used_at = ? WHERE fingerprint = ?",
               [int(rec.public), int(rec.auto_update), json.dumps(rec.properties, sort_keys=True),
                rec.expires_at, rec.last_used_at, rec.fingerprint])


def delete(db: Database, fingerprint: str) -> None:
    if db.execute("DELETE FROM images WHERE fingerprint = ?", [fingerprint]).rowcount == 0:
        raise NotFound(f"Image {fingerprint!r} not found")


# Aliases

def alias_names(db: Database) -> list[str]:
    return [r[0] for r in db.execute("SELECT name FROM images_aliases ORDER BY name").fetchall()]


def get_alias(db: Database, name: str) -> dict[str, str]:
    row = db.execute(
        "SELECT a.name, a.description, i.fingerprint, i.type FROM images_aliases a "
        "JOIN images i ON i.id = a.image_id WHERE a.name = ?", [name]).fetchone()
    if row is None:
        raise NotFound(f"Image alias {name!r} not found")
    return {"name": row[0], "description": row[1], "target": row[2], "type": row[3]}


def create_alias(db: Database, name: str, fingerprint: str, description: str = "") -> None:
    with db.atomic():
        if db.execute("SELECT 1 FROM images_aliases WHERE name = ?", [name]).fetchone():
            raise Conflict(f"Alias {name!r} already exists")
        row = db.execute("SELECT id FROM images WHERE fingerprint = ?", [fingerprint]).fetchone()
        if row is None:
            raise NotFound(f"Image {fingerprint!r} not found")
        db.execute("INSERT INTO images_aliases (name, image_id, description) VALUES (?, ?, ?)",
                   [name, row[0], description])


def update_alias(db: Database, name: str, fingerprint: str, description: str) -> None:
    with db.atomic():
        row = db.execute("SELECT id FROM images WHERE fingerprint = ?", [fingerprint]).fetchone()
        if row is None:
            raise NotFound(f"Image {fingerprint!r} not found")
        if db.execute("UPDATE images_aliases SET image_id = ?, description = ? WHERE name = ?",
                      [row[0], description, name]).rowcount == 0:
            raise NotFound(f"Image alias {name!r} not found")


def rename_alias(db: Database, old: str, new: str) -> None:
    with db.atomic():
        if db.execute("SELECT 1 FROM images_aliases WHERE name = ?", [new]).fetchone():
            raise Conflict(f"Alias {new!r} already exists")
        if db.execute("UPDATE images_aliases SET name = ? WHERE name = ?",
                      [new, old]).rowcount == 0:
            raise NotFound(f"Image alias {old!r} not found")


def delete_alias(db: Database, name: str) -> None:
    if db.execute("DELETE FROM images_aliases WHERE name = ?", [name]).rowcount == 0:
        raise NotFound(f"Image alias {name!r} not found")
