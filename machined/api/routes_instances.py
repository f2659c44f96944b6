"""/1.0/instances: list, create, get, update, rename, delete, state, console."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from machined.api.context import INSTANCES, SNAPSHOTS, STATE
from machined.api.operations import Operation
from machined.api.responses import async_response, json_body, sync
from machined.db import instances as db_instances
from machined.errors import BadRequest
from machined.instances import copying, model
from machined.instances.service import InstanceService, random_name
from machined.instances.snapshots import SnapshotService

routes = web.RouteTableDef()


def _url(name: str) -> str:
    return f"/1.0/instances/{name}"


def render(svc: InstanceService, name: str, recursion: int = 1,
           snapshots: SnapshotService | None = None) -> dict[str, Any]:
    inst = svc.load(name)
    rec = inst.record
    status = svc.status(name)
    body: dict[str, Any] = {
        "name": rec.name, "description": rec.description, "type": rec.type,
        "architecture": rec.architecture, "created_at": rec.created_at,
        "last_used_at": rec.last_used_at or "1970-01-01T00:00:00Z", "ephemeral": rec.ephemeral,
        "stateful": False, "profiles": rec.profiles, "config": rec.config,
        "devices": rec.devices, "expanded_config": inst.expanded_config,
        "expanded_devices": inst.expanded_devices, "status": status,
        "status_code": model.STATUS_CODES[status], "location": "none", "project": "default",
    }
    if recursion >= 2:
        body["state"] = svc.state_of(name)
        body["snapshots"] = snapshots.list(name) if snapshots is not None else []
    return body


def _recursion(request: web.Request) -> int:
    try:
        return int(request.query.get("recursion", "0"))
    except ValueError:
        raise BadRequest("recursion must be 0, 1 or 2") from None


def _op(request: web.Request, description: str, name: str, work: Any) -> web.Response:
    state = request.app[STATE]
    op = state.operations.start("task", description, {"instances": [_url(name)]}, work)
    return async_response(op.to_json())


@routes.get("/1.0/instances")
async def list_instances(request: web.Request) -> web.Response:
    svc = request.app[INSTANCES]
    names = db_instances.names(request.app[STATE].db)
    recursion = _recursion(request)
    if recursion == 0:
        return sync([_url(n) for n in names])
    snapshots = request.app[SNAPSHOTS]
    return sync([render(svc, n, recursion, snapshots) for n in names])


@routes.post("/1.0/instances")
async def create_instance(request: web.Request) -> web.Response:
    svc = request.app[INSTANCES]
    body = await json_body(request)
    if body.get("type", "container") not in ("container", ""):
        raise BadRequest(f"Unsupported instance type {body.get('type')!r}: accepted is "
                         "container")
    if not body.get("name"):
        # Picked now, so the operation's resources name the instance (mc prints it at once)
        body["name"] = random_name()
    name = body["name"]
    if (body.get("source") or {}).get("type") == "copy":
        return _copy(request, body)
    svc.check_create(body)

    async def work(op: Operation) -> dict[str, Any] | None:
        created = await svc.create(body, op)
        op.resources["instances"] = [_url(created)]
        if body.get("start"):
            await svc.start(created)
        return {"name": created}

    return _op(request, "Creating instance", name, work)


def _copy(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /1.0/instances with source {type: copy, source: "c1[/snap]", instance_only}."""
    svc, snapshots = request.app[INSTANCES], request.app[SNAPSHOTS]
    req = copying.copy_request(body)
    snapshots.check_copy(req)

    async def work(op: Operation) -> dict[str, Any]:
        created = await snapshots.copy(req, op)
        if req.start:
            await svc.start(created)
        return {"name": created}

    return _op(request, "Creating instance", req.name, work)


@routes.get("/1.0/instances/{name}")
async def get_instance(request: web.Request) -> web.Response:
    svc = request.app[INSTANCES]
    return sync(render(svc, request.match_info["name"], max(1, _recursion(request)),
                       request.app[SNAPSHOTS]))


@routes.put("/1.0/instances/{name}")
async def put_instance(request: web.Request) -> web.Response:
    return await _update(request, patch=False)


@routes.patch("/1.0/instances/{name}")
async def patch_instance(request: web.Request) -> web.Response:
    return await _update(request, patch=True)


async def _update(request: web.Request, patch: bool) -> web.Response:
    svc = request.app[INSTANCES]
    name = request.match_info["name"]
    body = await json_body(request)
    if body.get("restore") and not patch:
        return _restore(request, name, body)
    await svc.update(name, body, patch)
    return sync()


def _restore(request: web.Request, name: str, body: dict[str, Any]) -> web.Response:
    """PUT /1.0/instances/<n> {"restore": "snap"} (the rest of the body is ignored, as LXD)."""
    snapshots = request.app[SNAPSHOTS]
    snap = body["restore"]
    if not isinstance(snap, str):
        raise BadRequest(f"restore must be a snapshot name, not {snap!r}")
    copying.refuse_stateful(bool(body.get("stateful")))
    db_instances.get(request.app[STATE].db, name)
    snapshots.check_restore(name, snap)

    async def work(op: Operation) -> None:
        await snapshots.restore(name, snap, op)

    return _op(request, "Restoring snapshot", name, work)


@routes.post("/1.0/instances/{name}")
async def rename_instance(request: web.Request) -> web.Response:
    svc = request.app[INSTANCES]
    name = request.match_info["name"]
    body = await json_body(request)
    if body.get("migration") or body.get("live"):
        raise BadRequest("Migrating instances to another server is not supported: move "
                         "within this server (a new name and/or --storage pool)")
    pool = body.get("pool") or None
    if pool is not None:
        return _move(request, name, body.get("name") or None, pool)
    new = body.get("name")
    if not new:
        raise BadRequest("Rename needs a new name")
    db_instances.get(request.app[STATE].db, name)

    async def work(op: Operation) -> None:
        await svc.rename(name, new)

    return _op(request, "Renaming instance", name, work)


def _move(request: web.Request, name: str, new: Any, pool: Any) -> web.Response:
    """POST /1.0/instances/<n> {name, pool} (Incus InstancePost.pool): to another pool."""
    snapshots = request.app[SNAPSHOTS]
    for key, value in (("name", new), ("pool", pool)):
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"{key} must be a string, not {value!r}")
    snapshots.check_move(name, new, pool)

    async def work(op: Operation) -> dict[str, Any]:
        moved = await snapshots.move(name, new, pool, op)
        op.resources["instances"] = [_url(moved)]
        return {"name": moved}

    return _op(request, "Moving instance", name, work)


@routes.delete("/1.0/instances/{name}")
async def delete_instance(request: web.Request) -> web.Response:
    svc = request.app[INSTANCES]
    name = request.match_info["name"]
    db_instances.get(request.app[STATE].db, name)

    async def work(op: Operation) -> None:
        await svc.delete(name)

    return _op(request, "Deleting instance", name, work)


@routes.get("/1.0/instances/{name}/state")
async def get_state(request: web.Request) -> web.Response:
    svc = request.app[INSTANCES]
    name = request.match_info["name"]
    db_instances.get(request.app[STATE].db, name)
    return sync(svc.state_of(name))


_ACTIONS = ("start", "stop", "restart", "freeze", "unfreeze")


@routes.put("/1.0/instances/{name}/state")
async def put_state(request: web.Request) -> web.Response:
    svc = request.app[INSTANCES]
    name = request.match_info["name"]
    body = await json_body(request)
    action = body.get("action")
    if action not in _ACTIONS:
        raise BadRequest(f"Unknown action {action!r}: accepted are " + ", ".join(_ACTIONS))
    db_instances.get(request.app[STATE].db, name)
    timeout = float(body.get("timeout", -1) or -1)
    force = bool(body.get("force"))

    async def work(op: Operation) -> None:
        if action == "start":
            await svc.start(name)
        elif action == "stop":
            await svc.stop(name, timeout, force)
        elif action == "restart":
            await svc.restart(name, timeout, force)
        elif action == "freeze":
            await svc.freeze(name)
        else:
            await svc.unfreeze(name)

    return _op(request, f"{action.capitalize()}ing instance".replace("Stoping", "Stopping"),
               name, work)


@routes.get("/1.0/instances/{name}/console")
async def console_log(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    name = request.match_info["name"]
    db_instances.get(state.db, name)
    log = state.paths.logs(name) / "console.log"
    data = log.read_bytes() if log.exists() else b""
    return web.Response(body=data, content_type="application/octet-stream")
