"""/internal/*: operator endpoints for the `machined` command itself, served on the unix
socket only (never over HTTPS, not even to trusted clients: what they do is for root on the
host). `PUT /internal/shutdown` (`machined shutdown`) asks the daemon to stop its instances
as for a host power-off and exit; it answers at once, and the caller waits for the daemon
to be gone. `POST /internal/sql` (`machined sql`) runs one statement in the daemon's own
database connection (db/query.py)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from aiohttp import web

from machined.api.context import STATE
from machined.api.responses import json_body, sync
from machined.db import query as db_query
from machined.errors import Forbidden, InternalError

routes = web.RouteTableDef()
log = logging.getLogger("machined.api")

# Set by the daemon: starts the host-shutdown sequence (idempotent).
SHUTDOWN: web.AppKey[Callable[[], None]] = web.AppKey("host_shutdown")


def require_unix_socket(request: web.Request) -> None:
    """Refuse a request that did not come over the unix socket (the HTTPS listener shares
    the application)."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family != socket.AF_UNIX:
        raise Forbidden(f"{request.path} is only available on the local unix socket")


@routes.put("/internal/shutdown")
async def shutdown(request: web.Request) -> web.Response:
    require_unix_socket(request)
    begin = request.app.get(SHUTDOWN)
    if begin is None:
        raise InternalError("This server cannot shut down on request")
    begin()
    return sync()


@routes.post("/internal/sql")
async def sql(request: web.Request) -> web.Response:
    """`machined sql`: {"query": "..."} run in the daemon's own database connection."""
    require_unix_socket(request)
    body = await json_body(request)
    result = db_query.run(request.app[STATE].db, body.get("query"))
    log.info("machined sql: %s", str(body.get("query"))[:200])
    return sync(result)
