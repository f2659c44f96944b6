"""The image background loop: cache expiry and auto-update, at daemon start and then on
schedule (expiry daily, update checks hourly; each image is refreshed when ITS last check is
older than images.auto_update_interval). Changing images.* keys makes the next tick run the
pass(es) at once: no restart needed. Time is machined.clock's, so tests can move it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from datetime import datetime, timedelta

from machined import clock
from machined.background import BackgroundLoop
from machined.images.service import ImageService

log = logging.getLogger("machined.images.tasks")

UPDATE_EVERY = timedelta(hours=1)
EXPIRY_EVERY = timedelta(hours=24)
UPDATE_KEYS = ("images.auto_update_interval", "images.auto_update_cached")
EXPIRY_KEYS = ("images.remote_cache_expiry",)


def _due(last: datetime | None, every: timedelta, now: datetime) -> bool:
    """Never run, or `every` passed (or the clock went back)."""
    return last is None or now - last >= every or now < last


class ImageTasks(BackgroundLoop):
    def __init__(self, images: ImageService) -> None:
        self.images = images
        self.last_update: datetime | None = None
        self.last_expiry: datetime | None = None
        self._wake = asyncio.Event()

    async def config_changed(self, old: dict[str, str], new: dict[str, str]) -> None:
        """State.config_listeners entry: a changed key re-runs its pass on the next tick."""
        if any(old.get(k) != new.get(k) for k in UPDATE_KEYS):
            self.last_update = None
            self._wake.set()
        if any(old.get(k) != new.get(k) for k in EXPIRY_KEYS):
            self.last_expiry = None
            self._wake.set()

    async def run_once(self) -> None:
        """One tick: whichever passes are due (expiry first: no point refreshing an image
        about to be pruned)."""
        now = clock.now()
        if _due(self.last_expiry, EXPIRY_EVERY, now):
            self.last_expiry = now
            await self._guarded("expiry", self.images.expiry_pass())
        now = clock.now()
        if _due(self.last_update, UPDATE_EVERY, now):
            self.last_update = now
            await self._guarded("auto-update", self.images.update_pass())

    async def _guarded(self, what: str, work: Awaitable[object]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Image %s pass failed", what)

    async def _run(self) -> None:
        tick = clock.task_tick()
        while True:
            await self.run_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), tick)
            self._wake.clear()
