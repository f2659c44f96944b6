"""Instance lifecycle. Each public function takes the instance's lock, validates before it
touches anything, and undoes its finished steps if a later one fails."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from machined import clock, crash, locking, runtime
from machined.config import devices as devmod
from machined.config import validate_instance_config
from machined.db import images as db_images
from machined.db import instances as db_instances
from machined.db import profiles as db_profiles
from machined.db import snapshots as db_snapshots
from machined.db import storage_pools as db_storage_pools
from machined.db import warnings as db_warnings
from machined.errors import BadRequest, Conflict, Forbidden, MachinedError, NotFound
from machined.images import store
from machined.instances import leftovers, model, templates
from machined.network.state import instance_network
from machined.runtime import rootfs as inroot
from machined.state import State
from machined.storage.model import new_volume_name

if TYPE_CHECKING:
    from machined.network.hooks import NetworkHooks
    from machined.storage.base import Pool
    from machined.storage.pools import Storage

log = logging.getLogger("machined.instances")
# instances/autostart.py records it after three failed autostart attempts.
AUTOSTART_FAILURE = "instance-autostart-failure"
SPARE_QUIET_SECONDS = 10.0


ExecTarget = runtime.RunningContainer


@dataclass
class Instance:
    record: db_instances.InstanceRecord
    expanded_config: dict[str, str]
    expanded_devices: dict[str, dict[str, str]]


class Reverter:
    """Undo steps in reverse unless success() was reached (incus shared/revert)."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()

    def add(self, undo: Any, *args: Any) -> None:
        self._stack.callback(undo, *args)

    def success(self) -> None:
        self._stack.pop_all()

    def __enter__(self) -> Reverter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


class AsyncReverter:
    """Reverter whose undo steps may be coroutines (volume deletes are async)."""

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()

    def add(self, undo: Any, *args: Any) -> None:
        self._stack.callback(undo, *args)

    def add_async(self, undo: Any, *args: Any) -> None:
        self._stack.push_async_callback(undo, *args)

    def success(self) -> None:
        self._stack.pop_all()

    async def __aenter__(self) -> AsyncReverter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()


class InstanceService:
    def __init__(self, state: State, storage: Storage) -> None:
        self.state = state
        self.storage = storage
        self._refilling: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_launch = 0.0
        # Instances whose clean stop is under way (name -> container): a forced stop kills
        # them without waiting for the lock.
        self._stopping: dict[str, runtime.RunningContainer] = {}
        # images.service.ImageService, set by the daemon: launches from remote servers.
        self.remote_images: Any = None
        # network.hooks.NetworkHooks, set by the daemon: nics and proxies around starts
        # and stops (None: instances get no networking, as in tests of this service alone).
        self.network_hooks: NetworkHooks | None = None

    def refill_spare(self, fingerprint: str, pool: str = model.DEFAULT_POOL) -> None:
        """Prepare the next container's copy of this image in pool `pool` in the background
        (a no-op on pools whose volumes are instant)."""
        if (pool, fingerprint) in self._refilling:
            return
        self._refilling.add((pool, fingerprint))
        task = asyncio.get_running_loop().create_task(self._refill(fingerprint, pool))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_background(self) -> None:
        """At daemon stop: background copies are only an optimisation."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _refill(self, fingerprint: str, pool_name: str) -> None:
        try:
            # A copy competes with a booting container for the disk (I/O priorities do not
            # help under mq-deadline), so wait until launches have been quiet for a while.
            while (wait := self._last_launch + SPARE_QUIET_SECONDS - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            pool = self.storage.get(pool_name)
            await pool.make_spare(fingerprint)
            # Not under the image lock (a launch must never wait for a refill), so the image
            # may have been deleted meanwhile: then its spare goes too.
            if not db_images.exists(self.state.db, fingerprint):
                await asyncio.to_thread(pool.delete_spares, fingerprint)
        except Exception as e:
            message = getattr(e, "message", None) or e
            log.warning("Could not prepare a spare copy of image %s in pool %s: %s",
                        fingerprint[:12], pool_name, message)
        finally:
            self._refilling.discard((pool_name, fingerprint))

    # Reading

    def load(self, name: str) -> Instance:
        rec = db_instances.get(self.state.db, name)
        profiles = [db_profiles.get(self.state.db, p) for p in rec.profiles]
        config, devices = model.expand([(p.config, p.devices) for p in profiles],
                                       rec.config, rec.devices)
        return Instance(rec, config, devices)

    def pool_of(self, rec: db_instances.InstanceRecord) -> Pool:
        """The pool holding the instance's volumes (raises if it is unavailable)."""
        return self.storage.get(rec.storage_pool)

    def instance_dir(self, name: str) -> Path:
        """The instance's volume directory (metadata.yaml, templates/, rootfs/)."""
        return self.storage.instance_dir(db_instances.get(self.state.db, name))

    def check_devices(self, profiles: list[str], devices: dict[str, Any],
                      instance: str | None = None) -> dict[str, dict[str, str]]:
        """Validate an instance's own devices, then what they expand to with its profiles
        (raises NotFound for a missing profile); returns the expanded devices. `instance`:
        whose they are ("" for a new one), for nic rules that depend on the others (static
        addresses); None (copies, restores) leaves those to the start."""
        devmod.validate_devices(devices)
        for i, profile in enumerate(profiles):
            if profile in profiles[:i]:
                raise BadRequest(f"Profile {profile!r} is listed twice")
        layers = [db_profiles.get(self.state.db, p).devices for p in profiles]
        _config, expanded = model.expand([({}, d) for d in layers], {}, devices)
        devmod.validate_expanded(expanded)
        self._check_disk_sources(expanded)
        self.check_nics(instance, expanded)
        return expanded

    def check_nics(self, instance: str | None, expanded: dict[str, dict[str, str]]) -> None:
        """Nic rules needing the networks (they exist; static addresses usable); without
        networking (no hooks) nics are not attached, so nothing to check."""
        if self.network_hooks is not None:
            self.network_hooks.check_devices(instance, expanded)

    def _check_disk_sources(self, devices: dict[str, dict[str, str]]) -> None:
        """Disk sources are opened on the host, following host links: one below the state
        directory or a storage pool (rootfs trees that containers write) could be swapped
        for a link to /."""
        state_root = os.path.realpath(self.state.paths.root)
        pools = self._pool_roots()
        for name, dev in devices.items():
            source = dev.get("source", "") if dev.get("type") == "disk" else ""
            real = os.path.realpath(source) if source else ""
            if not real:
                continue
            if _inside(real, state_root):
                raise BadRequest(
                    f"Device {name!r}: source {source} is inside machined's state directory "
                    f"{state_root}, which instances can write to: use a host path outside it")
            for pool, root in pools:
                if _inside(real, root):
                    raise BadRequest(
                        f"Device {name!r}: source {source} is inside storage pool {pool!r} "
                        f"({root}), which instances can write to: use a host path outside it")

    def _pool_roots(self) -> list[tuple[str, str]]:
        """(pool, real root) of every pool, available or not (an unavailable pool's source
        directory still holds volumes)."""
        roots = []
        for rec in db_storage_pools.list_all(self.state.db):
            try:
                root = os.fspath(self.storage.get(rec.name).root)
            except MachinedError:
                root = rec.config.get("source", "")
                if not root.startswith("/"):
                    continue  # a block device or nothing: mounted below the state dir
            roots.append((rec.name, os.path.realpath(root)))
        return roots

    def running(self, name: str) -> runtime.RunningContainer | None:
        return runtime.find(self.state.paths.run(name))

    def status(self, name: str) -> str:
        container = self.running(name)
        if container is None:
            return "Stopped"
        return "Frozen" if runtime.is_frozen(container) else "Running"

    def state_of(self, name: str) -> dict[str, Any]:
        container = self.running(name)
        status = "Stopped"
        pid, processes, memory, cpu = 0, 0, {"usage": 0, "usage_peak": 0}, {"usage": 0}
        usage = None
        if container is not None:
            try:
                frozen = runtime.is_frozen(container)
                usage = runtime.usage(container)
            except OSError as e:  # stopped between find() and the reads
                if e.errno not in runtime.CGROUP_GONE:
                    raise
                usage = None
        if container is not None and usage is not None:
            status = "Frozen" if frozen else "Running"
            pid, processes = container.init_pid, usage.processes
            memory = {"usage": usage.memory_bytes, "usage_peak": usage.memory_peak,
                      "swap_usage": usage.swap_bytes, "swap_usage_peak": usage.swap_peak}
            if usage.memory_limit:
                memory["total"] = usage.memory_limit  # as LXD: the limit, when there is one
            cpu = {"usage": usage.cpu_ns}
        network = self._network(name, container) if status != "Stopped" else None
        return {"status": status, "status_code": model.STATUS_CODES[status], "pid": pid,
                "processes": processes, "memory": memory, "cpu": cpu, "disk": {},
                "network": network}

    def _network(self, name: str, container: runtime.RunningContainer | None
                 ) -> dict[str, Any] | None:
        """`state.network` of a running instance (None if it stopped meanwhile, or if its
        namespace could not be read: one container must not fail a listing of all)."""
        if container is None:
            return None
        inst = self.load(name)
        try:
            return instance_network(container, inst.expanded_config, inst.expanded_devices)
        except runtime.NamespaceGone:
            return None
        except OSError as e:
            log.warning("Could not read the network state of %s: %s", name, e)
            return None

    # Creating

    def check_create(self, request: dict[str, Any]) -> db_images.ImageRecord | None:
        """Everything a create request can be refused for before any work starts (the API
        calls it before it answers, so a bad launch fails before "Creating..."); returns the
        source image, or None for an image on a remote server (resolved in create())."""
        name = request.get("name")
        if name:
            model.check_name(name)
        if name and db_instances.exists(self.state.db, name):
            raise Conflict(f"Instance {name!r} already exists")
        config = {str(k): v for k, v in (request.get("config") or {}).items()}
        validate_instance_config(config)
        profiles = request.get("profiles")
        profiles = ["default"] if profiles is None else list(profiles)
        expanded = self.check_devices(profiles, request.get("devices") or {}, name or "")
        self.check_pool(model.root_pool(expanded))
        source = request.get("source") or {}
        if source.get("type", "image") != "image":
            raise BadRequest(f"Unsupported instance source type {source.get('type')!r}: "
                             "accepted is image")
        if source.get("server"):
            if self.remote_images is None:
                raise BadRequest("Remote image servers are not available in this daemon")
            from machined.images.download import parse_source
            parse_source(source)  # the address, protocol and name are checked now
            return None
        image_name = source.get("fingerprint") or source.get("alias")
        if not image_name:
            raise BadRequest("Instance source needs an image alias or fingerprint")
        return store.resolve(self.state, image_name)

    def check_pool(self, name: str) -> Pool:
        """The pool an instance's root disk names: NotFound when there is no such pool, the
        reason when it cannot be used now (say its disk is missing)."""
        if name not in db_storage_pools.names(self.state.db):
            raise NotFound(f"Storage pool {name!r} not found")
        return self.storage.get(name)

    async def create(self, request: dict[str, Any], op: Any = None) -> str:
        image = self.check_create(request)
        if image is None:  # from a remote: a cached copy, or downloaded now (with progress)
            from machined.images.download import parse_source
            image = await self.remote_images.image_for_create(
                parse_source(request["source"]), op)
        name = request.get("name") or random_name()
        config = {str(k): v for k, v in (request.get("config") or {}).items()}
        devices = request.get("devices") or {}
        profiles = request.get("profiles")
        profiles = ["default"] if profiles is None else list(profiles)
        async with self.state.instance_locks[name]:
            if db_instances.exists(self.state.db, name):
                raise Conflict(f"Instance {name!r} already exists")
            pool_name = model.root_pool(self.check_devices(profiles, devices, name))
            pool = self.check_pool(pool_name)
            self._last_launch = time.monotonic()
            await store.ensure_volume(self.state, pool, image)
            if op is not None:
                op.set_metadata(create_instance_from_image_progress="Copying image volume")
            # Named once, never renamed: the row below is what makes this volume live (a
            # crash before it leaves a volume no row names, removed at the next start).
            volume = new_volume_name(name)
            async with AsyncReverter() as revert:
                await pool.create_from_image(image.fingerprint, volume)
                revert.add_async(pool.delete_volume, "containers", volume)
                crash.point("instance.create.volume")
                full = dict(config)
                for key, value in image.properties.items():
                    full.setdefault(f"image.{key}", value)
                full["volatile.base_image"] = image.fingerprint
                full["volatile.uuid"] = str(uuid.uuid4())
                full["volatile.last_state.power"] = "STOPPED"
                # Rendered with the start templates at the first start, in one render child
                # (LXD defers them the same way): a create is just the copy.
                full["volatile.apply_template"] = "create"
                created = store.now()
                # Again after the copy's await, none before the commit: a profile or network
                # may have changed (or be going) meanwhile.
                if model.root_pool(self.check_devices(profiles, devices, name)) != pool_name:
                    raise Conflict(f"The root disk pool of {name!r} changed while it was "
                                   "created (a profile changed): nothing was made; try again")
                db_instances.create(self.state.db, db_instances.InstanceRecord(
                    name=name, architecture=image.architecture or platform.machine(),
                    created_at=created, description=request.get("description") or "",
                    ephemeral=bool(request.get("ephemeral")), config=full, devices=devices,
                    profiles=profiles, storage_pool=pool_name, volume=volume))
                revert.add(db_instances.delete, self.state.db, name)
                crash.point("instance.create.row")
                image.last_used_at = clock.now_iso()  # the clock cache expiry reads
                db_images.update(self.state.db, image)
                revert.success()
        self.refill_spare(image.fingerprint, pool_name)
        log.info("Created instance %s from image %s", name, image.fingerprint[:12])
        return name

    # Lifecycle

    async def start(self, name: str) -> None:
        async with self.state.instance_locks[name]:
            await self.start_held(name)

    async def start_held(self, name: str) -> None:
        """start() for a caller that already holds the instance's lock."""
        inst = self.load(name)
        if self.running(name) is not None:
            raise BadRequest(f"Instance {name!r} is already running")
        pending = inst.record.config.get("volatile.apply_template")
        if pending in ("create", "copy"):
            await self.apply_templates(name, pending, "start")
            db_instances.set_config_keys(self.state.db, name, {"volatile.apply_template": None})
        else:
            await self.apply_templates(name, "start")
        crash.point("instance.start.templates")
        spec = self._launch_spec(inst)
        self._last_launch = time.monotonic()
        hooks = self.network_hooks
        try:
            if hooks is not None:
                spec.nics = await hooks.before_start(inst)
                crash.point("instance.start.nics")
            container = await asyncio.to_thread(runtime.start, spec)
        except BaseException:
            if hooks is not None:
                await hooks.start_failed(inst)
            raise
        crash.point("instance.start.running")
        if hooks is not None:
            try:
                await hooks.after_start(inst, container)
            except BaseException:  # the start fails as a whole: nothing stays running
                await asyncio.to_thread(runtime.stop, container, 0.0, True)
                await hooks.after_stop(name)
                raise
        db_instances.set_config_keys(self.state.db, name,
                                     {"volatile.last_state.power": "RUNNING"})
        db_instances.touch(self.state.db, name, store.now())
        # It runs now, however it was started: an autostart failure is over.
        db_warnings.resolve(self.state.db, AUTOSTART_FAILURE, f"/1.0/instances/{name}")
        log.info("Started instance %s", name)

    async def apply_templates(self, name: str, *triggers: str) -> None:
        """Render the image templates of `triggers` (create, copy, start; in that order)
        into the instance's rootfs. The caller holds the instance's lock."""
        inst = self.load(name)
        written = await asyncio.to_thread(
            templates.apply, self.storage.instance_dir(inst.record), triggers, name,
            inst.record.architecture, inst.expanded_config, inst.expanded_devices)
        if written:
            log.info("Rendered %s templates of %s: %s", "+".join(triggers), name,
                     ", ".join(written))

    def _launch_spec(self, inst: Instance) -> runtime.LaunchSpec:
        config = inst.expanded_config
        name = inst.record.name
        privileged = config.get("security.privileged", "false").lower() in (
            "true", "1", "yes", "on")
        rootfs = self.storage.instance_dir(inst.record) / "rootfs"
        if not rootfs.is_dir():
            raise NotFound(f"Root filesystem of instance {name!r} is missing")
        env = {k[len("environment."):]: v for k, v in config.items()
               if k.startswith("environment.")}
        uid_map: list[tuple[int, int, int]] = []
        gid_map: list[tuple[int, int, int]] = []
        if not privileged:
            uid_map, gid_map = runtime.default_idmap()
        logs = self.state.paths.logs(name)
        logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        limits = model.runtime_limits(config, _host_memory())
        self._check_disk_sources(inst.expanded_devices)
        init = model.resolve_in_rootfs(lambda p: inroot.read_link(os.fspath(rootfs), p),
                                       "/sbin/init")
        return runtime.LaunchSpec(
            name=name, rootfs=os.fspath(rootfs), hostname=name, init=["/sbin/init"],
            environment=env, privileged=privileged, uid_map=uid_map, gid_map=gid_map,
            run_dir=os.fspath(self.state.paths.run(name)),
            console_log=os.fspath(logs / "console.log"),
            stop_signal=runtime.stop_signal_for(init or "/sbin/init"), limits=limits,
            devices=devmod.runtime_devices(inst.expanded_devices))

    async def stop(self, name: str, timeout: float = -1, force: bool = False,
                   record: bool = True) -> None:
        """record=False: volatile.last_state.power is left as it is (a host shutdown keeps
        RUNNING, so an instance it was stopping when the daemon died still autostarts)."""
        stopping = self._stopping.get(name)
        if force and stopping is not None:
            # A clean stop holds the lock while init shuts down (up to its timeout, 600 s by
            # default): a forced stop does not queue behind it (LXD lets it through too). It
            # kills now; the clean stop then returns and records the stop.
            log.info("Force-stopping instance %s during its clean stop", name)
            await asyncio.to_thread(runtime.stop, stopping, 0.0, True)
        async with self.state.instance_locks[name]:
            if stopping is not None and force and self.running(name) is None:
                return  # stopped by the kill above (the clean stop recorded it)
            await self.stop_held(name, timeout, force, record)

    async def stop_held(self, name: str, timeout: float = -1, force: bool = False,
                        record: bool = True) -> None:
        """stop() for a caller that already holds the instance's lock."""
        db_instances.get(self.state.db, name)
        container = self.running(name)
        if container is None:
            raise BadRequest(f"Instance {name!r} is not running")
        if timeout is None or timeout < 0:
            timeout = 600.0
        if runtime.is_frozen(container) and not force:
            raise BadRequest(f"Instance {name!r} is frozen: resume it first or stop it with "
                             "--force")
        # Recorded first: a daemon killed once the container has stopped must not find it
        # marked RUNNING (autostart would start it again); recover() marks the containers
        # it finds running RUNNING.
        power = db_instances.get(self.state.db, name).config.get("volatile.last_state.power")
        if record:
            db_instances.set_config_keys(self.state.db, name,
                                         {"volatile.last_state.power": "STOPPED"})
        crash.point("instance.stop.recorded")
        self._stopping[name] = container
        try:
            await asyncio.to_thread(runtime.stop, container, float(timeout),
                                    force or timeout == 0)
        except BaseException:
            if self.running(name) is not None:
                db_instances.set_config_keys(self.state.db, name,
                                             {"volatile.last_state.power": power})
            raise
        finally:
            self._stopping.pop(name, None)
        crash.point("instance.stop.stopped")
        if self.network_hooks is not None:
            await self.network_hooks.after_stop(name)
        log.info("Stopped instance %s", name)

    async def restart(self, name: str, timeout: float = -1, force: bool = False) -> None:
        async with self.state.instance_locks[name]:
            if self.running(name) is not None:
                await self.stop_held(name, timeout, force)
            await self.start_held(name)

    async def freeze(self, name: str) -> None:
        async with self.state.instance_locks[name]:
            container = self._must_run(name)
            if runtime.is_frozen(container):
                raise BadRequest(f"Instance {name!r} is already frozen")
            await asyncio.to_thread(runtime.freeze, container)
            db_instances.set_config_keys(self.state.db, name,
                                         {"volatile.last_state.power": "FROZEN"})
        log.info("Froze instance %s", name)

    async def unfreeze(self, name: str) -> None:
        async with self.state.instance_locks[name]:
            container = self._must_run(name)
            if not runtime.is_frozen(container):
                raise BadRequest(f"Instance {name!r} is not frozen")
            await asyncio.to_thread(runtime.thaw, container)
            db_instances.set_config_keys(self.state.db, name,
                                         {"volatile.last_state.power": "RUNNING"})
        log.info("Unfroze instance %s", name)

    @contextlib.asynccontextmanager
    async def frozen_for_copy(self, name: str) -> AsyncIterator[None]:
        """Hold a running instance still while its volume is copied: frozen (cgroup freezer)
        for the duration when its pool cannot copy a live volume atomically, thawed after,
        even on error. Stopped, already frozen (left frozen) or on an atomic pool: nothing
        to do. The caller holds the instance's lock."""
        rec = db_instances.get(self.state.db, name)
        container = self.running(name)
        freeze = (container is not None and not self.pool_of(rec).atomic_snapshots
                  and not runtime.is_frozen(container))
        if not freeze:
            yield
            return
        assert container is not None
        try:
            await asyncio.to_thread(runtime.freeze, container)
            yield
        finally:
            # Not through a thread: a cancelled copy (daemon stopping) must still thaw, and
            # so must a freeze that timed out half-way.
            try:
                runtime.thaw(container)
            except OSError as e:
                if e.errno not in runtime.CGROUP_GONE:
                    raise  # otherwise it stopped meanwhile: nothing left to thaw

    def _must_run(self, name: str) -> runtime.RunningContainer:
        db_instances.get(self.state.db, name)
        container = self.running(name)
        if container is None:
            raise BadRequest(f"Instance {name!r} is not running")
        return container

    async def delete(self, name: str) -> None:
        async with self.state.instance_locks[name]:
            inst = self.load(name)
            if self.running(name) is not None:
                raise BadRequest(f"Instance {name!r} is running: stop it first or pass --force")
            if inst.expanded_config.get("security.protection.delete", "").lower() in (
                    "true", "1", "yes", "on"):
                raise Forbidden(f"Instance {name!r} is protected: unset "
                                "security.protection.delete first")
            # The DB row goes first (its snapshot rows cascade): a crash afterwards leaves
            # volumes no row names, removed at the next start, never a row pointing at a
            # half-deleted rootfs.
            snapshots = db_snapshots.list_for(self.state.db, name)
            db_instances.delete(self.state.db, name)
            db_warnings.forget_entity(self.state.db, f"/1.0/instances/{name}")
            crash.point("instance.delete.row")
            await self._delete_volumes(inst.record, [s.volume for s in snapshots])
            crash.point("instance.delete.volumes")
            for path in (self.state.paths.run(name), self.state.paths.logs(name)):
                await asyncio.to_thread(_remove_dir, path)
            if self.network_hooks is not None:
                await self.network_hooks.deleted(inst.record)
        log.info("Deleted instance %s", name)

    async def _delete_volumes(self, rec: db_instances.InstanceRecord,
                              snapshots: list[str]) -> None:
        """The volumes of a deleted instance row. Failing here is not the delete failing:
        what stays is unreferenced and goes at the next daemon start."""
        try:
            pool = self.pool_of(rec)
            await pool.delete_volume("containers", rec.volume)
            for volume in snapshots:
                await pool.delete_volume("snapshots", volume)
        except (MachinedError, OSError) as e:
            log.warning("Instance %s deleted; its volumes in pool %s stay until the next "
                        "start: %s", rec.name, rec.storage_pool, getattr(e, "message", e))

    async def rename(self, name: str, new: str) -> None:
        model.check_name(new)
        if new == name:  # the two locks below would be one lock taken twice: a deadlock
            db_instances.get(self.state.db, name)
            raise Conflict(f"Instance {new!r} already exists")
        first, second = sorted([name, new])
        async with self.state.instance_locks[first], self.state.instance_locks[second]:
            db_instances.get(self.state.db, name)
            if self.running(name) is not None:
                raise BadRequest(f"Instance {name!r} is running: stop it before renaming")
            if db_instances.exists(self.state.db, new):
                raise Conflict(f"Instance {new!r} already exists")
            # Volumes keep their names (the row maps name -> volume): only the row and the
            # logs directory change, the logs after the row (journaled: see leftovers.py).
            with leftovers.logs_follow(self.state.paths, name, new):
                db_instances.rename(self.state.db, name, new)
                db_warnings.move_entity(self.state.db, f"/1.0/instances/{name}",
                                        f"/1.0/instances/{new}")
                crash.point("instance.rename.row")
            if self.network_hooks is not None:
                await self.network_hooks.renamed(name, new)
        log.info("Renamed instance %s to %s", name, new)

    async def update(self, name: str, put: dict[str, Any], patch: bool) -> None:
        """PUT/PATCH of an instance: a synchronous request, so it waits for a busy instance
        only briefly (locking.hold: then 409)."""
        async with locking.hold(self.state.instance_locks[name], name,
                                "Changing its configuration"):
            rec = db_instances.get(self.state.db, name)
            before = replace(rec, config=dict(rec.config), devices=dict(rec.devices),
                             profiles=list(rec.profiles))
            config = put.get("config")
            if config is not None:
                user = {k: str(v) for k, v in config.items()}
                volatile = {k: v for k, v in rec.config.items() if k.startswith("volatile.")}
                changed = {k: v for k, v in user.items()
                           if k.startswith("volatile.") and volatile.get(k) != v}
                if changed:
                    raise BadRequest(f"Key {next(iter(changed))!r} is read-only: volatile.* "
                                     "keys are set by machined")
                user = {k: v for k, v in user.items() if not k.startswith("volatile.")}
                validate_instance_config(user)
                merged = {**rec.config, **user} if patch else {**user, **volatile}
                rec.config = {k: v for k, v in merged.items() if v != ""}  # "" unsets (LXD)
            if put.get("devices") is not None:
                devmod.validate_devices(put["devices"])
                rec.devices = ({**rec.devices, **put["devices"]} if patch
                               else dict(put["devices"]))
            if put.get("profiles") is not None:
                rec.profiles = list(put["profiles"])
            self._check_root_pool(rec, self.check_devices(rec.profiles, rec.devices, name))
            if "description" in put:
                rec.description = str(put["description"] or "")
            if "ephemeral" in put:
                rec.ephemeral = bool(put["ephemeral"])
            await self._apply_live(rec)
            crash.point("instance.update.applied")
            db_instances.update(self.state.db, rec)  # no await since _apply_live's last check
        log.info("Updated instance %s: %s", name, model.describe_change(before, rec))

    async def _apply_live(self, rec: db_instances.InstanceRecord) -> None:
        """Apply what `rec` (not stored yet) expands to, to the running instance, live first:
        if the kernel refuses the new limits, or a proxy device cannot listen, nothing is
        stored (the limits and proxies are put back). A profile may change while this awaits
        (a profile change holds the profile's lock and applies to its users as stored), so
        it applies again until what runs is what `rec` expands to now; the caller stores
        `rec` right after, with no await in between."""
        name = rec.name
        old = self.load(name)
        config, devices = old.expanded_config, old.expanded_devices
        try:
            while True:
                new_devices = self.check_devices(rec.profiles, rec.devices, name)
                self._check_root_pool(rec, new_devices)
                new_config = self._expanded_config(rec)
                if new_config == config and new_devices == devices:
                    return
                await self._apply_devices(name, new_devices)
                devices = new_devices
                await self._apply_limits(name, config, new_config)
                config = new_config
        except BaseException:
            if devices != old.expanded_devices:
                await self._apply_devices(name, old.expanded_devices)
            if config != old.expanded_config:
                try:
                    await self._apply_limits(name, config, old.expanded_config)
                except MachinedError as e:
                    log.warning("Could not put back the limits of %s: %s", name, e.message)
            raise

    async def _apply_devices(self, name: str, expanded: dict[str, dict[str, str]]) -> None:
        """Devices that apply to a running instance at once (proxy devices)."""
        if self.network_hooks is not None:
            await self.network_hooks.devices_changed(name, expanded)

    def _check_root_pool(self, rec: db_instances.InstanceRecord,
                         expanded: dict[str, dict[str, str]]) -> None:
        self.check_device_pools(rec.devices)
        refusal = model.root_pool_change(rec.name, rec.storage_pool, expanded)
        if refusal is not None:
            raise BadRequest(refusal)

    def check_device_pools(self, devices: dict[str, dict[str, str]]) -> None:
        """Root disks (of an instance or a profile) name pools that exist (LXD)."""
        names = set(db_storage_pools.names(self.state.db))
        for dev_name, dev in sorted(devices.items()):
            pool = dev.get("pool")
            if devmod.is_root_disk(dev) and pool and pool not in names:
                raise BadRequest(f"Device {dev_name!r}: storage pool {pool!r} not found")

    async def apply_config(self, name: str) -> None:
        """Apply the live-updatable parts of `name`'s expanded config (limits) to its running
        container; called after one of its profiles changed. No-op when stopped. Raises
        BadRequest (the container's cgroups unchanged) when the kernel refuses a limit, and
        Conflict when the instance stays busy (a profile change is a synchronous request)."""
        async with locking.hold(self.state.instance_locks[name], name,
                                "Applying a profile change"):
            inst = self.load(name)
            config = inst.expanded_config
            validate_instance_config(config, allow_volatile=True)
            await self._apply_limits(name, None, config)
            await self._apply_devices(name, inst.expanded_devices)

    def _expanded_config(self, rec: db_instances.InstanceRecord) -> dict[str, str]:
        profiles = [db_profiles.get(self.state.db, p) for p in rec.profiles]
        config, _devices = model.expand([(p.config, p.devices) for p in profiles], rec.config,
                                        rec.devices)
        return config

    async def _apply_limits(self, name: str, old: dict[str, str] | None,
                            new: dict[str, str]) -> None:
        """Write the limits of expanded config `new` into the running container's cgroups
        (all or nothing); skipped when stopped or when they equal those of `old`."""
        container = self.running(name)
        if container is None:
            return
        limits = model.runtime_limits(new, _host_memory())
        if old is not None and model.runtime_limits(old, _host_memory()) == limits:
            return
        try:
            warnings = await asyncio.to_thread(runtime.apply_limits, container, limits)
        except OSError as e:
            if e.errno in runtime.CGROUP_GONE and self.running(name) is None:
                return  # it stopped meanwhile: the next start applies the new config
            raise BadRequest(f"Running instance {name!r} cannot take the new limits "
                             f"(nothing changed): {e.strerror or e}") from None
        for warning in warnings:
            log.warning("Instance %s: limit not enforced: %s", name, warning)
        log.info("Applied limits to running instance %s: %s", name, limits or "none")

    # Exec

    def exec_target(self, name: str) -> tuple[Instance, runtime.RunningContainer]:
        inst = self.load(name)
        container = self.running(name)
        if container is None:
            raise BadRequest(f"Instance {name!r} is not running")
        if runtime.is_frozen(container):
            raise BadRequest(f"Instance {name!r} is frozen")
        return inst, container

    async def spawn_exec(self, container: ExecTarget, argv: list[str], env: dict[str, str],
                         uid: int, gid: int, cwd: str, interactive: bool, width: int,
                         height: int) -> runtime.ExecProcess:
        return await runtime.exec(container, argv, env, uid, gid, cwd, interactive, width,
                                  height)

    # Daemon start

    def recover(self) -> list[str]:
        """Find containers that kept running while the daemon was away. One found frozen
        that the user did not pause (volatile.last_state.power is not FROZEN) was frozen
        for a copy when the daemon died: it is thawed. What a daemon killed mid-operation
        left is repaired: logs/ and run/ directories follow the rows (leftovers.py), a
        running container is recorded RUNNING (killed between a start and its record, or
        after recording a stop) and gets the limits its row says (killed between applying
        new limits and storing them)."""
        names = db_instances.names(self.state.db)
        repaired = leftovers.repair(self.state.paths, set(names))
        if repaired:
            log.warning("Repaired after an interrupted operation: %s", ", ".join(repaired))
        alive = []
        for name in names:
            container = self.running(name)
            if container is None:
                continue
            alive.append(name)
            power = db_instances.get(self.state.db, name).config.get(
                "volatile.last_state.power")
            try:
                if runtime.is_frozen(container) and power != "FROZEN":
                    runtime.thaw(container)
                    log.warning("Thawed instance %s: it was frozen for a copy when the "
                                "daemon stopped", name)
                    power = None
            except OSError as e:
                log.warning("Could not check whether instance %s is frozen: %s", name, e)
            if power not in ("RUNNING", "FROZEN"):
                db_instances.set_config_keys(self.state.db, name,
                                             {"volatile.last_state.power": "RUNNING"})
            self._stored_limits(name, container)
        return alive

    def _stored_limits(self, name: str, container: runtime.RunningContainer) -> None:
        """Put a running container's cgroups in the state its stored config says."""
        try:
            limits = model.runtime_limits(self.load(name).expanded_config, _host_memory())
            runtime.apply_limits(container, limits)
        except (MachinedError, OSError) as e:
            log.warning("Could not apply the stored limits of instance %s: %s", name,
                        getattr(e, "message", None) or e)


def _host_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def random_name() -> str:
    """A name for an instance created without one (the API picks it before answering)."""
    return "c" + uuid.uuid4().hex[:8]


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _remove_dir(path: os.PathLike[str]) -> None:
    import shutil
    shutil.rmtree(path, ignore_errors=True)

