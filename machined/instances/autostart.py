"""Instances and the daemon's life: autostart when the daemon starts, and the host-shutdown
stop (the plans are instances/boot.py).

Autostart runs in the background once the API listens (the API answers meanwhile). Each
instance gets up to 3 attempts, MACHINED_AUTOSTART_RETRY seconds apart (5); after the third
failure an `instance-autostart-failure` warning names it (mc warning list, mc info), and a
later successful autostart removes it. A daemon stopping meanwhile lets the starts under way
finish (a start cancelled half-way would leave a container the DB does not know runs) and
starts nothing more.

Host shutdown (`machined shutdown`, SIGPWR) stops the running instances in boot.stop.priority
batches and records volatile.last_state.power=RUNNING for each, so `last-state` autostart
brings them back; instances that stopped by themselves are recorded STOPPED."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING

from machined.db import instances as db_instances
from machined.db import warnings as db_warnings
from machined.errors import MachinedError, NotFound
from machined.instances import boot
from machined.instances.service import AUTOSTART_FAILURE

if TYPE_CHECKING:
    from machined.instances.service import InstanceService

log = logging.getLogger("machined.autostart")

ATTEMPTS = 3
DEFAULT_RETRY = 5.0
FAILURE = AUTOSTART_FAILURE


def retry_interval() -> float:
    """Seconds between attempts (MACHINED_AUTOSTART_RETRY, default 5: LXD's)."""
    try:
        value = float(os.environ.get("MACHINED_AUTOSTART_RETRY") or DEFAULT_RETRY)
    except ValueError:
        return DEFAULT_RETRY
    return value if value >= 0 else DEFAULT_RETRY


def entity_url(name: str) -> str:
    return f"/1.0/instances/{name}"


def _reason(e: BaseException) -> str:
    return getattr(e, "message", None) or str(e) or type(e).__name__


class Autostart:
    """The autostart pass of one daemon start: start() once the API listens, stop() when
    the daemon stops."""

    def __init__(self, instances: InstanceService) -> None:
        self.instances = instances
        self.db = instances.state.db
        self.retry = retry_interval()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        """Start nothing more; wait for the starts under way (they are short)."""
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def plan(self) -> boot.AutostartPlan:
        """The plan for the instances that are not running now."""
        configs = {}
        for name in db_instances.names(self.db):
            if self.instances.running(name) is not None:
                continue  # kept running across a daemon restart
            try:
                configs[name] = self.instances.load(name).expanded_config
            except MachinedError:  # deleted meanwhile
                continue
        return boot.autostart_plan(configs)

    def forget_gone(self) -> None:
        """Autostart warnings of instances deleted or renamed since they were recorded go
        (instance delete and rename do not touch warnings)."""
        names = set(db_instances.names(self.db))
        for w in db_warnings.list_all(self.db):
            if w.type == FAILURE and w.entity_url.removeprefix("/1.0/instances/") not in names:
                db_warnings.delete(self.db, w.uuid)

    async def run(self) -> None:
        try:
            self.forget_gone()
            plan = self.plan()
        except Exception:
            log.exception("Autostart: could not read the instances")
            return
        if not plan.names():
            return
        log.info("Autostart: %s", ", ".join(plan.names()))
        workers = asyncio.Semaphore(boot.parallelism(os.cpu_count()))

        async def bounded(name: str) -> None:
            async with workers:
                await self.start_one(name)

        await asyncio.gather(*(bounded(name) for name in plan.parallel))
        for step in plan.sequence:
            if await self.start_one(step.name) and step.delay:
                await self._sleep(step.delay)
        log.info("Autostart finished")

    async def _sleep(self, seconds: float) -> None:
        """Sleep unless the daemon is stopping (then return at once)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def start_one(self, name: str) -> bool:
        """Up to ATTEMPTS starts of `name`; True once it runs. The last failure becomes a
        warning, a success resolves an earlier one."""
        for attempt in range(1, ATTEMPTS + 1):
            if self._stopping.is_set():
                return False
            log.info("Autostarting instance %s (attempt %d of %d)", name, attempt, ATTEMPTS)
            try:
                await self.instances.start(name)
            except NotFound:
                return False  # deleted meanwhile: nothing to start
            except Exception as e:
                if self.instances.running(name) is not None:
                    break  # started by someone else meanwhile
                reason = _reason(e)
                log.warning("Autostart of instance %s failed (attempt %d of %d): %s",
                            name, attempt, ATTEMPTS, reason)
                if attempt == ATTEMPTS:
                    self._warn(name, reason)
                    return False
                await self._sleep(self.retry)
            else:
                break
        self._resolve(name)
        return True

    def _warn(self, name: str, reason: str) -> None:
        log.error("Could not autostart instance %s after %d attempts: %s", name, ATTEMPTS,
                  reason)
        try:
            db_warnings.upsert(self.db, FAILURE, entity_url(name),
                               f"Failed to autostart instance {name}: {reason}", "low")
        except Exception as e:
            log.warning("Could not record the autostart failure of %s: %s", name, e)

    def _resolve(self, name: str) -> None:
        try:
            db_warnings.resolve(self.db, FAILURE, entity_url(name))
        except Exception as e:
            log.warning("Could not resolve the autostart warning of %s: %s", name, e)


async def host_shutdown(instances: InstanceService) -> None:
    """Stop every running instance as for a host power-off (boot.stop.priority batches,
    boot.host_shutdown_timeout each, then killed) and record which were running."""
    db = instances.state.db
    running: dict[str, dict[str, str]] = {}
    for name in db_instances.names(db):
        try:
            inst = instances.load(name)
        except MachinedError:
            continue
        if instances.running(name) is not None:
            running[name] = inst.expanded_config
        elif inst.record.config.get("volatile.last_state.power") == boot.RUNNING:
            # It stopped by itself (poweroff inside) while the daemon ran: it stays down.
            db_instances.set_config_keys(db, name, {"volatile.last_state.power": "STOPPED"})
    plan = boot.shutdown_plan(running)
    log.info("Host shutdown: stopping %d instance(s) in %d batch(es)", len(running),
             len(plan))
    for batch in plan:
        log.info("Host shutdown: batch boot.stop.priority=%d: %s", batch.priority,
                 ", ".join(s.name for s in batch.stops))
        await asyncio.gather(*(_stop_for_host(instances, s) for s in batch.stops))
    log.info("Host shutdown: all instances stopped")


async def _stop_for_host(instances: InstanceService, stop: boot.Stop) -> None:
    """One instance: clean stop within its timeout, then killed; its power state is
    recorded RUNNING whatever happens (it was running when the host went down). Errors are
    logged: one instance must not keep the others running."""
    name = stop.name
    log.info("Host shutdown: stopping instance %s (%d s before it is killed)", name,
             stop.timeout)
    try:
        if instances.status(name) == "Frozen":
            await instances.unfreeze(name)  # a frozen init cannot shut down cleanly
    except Exception as e:
        log.warning("Host shutdown: could not resume frozen instance %s: %s", name,
                    _reason(e))
    try:
        force = instances.status(name) == "Frozen"
        await instances.stop(name, float(stop.timeout), force, record=False)
    except Exception as e:
        if instances.running(name) is not None:
            log.error("Host shutdown: could not stop instance %s: %s", name, _reason(e))
    try:
        db_instances.set_config_keys(instances.state.db, name,
                                     {"volatile.last_state.power": boot.RUNNING})
    except MachinedError as e:
        log.warning("Host shutdown: could not record the state of %s: %s", name, e.message)
