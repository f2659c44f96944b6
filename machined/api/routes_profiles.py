"""/1.0/profiles: list, create, get, update (PUT/PATCH), rename, delete."""

from __future__ import annotations

from aiohttp import web

from machined.api.context import INSTANCES, STATE
from machined.api.responses import json_body, sync
from machined.db import profiles as db_profiles
from machined.errors import BadRequest
from machined.instances.profiles import ProfileService, render

routes = web.RouteTableDef()


def _svc(request: web.Request) -> ProfileService:
    return ProfileService(request.app[STATE], request.app[INSTANCES])


@routes.get("/1.0/profiles")
async def list_profiles(request: web.Request) -> web.Response:
    db = request.app[STATE].db
    recursion = request.query.get("recursion", "0")
    if recursion not in ("0", "1", "2"):
        raise BadRequest("recursion must be 0, 1 or 2")
    if recursion == "0":
        return sync([f"/1.0/profiles/{n}" for n in db_profiles.names(db)])
    return sync([render(db, rec) for rec in db_profiles.list_all(db)])


@routes.post("/1.0/profiles")
async def create_profile(request: web.Request) -> web.Response:
    name = _svc(request).create(await json_body(request))
    resp = sync()
    resp.headers["Location"] = f"/1.0/profiles/{name}"
    return resp


@routes.get("/1.0/profiles/{name}")
async def get_profile(request: web.Request) -> web.Response:
    db = request.app[STATE].db
    return sync(render(db, db_profiles.get(db, request.match_info["name"])))


@routes.put("/1.0/profiles/{name}")
async def put_profile(request: web.Request) -> web.Response:
    await _svc(request).update(request.match_info["name"], await json_body(request), patch=False)
    return sync()


@routes.patch("/1.0/profiles/{name}")
async def patch_profile(request: web.Request) -> web.Response:
    await _svc(request).update(request.match_info["name"], await json_body(request), patch=True)
    return sync()


@routes.post("/1.0/profiles/{name}")
async def rename_profile(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not body.get("name"):
        raise BadRequest("Rename needs a new name")
    await _svc(request).rename(request.match_info["name"], body["name"])
    resp = sync()
    resp.headers["Location"] = f"/1.0/profiles/{body['name']}"
    return resp


@routes.delete("/1.0/profiles/{name}")
async def delete_profile(request: web.Request) -> web.Response:
    await _svc(request).delete(request.match_info["name"])
    return sync()
