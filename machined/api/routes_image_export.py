"""GET /1.0/images/<fp>/export: an image's files exactly as stored, as LXD serves them.

A unified image is its one file (application/octet-stream); a split image is a
multipart/form-data body with a `metadata` part then a `rootfs` part. File names carry the
extension of what the bytes are (sniffed, not assumed), so a client can save them as given.
Both files are opened before anything is sent: an image deleted while it streams still
streams whole (the open descriptors keep the data).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO

from aiohttp import MultipartWriter, payload, web

from machined.api.access import is_trusted
from machined.api.context import STATE
from machined.db import images as db_images
from machined.errors import NotFound
from machined.images import format as image_format

routes = web.RouteTableDef()

_EXTENSIONS = {
    image_format.ArchiveKind.GZIP: ".tar.gz", image_format.ArchiveKind.XZ: ".tar.xz",
    image_format.ArchiveKind.ZSTD: ".tar.zst", image_format.ArchiveKind.BZIP2: ".tar.bz2",
    image_format.ArchiveKind.TAR: ".tar", image_format.ArchiveKind.SQUASHFS: ".squashfs",
}


def extension(head: bytes) -> str:
    """The file name extension for an image file starting with `head` ('' if unknown)."""
    try:
        return _EXTENSIONS[image_format.detect_kind(head)]
    except image_format.ImageFormatError:
        return ""


def _find(request: web.Request, name: str) -> db_images.ImageRecord:
    """A full fingerprint or a unique prefix. Untrusted callers see public images only, and
    a private image answers exactly like a missing one (no probing by prefix)."""
    db = request.app[STATE].db
    if is_trusted(request):
        return db_images.find_by_prefix(db, name)
    matches = [r for r in db_images.list_all(db)
               if r.public and name and r.fingerprint.startswith(name)]
    if len(matches) != 1:
        raise NotFound(f"Image {name!r} not found")
    return matches[0]


def _open(files: contextlib.ExitStack, path: Path) -> tuple[IO[bytes], str]:
    fh = files.enter_context(open(path, "rb"))
    return fh, extension(os.pread(fh.fileno(), image_format.MAGIC_BYTES, 0))


@routes.get("/1.0/images/{fingerprint}/export")
async def export_image(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    record = _find(request, request.match_info["fingerprint"])
    fp = record.fingerprint
    with contextlib.ExitStack() as files:
        try:
            meta, meta_ext = _open(files, state.paths.images / fp)
            if record.split:
                rootfs, rootfs_ext = _open(files, state.paths.images / f"{fp}.rootfs")
        except FileNotFoundError:
            raise NotFound(f"Image {fp!r} has no files to export (deleted meanwhile?)") \
                from None
        headers = {"X-LXD-fingerprint": fp}
        if record.split:
            body = MultipartWriter("form-data")
            for name, fh, filename in (("metadata", meta, f"meta-{fp}{meta_ext}"),
                                       ("rootfs", rootfs, f"{fp}{rootfs_ext}")):
                part = body.append_payload(payload.BufferedReaderPayload(
                    fh, content_type="application/octet-stream"))
                part.set_content_disposition("form-data", name=name, filename=filename)
            response = web.Response(body=body, headers=headers)
        else:
            headers["Content-Disposition"] = f'attachment; filename="{fp}{meta_ext}"'
            response = web.Response(body=payload.BufferedReaderPayload(
                meta, content_type="application/octet-stream"), headers=headers)
        # Sent here, inside the `with`, so the files close once the last byte is out (or
        # the client went away), not when the handler returns.
        await response.prepare(request)
        await response.write_eof()
        return response

