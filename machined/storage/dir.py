"""The `dir` pool: image volumes unpacked once, instance and snapshot volumes as full copies.

Copies go to a temporary name in tmp/ (same filesystem), are synced, and are renamed into
place, so an interrupted copy never looks like a finished one. Spare copies of image volumes
made ahead of time take the copy off a launch's critical path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from machined.errors import NotFound
from machined.storage.base import KINDS, Pool, VolumeKind
from machined.storage.copy import (
    copy_tree,
    fsync_dir,
    remove_tree,
    remove_tree_async,
    sync_filesystem_blocking,
)

__all__ = ["DirPool", "remove_tree"]

log = logging.getLogger(__name__)



class DirPool(Pool):
    driver = "dir"

    def __init__(self, name: str, root: Path, tmp: Path, config: dict[str, str]) -> None:
        self.name = name
        self.root = root
        self.tmp = tmp
        self.config = config

    @property
    def spares(self) -> Path:
        """Complete copies of image volumes made ahead of time: a launch renames one into
        place instead of copying on its critical path. Each is a full, independent copy."""
        return self.root / "spares"

    def prepare(self) -> None:
        for d in (self.root, self.root / "images", *(self.root / k for k in KINDS), self.tmp,
                  self.spares):
            d.mkdir(parents=True, exist_ok=True, mode=0o711)
        self.remove_leftovers()

    def remove_leftovers(self) -> None:
        """Half-made copies from an interrupted daemon live only in tmp/."""
        for entry in sorted(self.tmp.iterdir()):
            try:
                remove_tree(entry)
            except OSError as e:  # a pool stays usable; logged each start
                log.error("Could not remove %s from pool %s: %s", entry, self.name, e)

    # Image volumes

    def create_image_volume(self, fingerprint: str, fill: Callable[[Path], None]) -> Path:
        target = self.image_volume(fingerprint)
        tmp = self.temp_path(f"image-{fingerprint[:12]}")
        tmp.mkdir(mode=0o700)
        try:
            fill(tmp)
            sync_filesystem_blocking(tmp)
            self._discard(target, "replaced-image")
            os.rename(tmp, target)
        except BaseException:
            remove_tree(tmp)
            raise
        fsync_dir(target.parent)
        return target

    def delete_image_volume(self, fingerprint: str) -> None:
        self.delete_spares(fingerprint)
        self._discard(self.image_volume(fingerprint), f"deleted-image-{fingerprint[:12]}")

    # Instance and snapshot volumes

    async def create_from_image(self, fingerprint: str, volume: str) -> Path:
        source = self.image_volume(fingerprint)
        if not (source / "rootfs").is_dir():
            raise NotFound(f"Image volume {fingerprint} is missing in pool {self.name!r}")
        target = self._free_target("containers", volume)
        if not self._take_spare(fingerprint, target):
            await self._copy_into_place(source, target)
        return target

    async def copy_volume(self, source: Path, kind: VolumeKind, volume: str, *,
                          readonly: bool = False) -> Path:
        """`readonly` cannot be enforced on a plain directory; snapshot volumes of a dir
        pool are only ever read (and copied)."""
        target = self._free_target(kind, volume)
        await self._copy_into_place(source, target)
        return target

    async def delete_volume(self, kind: VolumeKind, volume: str) -> None:
        trash = self._to_trash(self.volume_path(kind, volume), f"deleted-{volume}")
        if trash is not None:
            await remove_tree_async(trash)

    def delete_volume_blocking(self, kind: VolumeKind, volume: str) -> None:
        """For start-up reconciliation, before the event loop serves."""
        self._discard(self.volume_path(kind, volume), f"deleted-{volume}")

    # Spares

    def _take_spare(self, fingerprint: str, target: Path) -> bool:
        for spare in sorted(self.spares.glob(f"{fingerprint}.*")):
            try:
                os.rename(spare, target)
            except OSError:
                continue  # taken by a concurrent create
            fsync_dir(target.parent)
            return True
        return False

    async def make_spare(self, fingerprint: str) -> None:
        """Copy the image volume into spares/ (via tmp/, renamed when complete). Async so
        that a stopping daemon cancels it (killing cp) instead of waiting for it."""
        source = self.image_volume(fingerprint)
        if any(self.spares.glob(f"{fingerprint}.*")) or not (source / "rootfs").is_dir():
            return
        await self._copy_into_place(source,
                                    self.spares / f"{fingerprint}.{uuid.uuid4().hex[:8]}")

    def delete_spares(self, fingerprint: str) -> None:
        for spare in self.spares.glob(f"{fingerprint}.*"):
            self._discard(spare, "deleted-spare")

    # Helpers

    async def _copy_into_place(self, source: Path, target: Path) -> None:
        tmp = self.temp_path(f"copy-{target.name[:40]}")
        try:
            await copy_tree(source, tmp)
        except asyncio.CancelledError:
            raise  # a stopping daemon: cp is dead, tmp/ is emptied at the next start
        except BaseException:
            await remove_tree_async(tmp)
            raise
        os.rename(tmp, target)
        fsync_dir(target.parent)

    def _to_trash(self, path: Path, label: str) -> Path | None:
        """Rename into tmp/ first: the volume disappears atomically even if its removal is
        interrupted (tmp/ is emptied at the next start)."""
        if not os.path.lexists(path):
            return None
        trash = self.temp_path(label[:60])
        os.rename(path, trash)
        return trash

    def _discard(self, path: Path, label: str) -> None:
        trash = self._to_trash(path, label)
        if trash is not None:
            remove_tree(trash)
