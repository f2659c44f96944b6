"""The daemon's notion of "now" for image auto-update and cache expiry.

Tests drive time without waiting: when `MACHINED_TEST_CLOCK` names a file holding an ISO-8601
time, that time is "now" (re-read on every call, so a test moves it while the daemon runs).
An unset variable, a missing or unreadable file, or text that is not a time means the real
clock. `MACHINED_TASK_TICK` is how often (seconds) the image task loop wakes up."""

from __future__ import annotations

import os
from datetime import UTC, datetime

DEFAULT_TICK = 60.0


def now() -> datetime:
    """The current time, timezone-aware (UTC)."""
    path = os.environ.get("MACHINED_TEST_CLOCK")
    if path:
        try:
            with open(path) as fh:
                text = fh.read().strip()
            return parse_time(text)
        except (OSError, ValueError):
            pass
    return datetime.now(UTC)


def parse_time(text: str) -> datetime:
    """An ISO-8601 time ('Z' accepted; a naive time is taken as UTC). ValueError otherwise."""
    if not text:
        raise ValueError("empty time")
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso(value: datetime) -> str:
    """The way the database and API write times: ISO-8601 UTC with a 'Z'."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def now_iso() -> str:
    return iso(now())


def task_tick() -> float:
    """Seconds between wake-ups of the image task loop (MACHINED_TASK_TICK, default 60)."""
    try:
        tick = float(os.environ.get("MACHINED_TASK_TICK") or DEFAULT_TICK)
    except ValueError:
        return DEFAULT_TICK
    return tick if tick > 0 else DEFAULT_TICK
