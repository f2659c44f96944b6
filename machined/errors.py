"""Domain errors. Each carries the HTTP status the API answers with; api/responses.py is the
only place that turns them into HTTP. Messages read as one sentence for the user."""

from __future__ import annotations


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
