"""Per-instance directories outside the volumes (logs/<name>, run/<name>) across crashes.

They are keyed by the instance's name, which lives in its DB row, so a rename is two steps
(the row, then the logs directory) and a delete leaves them after the row has gone. A rename
journals its logs move before the row changes (`logs/.rename-<new>` holding the old name) and
moves the directory after the commit; `repair()` at daemon start finishes a journaled move
whose commit happened and drops one whose commit did not, then removes the logs/ and run/
directories that no row names (a delete interrupted after its commit). A run directory of a
container still running is never removed."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from machined import runtime
from machined.paths import Paths

log = logging.getLogger("machined.instances")

JOURNAL = ".rename-"


def _journal(paths: Paths, new: str) -> Path:
    return paths.root / "logs" / f"{JOURNAL}{new}"


@contextlib.contextmanager
def logs_follow(paths: Paths, old: str, new: str) -> Iterator[None]:
    """Around the block that commits a rename of instance `old` to `new`: the logs move is
    journaled before it and done after it (not at all if the block raises)."""
    journal = _journal(paths, new)
    journal.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        os.write(fd, old.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        yield
    except BaseException:
        journal.unlink(missing_ok=True)
        raise
    _move_logs(paths, old, new)
    journal.unlink(missing_ok=True)


def _move_logs(paths: Paths, old: str, new: str) -> None:
    source, target = paths.logs(old), paths.logs(new)
    try:
        if source.is_dir() and not os.path.lexists(target):
            os.rename(source, target)
    except OSError as e:  # the logs stay where they are; the instance is renamed all the same
        log.warning("Logs of %s stay in %s: %s", new, source, e)


def repair(paths: Paths, names: set[str]) -> list[str]:
    """At daemon start, before anything runs: finish or drop journaled logs moves (`names`:
    the instances the DB has), then remove logs/ and run/ directories no row names. Returns
    what it changed, for the log."""
    done = []
    logs = paths.root / "logs"
    for journal in sorted(logs.glob(f"{JOURNAL}*")) if logs.is_dir() else []:
        new = journal.name[len(JOURNAL):]
        try:
            old = journal.read_text()
        except OSError:
            old = ""
        if old and new in names and old not in names:  # the rename was committed
            _move_logs(paths, old, new)
            done.append(f"logs {old} -> {new}")
        journal.unlink(missing_ok=True)
    for kind in ("logs", "run"):
        base = paths.root / kind
        for entry in sorted(base.iterdir()) if base.is_dir() else []:
            if entry.name in names or entry.name.startswith(".") or entry.is_symlink() \
                    or not entry.is_dir():
                continue
            if kind == "run" and runtime.find(os.fspath(entry)) is not None:
                log.warning("Container %s runs but no instance row names it: kept", entry.name)
                continue
            shutil.rmtree(entry, ignore_errors=True)
            done.append(f"{kind}/{entry.name}")
    return done
