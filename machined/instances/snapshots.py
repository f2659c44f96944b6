"""Snapshots, restore, copy and move: every one is a volume copy followed by a DB commit.

The order is always the same, so that a daemon killed anywhere leaves the old state or the
new one: make the new volume(s) completely (the pool copies into tmp/, syncs and renames into
place), THEN commit the row(s) that name them, THEN delete the volumes the commit left
unreferenced. A volume no row names is removed at the next daemon start
(storage.pools.Storage.reconcile), so a crash between the steps costs only disk space until
then. Each public method validates everything before it touches anything, holds the
instance's lock (both names' locks for copy and move), and undoes its finished steps when a
later one fails."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from machined import clock, crash, locking
from machined.config import validate_instance_config
from machined.db import instances as db_instances
from machined.db import profiles as db_profiles
from machined.db import snapshots as db_snapshots
from machined.errors import BadRequest, Conflict, InternalError, MachinedError, NotFound
from machined.instances import copying, leftovers, model, schedule
from machined.storage.model import new_volume_name
from machined.sys.run import CommandError

if TYPE_CHECKING:
    from machined.instances.service import InstanceService
    from machined.storage.base import Pool, VolumeKind

log = logging.getLogger("machined.snapshots")

PROGRESS_KEY = "copy_progress"
PROGRESS_EVERY = 0.5  # seconds between updates of a long copy's progress line


class SnapshotService:
    def __init__(self, instances: InstanceService) -> None:
        self.instances = instances
        self.state = instances.state
        self._cleanups: set[asyncio.Task[None]] = set()

    async def discard_later(self, pool: Pool, kind: VolumeKind, volume: str) -> None:
        """Delete a volume a commit has just made unreferenced, without making the operation
        wait for it: it is renamed into tmp/ at once (gone from containers/ and snapshots/),
        removed in the background (a dir volume takes as long to remove as to copy on this
        kind of disk). A daemon stopping meanwhile leaves it in tmp/, emptied at start."""
        task = asyncio.get_running_loop().create_task(_delete_quietly(pool, kind, volume))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        await asyncio.sleep(0)  # the task's first step: the rename into tmp/

    async def cancel_background(self) -> None:
        """At daemon stop."""
        for task in list(self._cleanups):
            task.cancel()
        await asyncio.gather(*self._cleanups, return_exceptions=True)

    # ------------------------------------------------------------------ reading

    def list(self, name: str) -> list[dict[str, Any]]:
        return [self._object(s) for s in db_snapshots.list_for(self.state.db, name)]

    def names(self, name: str) -> list[str]:
        return [s.name for s in db_snapshots.list_for(self.state.db, name)]

    def get(self, name: str, snap: str) -> dict[str, Any]:
        return self._object(db_snapshots.get(self.state.db, name, snap))

    def record(self, name: str, snap: str) -> db_snapshots.SnapshotRecord:
        return db_snapshots.get(self.state.db, name, snap)

    def _object(self, rec: db_snapshots.SnapshotRecord) -> dict[str, Any]:
        # Expanded = the profiles as they are now, then the snapshot's own config (LXD). A
        # profile deleted since the snapshot was taken simply no longer contributes.
        layers = []
        for profile in rec.profiles:
            with contextlib.suppress(NotFound):
                p = db_profiles.get(self.state.db, profile)
                layers.append((p.config, p.devices))
        config, devices = model.expand(layers, rec.config, rec.devices)
        return copying.snapshot_object(rec, config, devices)

    # ------------------------------------------------------------------ snapshots

    def check_create(self, name: str, request: copying.SnapshotRequest) -> None:
        """What a snapshot request can be refused for before the API answers."""
        db_instances.get(self.state.db, name)
        if (request.name is not None and not request.reuse
                and db_snapshots.exists(self.state.db, name, request.name)):
            raise Conflict(f"Snapshot {request.name!r} of instance {name!r} already exists: "
                           "choose another name, or replace it with --reuse")

    async def create(self, name: str, snap: str | None = None, *, stateful: bool = False,
                     expires_at: str | None = None, reuse: bool = False,
                     description: str = "", op: Any = None) -> str:
        """Snapshot instance `name` (running or not); returns the snapshot's name. snap None:
        named by snapshots.pattern; expires_at None: from snapshots.expiry ("" = never).
        reuse: an existing snapshot of that name is replaced atomically."""
        copying.refuse_stateful(stateful)
        if snap is not None:
            copying.check_snapshot_name(snap)
        if expires_at is not None:
            expires_at = copying.parse_expiry(expires_at)
        async with self.state.instance_locks[name]:
            inst = self.instances.load(name)
            rec = inst.record
            now = clock.now()
            if snap is None:
                taken = set(self.names(name))
                snap = schedule.snapshot_name(inst.expanded_config.get("snapshots.pattern", ""),
                                              taken, now)
                copying.check_snapshot_name(snap)
            elif not reuse and db_snapshots.exists(self.state.db, name, snap):
                raise Conflict(f"Snapshot {snap!r} of instance {name!r} already exists: choose "
                               "another name, or replace it with --reuse")
            if expires_at is None:
                expires_at = schedule.expiry_from(
                    inst.expanded_config.get("snapshots.expiry", ""), now)
            pool = self.instances.pool_of(rec)
            volume = new_volume_name(copying.volume_label(name, snap))
            with _progress(op, f"Snapshotting {name}"):
                async with self.instances.frozen_for_copy(name):
                    await _copy(pool, self.instances.storage.instance_dir(rec), "snapshots",
                                volume, readonly=True)
                    crash.point("snapshot.create.copied")
            record = db_snapshots.SnapshotRecord(
                instance=name, name=snap, volume=volume, created_at=clock.iso(now),
                architecture=rec.architecture, expires_at=expires_at, stateful=False,
                description=description, ephemeral=rec.ephemeral, config=dict(rec.config),
                devices=dict(rec.devices), profiles=list(rec.profiles))
            async with _undo_on_error(pool, "snapshots", volume):
                replaced = db_snapshots.create(self.state.db, record, replace=reuse)
            crash.point("snapshot.create.row")
            if replaced:
                await self.discard_later(pool, "snapshots", replaced)
        log.info("Snapshotted instance %s as %s%s", name, snap, " (replaced)" if replaced else "")
        return snap

    async def delete(self, name: str, snap: str, *, expired_by: str | None = None) -> bool:
        """expired_by (the expiry loop's time stamp): only if the snapshot is still expired
        by then, as the loop found it. Its expiry may have been pushed back since, or the
        instance renamed and another one given its name. Returns whether it was deleted."""
        async with self.state.instance_locks[name]:
            rec = db_instances.get(self.state.db, name)
            if expired_by is not None:
                shot = db_snapshots.get(self.state.db, name, snap)
                if not shot.expires_at or shot.expires_at > expired_by:
                    return False
            volume = db_snapshots.delete(self.state.db, name, snap)
            # After the commit: an interrupted delete leaves an unreferenced volume, which the
            # next start removes.
            await _delete_quietly(self.instances.pool_of(rec), "snapshots", volume)
        log.info("Deleted snapshot %s of instance %s", snap, name)
        return True

    async def rename(self, name: str, snap: str, new: str) -> None:
        copying.check_snapshot_name(new)
        async with self.state.instance_locks[name]:
            db_snapshots.get(self.state.db, name, snap)
            if snap == new:
                return
            if db_snapshots.exists(self.state.db, name, new):
                raise Conflict(f"Snapshot {new!r} of instance {name!r} already exists")
            db_snapshots.rename(self.state.db, name, snap, new)  # volumes keep their names
        log.info("Renamed snapshot %s of instance %s to %s", snap, name, new)

    async def update(self, name: str, snap: str, body: dict[str, Any], patch: bool) -> None:
        """expires_at and description; the rest of a snapshot is what the instance had. A
        synchronous request: a brief wait for a busy instance, then 409."""
        async with locking.hold(self.state.instance_locks[name], name,
                                "Changing a snapshot"):
            rec = db_snapshots.get(self.state.db, name, snap)
            rec.expires_at, rec.description = copying.snapshot_update(rec, body, patch)
            db_snapshots.update(self.state.db, rec)
        log.info("Updated snapshot %s of instance %s (expires_at %s)", snap, name,
                 rec.expires_at or "never")

    # ------------------------------------------------------------------ restore

    def check_restore(self, name: str, snap: str) -> db_snapshots.SnapshotRecord:
        """What a restore can be refused for before it starts."""
        copying.check_snapshot_name(snap)
        srec = db_snapshots.get(self.state.db, name, snap)
        for profile in srec.profiles:
            if profile not in db_profiles.names(self.state.db):
                raise BadRequest(f"Snapshot {snap!r} of {name!r} uses profile {profile!r}, "
                                 "which no longer exists: create it again, then restore")
        return srec

    async def restore(self, name: str, snap: str, op: Any = None) -> None:
        """The instance's filesystem and config as they were in the snapshot. A running
        instance is stopped first and started again after. Later snapshots stay."""
        async with self.state.instance_locks[name]:
            srec = self.check_restore(name, snap)
            rec = db_instances.get(self.state.db, name)
            self._restored_record(rec, srec)  # refusals before anything stops
            pool = self.instances.pool_of(rec)
            source = pool.volume_path("snapshots", srec.volume)
            status = self.instances.status(name)
            if status != "Stopped":
                # A frozen one cannot shut down cleanly; its state is being discarded anyway.
                await self.instances.stop_held(name, -1, force=status == "Frozen")
                crash.point("snapshot.restore.stopped")
            try:
                # After the stop: its volatile.last_state is part of what is kept.
                restored = self._restored_record(db_instances.get(self.state.db, name), srec)
                volume = new_volume_name(copying.volume_label(name))
                with _progress(op, f"Restoring {name} from {snap}"):
                    await _copy(pool, source, "containers", volume)
                crash.point("snapshot.restore.volume")
                async with _undo_on_error(pool, "containers", volume):
                    # Checked again after the copy's await, with no await before the commit:
                    # a profile may have changed (or one the snapshot names gone) meanwhile.
                    self.check_restore(name, snap)
                    restored = self._restored_record(db_instances.get(self.state.db, name),
                                                     srec)
                    with self.state.db.atomic():
                        db_instances.update(self.state.db, restored)
                        old = db_instances.switch_volume(self.state.db, name, rec.storage_pool,
                                                         volume)
            except BaseException:
                if status != "Stopped":
                    await self._start_again(name)
                raise
            crash.point("snapshot.restore.row")
            await self.discard_later(pool, "containers", old)
            if status != "Stopped":
                await self.instances.start_held(name)
        log.info("Restored instance %s from snapshot %s", name, snap)

    def _restored_record(self, rec: db_instances.InstanceRecord,
                         srec: db_snapshots.SnapshotRecord) -> db_instances.InstanceRecord:
        """The instance row after a restore: the snapshot's config (this instance's
        volatile keys kept), devices, profiles and ephemeral flag; the root disk still on the
        instance's pool (it may have moved since)."""
        expanded = self.instances.check_devices(srec.profiles, srec.devices)
        devices = srec.devices
        if model.root_pool(expanded) != rec.storage_pool:
            devices = copying.devices_with_root_pool(devices, expanded, rec.storage_pool)
        # Written again as the instance's config: checked as any config written now is (the
        # snapshot may predate a rule that now refuses one of its values).
        config = copying.config_for_restore(rec.config, srec.config)
        validate_instance_config(config, allow_volatile=True)
        return replace(rec, config=config, devices=devices, profiles=list(srec.profiles),
                       ephemeral=srec.ephemeral)

    async def _start_again(self, name: str) -> None:
        """After a failed restore: the instance as it was, running as it was."""
        try:
            if self.instances.running(name) is None:
                await self.instances.start_held(name)
        except MachinedError as e:
            log.warning("Could not start %s again after a failed restore: %s", name, e.message)

    # ------------------------------------------------------------------ copy

    def check_copy(self, request: copying.CopyRequest) -> tuple[str, Any]:
        """Validate a copy (names, source, config, devices, profiles, pool) before any work;
        returns the target pool's name and the new instance's record (no volume yet)."""
        target = request.name
        model.check_name(target)
        if db_instances.exists(self.state.db, target):
            raise Conflict(f"Instance {target!r} already exists")
        src = db_instances.get(self.state.db, request.source)
        if request.snapshot is not None:
            shot = db_snapshots.get(self.state.db, request.source, request.snapshot)
            config, devices, profiles = shot.config, shot.devices, shot.profiles
            architecture, ephemeral = shot.architecture, shot.ephemeral
            if "profiles" not in request.overrides:
                # The snapshot lives on its instance's pool, which may have changed since it
                # was taken (mc move): the copy goes there, as a copy of the instance would.
                expanded = self.instances.check_devices(profiles, devices)
                if model.root_pool(expanded) != src.storage_pool:
                    devices = copying.devices_with_root_pool(devices, expanded,
                                                             src.storage_pool)
        else:
            config, devices, profiles = src.config, src.devices, src.profiles
            architecture, ephemeral = src.architecture, src.ephemeral
        over = request.overrides
        own = {str(k): str(v) for k, v in (over.get("config") or {}).items()}
        validate_instance_config(own)
        new_config = copying.config_for_copy(config, own)
        validate_instance_config(new_config, allow_volatile=True)
        new_devices = copying.devices_for_copy(devices, over.get("devices") or {})
        new_profiles = list(over["profiles"]) if "profiles" in over else list(profiles)
        expanded = self.instances.check_devices(new_profiles, new_devices)
        pool = model.root_pool(expanded)
        self.instances.check_pool(pool)
        record = db_instances.InstanceRecord(
            name=target, architecture=architecture, created_at=clock.now_iso(),
            description=str(over.get("description", src.description) or ""),
            ephemeral=bool(over.get("ephemeral", ephemeral)), config=new_config,
            devices=new_devices, profiles=new_profiles, storage_pool=pool)
        return pool, record

    async def copy(self, request: copying.CopyRequest, op: Any = None) -> str:
        """A new, independent instance from an instance (with its snapshots unless
        instance_only) or from one snapshot. A running source is frozen while its volume is
        copied unless the copy is an atomic snapshot (btrfs, same pool)."""
        self.check_copy(request)
        source, target = request.source, request.name
        first, second = sorted([source, target])
        async with self.state.instance_locks[first], self.state.instance_locks[second]:
            pool_name, record = self.check_copy(request)  # again, now that we hold the locks
            src = db_instances.get(self.state.db, source)
            src_pool = self.instances.pool_of(src)
            dst_pool = self.instances.check_pool(pool_name)
            shots = ([] if request.instance_only or request.snapshot is not None
                     else db_snapshots.list_for(self.state.db, source))
            async with _Made() as made:
                copies = await self._copy_snapshots(shots, target, src_pool, dst_pool, made, op)
                crash.point("instance.copy.snapshots")
                volume = new_volume_name(copying.volume_label(target))
                with _progress(op, f"Copying {request.snapshot or source} to {target}"):
                    if request.snapshot is not None:
                        shot = db_snapshots.get(self.state.db, source, request.snapshot)
                        await _copy(dst_pool, src_pool.volume_path("snapshots", shot.volume),
                                    "containers", volume)
                        made.add(dst_pool, "containers", volume)
                    else:
                        await self._copy_live(src, src_pool, dst_pool, volume, made)
                crash.point("instance.copy.volume")
                # Validated again after the copies' awaits, with no await before the commit:
                # a profile may have changed meanwhile (even which pool it puts roots in).
                if self.check_copy(request)[0] != pool_name:
                    raise Conflict(f"The root disk pool of {target!r} changed while it was "
                                   "copied (a profile changed): nothing was made; try again")
                record = replace(record, volume=volume)
                with self.state.db.atomic():
                    db_instances.create(self.state.db, record)
                    db_snapshots.create_many(self.state.db, copies)
                made.success()
        log.info("Copied %s to %s (pool %s, %d snapshot(s))",
                 f"{source}/{request.snapshot}" if request.snapshot else source, target,
                 pool_name, len(shots))
        return target

    async def _copy_snapshots(self, shots: list[db_snapshots.SnapshotRecord], target: str,
                              src: Pool, dst: Pool, made: _Made,
                              op: Any) -> list[db_snapshots.SnapshotRecord]:
        """Copies of `shots` for instance `target` in pool `dst` (volumes made, rows not
        yet written)."""
        out = []
        for i, shot in enumerate(shots, 1):
            volume = new_volume_name(copying.volume_label(target, shot.name))
            with _progress(op, f"Copying snapshot {shot.name} ({i}/{len(shots)})"):
                await _copy(dst, src.volume_path("snapshots", shot.volume), "snapshots",
                            volume, readonly=True)
            made.add(dst, "snapshots", volume)
            out.append(replace(shot, instance=target, volume=volume, id=0))
        return out

    async def _copy_live(self, src: db_instances.InstanceRecord, src_pool: Pool,
                         dst_pool: Pool, volume: str, made: _Made) -> None:
        """Copy an instance's volume, consistent even while it runs: frozen during the copy
        on pools that cannot snapshot atomically; on one that can, an atomic read-only
        snapshot first when the copy goes to another pool (copied from, then dropped)."""
        source_dir = self.instances.storage.instance_dir(src)
        staged = (src_pool.atomic_snapshots and src_pool.name != dst_pool.name
                  and self.instances.running(src.name) is not None)
        if not staged:
            async with self.instances.frozen_for_copy(src.name):
                await _copy(dst_pool, source_dir, "containers", volume)
            made.add(dst_pool, "containers", volume)
            return
        stage = new_volume_name(copying.volume_label(src.name, "copy-stage"))
        await _copy(src_pool, source_dir, "snapshots", stage, readonly=True)
        try:
            await _copy(dst_pool, src_pool.volume_path("snapshots", stage), "containers",
                        volume)
            made.add(dst_pool, "containers", volume)
        finally:
            await _delete_quietly(src_pool, "snapshots", stage)

    # ------------------------------------------------------------------ move

    def check_move(self, name: str, new_name: str | None, pool: str | None) -> None:
        rec = db_instances.get(self.state.db, name)
        if new_name is not None and new_name != name:
            model.check_name(new_name)
            if db_instances.exists(self.state.db, new_name):
                raise Conflict(f"Instance {new_name!r} already exists")
        if pool is not None and pool != rec.storage_pool:
            self.instances.check_pool(pool)
            if self.instances.running(name) is not None:
                raise BadRequest(f"Instance {name!r} is running: stop it before moving it to "
                                 f"pool {pool!r}")

    async def move(self, name: str, new_name: str | None = None, pool: str | None = None,
                   op: Any = None) -> str:
        """Rename (DB only) and/or move to another pool: the instance volume and every
        snapshot volume are copied there, the rows switched in one transaction, the old
        volumes deleted. Returns the instance's name after the move."""
        self.check_move(name, new_name, pool)
        rec = db_instances.get(self.state.db, name)
        target = new_name or name
        if pool is None or pool == rec.storage_pool:
            if target != name:
                await self.instances.rename(name, target)
            return target
        first, second = sorted({name, target}) if target != name else (name, None)
        async with contextlib.AsyncExitStack() as locks:
            await locks.enter_async_context(self.state.instance_locks[first])
            if second is not None:
                await locks.enter_async_context(self.state.instance_locks[second])
            self.check_move(name, new_name, pool)
            await self._move_locked(name, target, pool, op)
        log.info("Moved instance %s to pool %s%s", name, pool,
                 f" as {target}" if target != name else "")
        return target

    async def _move_locked(self, name: str, target: str, pool: str, op: Any) -> None:
        rec = db_instances.get(self.state.db, name)
        src, dst = self.instances.pool_of(rec), self.instances.check_pool(pool)
        shots = db_snapshots.list_for(self.state.db, name)
        expanded = self.instances.load(name).expanded_devices
        moved = replace(rec, devices=copying.devices_with_root_pool(rec.devices, expanded, pool))
        async with _Made() as made:
            copies = await self._copy_snapshots(shots, target, src, dst, made, op)
            volume = new_volume_name(copying.volume_label(target))
            with _progress(op, f"Moving {name} to pool {pool}"):
                await _copy(dst, self.instances.storage.instance_dir(rec), "containers",
                            volume)
            made.add(dst, "containers", volume)
            crash.point("instance.move.volumes")
            # The logs directory follows a new name after the commit (journaled: leftovers.py).
            with (leftovers.logs_follow(self.state.paths, name, target) if target != name
                  else contextlib.nullcontext()):
                with self.state.db.atomic():
                    db_instances.update(self.state.db, moved)
                    db_instances.switch_volume(self.state.db, name, pool, volume)
                    for old, new in zip(shots, copies, strict=True):
                        db_snapshots.set_volume(self.state.db, old.id, new.volume)
                    if target != name:
                        db_instances.rename(self.state.db, name, target)
                crash.point("instance.move.row")
            made.success()
        # The old volumes are unreferenced now.
        await self.discard_later(src, "containers", rec.volume)
        for shot in shots:
            await self.discard_later(src, "snapshots", shot.volume)


# ---------------------------------------------------------------------- helpers

async def _copy(pool: Pool, source: Path, kind: VolumeKind, volume: str, *,
                readonly: bool = False) -> Path:
    """pool.copy_volume, with a failed tool (cp, btrfs) reported as one sentence naming the
    pool and the tool's last complaint (a full disk, typically) instead of a traceback."""
    try:
        return await pool.copy_volume(source, kind, volume, readonly=readonly)
    except CommandError as e:
        tail = e.stderr.strip().splitlines()[-1] if e.stderr.strip() else f"exit code " \
            f"{e.returncode}"
        raise InternalError(f"Copying a volume into pool {pool.name!r} failed (nothing was "
                            f"changed): {tail}") from None

async def _delete_quietly(pool: Pool, kind: VolumeKind, volume: str) -> None:
    """Delete a volume no row names any more; failing is not the operation failing (the
    next daemon start removes what is left)."""
    try:
        await pool.delete_volume(kind, volume)
    except (MachinedError, OSError) as e:
        log.warning("Volume %s/%s in pool %s stays until the next start: %s", kind, volume,
                    pool.name, getattr(e, "message", e))


@contextlib.asynccontextmanager
async def _undo_on_error(pool: Pool, kind: VolumeKind, volume: str) -> AsyncIterator[None]:
    """The DB commit of a volume made just before: when it fails, the volume goes."""
    try:
        yield
    except BaseException:
        await _delete_quietly(pool, kind, volume)
        raise


class _Made:
    """Volumes a copy has made so far: deleted again unless success() is reached."""

    def __init__(self) -> None:
        self._volumes: list[tuple[Pool, VolumeKind, str]] = []
        self._ok = False

    def add(self, pool: Pool, kind: VolumeKind, volume: str) -> None:
        self._volumes.append((pool, kind, volume))

    def success(self) -> None:
        self._ok = True

    async def __aenter__(self) -> _Made:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ok:
            return
        for pool, kind, volume in reversed(self._volumes):
            await _delete_quietly(pool, kind, volume)


@contextlib.contextmanager
def _progress(op: Any, stage: str) -> Iterator[None]:
    """`<stage>: N s` in the operation's metadata (copy_progress) while a copy runs: a
    large dir copy takes minutes, and mc shows this line."""
    if op is None:
        yield
        return
    started = time.monotonic()

    def tick() -> None:
        op.set_metadata(**{PROGRESS_KEY: f"{stage}: {time.monotonic() - started:.0f} s"})
        nonlocal handle
        handle = loop.call_later(PROGRESS_EVERY, tick)

    loop = asyncio.get_running_loop()
    handle = loop.call_later(0, tick)
    try:
        yield
    finally:
        handle.cancel()
        op.set_metadata(**{PROGRESS_KEY: f"{stage}: done"})
