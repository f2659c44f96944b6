"""Domain errors. Each carries the HTTP status the API answers with; api/responses.py is the
only place that turns them into HTTP. Messages read as one sentence for the user."""

from __future__ import annotations

import errno


class MachinedError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(MachinedError):
    status = 400


class Forbidden(MachinedError):
    status = 403


class NotFound(MachinedError):
    status = 404


class Conflict(MachinedError):
    status = 409


class PreconditionFailed(MachinedError):
    status = 412


class InternalError(MachinedError):
    status = 500


SQLITE_FULL = 13  # sqlite3.SQLITE_FULL


class InsufficientStorage(MachinedError):
    status = 507


def storage_error(exc: BaseException) -> InsufficientStorage | None:
    """A full disk, in whichever form it surfaced (an OSError ENOSPC/EDQUOT from a write,
    SQLite's SQLITE_FULL), as one sentence with HTTP 507; None for anything else. SQLite
    rolls the failed statement back, so nothing is half-written and writes succeed again
    once space is freed (no restart)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" ({exc.filename})" if exc.filename else ""
        reason = exc.strerror or "No space left on device"
        return InsufficientStorage(f"Insufficient storage: {reason}{where}: free some space "
                                   "and try again")
    # sqlite3 is not imported here (this module is a leaf mc's helpers import too).
    if type(exc).__module__ == "sqlite3" and (
            getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL
            or "database or disk is full" in str(exc)):
        return InsufficientStorage("Insufficient storage: No space left on device for the "
                                   "database (nothing was changed): free some space and try "
                                   "again")
    return None
