"""/1.0/images and /1.0/images/aliases."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aiohttp import BodyPartReader, web

from machined.api.context import INSTANCES, POOL, STATE
from machined.api.operations import Operation
from machined.api.responses import async_response, json_body, sync
from machined.db import images as db_images
from machined.errors import BadRequest, Conflict
from machined.images import store

routes = web.RouteTableDef()
# Registered before `routes`: /1.0/images/{fingerprint} would otherwise swallow 'aliases'.
alias_routes = web.RouteTableDef()
CHUNK = 1 << 20


def render(rec: db_images.ImageRecord) -> dict[str, Any]:
    epoch = "1970-01-01T00:00:00Z"
    return {
        "fingerprint": rec.fingerprint, "filename": rec.filename, "size": rec.size,
        "architecture": rec.architecture, "type": rec.type, "public": rec.public,
        "auto_update": rec.auto_update, "cached": rec.cached, "properties": rec.properties,
        "aliases": rec.aliases, "created_at": rec.created_at or epoch,
        "uploaded_at": rec.uploaded_at, "last_used_at": rec.last_used_at or epoch,
        "expires_at": rec.expires_at or epoch, "profiles": ["default"], "project": "default",
    }


def _header(request: web.Request, name: str) -> str:
    return request.headers.get(f"X-LXD-{name}") or request.headers.get(f"X-Incus-{name}") or ""


def _lookup(request: web.Request) -> db_images.ImageRecord:
    fp = request.match_info["fingerprint"]
    return db_images.find_by_prefix(request.app[STATE].db, fp)


@routes.get("/1.0/images")
async def list_images(request: web.Request) -> web.Response:
    records = db_images.list_all(request.app[STATE].db)
    if request.query.get("recursion", "0") == "0":
        return sync([f"/1.0/images/{r.fingerprint}" for r in records])
    return sync([render(r) for r in records])


async def _receive_raw(request: web.Request, pool: Any) -> store.Upload:
    path = pool.temp_path("upload")
    writer = store.HashingWriter(path)
    try:
        async for chunk in request.content.iter_chunked(CHUNK):
            writer.write(chunk)
    except BaseException:  # the client went away mid-upload: keep nothing of it
        writer.close()
        path.unlink(missing_ok=True)
        raise
    writer.close()
    return store.Upload(meta=path, rootfs=None, fingerprint=writer.digest.hexdigest(),
                        size=writer.size)


async def _receive_multipart(request: web.Request, pool: Any) -> store.Upload:
    """Split image: the fingerprint is sha256 over the metadata part then the rootfs part."""
    reader = await request.multipart()
    digest = hashlib.sha256()
    parts: dict[str, store.HashingWriter] = {}
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise BadRequest("Nested multipart bodies are not accepted")
            if part.name not in ("metadata", "rootfs", "rootfs.img"):
                raise BadRequest(f"Unexpected upload part {part.name!r}: accepted are "
                                 "metadata and rootfs")
            name = "rootfs" if part.name.startswith("rootfs") else "metadata"
            if name in parts or (name == "rootfs" and "metadata" not in parts):
                raise BadRequest("Split image uploads need one metadata part, then one rootfs")
            writer = store.HashingWriter(pool.temp_path(f"upload-{name}"), digest)
            parts[name] = writer
            try:
                while chunk := await part.read_chunk(CHUNK):
                    writer.write(chunk)
            finally:
                writer.close()
        if set(parts) != {"metadata", "rootfs"}:
            raise BadRequest("Split image uploads need a metadata part and a rootfs part")
    except BaseException:
        for writer in parts.values():
            writer.path.unlink(missing_ok=True)
        raise
    size = parts["metadata"].size + parts["rootfs"].size
    return store.Upload(meta=parts["metadata"].path, rootfs=parts["rootfs"].path,
                        fingerprint=digest.hexdigest(), size=size)


@routes.post("/1.0/images")
async def create_image(request: web.Request) -> web.Response:
    state, pool = request.app[STATE], request.app[POOL]
    content_type = request.content_type
    if content_type == "application/json":
        raise BadRequest("Importing images from a source (remote, URL, instance) is not "
                         "supported yet: upload an image file instead")
    # Headers are checked before the body is received: a refusal leaves nothing in tmp/.
    public = _header(request, "public") in ("1", "true")
    try:
        properties = json.loads(_header(request, "properties") or "{}")
    except ValueError:
        properties = None
    if not isinstance(properties, dict):
        raise BadRequest("X-LXD-properties must be a JSON object")
    if content_type.startswith("multipart/"):
        upload = await _receive_multipart(request, pool)
    else:
        upload = await _receive_raw(request, pool)
    expected = _header(request, "fingerprint")
    if expected and expected != upload.fingerprint:
        for path in (upload.meta, upload.rootfs):
            if path is not None:
                path.unlink(missing_ok=True)
        raise BadRequest(f"Image fingerprint doesn't match: got {upload.fingerprint}, "
                         f"expected {expected}")

    async def work(op: Operation) -> dict[str, Any]:
        rec = await store.register(state, pool, upload, public=public,
                                   extra_properties={str(k): str(v)
                                                     for k, v in properties.items()})
        request.app[INSTANCES].refill_spare(rec.fingerprint)
        return {"fingerprint": rec.fingerprint, "size": rec.size}

    op = state.operations.start("task", "Importing image", {}, work)
    return async_response(op.to_json())


@routes.get("/1.0/images/{fingerprint}")
async def get_image(request: web.Request) -> web.Response:
    return sync(render(_lookup(request)))


@routes.put("/1.0/images/{fingerprint}")
async def put_image(request: web.Request) -> web.Response:
    return await _update(request, patch=False)


@routes.patch("/1.0/images/{fingerprint}")
async def patch_image(request: web.Request) -> web.Response:
    return await _update(request, patch=True)


async def _update(request: web.Request, patch: bool) -> web.Response:
    rec = _lookup(request)
    body = await json_body(request)
    if "public" in body or not patch:
        rec.public = bool(body.get("public"))
    if "auto_update" in body or not patch:
        rec.auto_update = bool(body.get("auto_update"))
    if "properties" in body or not patch:
        props = body.get("properties") or {}
        if not isinstance(props, dict):
            raise BadRequest("Image properties must be an object of strings")
        props = {str(k): str(v) for k, v in props.items()}
        rec.properties = {**rec.properties, **props} if patch else props
    if "expires_at" in body:
        rec.expires_at = str(body["expires_at"] or "")
    db_images.update(request.app[STATE].db, rec)
    return sync()


@routes.delete("/1.0/images/{fingerprint}")
async def delete_image(request: web.Request) -> web.Response:
    state, pool = request.app[STATE], request.app[POOL]
    rec = _lookup(request)

    async def work(op: Operation) -> None:
        async with state.image_locks[rec.fingerprint]:
            db_images.delete(state.db, rec.fingerprint)
            store.delete_files(state, pool, rec.fingerprint)

    op = state.operations.start("task", "Deleting image",
                                {"images": [f"/1.0/images/{rec.fingerprint}"]}, work)
    return async_response(op.to_json())


# Aliases

@alias_routes.get("/1.0/images/aliases")
async def list_aliases(request: web.Request) -> web.Response:
    db = request.app[STATE].db
    names = db_images.alias_names(db)
    if request.query.get("recursion", "0") == "0":
        return sync([f"/1.0/images/aliases/{n}" for n in names])
    return sync([db_images.get_alias(db, n) for n in names])


def _alias_name(name: Any) -> str:
    if not isinstance(name, str) or not name or name.strip() != name or ":" in name:
        raise BadRequest(f"Invalid alias name {name!r}: a non-empty name without ':' "
                         "or surrounding spaces")
    return name


@alias_routes.post("/1.0/images/aliases")
async def create_alias(request: web.Request) -> web.Response:
    db = request.app[STATE].db
    body = await json_body(request)
    name = _alias_name(body.get("name"))
    target = body.get("target") or ""
    image = db_images.find_by_prefix(db, target)
    try:
        db_images.create_alias(db, name, image.fingerprint, str(body.get("description") or ""))
    except Conflict:
        raise Conflict("Alias already exists") from None
    return sync()


@alias_routes.get("/1.0/images/aliases/{name:.+}")
async def get_alias(request: web.Request) -> web.Response:
    return sync(db_images.get_alias(request.app[STATE].db, request.match_info["name"]))


@alias_routes.put("/1.0/images/aliases/{name:.+}")
async def put_alias(request: web.Request) -> web.Response:
    return await _update_alias(request, patch=False)


@alias_routes.patch("/1.0/images/aliases/{name:.+}")
async def patch_alias(request: web.Request) -> web.Response:
    return await _update_alias(request, patch=True)


async def _update_alias(request: web.Request, patch: bool) -> web.Response:
    db = request.app[STATE].db
    current = db_images.get_alias(db, request.match_info["name"])
    body = await json_body(request)
    target = body.get("target") or (current["target"] if patch else "")
    if not target:
        raise BadRequest("Alias update needs a target fingerprint")
    image = db_images.find_by_prefix(db, target)
    description = body.get("description", current["description"] if patch else "")
    db_images.update_alias(db, current["name"], image.fingerprint, str(description or ""))
    return sync()


@alias_routes.post("/1.0/images/aliases/{name:.+}")
async def rename_alias(request: web.Request) -> web.Response:
    body = await json_body(request)
    db_images.rename_alias(request.app[STATE].db, request.match_info["name"],
                           _alias_name(body.get("name")))
    return sync()


@alias_routes.delete("/1.0/images/aliases/{name:.+}")
async def delete_alias(request: web.Request) -> web.Response:
    db_images.delete_alias(request.app[STATE].db, request.match_info["name"])
    return sync()


