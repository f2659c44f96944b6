"""Errors mc reports as `Error: <sentence>` (exit 1). Stdlib only: imported at startup."""

from __future__ import annotations


class CliError(Exception):
    """A failure to report to the user as one sentence."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiError(CliError):
    """The daemon answered with an error envelope, or an operation failed."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class UsageError(CliError):
    """Wrong use of a command (exit 2, as click's usage errors)."""
