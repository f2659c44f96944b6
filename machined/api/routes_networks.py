"""/1.0/networks: managed networks and the host's interfaces, LXD-shaped (sync responses)."""

from __future__ import annotations

from aiohttp import web

from machined.api.context import NETWORKS
from machined.api.responses import json_body, sync
from machined.errors import BadRequest
from machined.network.service import NetworkService

routes = web.RouteTableDef()


def _svc(request: web.Request) -> NetworkService:
    return request.app[NETWORKS]


def _recursion(request: web.Request) -> bool:
    value = request.query.get("recursion", "0")
    if value not in ("0", "1", "2"):
        raise BadRequest("recursion must be 0, 1 or 2")
    return value != "0"


@routes.get("/1.0/networks")
async def list_networks(request: web.Request) -> web.Response:
    return sync(_svc(request).list(_recursion(request)))


@routes.post("/1.0/networks")
async def create_network(request: web.Request) -> web.Response:
    body = await json_body(request)
    await _svc(request).create(body)
    resp = sync()
    resp.headers["Location"] = f"/1.0/networks/{body['name']}"
    return resp


@routes.get("/1.0/networks/{name}")
async def get_network(request: web.Request) -> web.Response:
    return sync(_svc(request).get(request.match_info["name"]))


@routes.put("/1.0/networks/{name}")
async def put_network(request: web.Request) -> web.Response:
    await _svc(request).update(request.match_info["name"], await json_body(request), patch=False)
    return sync()


@routes.patch("/1.0/networks/{name}")
async def patch_network(request: web.Request) -> web.Response:
    await _svc(request).update(request.match_info["name"], await json_body(request), patch=True)
    return sync()


@routes.post("/1.0/networks/{name}")
async def rename_network(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not body.get("name"):
        raise BadRequest("Rename needs a new name")
    await _svc(request).rename(request.match_info["name"], body["name"])
    resp = sync()
    resp.headers["Location"] = f"/1.0/networks/{body['name']}"
    return resp


@routes.delete("/1.0/networks/{name}")
async def delete_network(request: web.Request) -> web.Response:
    await _svc(request).delete(request.match_info["name"])
    return sync()


@routes.get("/1.0/networks/{name}/leases")
async def network_leases(request: web.Request) -> web.Response:
    return sync(_svc(request).leases(request.match_info["name"]))


@routes.get("/1.0/networks/{name}/state")
async def network_state(request: web.Request) -> web.Response:
    return sync(_svc(request).state(request.match_info["name"]))
