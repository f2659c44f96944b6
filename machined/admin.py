"""`machined shutdown` and `machined sql`: operator commands that talk to the running daemon
over its unix socket (skeleton; issue 7 fills them in)."""

from __future__ import annotations

import sys

from machined.paths import Paths


def shutdown(paths: Paths, timeout: float | None, if_host_stopping: bool) -> int:
    """Ask the daemon to stop its instances for host power-off and exit; returns once it
    is gone."""
    print("Error: machined shutdown is not implemented yet", file=sys.stderr)
    return 1


def sql(paths: Paths, query: str, fmt: str) -> int:
    """Run one SQL statement in the running daemon's database connection and print it."""
    print("Error: machined sql is not implemented yet", file=sys.stderr)
    return 1
