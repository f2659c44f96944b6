"""When an image is due for an update check, and when a cached image has expired (pure).

Unlike LXD, whose hourly task checks when hours-of-uptime modulo the interval is 0 (so an
image could wait a whole interval after a restart, lxd#3583/#6890), each image is checked
when its OWN last check is older than the interval."""

from __future__ import annotations

from datetime import datetime, timedelta


def _parse(text: str) -> datetime | None:
    from machined.clock import parse_time

    try:
        return parse_time(text) if text else None
    except ValueError:
        return None


def update_due(last_check: str, interval_hours: int, now: datetime) -> bool:
    """True when an auto-updating image should be re-resolved now. `last_check` is the ISO
    time of its last check ('' = never: due at once); an interval <= 0 disables updates."""
    if interval_hours <= 0:
        return False
    last = _parse(last_check)
    if last is None:
        return True
    return now - last >= timedelta(hours=interval_hours)


def cache_expired(last_used_at: str, uploaded_at: str, expiry_days: int,
                  now: datetime) -> bool:
    """True when a cached image has gone unused for more than `expiry_days` days, counted
    from its last use (instance creation), or from its upload if never used (LXD's rule).
    expiry_days <= 0 disables expiry; an image with no readable time never expires."""
    if expiry_days <= 0:
        return False
    since = _parse(last_used_at) or _parse(uploaded_at)
    if since is None:
        return False
    return since + timedelta(days=expiry_days) < now
