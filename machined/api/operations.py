"""Background operations with LXD's shape: an id, a class, a status code, metadata, and
waiters. Every async API call returns one; its history is kept in the database."""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from machined.errors import MachinedError, NotFound, storage_error
from machined.locking import current_activity

log = logging.getLogger("machined.operations")

PENDING, RUNNING, CANCELLED, SUCCESS, FAILURE = 105, 103, 401, 200, 400
STATUS_NAMES = {PENDING: "Pending", RUNNING: "Running", SUCCESS: "Success",
                FAILURE: "Failure", CANCELLED: "Cancelled"}
KEEP_DONE_SECONDS = 300.0

WebsocketHandler = Callable[[str, web.Request], Awaitable[web.StreamResponse]]


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Operation:
    def __init__(self, cls: str, description: str, resources: dict[str, list[str]]) -> None:
        self.id = str(uuid.uuid4())
        self.cls = cls
        self.description = description
        self.resources = resources
        self.created_at = self.updated_at = now()
        self.status_code = PENDING
        self.metadata: dict[str, Any] = {}
        self.err = ""
        self.done = asyncio.Event()
        self.websocket_handler: WebsocketHandler | None = None
        self.task: asyncio.Task[None] | None = None

    def set_metadata(self, **values: Any) -> None:
        self.metadata.update(values)
        self.updated_at = now()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "class": self.cls, "description": self.description,
            "created_at": self.created_at, "updated_at": self.updated_at,
            "status": STATUS_NAMES[self.status_code], "status_code": self.status_code,
            "resources": self.resources, "metadata": self.metadata, "may_cancel": False,
            "err": self.err, "location": "none",
        }


class Operations:
    def __init__(self, record: Callable[[Operation], None] | None = None) -> None:
        self._ops: dict[str, Operation] = {}
        self._record = record

    def get(self, op_id: str) -> Operation:
        op = self._ops.get(op_id)
        if op is None:
            raise NotFound(f"Operation {op_id!r} not found")
        return op

    def all(self) -> list[Operation]:
        return list(self._ops.values())

    def start(self, cls: str, description: str, resources: dict[str, list[str]],
              work: Callable[[Operation], Awaitable[dict[str, Any] | None]]) -> Operation:
        """Run `work` in the background; its returned dict becomes the final metadata."""
        op = Operation(cls, description, resources)
        self._ops[op.id] = op
        op.task = asyncio.get_running_loop().create_task(self._run(op, work))
        return op

    async def cancel_running(self, timeout: float = 30.0) -> int:
        """At daemon stop, while the database is still open: cancel every operation still
        running and wait (at most `timeout` s) until each has undone its steps and recorded
        itself as Cancelled. Returns how many were cancelled."""
        running = {op.task: op for op in self._ops.values()
                   if op.task is not None and not op.task.done()}
        for task in running:
            task.cancel()
        if running:
            _done, pending = await asyncio.wait(running, timeout=timeout)
            for task in pending:
                log.warning("Operation %s (%s) did not end within %.0f s of being cancelled",
                            running[task].id, running[task].description, timeout)
        return len(running)

    async def _run(self, op: Operation,
                   work: Callable[[Operation], Awaitable[dict[str, Any] | None]]) -> None:
        op.status_code = RUNNING
        current_activity.set(op.description)  # this task's own context: who holds a lock
        try:
            result = await work(op)
            if result is not None:
                op.metadata = result
            op.status_code = SUCCESS
        except MachinedError as e:
            op.err, op.status_code = e.message, FAILURE
        except asyncio.CancelledError:
            op.err, op.status_code = "Operation cancelled", CANCELLED
        except Exception as e:
            full = storage_error(e)
            if full is None:
                log.exception("Operation %s (%s) failed", op.id, op.description)
            op.err = full.message if full is not None else f"Internal error: {e}"
            op.status_code = FAILURE
        op.updated_at = now()
        op.done.set()
        if op.err:
            log.info("Operation %s (%s) failed: %s", op.id, op.description, op.err)
        if self._record is not None:
            try:
                self._record(op)
            except Exception as e:
                full = storage_error(e)
                if full is None:
                    log.exception("Could not record operation %s", op.id)
                else:
                    log.warning("Could not record operation %s: %s", op.id, full.message)
        asyncio.get_running_loop().call_later(KEEP_DONE_SECONDS, self._ops.pop, op.id, None)


def new_secret() -> str:
    return secrets.token_hex(32)
