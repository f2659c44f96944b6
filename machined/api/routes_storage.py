"""/1.0/storage-pools: list, create, get, update (PUT/PATCH), delete, resources (LXD)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from machined.api.context import STORAGE
from machined.api.responses import json_body, sync
from machined.errors import BadRequest
from machined.storage.pools import Storage

routes = web.RouteTableDef()


def _storage(request: web.Request) -> Storage:
    return request.app[STORAGE]


def _config(body: dict[str, Any]) -> dict[str, str]:
    config = body.get("config") or {}
    if not isinstance(config, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in config.items()):
        raise BadRequest("config must be an object of string keys and string values")
    return config


def _description(body: dict[str, Any], default: str = "") -> str:
    description = body.get("description", default)
    if not isinstance(description, str):
        raise BadRequest("description must be a string")
    return description


@routes.get("/1.0/storage-pools")
async def list_pools(request: web.Request) -> web.Response:
    storage = _storage(request)
    recursion = request.query.get("recursion", "0")
    if recursion not in ("0", "1", "2"):
        raise BadRequest("recursion must be 0, 1 or 2")
    if recursion == "0":
        return sync([f"/1.0/storage-pools/{n}" for n in storage.names()])
    return sync([storage.render(n) for n in storage.names()])


@routes.post("/1.0/storage-pools")
async def create_pool(request: web.Request) -> web.Response:
    body = await json_body(request)
    name, driver = body.get("name"), body.get("driver")
    if not isinstance(name, str) or not name:
        raise BadRequest("A storage pool needs a name")
    if not isinstance(driver, str) or not driver:
        raise BadRequest("A storage pool needs a driver: dir or btrfs")
    await _storage(request).create(name, driver, _config(body), _description(body))
    resp = sync()
    resp.headers["Location"] = f"/1.0/storage-pools/{name}"
    return resp


@routes.get("/1.0/storage-pools/{name}")
async def get_pool(request: web.Request) -> web.Response:
    return sync(_storage(request).render(request.match_info["name"]))


@routes.put("/1.0/storage-pools/{name}")
async def put_pool(request: web.Request) -> web.Response:
    body = await json_body(request)
    await _storage(request).update(request.match_info["name"], _config(body),
                                   _description(body))
    return sync()


@routes.patch("/1.0/storage-pools/{name}")
async def patch_pool(request: web.Request) -> web.Response:
    """Keys given are set, a key given as "" is unset; others keep their values."""
    storage = _storage(request)
    name = request.match_info["name"]
    current = storage.render(name)
    body = await json_body(request)
    config = {**current["config"], **_config(body)}
    await storage.update(name, {k: v for k, v in config.items() if v != ""},
                         _description(body, current["description"]))
    return sync()


@routes.delete("/1.0/storage-pools/{name}")
async def delete_pool(request: web.Request) -> web.Response:
    await _storage(request).delete(request.match_info["name"])
    return sync()


@routes.get("/1.0/storage-pools/{name}/resources")
async def pool_resources(request: web.Request) -> web.Response:
    return sync(_storage(request).resources(request.match_info["name"]))
