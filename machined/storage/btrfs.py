"""The `btrfs` pool: every volume is a subvolume, so copies within the pool are snapshots.

An image volume is a read-only subvolume; an instance volume is a writable snapshot of it; a
snapshot volume is a read-only snapshot of the instance volume (point in time, no freezing
needed); a copy from elsewhere is a new subvolume filled by cp. Each is independent of the
others (btrfs shares extents copy-on-write; deleting one never touches another).

Where a pool lives (`source`): a sparse loop file machined makes and formats
($MACHINED_DIR/disks/<pool>.img, `size=`), a block device (formatted only if it holds no
filesystem), both mounted at $MACHINED_DIR/storage-pools/<pool> in the daemon's own mount
namespace (runtime/mounts.py); or a directory on a btrfs filesystem that is already mounted,
used in place. The `btrfs` tool (btrfs-progs) does the subvolume work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from machined.errors import BadRequest, NotFound
from machined.runtime import mounts
from machined.storage import model
from machined.storage.base import KINDS, Pool, VolumeKind
from machined.storage.copy import (
    copy_tree,
    fsync_dir,
    remove_tree,
    sync_filesystem_blocking,
)
from machined.sys.run import CommandError, run, run_async

log = logging.getLogger(__name__)

SourceKind = Literal["loop", "block", "dir"]
SUBVOLUME_ROOT_INO = 256  # BTRFS_FIRST_FREE_OBJECTID: the root directory of every subvolume


class BtrfsPool(Pool):
    driver = "btrfs"
    atomic_snapshots = True

    def __init__(self, name: str, root: Path, config: dict[str, str]) -> None:
        self.name = name
        self.root = root
        self.tmp = root / "tmp"
        self.config = config

    def prepare(self) -> None:
        for d in (self.root / "images", *(self.root / k for k in KINDS), self.tmp):
            d.mkdir(parents=True, exist_ok=True, mode=0o711)
        for entry in sorted(self.tmp.iterdir()):
            try:
                remove_any(entry)
            except (OSError, CommandError) as e:  # a pool stays usable; logged each start
                log.error("Could not remove %s from pool %s: %s", entry, self.name, e)

    # Image volumes

    def create_image_volume(self, fingerprint: str, fill: Callable[[Path], None]) -> Path:
        target = self.image_volume(fingerprint)
        tmp = self.temp_path(f"image-{fingerprint[:12]}")
        _btrfs("subvolume", "create", tmp)
        try:
            os.chmod(tmp, 0o700)
            fill(tmp)
            sync_filesystem_blocking(tmp)
            if os.path.lexists(target):
                remove_any(target)
            # A read-only subvolume cannot move to another directory: rename, then seal.
            os.rename(tmp, target)
        except BaseException:
            remove_any(tmp)
            raise
        _set_readonly(target, True)
        fsync_dir(target.parent)
        return target

    def delete_image_volume(self, fingerprint: str) -> None:
        path = self.image_volume(fingerprint)
        if os.path.lexists(path):
            remove_any(path)

    # Instance and snapshot volumes

    async def create_from_image(self, fingerprint: str, volume: str) -> Path:
        source = self.image_volume(fingerprint)
        if not (source / "rootfs").is_dir():
            raise NotFound(f"Image volume {fingerprint} is missing in pool {self.name!r}")
        target = self._free_target("containers", volume)
        # A snapshot appears complete or not at all: no temporary name needed.
        await _btrfs_async("subvolume", "snapshot", source, target)
        fsync_dir(target.parent)
        return target

    async def copy_volume(self, source: Path, kind: VolumeKind, volume: str, *,
                          readonly: bool = False) -> Path:
        target = self._free_target(kind, volume)
        if self._is_own_subvolume(source):
            flags = ["-r"] if readonly else []
            await _btrfs_async("subvolume", "snapshot", *flags, source, target)
        else:
            tmp = self.temp_path(f"copy-{volume[:40]}")
            await _btrfs_async("subvolume", "create", tmp)
            try:
                # Closed while cp fills it (it sets source's mode only at the end): a
                # container's files are host root's on disk, setuid ones included, and the
                # path is in cp's command line for anyone to read in /proc.
                os.chmod(tmp, 0o700)
                await copy_tree(source, tmp)
                os.rename(tmp, target)
            except BaseException:
                remove_any(tmp)
                raise
            if readonly:
                _set_readonly(target, True)
        fsync_dir(target.parent)
        return target

    async def delete_volume(self, kind: VolumeKind, volume: str) -> None:
        await asyncio.to_thread(self.delete_volume_blocking, kind, volume)

    def delete_volume_blocking(self, kind: VolumeKind, volume: str) -> None:
        path = self.volume_path(kind, volume)
        if os.path.lexists(path):
            remove_any(path, self.temp_path(f"deleted-{volume[:40]}"))

    def _is_own_subvolume(self, source: Path) -> bool:
        real = Path(os.path.realpath(source))
        return real.is_relative_to(self.root) and is_subvolume(real)


# Subvolumes

def is_subvolume(path: Path) -> bool:
    """For paths in a btrfs pool (elsewhere any directory may have inode 256)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_ino == SUBVOLUME_ROOT_INO


def is_btrfs(path: Path) -> bool:
    return run(["stat", "-f", "-c", "%T", "--", os.fspath(path)]).stdout.strip() == b"btrfs"


def remove_any(path: Path, trash: Path | None = None) -> None:
    """Remove a subvolume (with the subvolumes made inside it, e.g. by a container's own
    tools) or a plain tree. With `trash`, a writable subvolume is first renamed there, so it
    vanishes at once even if a nested one fails to go; a read-only one is deleted in place
    (deleting a subvolume is atomic; renaming a read-only one is refused)."""
    if not is_subvolume(path):
        remove_tree(path)
        return
    if trash is not None and not _is_readonly(path):
        os.rename(path, trash)
        path = trash
    _delete_subvolume(path)


def _delete_subvolume(path: Path) -> None:
    """Subvolumes made inside this one (by a container's own tools) go first, deepest
    first: a subvolume holding another cannot be deleted."""
    if _is_readonly(path):
        _set_readonly(path, False)  # nested ones' entries are in here
    if _btrfs("subvolume", "list", "-o", path).strip():
        nested = sorted(_nested_subvolumes(path), key=lambda p: len(p.parts))
        for child in nested:  # outer ones first: an inner one's entry is in its parent
            if _is_readonly(child):
                _set_readonly(child, False)
        for child in reversed(nested):
            _btrfs("subvolume", "delete", child)
    _btrfs("subvolume", "delete", path)


def _nested_subvolumes(top: Path) -> list[Path]:
    """Subvolume roots below `top`, found by walking it (real directory entries, never
    following symlinks), not by parsing `btrfs subvolume list`, whose paths are built from
    names a container chose (a newline in one forges a line)."""
    found: list[Path] = []
    todo = [top]
    while todo:
        with os.scandir(todo.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    path = Path(entry.path)
                    if is_subvolume(path):
                        found.append(path)
                    todo.append(path)
    return found


def _is_readonly(path: Path) -> bool:
    return _btrfs("property", "get", "-ts", path, "ro").strip() == "ro=true"


def _set_readonly(path: Path, readonly: bool) -> None:
    _btrfs("property", "set", "-ts", path, "ro", "true" if readonly else "false")


def _btrfs(*args: str | Path) -> str:
    return run(["btrfs", *map(os.fspath, args)]).stdout.decode(errors="surrogateescape")


async def _btrfs_async(*args: str | Path) -> None:
    await run_async(["btrfs", *map(os.fspath, args)])


# Where a pool lives

def source_kind(source: Path) -> SourceKind:
    try:
        mode = os.stat(source).st_mode
    except FileNotFoundError:
        raise NotFound(f"Storage pool source {source} does not exist") from None
    if stat.S_ISREG(mode):
        return "loop"
    if stat.S_ISBLK(mode):
        return "block"
    if stat.S_ISDIR(mode):
        return "dir"
    raise BadRequest(f"Storage pool source {source} is not a directory, a block device or "
                     "a loop file")


def mount_options(config: dict[str, str]) -> str:
    return config.get("btrfs.mount_options") or model.DEFAULT_BTRFS_MOUNT_OPTIONS


def pool_root(config: dict[str, str], mountpoint: Path) -> Path:
    """Where the pool's volumes live: `mountpoint`, mounted now if it is not yet, for a loop
    file or block device; the source directory itself otherwise."""
    source = Path(config["source"])
    if source_kind(source) == "dir":
        if not is_btrfs(source):
            raise BadRequest(f"Storage pool source {source} is not on a btrfs filesystem")
        return source
    mountpoint.mkdir(parents=True, exist_ok=True, mode=0o711)
    if not mounts.is_mounted(mountpoint):
        mounts.mount_pool(source, mountpoint, "btrfs", mount_options(config))
    return mountpoint


def remount(mountpoint: Path, options: str) -> None:
    mounts.remount(mountpoint, options)


def make_loop_file(path: Path, size: int, label: str) -> None:
    """A sparse file formatted as btrfs (O_EXCL: never an existing file)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        mkfs(path, label)
    except BaseException:  # no half-made loop file left behind (ftruncate: EFBIG, ENOSPC)
        path.unlink()
        raise


def mkfs(target: Path, label: str) -> None:
    try:
        run(["mkfs.btrfs", "-q", "-L", label[:255], "--", os.fspath(target)])
    except CommandError as e:
        lines = [ln.strip() for ln in e.stderr.splitlines() if ln.strip()]
        why = next((ln for ln in lines if ln.startswith("ERROR")), lines[-1] if lines
                   else f"exit code {e.returncode}")
        raise BadRequest(f"Failed formatting {target} as btrfs: {why}") from None


def block_device_fs(device: Path) -> str:
    """What blkid finds on a block device: "a <type> filesystem" (the type alone for btrfs),
    "a <type> partition table", or '' when it finds nothing."""
    proc = run(["blkid", "-p", "-o", "export", "--", os.fspath(device)], check=False)
    if proc.returncode == 2:  # nothing found
        return ""
    if proc.returncode != 0:
        raise BadRequest(f"Cannot probe {device}: "
                         f"{proc.stderr.decode(errors='replace').strip()}")
    found = dict(line.partition("=")[::2]
                 for line in proc.stdout.decode(errors="replace").splitlines())
    found.pop("DEVNAME", None)
    if found.get("TYPE"):
        return "btrfs" if found["TYPE"] == "btrfs" else f"a {found['TYPE']} filesystem"
    # A whole disk with partitions (and no filesystem of its own) holds data too.
    if found.get("PTTYPE"):
        return f"a {found['PTTYPE']} partition table"
    return f"data blkid recognises ({', '.join(sorted(found))})" if found else ""


def prepare_block_device(device: Path, label: str) -> None:
    """Use a btrfs already there, format an empty device, refuse any other filesystem."""
    try:
        is_block = stat.S_ISBLK(os.stat(device).st_mode)
    except FileNotFoundError:
        raise BadRequest(f"Storage pool source {device} does not exist") from None
    if not is_block:
        raise BadRequest(f"Storage pool source {device} is not a block device")
    fs = block_device_fs(device)
    if fs == "":
        mkfs(device, label)
    elif fs != "btrfs":
        raise BadRequest(f"Block device {device} holds {fs}; machined uses a "
                         "device with btrfs on it or formats an empty one")


def destroy_mounted(mountpoint: Path, loop_file: Path | None) -> None:
    """Unmount a pool machined mounted and remove its loop file (the loop device goes by
    autoclear once no namespace mounts it)."""
    mounts.unmount(mountpoint)
    with contextlib.suppress(FileNotFoundError, OSError):
        mountpoint.rmdir()
    if loop_file is not None:
        loop_file.unlink(missing_ok=True)
