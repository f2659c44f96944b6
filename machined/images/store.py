"""The local image store: receive uploads, verify, unpack once into the default pool (and
into any other pool when an instance is first made there), record in the database; resolve
aliases and fingerprint prefixes; delete (from every pool)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from machined import crash
from machined.db import images as db_images
from machined.errors import BadRequest, Conflict, MachinedError, NotFound
from machined.state import State

if TYPE_CHECKING:
    from machined.images.format import ImageMetadata
    from machined.storage.base import Pool

log = logging.getLogger("machined.images")


@dataclass
class Upload:
    """Files received into tmp/, with the fingerprint computed while they streamed in."""
    meta: Path
    rootfs: Path | None
    fingerprint: str
    size: int


class HashingWriter:
    """Writes a stream to a file while hashing it (fingerprints need no second read)."""

    def __init__(self, path: Path, digest: hashlib._Hash | None = None) -> None:
        self.path = path
        self.digest = digest or hashlib.sha256()
        self.size = 0
        self._fh = open(path, "wb")  # noqa: SIM115 - closed in close()

    def write(self, chunk: bytes) -> None:
        self._fh.write(chunk)
        self.digest.update(chunk)
        self.size += len(chunk)

    def close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def resolve(state: State, name: str) -> db_images.ImageRecord:
    """An alias first, then a unique fingerprint prefix, as LXD does."""
    try:
        alias = db_images.get_alias(state.db, name)
        return db_images.get(state.db, alias["target"])
    except NotFound:
        pass
    try:
        return db_images.find_by_prefix(state.db, name)
    except NotFound:
        raise NotFound(f"Image {name!r} not found (no such alias or fingerprint)") from None


async def register(state: State, upload: Upload, *, public: bool,
                   extra_properties: dict[str, str] | None = None,
                   then: Callable[[db_images.ImageRecord], None] | None = None
                   ) -> db_images.ImageRecord:
    """Unpack and validate the upload into the default pool, then keep its files and record
    it. On any failure nothing of it remains: not the files, not the volume, not a row.
    `then(record)` runs in the row's transaction (aliases, flags, source: an image is never
    seen without them); if it raises, nothing of the image remains either."""
    fp = upload.fingerprint
    pool = state.storage.default
    crash.point("image.register.received")
    async with state.image_locks[fp]:
        if db_images.exists(state.db, fp):
            _discard(upload)
            raise Conflict(f"Image with same fingerprint already exists: {fp}")
        try:
            # A volume no row names is a leftover (say of a delete interrupted midway).
            if pool.image_volume_exists(fp) or pool.image_volume(fp).exists():
                await asyncio.to_thread(pool.delete_image_volume, fp)
            metadata = await asyncio.to_thread(_unpack_volume, pool, fp, upload.meta,
                                               upload.rootfs)
        except BaseException:
            _discard(upload)
            raise
        crash.point("image.register.volume")
        try:
            state.paths.images.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.rename(upload.meta, state.paths.images / fp)
            if upload.rootfs is not None:
                os.rename(upload.rootfs, state.paths.images / f"{fp}.rootfs")
            crash.point("image.register.files")
            properties = dict(metadata.properties)
            properties.update(extra_properties or {})
            record = db_images.ImageRecord(
                fingerprint=fp, size=upload.size, architecture=metadata.architecture,
                uploaded_at=now(), public=public, split=upload.rootfs is not None,
                properties=properties,
                created_at=datetime.fromtimestamp(metadata.creation_date, UTC)
                .isoformat().replace("+00:00", "Z"),
                filename=properties.get("description", fp[:12]))
            with state.db.atomic():
                db_images.create(state.db, record)
                if then is not None:
                    then(record)
        except BaseException:
            _discard(upload)
            delete_files(state, fp)
            raise
        log.info("Added image %s (%d bytes, %s)", fp[:12], upload.size, record.filename)
        return db_images.get(state.db, fp)


def _unpack_volume(pool: Pool, fp: str, meta: Path, rootfs: Path | None) -> ImageMetadata:
    """Make image volume `fp` in `pool` from the image files (blocking); its metadata.
    Invalid images raise BadRequest, and leave no volume."""
    from machined.images import format as image_format
    from machined.images import unpack

    found: list[ImageMetadata] = []

    def fill(volume: Path) -> None:
        # unpack wants a destination that does not exist; the volume does (on btrfs it is
        # a subvolume), so unpack below it and move the three entries up (same filesystem).
        staged = volume / ".unpacked"
        if rootfs is None:
            report = unpack.unpack_unified(meta, staged)
        else:
            report = unpack.unpack_split(meta, rootfs, staged)
        for entry in os.listdir(staged):
            os.rename(staged / entry, volume / entry)
        os.rmdir(staged)
        found.append(report.metadata)

    try:
        pool.create_image_volume(fp, fill)
    except image_format.ImageFormatError as e:
        raise BadRequest(f"Invalid image: {e}") from None
    return found[0]


def _discard(upload: Upload) -> None:
    for path in (upload.meta, upload.rootfs):
        if path is not None:
            path.unlink(missing_ok=True)


def remove_unregistered_files(state: State) -> list[str]:
    """At daemon start: image files no row names (a register interrupted between moving
    them into images/ and writing its row, or a delete between its row and its files)."""
    removed = []
    images = state.paths.images
    for entry in sorted(os.listdir(images)) if images.is_dir() else []:
        fp = entry.removesuffix(".rootfs")
        if len(fp) == 64 and all(c in "0123456789abcdef" for c in fp) \
                and not db_images.exists(state.db, fp):
            (images / entry).unlink(missing_ok=True)
            removed.append(f"images/{entry}")
    if removed:
        log.warning("Removed image files no image row names: %s", ", ".join(removed))
    return removed


def delete_files(state: State, fp: str) -> None:
    """The kept files, and the image's volume (with its spares) in every available pool
    (blocking, no database access: callers run it in a thread). A pool unavailable now keeps
    its copy until the next start that finds it (no row names it then)."""
    for path in (state.paths.images / fp, state.paths.images / f"{fp}.rootfs"):
        path.unlink(missing_ok=True)
    for pool in state.storage.available():
        try:
            pool.delete_image_volume(fp)
        except (MachinedError, OSError) as e:
            log.warning("Image %s: its volume in pool %s stays until the next start: %s",
                        fp[:12], pool.name, getattr(e, "message", e))


async def ensure_volume(state: State, pool: Pool, record: db_images.ImageRecord) -> None:
    """Unpack image `record` into `pool` from the kept files if that pool has no volume of
    it yet (first instance there) or it went missing."""
    fp = record.fingerprint
    async with state.image_locks[fp]:
        if pool.image_volume_exists(fp):
            return
        if pool.image_volume(fp).exists():  # incomplete: a leftover
            await asyncio.to_thread(pool.delete_image_volume, fp)
        meta = state.paths.images / fp
        rootfs = state.paths.images / f"{fp}.rootfs" if record.split else None
        await asyncio.to_thread(_unpack_volume, pool, fp, meta, rootfs)
