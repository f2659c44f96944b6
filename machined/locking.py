"""Per-instance locks that know what holds them.

Every change to an instance runs under its lock (State.instance_locks), so conflicting
operations on one instance never interleave. Operations (start, stop, snapshot, copy,
delete...) wait their turn: they are asynchronous already, and running in the order they
were asked for is what a user typing them expects. A synchronous request (a config change,
a file push) waits at most BUSY_WAIT seconds and then answers 409 naming what holds the
instance, instead of leaving an HTTP request hanging behind a copy that takes minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from contextvars import ContextVar

from machined.errors import Conflict

# What the current task is doing, as a holder is described in a "busy" error: the
# description of the operation it runs (set by api/operations.py), else a request's own.
current_activity: ContextVar[str] = ContextVar("machined_activity", default="")


def busy_wait() -> float:
    """Seconds a synchronous request waits for a busy instance (MACHINED_BUSY_WAIT shortens
    it in tests)."""
    try:
        return max(0.0, float(os.environ.get("MACHINED_BUSY_WAIT", "10")))
    except ValueError:
        return 10.0


class InstanceLock(asyncio.Lock):
    """asyncio.Lock recording who holds it and since when (for 409 messages)."""

    def __init__(self) -> None:
        super().__init__()
        self.holder = ""
        self.since = 0.0

    async def acquire(self) -> bool:
        await super().acquire()
        self.holder = current_activity.get() or "another operation"
        self.since = time.monotonic()
        return True

    def release(self) -> None:
        self.holder = ""
        super().release()


@contextlib.asynccontextmanager
async def hold(lock: asyncio.Lock, name: str, activity: str,
               wait: float | None = None) -> AsyncIterator[None]:
    """Hold instance `name`'s lock for a synchronous request doing `activity`: wait at most
    `wait` seconds (default busy_wait()), then refuse with Conflict (409)."""
    token = current_activity.set(activity)
    try:
        try:
            async with asyncio.timeout(busy_wait() if wait is None else wait):
                await lock.acquire()
        except TimeoutError:
            raise Conflict(busy_message(lock, name)) from None
    finally:
        current_activity.reset(token)
    try:
        yield
    finally:
        lock.release()


def busy_message(lock: asyncio.Lock, name: str) -> str:
    holder = getattr(lock, "holder", "") or "another operation"
    since = getattr(lock, "since", 0.0)
    age = f" for {time.monotonic() - since:.0f} s" if since else ""
    return (f"Instance {name!r} is busy ({holder.lower()}{age}): try again once that has "
            "finished")
