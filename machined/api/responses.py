"""LXD-style envelopes. This module is the only place that maps exceptions to HTTP."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from machined.errors import MachinedError, storage_error

log = logging.getLogger("machined.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def sync(metadata: Any = None, status: int = 200) -> web.Response:
    body = {"type": "sync", "status": "Success", "status_code": 200, "operation": "",
            "error_code": 0, "error": "", "metadata": metadata}
    return web.json_response(body, status=status, dumps=_dumps)


def async_response(op_json: dict[str, Any]) -> web.Response:
    url = f"/1.0/operations/{op_json['id']}"
    body = {"type": "async", "status": "Operation created", "status_code": 100,
            "operation": url, "error_code": 0, "error": "", "metadata": op_json}
    return web.json_response(body, status=202, headers={"Location": url}, dumps=_dumps)


def error(message: str, status: int) -> web.Response:
    body = {"type": "error", "status": "", "status_code": 0, "operation": "",
            "error_code": status, "error": message, "metadata": None}
    return web.json_response(body, status=status, dumps=_dumps)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except MachinedError as e:
        return error(e.message, e.status)
    except web.HTTPException as e:
        if e.status >= 400:
            return error(e.reason or "Request failed", e.status)
        raise
    except json.JSONDecodeError as e:
        return error(f"Request body is not valid JSON: {e.msg}", 400)
    except ConnectionResetError:
        # The client went away (e.g. an interrupted upload, already undone): nobody to answer.
        log.info("Client disconnected during %s %s", request.method, request.path)
        raise
    except Exception as e:  # the daemon must answer, whatever broke
        full = storage_error(e)
        if full is not None:  # a full disk is the host's state, not a daemon bug
            log.error("%s %s: %s", request.method, request.path, full.message)
            return error(full.message, full.status)
        log.exception("Unhandled error in %s %s", request.method, request.path)
        return error(f"Internal error: {e}", 500)


async def json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    data = await request.json(loads=json.loads)
    if not isinstance(data, dict):
        from machined.errors import BadRequest
        raise BadRequest("Request body must be a JSON object")
    return data
