"""The scheduled-snapshot loop: every tick (MACHINED_TASK_TICK, default 60 s) it takes the
snapshots whose snapshots.schedule named a minute since the previous tick, then deletes the
snapshots whose expires_at has passed. At daemon start, @startup entries fire for running
instances. Time is machined.clock's, so tests move it; the schedule itself is pure
(instances/schedule.py). A failure is logged for its instance and never stops the loop."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from machined import clock
from machined.background import BackgroundLoop
from machined.config.validate import parse_bool
from machined.db import instances as db_instances
from machined.db import snapshots as db_snapshots
from machined.errors import MachinedError
from machined.instances import schedule

log = logging.getLogger("machined.instances.snapshot_tasks")


class SnapshotTasks(BackgroundLoop):
    def __init__(self, snapshots: Any) -> None:
        """`snapshots` is the daemon's SnapshotService (instances/snapshots.py): create(name,
        None) names the snapshot from snapshots.pattern and dates its expiry from
        snapshots.expiry; delete(name, snap) removes row and volume."""
        self.snapshots = snapshots
        self.instances = snapshots.instances
        self.db = snapshots.instances.state.db
        self.last: datetime | None = None

    async def startup(self) -> None:
        """@startup entries: one snapshot of each instance that has one (running, or stopped
        with snapshots.schedule.stopped), when the daemon starts."""
        self.last = clock.now()
        for name, config in self._scheduled():
            if schedule.has_startup(config["snapshots.schedule"]) and \
                    self._eligible(name, config):
                await self._take(name)

    async def run_once(self) -> None:
        """One tick: scheduled snapshots due since the last tick, then expiry. A clock that
        went back only moves `last` (nothing fires twice for the same minute)."""
        now = clock.now()
        last, self.last = self.last or now, now
        for name, config in self._scheduled():
            if self._wants(name, config, last, now):
                await self._take(name)
        await self.expire(clock.now())

    def _scheduled(self) -> list[tuple[str, dict[str, str]]]:
        """(name, expanded config) of the instances with a snapshots.schedule (profiles
        included); an instance deleted meanwhile is simply skipped."""
        found = []
        for name in db_instances.names(self.db):
            try:
                config = self.instances.load(name).expanded_config
            except MachinedError:  # deleted or renamed since names() was read
                continue
            if config.get("snapshots.schedule", "").strip():
                found.append((name, config))
        return found

    def _wants(self, name: str, config: dict[str, str], last: datetime, now: datetime) -> bool:
        try:
            due = schedule.due(config["snapshots.schedule"], last, now)
        except ValueError as e:  # stored before validation tightened, or edited by hand
            log.warning("Instance %s: unusable snapshots.schedule: %s", name, e)
            return False
        return due and self._eligible(name, config)

    def _eligible(self, name: str, config: dict[str, str]) -> bool:
        """Running (or frozen), or stopped with snapshots.schedule.stopped=true (LXD)."""
        if self.instances.running(name) is not None:
            return True
        try:
            return parse_bool(config.get("snapshots.schedule.stopped") or "false")
        except ValueError:
            return False

    async def _take(self, name: str) -> None:
        try:
            snap = await self.snapshots.create(name, None)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.error("Scheduled snapshot of %s failed: %s", name, _reason(e))
            return
        log.info("Scheduled snapshot %s/%s taken", name, snap)

    async def expire(self, now: datetime) -> None:
        """Delete every snapshot whose expires_at is not after `now`. Microseconds always
        written out: stored times compare as strings, and this way one is never early."""
        stamp = now.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        for name, snap in db_snapshots.expired(self.db, stamp):
            try:
                # Checked again under the instance's lock: deleting one volume can take a
                # while, and the next one's expiry may be changed (or it renamed) meanwhile.
                if not await self.snapshots.delete(name, snap, expired_by=stamp):
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.error("Deleting expired snapshot %s/%s failed: %s", name, snap, _reason(e))
                continue
            log.info("Expired snapshot %s/%s deleted", name, snap)

    async def _run(self) -> None:
        tick = clock.task_tick()
        await self._guarded(self.startup())
        await self._guarded(self.expire(clock.now()))
        while True:
            await asyncio.sleep(tick)
            await self._guarded(self.run_once())

    async def _guarded(self, work: Any) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Snapshot task pass failed")


def _reason(error: Exception) -> str:
    return getattr(error, "message", None) or str(error) or type(error).__name__
