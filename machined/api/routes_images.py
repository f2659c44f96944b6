"""/1.0/images and /1.0/images/aliases: uploads, copies from remote servers, publishing,
refresh. Untrusted (HTTPS, no trusted certificate) callers see public images and the
aliases that point at them, nothing else."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

from aiohttp import BodyPartReader, web

from machined.api.access import is_trusted
from machined.api.context import IMAGES, INSTANCES, STATE, STORAGE
from machined.api.operations import Operation
from machined.api.responses import async_response, json_body, sync
from machined.db import images as db_images
from machined.errors import BadRequest, Conflict, NotFound
from machined.images import store
from machined.images.download import parse_source
from machined.images.pack import check_alias_name

routes = web.RouteTableDef()
log = logging.getLogger("machined.images")
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
    } | ({"update_source": dict(rec.source)} if rec.source else {})


def _header(request: web.Request, name: str) -> str:
    return request.headers.get(f"X-LXD-{name}") or request.headers.get(f"X-Incus-{name}") or ""


def _lookup(request: web.Request) -> db_images.ImageRecord:
    """A full fingerprint or unique prefix. For an untrusted caller a private image answers
    exactly like a missing one (no probing by prefix)."""
    fp = request.match_info["fingerprint"]
    db = request.app[STATE].db
    if is_trusted(request):
        return db_images.find_by_prefix(db, fp)
    matches = [r for r in db_images.list_all(db)
               if r.public and fp and r.fingerprint.startswith(fp)]
    if len(matches) != 1:
        raise NotFound(f"Image {fp!r} not found")
    return matches[0]


def _visible(request: web.Request) -> list[db_images.ImageRecord]:
    records = db_images.list_all(request.app[STATE].db)
    return records if is_trusted(request) else [r for r in records if r.public]


@routes.get("/1.0/images")
async def list_images(request: web.Request) -> web.Response:
    records = _visible(request)
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
    state = request.app[STATE]
    pool = request.app[STORAGE].default  # uploads land in its tmp/ (the state dir's fs)
    content_type = request.content_type
    if content_type == "application/json":
        return await _create_from_source(request)
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
        rec = await store.register(state, upload, public=public,
                                   extra_properties={str(k): str(v)
                                                     for k, v in properties.items()})
        request.app[INSTANCES].refill_spare(rec.fingerprint)
        return {"fingerprint": rec.fingerprint, "size": rec.size}

    op = state.operations.start("task", "Importing image", {}, work)
    return async_response(op.to_json())


def _aliases(value: Any) -> list[dict[str, str]]:
    """The `aliases` of an image POST: [{name, description}] (names checked, no repeats)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(a, dict) for a in value):
        raise BadRequest("aliases must be a list of {\"name\": ..., \"description\": ...}")
    out = [{"name": _alias_name(a.get("name")), "description": str(a.get("description") or "")}
           for a in value]
    names = [a["name"] for a in out]
    if len(set(names)) != len(names):
        raise BadRequest("aliases: a name is listed twice")
    return out


async def _create_from_source(request: web.Request) -> web.Response:
    """JSON POST /1.0/images: copy from a remote server (source.type image) or publish an
    instance or snapshot (source.type instance|snapshot)."""
    state = request.app[STATE]
    body = await json_body(request)
    source = body.get("source")
    if not isinstance(source, dict):
        raise BadRequest("Image creation needs a source object (type image, instance or "
                         "snapshot), or an uploaded image file")
    aliases = _aliases(body.get("aliases"))
    public = bool(body.get("public"))
    kind = source.get("type")
    if kind in ("instance", "snapshot"):
        return await _publish(request, body, source, aliases, public)
    if kind != "image":
        raise BadRequest(f"Unsupported image source type {kind!r}: accepted are image, "
                         "instance and snapshot")
    if not source.get("server"):
        raise BadRequest("An image source of type image needs a server to copy from")
    remote = parse_source(source)
    auto_update = bool(body.get("auto_update"))
    images, instances = request.app[IMAGES], request.app[INSTANCES]

    async def work(op: Operation) -> dict[str, Any]:
        rec = await images.fetch(remote, op=op, cached=False, auto_update=auto_update,
                                 public=public, aliases=aliases)
        op.resources["images"] = [f"/1.0/images/{rec.fingerprint}"]
        instances.refill_spare(rec.fingerprint)
        return {"fingerprint": rec.fingerprint, "size": rec.size}

    op = state.operations.start("task", "Downloading image", {}, work)
    return async_response(op.to_json())


async def _publish(request: web.Request, body: dict[str, Any], source: dict[str, Any],
                   aliases: list[dict[str, str]], public: bool) -> web.Response:
    from machined.images import publish  # the publish helper's module, loaded on use

    state, instances = request.app[STATE], request.app[INSTANCES]
    name = source.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"A source of type {source.get('type')} needs the name of the "
                         "instance (or instance/snapshot) to publish")
    properties = body.get("properties") or {}
    if not isinstance(properties, dict):
        raise BadRequest("properties must be an object of strings")
    properties = {str(k): str(v) for k, v in properties.items()}
    compression = body.get("compression_algorithm") or None
    # Refusals (running instance, bad compression, taken alias) answer at once, not as a
    # failed operation.
    publish.check_publish(state, instances, name, aliases=aliases, properties=properties,
                          compression=compression)

    async def work(op: Operation) -> dict[str, Any]:
        rec = await publish.publish_instance(state, instances, name, public=public,
                                             aliases=aliases, properties=properties,
                                             compression=compression, op=op)
        op.resources["images"] = [f"/1.0/images/{rec.fingerprint}"]
        return {"fingerprint": rec.fingerprint, "size": rec.size}

    op = state.operations.start("task", "Publishing instance",
                                {"instances": [f"/1.0/instances/{name.split('/')[0]}"]}, work)
    return async_response(op.to_json())


@routes.get("/1.0/images/{fingerprint}")
async def get_image(request: web.Request) -> web.Response:
    return sync(render(_lookup(request)))


@routes.post("/1.0/images/{fingerprint}/refresh")
async def refresh_image(request: web.Request) -> web.Response:
    """Re-check the image's source alias now (ignoring images.auto_update_interval);
    the operation's metadata says {refreshed, fingerprint}."""
    state, images = request.app[STATE], request.app[IMAGES]
    rec = _lookup(request)
    if not rec.source or not rec.source.get("alias"):
        raise BadRequest(f"Image {rec.fingerprint[:12]} has no source alias to refresh from "
                         "(it was imported, published or copied by fingerprint)")

    async def work(op: Operation) -> dict[str, Any]:
        refreshed, fingerprint = await images.refresh(rec.fingerprint, op)
        op.resources["images"] = [f"/1.0/images/{fingerprint}"]
        return {"refreshed": refreshed, "fingerprint": fingerprint}

    op = state.operations.start("task", "Refreshing image",
                                {"images": [f"/1.0/images/{rec.fingerprint}"]}, work)
    return async_response(op.to_json())


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
    state = request.app[STATE]
    rec = _lookup(request)

    async def work(op: Operation) -> None:
        async with state.image_locks[rec.fingerprint]:
            db_images.delete(state.db, rec.fingerprint)
            await asyncio.to_thread(store.delete_files, state, rec.fingerprint)
        log.info("Deleted image %s", rec.fingerprint[:12])

    op = state.operations.start("task", "Deleting image",
                                {"images": [f"/1.0/images/{rec.fingerprint}"]}, work)
    return async_response(op.to_json())


# Aliases

def _public_targets(request: web.Request) -> set[str] | None:
    """Fingerprints an untrusted caller may see aliases of (None: all, trusted)."""
    if is_trusted(request):
        return None
    return {r.fingerprint for r in db_images.list_all(request.app[STATE].db) if r.public}


@alias_routes.get("/1.0/images/aliases")
async def list_aliases(request: web.Request) -> web.Response:
    db = request.app[STATE].db
    names = db_images.alias_names(db)
    public = _public_targets(request)
    if public is not None:
        names = [n for n in names if db_images.get_alias(db, n)["target"] in public]
    if request.query.get("recursion", "0") == "0":
        return sync([f"/1.0/images/aliases/{n}" for n in names])
    return sync([db_images.get_alias(db, n) for n in names])


def _alias_name(name: Any) -> str:
    try:
        return check_alias_name(name)
    except ValueError as e:
        raise BadRequest(str(e)) from None


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
        raise Conflict(f"Alias {name!r} already exists") from None
    return sync()


@alias_routes.get("/1.0/images/aliases/{name:.+}")
async def get_alias(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    alias = db_images.get_alias(request.app[STATE].db, name)
    public = _public_targets(request)
    if public is not None and alias["target"] not in public:
        raise NotFound(f"Image alias {name!r} not found")
    return sync(alias)


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


