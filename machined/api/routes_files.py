"""/1.0/instances/<n>/files?path=: GET/HEAD/POST/DELETE with LXD's X-LXD-* headers.

GET of a file streams its bytes with sendfile(2); a directory answers a sync list of names; a
symlink answers its target text. POST streams the body to a temporary file that is renamed
into place. Works on running and stopped instances alike (see files/service.py).
machined extensions: DELETE ...&recursive=1 removes a directory tree (incus `file delete
-f`); POST with X-LXD-type: directory and Content-Type: application/x-tar creates the directory
and extracts the tar stream below it (a whole `mc file push -r` in one request).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator

from aiohttp import web

from machined.api.context import INSTANCES, STATE
from machined.api.responses import sync
from machined.errors import BadRequest
from machined.files import model
from machined.files.service import Entry, FileService

routes = web.RouteTableDef()
PATH = "/1.0/instances/{name}/files"
SMALL_BODY = 1 << 20  # bodies up to this size are read at once and written inline
READ_CHUNK = 1 << 18
LIST_CHUNK = 4096  # directory entries encoded at once


def _service(request: web.Request) -> FileService:
    return FileService(request.app[STATE], request.app[INSTANCES])


def _target(request: web.Request) -> tuple[str, str]:
    return request.match_info["name"], model.normalize_path(request.query.get("path"))


def _headers(entry: Entry) -> dict[str, str]:
    return model.entry_headers(entry.kind, entry.uid, entry.gid, entry.mode, entry.mtime)


def _header(request: web.Request, field: str) -> str | None:
    return request.headers.get(f"X-LXD-{field}") or request.headers.get(f"X-Incus-{field}")


@routes.head(PATH)
async def head_file(request: web.Request) -> web.StreamResponse:
    name, path = _target(request)
    entry = await _service(request).stat(name, path)
    headers = _headers(entry)
    resp = web.StreamResponse(headers=headers)
    if entry.kind == "file":
        resp.content_type = "application/octet-stream"
        resp.content_length = entry.size
    return resp


@routes.get(PATH, allow_head=False)
async def get_file(request: web.Request) -> web.StreamResponse:
    name, path = _target(request)
    result = await _service(request).read(name, path)
    headers = _headers(result.entry)
    if result.names is not None:
        if len(result.names) > LIST_CHUNK:
            return await _send_listing(request, result.names, headers)
        resp = sync(result.names)
        resp.headers.update(headers)
        return resp
    if result.target is not None:
        return web.Response(body=os.fsencode(result.target), headers=headers,
                            content_type="application/octet-stream")
    assert result.fd is not None
    return await _send_fd(request, result.fd, headers)


async def _send_listing(request: web.Request, names: list[str],
                        headers: dict[str, str]) -> web.StreamResponse:
    """A large listing (a container can make millions of entries) as the same sync envelope,
    encoded and sent a chunk at a time so that other requests are served meanwhile."""
    head, tail = sync([0]).body.split(b"[0]")  # type: ignore[union-attr]
    resp = web.StreamResponse(headers=headers)
    resp.content_type = "application/json"
    await resp.prepare(request)
    await resp.write(head + b"[")
    for start in range(0, len(names), LIST_CHUNK):
        text = json.dumps(names[start:start + LIST_CHUNK], separators=(",", ":"))[1:-1]
        await resp.write(("," + text if start else text).encode())
        await asyncio.sleep(0)  # write() does not yield unless the socket is backed up
    await resp.write(b"]" + tail)
    await resp.write_eof()
    return resp


async def _send_fd(request: web.Request, fd: int, headers: dict[str, str]) -> web.StreamResponse:
    """Stream an open file with sendfile(2). The size is taken from the open fd; if the
    container shrinks the file meanwhile, the connection is closed rather than leaving the
    client waiting for bytes that will never come."""
    with open(fd, "rb", closefd=True) as f:
        size = os.fstat(f.fileno()).st_size
        resp = web.StreamResponse(headers=headers)
        resp.content_type = "application/octet-stream"
        resp.content_length = size
        await resp.prepare(request)
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("Connection lost")
        sent = 0
        if size:
            try:
                sent = await asyncio.get_running_loop().sendfile(transport, f, 0, size)
            except NotImplementedError:
                sent = await _copy_fallback(resp, f, size)
        if sent != size:
            transport.close()
            return resp
        await resp.write_eof()
        return resp


async def _copy_fallback(resp: web.StreamResponse, f: object, size: int) -> int:
    sent = 0
    fd = f.fileno()  # type: ignore[attr-defined]
    while sent < size:
        chunk = await asyncio.to_thread(os.pread, fd, min(READ_CHUNK, size - sent), sent)
        if not chunk:
            break
        await resp.write(chunk)
        sent += len(chunk)
    return sent


@routes.post(PATH)
async def post_file(request: web.Request) -> web.Response:
    name, path = _target(request)
    headers = model.parse_push_headers(lambda field: _header(request, field))
    svc = _service(request)
    length = request.content_length
    if headers.type == "directory" and request.content_type == "application/x-tar":
        await svc.push_archive(name, path, headers, _chunks(request))
        return sync()
    if headers.type != "file" or (length is not None and length <= SMALL_BODY):
        data = await _read_limited(request, SMALL_BODY)
        await svc.push_small(name, path, headers, data)
        return sync()
    written = await svc.push_stream(name, path, headers, _chunks(request))
    if length is not None and written != length:  # pragma: no cover - aiohttp raises first
        raise BadRequest("The request body ended before its Content-Length")
    return sync()


async def _read_limited(request: web.Request, limit: int) -> bytes:
    data = bytearray()
    async for chunk in request.content.iter_any():
        data += chunk
        if len(data) > limit:
            raise BadRequest(f"This request body is limited to {limit} bytes")
    return bytes(data)


async def _chunks(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_any():
        yield chunk


@routes.delete(PATH)
async def delete_file(request: web.Request) -> web.Response:
    name, path = _target(request)
    recursive = request.query.get("recursive", "").lower() in ("1", "true", "yes")
    await _service(request).delete(name, path, recursive)
    return sync()

