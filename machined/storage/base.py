"""What every storage driver offers (the contract instances/, images/ and snapshots use).

A pool keeps three kinds of volumes below its `root`: image volumes (`images/<fp>`: an image
unpacked once, read-only in use), instance volumes (`containers/<volume>`) and snapshot
volumes (`snapshots/<volume>`). Instance and snapshot volumes are named once, when made
(storage.model.new_volume_name), and never renamed: the database row that names a volume is
what makes it live, so every change is "make the new volume completely (in tmp/, synced),
rename it into place, then commit the row", and a volume no row names is a leftover that
the daemon removes at start.
"""

from __future__ import annotations

import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from machined.errors import Conflict
from machined.storage import model

VolumeKind = Literal["containers", "snapshots"]
KINDS: tuple[VolumeKind, ...] = ("containers", "snapshots")


class Pool(ABC):
    name: str
    driver: str  # "dir" | "btrfs"
    config: dict[str, str]
    root: Path  # where images/, containers/, snapshots/, tmp/ live
    tmp: Path  # scratch space on the volumes' filesystem (the default pool's is $MACHINED_DIR/tmp)
    # True when copy_volume of a live volume is a point-in-time copy (btrfs snapshots): a
    # running container then needs no freezing while it is snapshotted or copied.
    atomic_snapshots: bool = False

    @abstractmethod
    def prepare(self) -> None:
        """Make the layout if missing and empty tmp/ (an interrupted copy lives only there)."""

    def temp_path(self, label: str) -> Path:
        """A fresh name in this pool's tmp/ (same filesystem as the volumes: renames are
        atomic)."""
        return self.tmp / f"{label}.{uuid.uuid4().hex[:8]}"

    # Image volumes

    def image_volume(self, fingerprint: str) -> Path:
        return self.root / "images" / model.check_volume_name(fingerprint)

    def image_volume_exists(self, fingerprint: str) -> bool:
        return (self.image_volume(fingerprint) / "rootfs").is_dir()

    @abstractmethod
    def create_image_volume(self, fingerprint: str, fill: Callable[[Path], None]) -> Path:
        """Make an empty directory (btrfs: subvolume) in tmp/, call fill(dir) to put
        metadata.yaml, rootfs/ and templates/ in it, sync, make it read-only where the
        driver can, rename it to images/<fp>. Anything failing removes the temporary volume.
        Blocking: callers run it in a thread."""

    @abstractmethod
    def delete_image_volume(self, fingerprint: str) -> None:
        """Also drops spare copies made from it. Missing is fine."""

    # Instance and snapshot volumes

    def volume_path(self, kind: VolumeKind, volume: str) -> Path:
        """Names come from the DB, which a bug could fill with anything: one safe component."""
        if kind not in KINDS:
            raise ValueError(f"unknown volume kind {kind!r}")
        return self.root / kind / model.check_volume_name(volume)

    def volumes(self, kind: VolumeKind) -> list[str]:
        """Names present on disk (start-up reconciliation compares them with the DB)."""
        try:
            return sorted(os.listdir(self.root / kind))
        except FileNotFoundError:
            return []

    @abstractmethod
    async def create_from_image(self, fingerprint: str, volume: str) -> Path:
        """A new instance volume `containers/<volume>` holding a full, independent copy of
        the image volume (dir: a spare renamed in, or a copy; btrfs: a writable subvolume
        snapshot). The image volume must exist."""

    @abstractmethod
    async def copy_volume(self, source: Path, kind: VolumeKind, volume: str, *,
                          readonly: bool = False) -> Path:
        """A full, independent copy of the volume directory `source` (of this pool or
        another) as <kind>/<volume>: made in tmp/, synced, renamed into place. btrfs with a
        source in the same pool: a subvolume snapshot (read-only when `readonly`). Cancelling
        the task (daemon stop) or killing the daemon leaves only tmp/ to clean. A failing
        tool (cp: a full disk...) raises sys.run.CommandError and leaves no volume; an
        existing <kind>/<volume> raises Conflict."""

    @abstractmethod
    async def delete_volume(self, kind: VolumeKind, volume: str) -> None:
        """Gone atomically first (renamed into tmp/; a read-only btrfs subvolume, which
        cannot move, is deleted in place, also atomic), then removed. Missing is fine."""

    @abstractmethod
    def delete_volume_blocking(self, kind: VolumeKind, volume: str) -> None:
        """delete_volume for start-up reconciliation (before the event loop serves)."""

    # Spare copies (dir pools without reflinks); no-ops where volumes are instant

    async def make_spare(self, fingerprint: str) -> None:
        return None

    def delete_spares(self, fingerprint: str) -> None:
        return None

    def resources(self) -> dict[str, dict[str, int]]:
        """{"space": {"used": bytes, "total": bytes}} of the pool's filesystem."""
        st = os.statvfs(self.root)
        total = st.f_blocks * st.f_frsize
        return {"space": {"used": total - st.f_bfree * st.f_frsize, "total": total}}

    def _free_target(self, kind: VolumeKind, volume: str) -> Path:
        """Where a new volume goes; refused if anything (even a dangling link) is there."""
        target = self.volume_path(kind, volume)
        if os.path.lexists(target):
            raise Conflict(f"Storage volume {kind}/{volume} already exists in pool "
                           f"{self.name!r}")
        return target
