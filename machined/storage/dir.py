"""The `dir` pool: image volumes unpacked once, containers as full copies of them.
Copies go to a temporary name on the same filesystem and are renamed into place, so an
interrupted copy never looks like a finished one."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from machined.errors import Conflict, NotFound
from machined.paths import Paths
from machined.runtime import rootfs as inroot
from machined.sys.run import CommandError, run, run_async


class DirPool:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    @property
    def spares(self) -> Path:
        """Complete copies of image volumes made ahead of time: a launch renames one into
        place instead of copying on its critical path. Each is a full, independent copy."""
        return self.paths.pool / "spares"

    def prepare(self) -> None:
        for d in (self.paths.pool / "images", self.paths.pool / "containers", self.paths.tmp,
                  self.spares):
            d.mkdir(parents=True, exist_ok=True, mode=0o711)
        self.remove_leftovers()

    def remove_leftovers(self) -> None:
        """Half-made copies from an interrupted daemon live only in tmp/."""
        for entry in self.paths.tmp.iterdir():
            remove_tree(entry)

    def temp_path(self, label: str) -> Path:
        return self.paths.tmp / f"{label}.{uuid.uuid4().hex[:8]}"

    def image_volume_exists(self, fingerprint: str) -> bool:
        return (self.paths.image_volume(fingerprint) / "rootfs").is_dir()

    def create_from_image(self, fingerprint: str, name: str) -> Path:
        source = self.paths.image_volume(fingerprint)
        if not (source / "rootfs").is_dir():
            raise NotFound(f"Image volume {fingerprint} is missing")
        target = self.paths.container(name)
        if target.exists():
            raise Conflict(f"Storage volume for instance {name!r} already exists")
        if not self._take_spare(fingerprint, target):
            tmp = self.temp_path(f"container-{name}")
            copy_tree(source, tmp)
            os.rename(tmp, target)
        return target

    def _take_spare(self, fingerprint: str, target: Path) -> bool:
        for spare in sorted(self.spares.glob(f"{fingerprint}.*")):
            try:
                os.rename(spare, target)
                return True
            except OSError:
                continue  # taken by a concurrent create
        return False

    async def make_spare(self, fingerprint: str) -> None:
        """Copy the image volume into spares/ (via tmp/, renamed when complete). Async so
        that a stopping daemon cancels it (killing cp) instead of waiting for it."""
        source = self.paths.image_volume(fingerprint)
        if any(self.spares.glob(f"{fingerprint}.*")) or not (source / "rootfs").is_dir():
            return
        tmp = self.temp_path(f"spare-{fingerprint[:12]}")
        try:
            await run_async(["cp", "-a", "--reflink=auto", "--no-target-directory",
                             os.fspath(source), os.fspath(tmp)])
            # Written back before it counts as ready: a launch that takes it must not boot
            # behind this copy's dirty pages, and a crash must not leave a spare with holes.
            await run_async(["sync", "--file-system", os.fspath(tmp)])
        except BaseException:
            remove_tree(tmp)
            raise
        os.rename(tmp, self.spares / f"{fingerprint}.{uuid.uuid4().hex[:8]}")

    def rename(self, old: str, new: str) -> None:
        os.rename(self.paths.container(old), self.paths.container(new))

    def delete(self, name: str) -> None:
        path = self.paths.container(name)
        if not path.exists():
            return
        # Rename first: the volume disappears atomically even if removal is interrupted.
        trash = self.temp_path(f"deleted-{name}")
        os.rename(path, trash)
        remove_tree(trash)

    def delete_spares(self, fingerprint: str) -> None:
        for spare in self.spares.glob(f"{fingerprint}.*"):
            trash = self.temp_path("deleted-spare")
            os.rename(spare, trash)
            remove_tree(trash)

    def delete_image_volume(self, fingerprint: str) -> None:
        self.delete_spares(fingerprint)
        path = self.paths.image_volume(fingerprint)
        if path.exists():
            trash = self.temp_path(f"deleted-image-{fingerprint[:12]}")
            os.rename(path, trash)
            remove_tree(trash)


def copy_tree(source: Path, target: Path) -> None:
    """A full, faithful copy: owners, modes, xattrs, hard links, special files. coreutils cp
    reflinks where the filesystem can and uses copy_file_range otherwise."""
    try:
        run(["cp", "-a", "--reflink=auto", "--no-target-directory", os.fspath(source),
             os.fspath(target)])
    except CommandError:
        remove_tree(target)
        raise


def remove_tree(path: Path) -> None:
    """Works on directory fds, never follows symlinks inside the tree, and removes a tree of
    any depth (not shutil.rmtree: it recurses, and a container can nest directories deeper
    than Python's recursion limit, which made the instance undeletable and, once in tmp/,
    stopped the daemon from starting)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        parent = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            inroot.remove_tree_at(parent, path.name)
        finally:
            os.close(parent)
