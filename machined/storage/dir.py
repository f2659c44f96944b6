"""The `dir` pool: image volumes unpacked once, containers as full copies of them.
Copies go to a temporary name on the same filesystem and are renamed into place, so an
interrupted copy never looks like a finished one."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from machined.errors import Conflict, NotFound
from machined.paths import Paths
from machined.sys.run import CommandError, run


class DirPool:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    def prepare(self) -> None:
        for d in (self.paths.pool / "images", self.paths.pool / "containers", self.paths.tmp):
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
        tmp = self.temp_path(f"container-{name}")
        copy_tree(source, tmp)
        os.rename(tmp, target)
        return target

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

    def delete_image_volume(self, fingerprint: str) -> None:
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
    """shutil.rmtree works on directory fds and does not follow symlinks inside the tree."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
