"""/1.0/warnings (as LXD): conditions the daemon noticed that need an operator, e.g. an
instance that could not be autostarted (`instance-autostart-failure`). GET lists them (URLs,
or objects with recursion), PUT/PATCH set `status` (new or acknowledged), DELETE removes
one. Projects: only `default` exists."""

from __future__ import annotations

from aiohttp import web

from machined.api.context import STATE
from machined.api.responses import json_body, sync
from machined.db import warnings as db_warnings
from machined.errors import BadRequest, NotFound

routes = web.RouteTableDef()


def _url(uuid: str) -> str:
    return f"/1.0/warnings/{uuid}"


def _check_project(request: web.Request) -> None:
    project = request.query.get("project", "default")
    if project != "default":
        raise NotFound(f"Project {project!r} not found (only 'default' exists)")


@routes.get("/1.0/warnings")
async def list_warnings(request: web.Request) -> web.Response:
    _check_project(request)
    records = db_warnings.list_all(request.app[STATE].db)
    if request.query.get("recursion", "0") != "0":
        return sync([r.to_api() for r in records])
    return sync([_url(r.uuid) for r in records])


@routes.get("/1.0/warnings/{uuid}")
async def get_warning(request: web.Request) -> web.Response:
    return sync(db_warnings.get(request.app[STATE].db, request.match_info["uuid"]).to_api())


@routes.put("/1.0/warnings/{uuid}")
@routes.patch("/1.0/warnings/{uuid}")
async def update_warning(request: web.Request) -> web.Response:
    """WarningPut has one field, `status`; PATCH without it changes nothing."""
    db = request.app[STATE].db
    uuid = request.match_info["uuid"]
    body = await json_body(request)
    unknown = sorted(set(body) - {"status"})
    if unknown:
        raise BadRequest(f"Unknown warning field {unknown[0]!r} (accepted: status)")
    status = body.get("status")
    if status is None and request.method == "PATCH":
        db_warnings.get(db, uuid)  # 404 for an unknown uuid all the same
        return sync()
    if status not in db_warnings.STATUSES:
        raise BadRequest(f"Invalid warning status {status!r}: accepted values are "
                         + " and ".join(db_warnings.STATUSES))
    db_warnings.set_status(db, uuid, str(status))
    return sync()


@routes.delete("/1.0/warnings/{uuid}")
async def delete_warning(request: web.Request) -> web.Response:
    db_warnings.delete(request.app[STATE].db, request.match_info["uuid"])
    return sync()
