"""The local image store: receive uploads, verify, unpack once into the pool, record in the
database; resolve aliases and fingerprint prefixes; delete."""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from machined.db import images as db_images
from machined.errors import BadRequest, Conflict, NotFound
from machined.state import State
from machined.storage.dir import DirPool, remove_tree


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


async def register(state: State, pool: DirPool, upload: Upload, *, public: bool,
                   extra_properties: dict[str, str] | None = None) -> db_images.ImageRecord:
    """Unpack and validate the upload, then keep its files and record it. On any failure
    nothing of it remains: not the files, not the volume, not a row."""
    from machined.images import format as image_format
    from machined.images import unpack

    fp = upload.fingerprint
    async with state.image_locks[fp]:
        if db_images.exists(state.db, fp):
            _discard(upload)
            raise Conflict(f"Image with same fingerprint already exists: {fp}")
        volume_tmp = pool.temp_path(f"image-{fp[:12]}")
        try:
            if upload.rootfs is None:
                await asyncio.to_thread(unpack.unpack_unified, upload.meta, volume_tmp)
            else:
                await asyncio.to_thread(unpack.unpack_split, upload.meta, upload.rootfs,
                                        volume_tmp)
            metadata = image_format.load_metadata(volume_tmp / "metadata.yaml")
        except image_format.ImageFormatError as e:
            remove_tree(volume_tmp)
            _discard(upload)
            raise BadRequest(f"Invalid image: {e}") from None
        except BaseException:
            remove_tree(volume_tmp)
            _discard(upload)
            raise
        state.paths.images.mkdir(parents=True, exist_ok=True, mode=0o700)
        image_file = state.paths.images / fp
        os.rename(upload.meta, image_file)
        if upload.rootfs is not None:
            os.rename(upload.rootfs, state.paths.images / f"{fp}.rootfs")
        volume = state.paths.image_volume(fp)
        if volume.exists():
            remove_tree(volume)
        os.rename(volume_tmp, volume)
        properties = dict(metadata.properties)
        properties.update(extra_properties or {})
        record = db_images.ImageRecord(
            fingerprint=fp, size=upload.size, architecture=metadata.architecture,
            uploaded_at=now(), public=public, split=upload.rootfs is not None,
            properties=properties,
            created_at=datetime.fromtimestamp(metadata.creation_date, UTC)
            .isoformat().replace("+00:00", "Z"),
            filename=properties.get("description", fp[:12]))
        try:
            db_images.create(state.db, record)
        except BaseException:
            delete_files(state, pool, fp)
            raise
        return db_images.get(state.db, fp)


def _discard(upload: Upload) -> None:
    for path in (upload.meta, upload.rootfs):
        if path is not None:
            path.unlink(missing_ok=True)


def delete_files(state: State, pool: DirPool, fp: str) -> None:
    for path in (state.paths.images / fp, state.paths.images / f"{fp}.rootfs"):
        path.unlink(missing_ok=True)
    pool.delete_image_volume(fp)


async def ensure_volume(state: State, pool: DirPool, record: db_images.ImageRecord) -> None:
    """Re-unpack an image volume from the kept files if it went missing."""
    from machined.images import unpack

    fp = record.fingerprint
    async with state.image_locks[fp]:
        if pool.image_volume_exists(fp):
            return
        tmp = pool.temp_path(f"image-{fp[:12]}")
        meta = state.paths.images / fp
        if record.split:
            await asyncio.to_thread(unpack.unpack_split, meta,
                                    state.paths.images / f"{fp}.rootfs", tmp)
        else:
            await asyncio.to_thread(unpack.unpack_unified, meta, tmp)
        os.rename(tmp, state.paths.image_volume(fp))
