"""/1.0 (server info and config) and /1.0/operations."""

from __future__ import annotations

import asyncio
import os
import platform
from typing import Any

from aiohttp import web

from machined import __version__
from machined.api.access import is_trusted
from machined.api.context import STATE
from machined.api.https import HTTPS
from machined.api.responses import json_body, sync
from machined.config import validate_server_config
from machined.db import settings
from machined.errors import BadRequest

routes = web.RouteTableDef()


@routes.get("/")
async def root(request: web.Request) -> web.Response:
    return sync(["/1.0"])


@routes.get("/1.0")
async def server_info(request: web.Request) -> web.Response:
    if not is_trusted(request):  # as LXD: no config, no environment, no extensions
        return sync({"api_extensions": [], "api_status": "stable", "api_version": "1.0",
                     "auth": "untrusted", "public": False, "auth_methods": ["tls"],
                     "config": {}, "environment": {}})
    state = request.app[STATE]
    uname = os.uname()
    return sync({
        "api_extensions": [], "api_status": "stable", "api_version": "1.0",
        "auth": "trusted", "public": False, "auth_methods": ["tls"],
        "config": dict(sorted(settings.get_all(state.db).items())),
        "environment": {
            "architectures": [platform.machine()], "kernel": uname.sysname,
            "kernel_version": uname.release, "kernel_architecture": uname.machine,
            "server": "machined", "server_name": uname.nodename, "server_pid": os.getpid(),
            "server_version": __version__, "driver": "machined", "storage": "dir",
            "firewall": "", "project": "default",
            **request.app[HTTPS].environment(),
        },
    })


async def _update_config(request: web.Request, patch: bool) -> web.Response:
    """PUT replaces the server config, PATCH merges into it; an empty or null value unsets a
    key. Everything is validated before anything is stored."""
    state = request.app[STATE]
    body = await json_body(request)
    config = body.get("config")
    if not isinstance(config, dict):
        raise BadRequest("Server update needs a config object, e.g. {\"config\": "
                         "{\"images.auto_update_interval\": \"24\"}}")
    values = {str(k): _text(v) for k, v in config.items()}
    validate_server_config(values)
    old = settings.get_all(state.db)
    merged = dict(old) if patch else {}
    merged.update(values)
    new = {k: v for k, v in merged.items() if v != ""}
    settings.replace(state.db, new)
    try:
        for listener in state.config_listeners:
            await listener(old, new)
    except BaseException:
        # A change the daemon could not apply (core.https_address: the port is taken) is not
        # kept: `mc config get` must not show an address nothing listens on. The failing
        # listener restored its own state; the image tasks re-read the config anyway.
        settings.replace(state.db, old)
        raise
    return sync()


def _text(value: object) -> str:
    """Config values are strings; accept JSON numbers and booleans as their text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@routes.put("/1.0")
async def put_server(request: web.Request) -> web.Response:
    return await _update_config(request, patch=False)


@routes.patch("/1.0")
async def patch_server(request: web.Request) -> web.Response:
    return await _update_config(request, patch=True)


@routes.get("/1.0/operations")
async def list_operations(request: web.Request) -> web.Response:
    ops = request.app[STATE].operations.all()
    grouped: dict[str, list[Any]] = {}
    recursive = request.query.get("recursion", "0") != "0"
    for op in ops:
        key = op.to_json()["status"].lower()
        grouped.setdefault(key, []).append(
            op.to_json() if recursive else f"/1.0/operations/{op.id}")
    return sync(grouped)


@routes.get("/1.0/operations/{id}")
async def get_operation(request: web.Request) -> web.Response:
    return sync(request.app[STATE].operations.get(request.match_info["id"]).to_json())


@routes.get("/1.0/operations/{id}/wait")
async def wait_operation(request: web.Request) -> web.Response:
    op = request.app[STATE].operations.get(request.match_info["id"])
    try:
        timeout = float(request.query.get("timeout", "-1"))
    except ValueError:
        raise BadRequest("timeout must be a number of seconds") from None
    try:
        await asyncio.wait_for(op.done.wait(), None if timeout < 0 else timeout)
    except TimeoutError:
        pass
    return sync(op.to_json())


@routes.get("/1.0/operations/{id}/websocket")
async def operation_websocket(request: web.Request) -> web.StreamResponse:
    op = request.app[STATE].operations.get(request.match_info["id"])
    if op.websocket_handler is None:
        raise BadRequest("This operation has no websockets")
    return await op.websocket_handler(request.query.get("secret", ""), request)


