"""Crash points: named steps inside multi-step operations where a test makes the daemon die
as `kill -9` would (MACHINED_CRASH_AT=<name>), to prove that every step boundary leaves a
state the next start repairs or rolls back (tests/system/test_crash_points.py walks them all).

A point costs one string comparison when the variable is unset. Every name is registered in
POINTS with what has happened by then, so an unknown name fails loudly instead of never
firing."""

from __future__ import annotations

import os
import signal

# name -> what is done when the daemon dies there. Helpers add their operations' steps.
POINTS: dict[str, str] = {}

_TARGET = os.environ.get("MACHINED_CRASH_AT", "")


def point(name: str) -> None:
    """Die here, at once and without cleanup, if this is the step MACHINED_CRASH_AT names."""
    if name not in POINTS:
        raise KeyError(f"crash point {name!r} is not registered in machined.crash.POINTS")
    if name == _TARGET:
        os.kill(os.getpid(), signal.SIGKILL)
