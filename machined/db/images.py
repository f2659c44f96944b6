"""Images and image aliases."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlite_utils import Database

from machined.errors import BadRequest, Conflict, NotFound

_COLS = ("id, fingerprint, filename, size, public, architecture, type, split, auto_update, "
         "cached, properties, created_at, uploaded_at, last_used_at, expires_at, "
         "last_update_check")
_ICOLS = ", ".join(f"i.{c.strip()}" for c in _COLS.split(","))  # for joins (alias i)
_SOURCE_KEYS = ("server", "protocol", "alias", "certificate", "image_type")


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
    # Where a downloaded image came from ({server, protocol, alias, certificate, image_type}),
    # None for imported/published images. Written by set_source/record_download only.
    source: dict[str, str] | None = None
    last_update_check: str = ""  # ISO time of the last auto-update check ('' = never)


def _record(db: Database, row: tuple) -> ImageRecord:  # type: ignore[type-arg]
    rec = ImageRecord(id=row[0], fingerprint=row[1], filename=row[2], size=row[3],
                      public=bool(row[4]), architecture=row[5], type=row[6], split=bool(row[7]),
                      auto_update=bool(row[8]), cached=bool(row[9]),
                      properties=json.loads(row[10]), created_at=row[11], uploaded_at=row[12],
                      last_used_at=row[13], expires_at=row[14], last_update_check=row[15])
    rec.source = _source(db, rec.id)
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


# Remote images: source rows, update checks, cached and auto-updating images

def _source(db: Database, image_id: int) -> dict[str, str] | None:
    row = db.execute(f"SELECT {', '.join(_SOURCE_KEYS)} FROM images_source WHERE image_id = ?",
                     [image_id]).fetchone()
    return None if row is None else dict(zip(_SOURCE_KEYS, row, strict=True))


def _image_id(db: Database, fingerprint: str) -> int:
    row = db.execute("SELECT id FROM images WHERE fingerprint = ?", [fingerprint]).fetchone()
    if row is None:
        raise NotFound(f"Image {fingerprint!r} not found")
    return int(row[0])


def get_source(db: Database, fingerprint: str) -> dict[str, str] | None:
    return _source(db, _image_id(db, fingerprint))


def set_source(db: Database, fingerprint: str, source: dict[str, str] | None) -> None:
    """Record (replace) or, with None, forget where an image came from."""
    with db.atomic():
        image_id = _image_id(db, fingerprint)
        db.execute("DELETE FROM images_source WHERE image_id = ?", [image_id])
        if source is not None:
            db.execute(
                "INSERT INTO images_source (image_id, server, protocol, alias, certificate, "
                "image_type) VALUES (?, ?, ?, ?, ?, ?)",
                [image_id, *(str(source.get(k) or "") for k in _SOURCE_KEYS[:4]),
                 str(source.get("image_type") or "container")])


def set_update_check(db: Database, fingerprint: str, when: str) -> None:
    if db.execute("UPDATE images SET last_update_check = ? WHERE fingerprint = ?",
                  [when, fingerprint]).rowcount == 0:
        raise NotFound(f"Image {fingerprint!r} not found")


def record_download(db: Database, fingerprint: str, *, cached: bool, auto_update: bool,
                    last_used_at: str, last_update_check: str,
                    source: dict[str, str] | None) -> None:
    """The flags and source of an image just downloaded from a remote, in one transaction
    (the image row itself was written by images.store.register)."""
    with db.atomic():
        if db.execute("UPDATE images SET cached = ?, auto_update = ?, last_used_at = ?, "
                      "last_update_check = ? WHERE fingerprint = ?",
                      [int(cached), int(auto_update), last_used_at, last_update_check,
                       fingerprint]).rowcount == 0:
            raise NotFound(f"Image {fingerprint!r} not found")
        set_source(db, fingerprint, source)


def set_flags(db: Database, fingerprint: str, *, cached: bool | None = None,
              auto_update: bool | None = None, public: bool | None = None) -> None:
    """Change some of an image's flags (None = leave as is)."""
    for column, value in (("cached", cached), ("auto_update", auto_update),
                          ("public", public)):
        if value is not None:
            db.execute(f"UPDATE images SET {column} = ? WHERE fingerprint = ?",
                       [int(value), fingerprint])


def list_auto_update(db: Database) -> list[ImageRecord]:
    """Images with auto_update set that know where they came from (by alias)."""
    rows = db.execute(
        f"SELECT {_ICOLS} FROM images i "
        "JOIN images_source s ON s.image_id = i.id WHERE i.auto_update = 1 AND s.alias != '' "
        "ORDER BY i.uploaded_at").fetchall()
    return [_record(db, r) for r in rows]


def list_cached(db: Database) -> list[ImageRecord]:
    rows = db.execute(f"SELECT {_COLS} FROM images WHERE cached = 1 ORDER BY uploaded_at"
                      ).fetchall()
    return [_record(db, r) for r in rows]


def find_cached(db: Database, server: str, protocol: str, alias: str,
                image_type: str = "container", *,
                certificate: str | None = None) -> ImageRecord | None:
    """The newest cached image downloaded by this alias from this server (prefer-cached);
    with `certificate`, only one that was downloaded trusting that same certificate."""
    row = db.execute(
        f"SELECT {_ICOLS} FROM images i "
        "JOIN images_source s ON s.image_id = i.id WHERE i.cached = 1 AND s.server = ? AND "
        "s.protocol = ? AND s.alias = ? AND s.image_type = ? "
        "AND (? IS NULL OR s.certificate = ?) "
        "ORDER BY i.uploaded_at DESC LIMIT 1",
        [server, protocol, alias, image_type, certificate, certificate]).fetchone()
    return None if row is None else _record(db, row)


def move_aliases(db: Database, old: str, new: str) -> int:
    """Point every alias of image `old` at image `new` (one transaction); returns how many."""
    with db.atomic():
        old_id, new_id = _image_id(db, old), _image_id(db, new)
        return int(db.execute("UPDATE images_aliases SET image_id = ? WHERE image_id = ?",
                              [new_id, old_id]).rowcount)
