"""Storage: the daemon's pools, from their DB rows to mounted, prepared Pool objects.

`load()` seeds the `default` dir pool and opens every pool (mounting those machined mounts);
a pool that cannot be opened stays listed, Unavailable with its reason, and `get()` raises
that reason. Creating a pool validates purely first, makes it (undone on failure) and writes
the DB row last; deleting is refused while instances or profiles use it. `reconcile()` (at
start, before serving) removes every volume no DB row names: what an interrupted create,
copy, snapshot or delete left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import stat
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from machined import clock, crash
from machined.db import images as db_images
from machined.db import instances as db_instances
from machined.db import profiles as db_profiles
from machined.db import snapshots as db_snapshots
from machined.db import storage_pools as db_pools
from machined.errors import BadRequest, Conflict, MachinedError, NotFound
from machined.storage import btrfs, model
from machined.storage.base import KINDS, Pool
from machined.storage.copy import remove_tree
from machined.storage.dir import DirPool
from machined.sys.run import CommandError

if TYPE_CHECKING:
    from machined.state import State

log = logging.getLogger(__name__)

DEFAULT = "default"
LAYOUT = ("images", "containers", "snapshots", "spares", "tmp")
# Written in a pool's root when it is made: names the pool and its creation time. A pool
# opens only where its own marker is, so another filesystem found at its source (a disk
# renamed /dev/sdb after a reboot, another tool's pool with its own containers/) is never
# taken for it: start-up reconciliation would delete everything in it that no row names.
MARKER = ".machined-pool"
# $MACHINED_DIR/storage-pools/.pending-<pool>: a create or delete under way (what it touches,
# as JSON). A daemon killed before its end leaves it; the next start undoes the create or
# finishes the delete (_finish_pending): the pool is then wholly there or wholly gone.
PENDING = ".pending-"


class PoolUnavailable(MachinedError):
    status = 503


class Storage:
    def __init__(self, state: State) -> None:
        self.state = state
        self.paths = state.paths
        self._pools: dict[str, Pool] = {}
        self._unavailable: dict[str, str] = {}
        # Every pool's recorded source (read by pool creation off the event loop thread,
        # where the database cannot be used): an unavailable pool's directory still counts.
        self._sources: dict[str, str] = {}
        self._lock = asyncio.Lock()  # pool create/update/delete, one at a time

    # Opening

    def load(self) -> None:
        db = self.state.db
        if DEFAULT not in db_pools.names(db):
            db_pools.create(db, db_pools.PoolRecord(
                DEFAULT, "dir", "Default storage pool",
                {"source": os.fspath(self.paths.pool_dir(DEFAULT))}, clock.now_iso()))
        self._finish_pending()
        for rec in db_pools.list_all(db):
            self._open(rec)

    def _open(self, rec: db_pools.PoolRecord) -> None:
        self._sources[rec.name] = rec.config.get("source", "")
        try:
            self._pools[rec.name] = self._instantiate(rec)
        except (MachinedError, OSError, CommandError) as e:
            reason = _reason(e)
            log.error("Storage pool %s is unavailable: %s", rec.name, reason)
            self._pools.pop(rec.name, None)
            self._unavailable[rec.name] = reason
        else:
            self._unavailable.pop(rec.name, None)

    def _instantiate(self, rec: db_pools.PoolRecord) -> Pool:
        pool: Pool
        if rec.driver == "dir":
            root, tmp = self._dir_layout(rec.name, rec.config)
            pool = DirPool(rec.name, root, tmp, rec.config)
        elif rec.driver == "btrfs":
            root = btrfs.pool_root(rec.config, self.paths.pool_dir(rec.name))
            pool = btrfs.BtrfsPool(rec.name, root, rec.config)
        else:
            raise MachinedError(f"Unknown storage driver {rec.driver!r}")
        # A pool on a disk that is not mounted (yet) must not quietly become a new, empty
        # pool on whatever filesystem holds the mount point, nor another filesystem be taken
        # for it; and nothing below it may lead elsewhere (prepare() empties tmp/,
        # reconcile() deletes what it lists in containers/ and snapshots/).
        if rec.name != DEFAULT:
            _check_safe_dir(pool.root)
            _check_marker(pool.root, rec)
            for sub in LAYOUT:
                if os.path.lexists(pool.root / sub):
                    _check_safe_dir(pool.root / sub)
        pool.prepare()
        return pool

    def _dir_layout(self, name: str, config: dict[str, str]) -> tuple[Path, Path]:
        """The default pool lives where machined always kept it and shares $MACHINED_DIR/tmp
        (uploads are staged there); other dir pools keep tmp/ in their root."""
        if name == DEFAULT:
            return self.paths.pool_dir(DEFAULT), self.paths.tmp
        root = Path(config.get("source") or self.paths.pool_dir(name))
        return root, root / "tmp"

    # Lookups

    def get(self, name: str) -> Pool:
        pool = self._pools.get(name)
        if pool is not None:
            return pool
        if name in self._unavailable:
            raise PoolUnavailable(f"Storage pool {name!r} is unavailable: "
                                  f"{self._unavailable[name]}")
        raise NotFound(f"Storage pool {name!r} not found")

    @property
    def default(self) -> Pool:
        return self.get(DEFAULT)

    def names(self) -> list[str]:
        return db_pools.names(self.state.db)

    def available(self) -> list[Pool]:
        return [self._pools[n] for n in sorted(self._pools)]

    def instance_dir(self, rec: db_instances.InstanceRecord) -> Path:
        return self.get(rec.storage_pool).volume_path("containers", rec.volume)

    def used_by(self, name: str) -> list[str]:
        """LXD URLs of the instances on the pool and the profiles whose root disk is on it."""
        db = self.state.db
        urls = [f"/1.0/instances/{n}" for n in db_pools.instances_using(db, name)]
        for prof in db_profiles.list_all(db):
            if model.used_by_root_pool(prof.devices) == name:
                urls.append(f"/1.0/profiles/{prof.name}")
        return urls

    def render(self, name: str) -> dict[str, Any]:
        """The LXD storage pool object."""
        rec = db_pools.get(self.state.db, name)
        return {"name": rec.name, "driver": rec.driver, "description": rec.description,
                "config": rec.config,
                "status": "Unavailable" if name in self._unavailable else "Created",
                "used_by": self.used_by(name), "locations": ["none"]}

    def resources(self, name: str) -> dict[str, dict[str, int]]:
        return self.get(name).resources()

    # Changes

    async def create(self, name: str, driver: str, config: dict[str, str],
                     description: str = "") -> None:
        model.check_pool_name(name)
        model.check_driver(driver)
        model.validate_pool(driver, config)
        async with self._lock:
            if name in db_pools.names(self.state.db):
                raise Conflict(f"Storage pool {name!r} already exists")
            if config.get("source"):
                self._check_source_unused(config["source"])
            make = self._create_dir if driver == "dir" else self._create_btrfs
            rec = db_pools.PoolRecord(name, driver, description, {}, clock.now_iso())
            journal = self._begin(name, "create", driver, config)
            with _undo_on_error() as undo:
                undo.append(lambda: journal.unlink(missing_ok=True))  # the last undo step
                try:
                    pool: Pool = await asyncio.to_thread(make, name, config, undo)
                    crash.point("storage.create.made")
                    rec.config = pool.config
                    await asyncio.to_thread(_write_marker, pool.root, rec, undo)
                    crash.point("storage.create.marker")
                except (OSError, CommandError) as e:
                    raise MachinedError(f"Failed creating storage pool {name!r}: "
                                        f"{_reason(e)}") from None
                db_pools.create(self.state.db, rec)
            journal.unlink(missing_ok=True)
            self._pools[name] = pool
            self._sources[name] = pool.config.get("source", "")
            self._unavailable.pop(name, None)
        log.info("Created storage pool %s (%s) at %s", name, driver, pool.root)

    def _create_dir(self, name: str, config: dict[str, str],
                    undo: list[Callable[[], None]]) -> Pool:
        root = self._new_root(config.get("source"), name, undo)
        pool = DirPool(name, root, root / "tmp", {**config, "source": os.fspath(root)})
        undo.append(lambda: _remove_layout(root, subvolumes=False))
        pool.prepare()
        return pool

    def _create_btrfs(self, name: str, config: dict[str, str],
                      undo: list[Callable[[], None]]) -> Pool:
        config = dict(config)
        source = config.get("source")
        if source and not source.startswith("/dev/"):
            return self._create_btrfs_in_dir(name, source, config, undo)
        if source:
            btrfs.prepare_block_device(Path(source), name)
        else:
            loop = self.paths.disks / f"{name}.img"
            if os.path.lexists(loop):
                raise Conflict(f"Loop file {loop} already exists (a leftover? remove it "
                               "first)")
            self.paths.disks.mkdir(parents=True, exist_ok=True, mode=0o700)
            size = (model.loop_size(config["size"]) if config.get("size")
                    else model.default_loop_size(_free_bytes(self.paths.disks)))
            try:
                btrfs.make_loop_file(loop, size, name)
            except OSError as e:
                if e.errno != errno.EFBIG:
                    raise
                raise BadRequest(f"Invalid size {config['size']!r}: the filesystem holding "
                                 f"{loop.parent} cannot hold a file that large; use a "
                                 "smaller size") from None
            undo.append(lambda: loop.unlink(missing_ok=True))
            config.update(source=os.fspath(loop),
                          size=config.get("size") or model.format_size(size))
        mountpoint = self.paths.pool_dir(name)
        self._check_new_root(mountpoint, name)
        undo.append(lambda: btrfs.destroy_mounted(mountpoint, None))
        try:
            root = btrfs.pool_root(config, mountpoint)
        except OSError:
            if not config.get("btrfs.mount_options") or source:
                raise
            raise _bad_mount_options(config["btrfs.mount_options"]) from None  # on our mkfs
        if os.listdir(root):
            raise BadRequest(f"The btrfs filesystem on {source} is not empty; machined uses "
                             "an empty one")
        pool = btrfs.BtrfsPool(name, root, config)
        undo.append(lambda: _remove_layout(root, subvolumes=True))  # before the unmount
        pool.prepare()
        return pool

    def _create_btrfs_in_dir(self, name: str, source: str, config: dict[str, str],
                             undo: list[Callable[[], None]]) -> Pool:
        if config.get("btrfs.mount_options"):
            raise BadRequest("btrfs.mount_options applies only to pools machined mounts (a "
                             "loop file or a block device), not to source=<directory>")
        root = self._new_root(source, name, undo)
        if not btrfs.is_btrfs(root):
            raise BadRequest(f"Storage pool source {source} is not on a btrfs filesystem "
                             "(use a directory on a mounted btrfs, or a block device)")
        config["source"] = os.fspath(root)
        pool = btrfs.BtrfsPool(name, root, config)
        undo.append(lambda: _remove_layout(root, subvolumes=True))
        pool.prepare()
        return pool

    def _check_source_unused(self, source: str) -> None:
        """(On the event loop thread: the database connection lives there.)"""
        real = os.path.realpath(source)
        for rec in db_pools.list_all(self.state.db):
            other = rec.config.get("source")
            if other and os.path.realpath(other) == real:
                raise Conflict(f"Storage pool source {source} is already storage pool "
                               f"{rec.name!r}")

    def _new_root(self, source: str | None, name: str,
                  undo: list[Callable[[], None]]) -> Path:
        """A new pool's root directory: made if missing, else it must be empty."""
        root = Path(os.path.realpath(source)) if source else self.paths.pool_dir(name)
        self._check_new_root(root, name)
        if not root.exists():
            if not root.parent.is_dir():
                raise BadRequest(f"Cannot make storage pool directory {root}: its parent "
                                 "does not exist")
            root.mkdir(mode=0o711)
            undo.append(lambda: root.rmdir())
        return root

    def _check_new_root(self, root: Path, name: str) -> None:
        # Compared resolved: $MACHINED_DIR is often a symlink (/var/lib/machined -> a data
        # disk), and `root` is. Unavailable pools count too (their directories hold volumes).
        others = {n: _real(p.root) for n, p in self._pools.items()}
        for other, source in self._sources.items():
            if other not in others and source.startswith("/") and \
                    not source.startswith("/dev/"):
                others[other] = _real(Path(source))
        problem = model.source_overlap(root, _real(self.paths.root),
                                       _real(self.paths.pool_dir(name)), others)
        if problem:
            raise BadRequest(problem)
        if root.is_symlink() or (root.exists() and not root.is_dir()):
            raise BadRequest(f"Storage pool source {root} is not a directory")
        if root.is_dir() and os.listdir(root):
            raise BadRequest(f"Storage pool directory {root} is not empty; use an empty or "
                             "new directory")
        if root.is_dir():
            try:
                _check_safe_dir(root)
            except MachinedError as e:
                raise BadRequest(e.message) from None

    async def update(self, name: str, config: dict[str, str], description: str) -> None:
        """Only the description and btrfs.mount_options can change (LXD)."""
        async with self._lock:
            rec = db_pools.get(self.state.db, name)
            model.check_update(rec.driver, rec.config, config)
            old_opts = rec.config.get("btrfs.mount_options", "")
            new_opts = str(config.get("btrfs.mount_options") or "")
            if new_opts != old_opts:
                await asyncio.to_thread(self._remount, rec, new_opts)
            rec.config = {k: str(v) for k, v in config.items()}
            rec.description = description
            db_pools.update(self.state.db, rec)
            pool = self._pools.get(name)
            if pool is not None:
                pool.config = rec.config

    def _remount(self, rec: db_pools.PoolRecord, options: str) -> None:
        if btrfs.source_kind(Path(rec.config["source"])) == "dir":
            raise BadRequest("btrfs.mount_options applies only to pools machined mounts (a "
                             "loop file or a block device), not to source=<directory>")
        pool = self.get(rec.name)
        try:
            btrfs.remount(pool.root, options or model.DEFAULT_BTRFS_MOUNT_OPTIONS)
        except OSError:  # the kernel is the judge of btrfs options; the pool is unchanged
            raise _bad_mount_options(options) from None

    async def delete(self, name: str) -> None:
        if name == DEFAULT:
            raise BadRequest("The default storage pool cannot be deleted")
        async with self._lock:
            rec = db_pools.get(self.state.db, name)
            used = self.used_by(name)
            if used:
                raise Conflict(f"Storage pool {name!r} is in use by "
                               f"{', '.join(u.removeprefix('/1.0/') for u in used)}")
            journal = self._begin(name, "delete", rec.driver, rec.config)
            try:
                await asyncio.to_thread(self._destroy, rec)
            except (OSError, CommandError) as e:
                journal.unlink(missing_ok=True)
                self._pools.pop(name, None)
                self._unavailable[name] = f"deleting it failed: {_reason(e)}"
                raise MachinedError(f"Failed deleting storage pool {name!r}: "
                                    f"{_reason(e)}") from None
            crash.point("storage.delete.destroyed")
            db_pools.delete(self.state.db, name)
            journal.unlink(missing_ok=True)
            self._pools.pop(name, None)
            self._sources.pop(name, None)
            self._unavailable.pop(name, None)
        log.info("Deleted storage pool %s", name)

    def _destroy(self, rec: db_pools.PoolRecord) -> None:
        """Remove everything the pool holds (no DB row names any of it: it is unused), then
        what machined made for it: the layout, the mount point, the loop file."""
        pool = self._pools.get(rec.name)
        if pool is not None:
            _remove_layout(pool.root, subvolumes=rec.driver == "btrfs")
            (pool.root / MARKER).unlink(missing_ok=True)
        source = Path(rec.config.get("source") or self.paths.pool_dir(rec.name))
        if rec.driver == "btrfs" and not source.is_dir():
            loop = source if source.parent == self.paths.disks else None
            btrfs.destroy_mounted(self.paths.pool_dir(rec.name), loop)
        elif source == self.paths.pool_dir(rec.name):
            with contextlib.suppress(FileNotFoundError):
                source.rmdir()

    # Interrupted creates and deletes

    def _begin(self, name: str, op: str, driver: str, config: dict[str, str]) -> Path:
        """Journal a create or delete of pool `name` before its first step (synced)."""
        source = config.get("source", "")
        root, loop = os.fspath(self.paths.pool_dir(name)), ""
        if driver == "btrfs" and (not source or Path(source).parent == self.paths.disks):
            loop = source or os.fspath(self.paths.disks / f"{name}.img")
        elif source and not source.startswith("/dev/"):
            root = os.path.realpath(source)
        journal = self.paths.root / "storage-pools" / f"{PENDING}{name}"
        journal.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
        tmp = journal.with_name(journal.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            os.write(fd, json.dumps({"op": op, "driver": driver, "root": root,
                                     "loop": loop}).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, journal)
        return journal

    def _finish_pending(self) -> None:
        """At start, before any pool opens: a create that did not write its row is undone,
        a delete (of an unused pool) is finished."""
        base = self.paths.root / "storage-pools"
        for journal in sorted(base.glob(f"{PENDING}*")) if base.is_dir() else []:
            name = journal.name[len(PENDING):]
            if name.endswith(".tmp"):
                journal.unlink(missing_ok=True)
                continue
            try:
                info = json.loads(journal.read_text())
                exists = name in db_pools.names(self.state.db)
                deleting = info.get("op") == "delete"
                if deleting or not exists:
                    self._remove_leftovers(name, info, deleting)
                if deleting and exists:
                    db_pools.delete(self.state.db, name)
                log.warning("Storage pool %s: %s interrupted by a crash %s", name,
                            info.get("op"), "finished" if deleting else
                            "kept (its row was written)" if exists else "undone")
            except (OSError, ValueError, MachinedError, CommandError) as e:
                log.error("Storage pool %s: could not clean up after an interrupted "
                          "create or delete: %s", name, _reason(e))
            journal.unlink(missing_ok=True)

    def _remove_leftovers(self, name: str, info: dict[str, Any], deleting: bool) -> None:
        """What pool `name`'s interrupted create made or its delete left. A create's layout
        directories go only while empty; nothing goes under another pool's marker."""
        root, mountpoint = Path(info["root"]), self.paths.pool_dir(name)
        loop = Path(info["loop"]) if info.get("loop") else None
        if loop is not None and loop.parent == self.paths.disks:
            loop.unlink(missing_ok=True)  # its filesystem (the layout) goes with it
        elif root.is_dir() and not root.is_symlink():
            _check_safe_dir(root)
            marker = root / MARKER
            if marker.exists() and not marker.read_text(errors="replace").startswith(
                    f"machined storage pool {name}\n"):
                raise MachinedError(f"{root} holds another pool's marker: left as it is")
            if deleting:
                _remove_layout(root, subvolumes=info.get("driver") == "btrfs")
            else:
                for sub in LAYOUT:
                    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                        (root / sub).rmdir()  # OSError when not empty: left, logged
            marker.unlink(missing_ok=True)
        if root == mountpoint or loop is not None:
            with contextlib.suppress(FileNotFoundError):
                mountpoint.rmdir()

    # Start-up

    def reconcile(self) -> list[str]:
        """Delete the volumes no DB row names (instance, snapshot, image): leftovers of an
        interrupted change. Only at start, before anything can be making a volume."""
        removed: list[str] = []
        db = self.state.db
        for name, pool in sorted(self._pools.items()):
            keep = {"containers": db_pools.volumes_in_pool(db, name),
                    "snapshots": db_snapshots.volumes_in_pool(db, name)}
            for kind in KINDS:
                for volume in pool.volumes(kind):
                    if volume not in keep[kind]:
                        self._reconcile_one(
                            f"{name}/{kind}/{volume}", removed,
                            partial(pool.delete_volume_blocking, kind, volume))
            images = pool.root / "images"
            for fp in sorted(os.listdir(images)) if images.is_dir() else []:
                if model.is_fingerprint(fp) and not db_images.exists(db, fp):
                    self._reconcile_one(f"{name}/images/{fp}", removed,
                                        partial(pool.delete_image_volume, fp))
            spares = pool.root / "spares"
            for fp in sorted({e.split(".")[0] for e in os.listdir(spares)}
                             if spares.is_dir() else []):
                if model.is_fingerprint(fp) and not db_images.exists(db, fp):
                    self._reconcile_one(f"{name}/spares/{fp}", removed,
                                        partial(pool.delete_spares, fp))
        return removed

    @staticmethod
    def _reconcile_one(label: str, removed: list[str], delete: Callable[[], None]) -> None:
        try:
            delete()
        except (MachinedError, OSError, CommandError) as e:
            log.error("Could not remove unreferenced volume %s: %s", label, e)
            return
        log.warning("Removed unreferenced volume %s", label)
        removed.append(label)


def _reason(e: BaseException) -> str:
    """One line: a MachinedError's message, an OSError's text without "[Errno n]"."""
    if isinstance(e, MachinedError):
        return e.message
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _bad_mount_options(options: str) -> BadRequest:
    return BadRequest(f"Invalid btrfs.mount_options {options!r}: the kernel refused them "
                      "(dmesg says why); use btrfs mount options such as "
                      "user_subvol_rm_allowed,compress=zstd")


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _check_safe_dir(path: Path) -> None:
    """A pool directory must be a real directory (not a link) that only root can change:
    the daemon lists, renames and deletes below it as root, so one another user could
    rename things in (a link to /etc in place of containers/) would let them steer that."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise MachinedError(f"Storage pool directory {path} is not a directory (a link?)")
    if st.st_uid != 0 or st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP
                                                        and st.st_gid != 0):
        raise MachinedError(f"Storage pool directory {path} can be changed by users other "
                            f"than root (owner uid {st.st_uid}, mode "
                            f"{stat.S_IMODE(st.st_mode):o}): make it root's, not writable by "
                            "others (chown root: ...; chmod go-w ...)")


def _marker_text(rec: db_pools.PoolRecord) -> str:
    return f"machined storage pool {rec.name}\ncreated {rec.created_at}\n"


def _write_marker(root: Path, rec: db_pools.PoolRecord,
                  undo: list[Callable[[], None]]) -> None:
    path = root / MARKER
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    undo.append(lambda: path.unlink(missing_ok=True))
    try:
        os.write(fd, _marker_text(rec).encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_marker(root: Path, rec: db_pools.PoolRecord) -> None:
    try:
        fd = os.open(root / MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise MachinedError(f"{root} holds no storage pool (is its filesystem mounted?)"
                            ) from None
    try:
        found = os.read(fd, 4096).decode(errors="replace")
    finally:
        os.close(fd)
    if found != _marker_text(rec):
        first = found.splitlines()[0] if found.strip() else "an empty marker"
        raise MachinedError(f"{root} holds another storage pool ({first!r} in {MARKER}), "
                            f"not pool {rec.name!r} made {rec.created_at}: is the right "
                            "filesystem mounted there?")


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _remove_layout(root: Path, *, subvolumes: bool) -> None:
    """The directories a pool made in its root, with whatever they hold."""
    for sub in LAYOUT:
        path = root / sub
        if not path.is_dir() or path.is_symlink():
            continue
        for entry in sorted(path.iterdir()):
            if subvolumes:
                btrfs.remove_any(entry)
            else:
                remove_tree(entry)
        path.rmdir()


@contextlib.contextmanager
def _undo_on_error() -> Iterator[list[Callable[[], None]]]:
    """Undo steps run last-first if the block fails; each undo's own failure is logged."""
    undo: list[Callable[[], None]] = []
    try:
        yield undo
    except BaseException:
        for step in reversed(undo):
            try:
                step()
            except Exception as e:  # noqa: BLE001 - keep undoing, report the first error
                log.error("Undoing a failed pool creation: %s", e)
        raise

