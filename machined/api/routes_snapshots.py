"""/1.0/instances/<n>/snapshots[/<s>]: list, create, get, update, rename, delete (as LXD).
Restore, copy and move live on the instance endpoints (routes_instances.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from machined.api.context import SNAPSHOTS, STATE
from machined.api.operations import Operation
from machined.api.responses import async_response, json_body, sync
from machined.db import instances as db_instances
from machined.errors import BadRequest
from machined.instances import copying

routes = web.RouteTableDef()


def _instance_url(name: str) -> str:
    return f"/1.0/instances/{name}"


def _op(request: web.Request, description: str, name: str, snap: str | None,
        work: Any) -> web.Response:
    resources = {"instances": [_instance_url(name)]}
    if snap is not None:
        resources["instances_snapshots"] = [copying.snapshot_url(name, snap)]
    op = request.app[STATE].operations.start("task", description, resources, work)
    return async_response(op.to_json())


@routes.get("/1.0/instances/{name}/snapshots")
async def list_snapshots(request: web.Request) -> web.Response:
    svc, name = request.app[SNAPSHOTS], request.match_info["name"]
    recursion = request.query.get("recursion", "0")
    if recursion not in ("0", "1", "2"):
        raise BadRequest("recursion must be 0, 1 or 2")
    if recursion == "0":
        return sync([copying.snapshot_url(name, s) for s in svc.names(name)])
    return sync(svc.list(name))


@routes.post("/1.0/instances/{name}/snapshots")
async def create_snapshot(request: web.Request) -> web.Response:
    svc, name = request.app[SNAPSHOTS], request.match_info["name"]
    req = copying.snapshot_request(await json_body(request))
    svc.check_create(name, req)

    async def work(op: Operation) -> dict[str, Any]:
        snap = await svc.create(name, req.name, expires_at=req.expires_at, reuse=req.reuse,
                                description=req.description, op=op)
        op.resources["instances_snapshots"] = [copying.snapshot_url(name, snap)]
        return {"name": snap}

    return _op(request, "Snapshotting instance", name, req.name, work)


@routes.get("/1.0/instances/{name}/snapshots/{snap}")
async def get_snapshot(request: web.Request) -> web.Response:
    svc = request.app[SNAPSHOTS]
    return sync(svc.get(request.match_info["name"], request.match_info["snap"]))


@routes.put("/1.0/instances/{name}/snapshots/{snap}")
async def put_snapshot(request: web.Request) -> web.Response:
    return await _update(request, patch=False)


@routes.patch("/1.0/instances/{name}/snapshots/{snap}")
async def patch_snapshot(request: web.Request) -> web.Response:
    return await _update(request, patch=True)


async def _update(request: web.Request, patch: bool) -> web.Response:
    svc = request.app[SNAPSHOTS]
    body = await json_body(request)
    await svc.update(request.match_info["name"], request.match_info["snap"], body, patch)
    return sync()


@routes.post("/1.0/instances/{name}/snapshots/{snap}")
async def rename_snapshot(request: web.Request) -> web.Response:
    svc = request.app[SNAPSHOTS]
    name, snap = request.match_info["name"], request.match_info["snap"]
    body = await json_body(request)
    if body.get("migration"):
        raise BadRequest("Migrating snapshots to another server is not supported: copy the "
                         "snapshot into a new instance (mc copy c1/snap c2)")
    new = body.get("name")
    if not new:
        raise BadRequest("Renaming a snapshot needs its new name")
    copying.check_snapshot_name(new)
    svc.record(name, snap)  # NotFound now, not in the operation

    async def work(op: Operation) -> None:
        await svc.rename(name, snap, new)
        op.resources["instances_snapshots"] = [copying.snapshot_url(name, new)]

    return _op(request, "Renaming snapshot", name, snap, work)


@routes.delete("/1.0/instances/{name}/snapshots/{snap}")
async def delete_snapshot(request: web.Request) -> web.Response:
    svc = request.app[SNAPSHOTS]
    name, snap = request.match_info["name"], request.match_info["snap"]
    db_instances.get(request.app[STATE].db, name)
    svc.record(name, snap)

    async def work(op: Operation) -> None:
        await svc.delete(name, snap)

    return _op(request, "Deleting snapshot", name, snap, work)
