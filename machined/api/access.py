"""Who may do what: every request is trusted (the unix socket, or an HTTPS client presenting a
trusted certificate) or untrusted. Untrusted callers reach only a short allow-list (as LXD's
AllowUntrusted handlers); routes that serve them filter what they show with is_trusted().
"""

from __future__ import annotations

import hashlib
import re
import socket

from aiohttp import web

from machined.api.context import STATE
from machined.api.responses import Handler
from machined.db import certificates as db_certificates
from machined.errors import Forbidden

TRUSTED = web.RequestKey("trusted", bool)  # set by trust_middleware on every request

# What untrusted callers may request. Paths are matched as the router matches them
# (`rel_url.path_safe`: %2F stays encoded, so a segment never holds a '/').
_UNTRUSTED_GET = re.compile(
    r"/"                                   # GET /
    r"|/1\.0"                              # server info (reduced)
    r"|/1\.0/images"                       # public images only
    r"|/1\.0/images/aliases(/.+)?"         # aliases of public images only
    r"|/1\.0/images/[^/]+(/export)?"       # a public image, its files
)
_UNTRUSTED_POST = re.compile(r"/1\.0/certificates")  # only with a valid trust_token


def untrusted_may(method: str, path: str) -> bool:
    """Whether an untrusted caller may send `method` to `path` at all (the handler then
    shows it public objects only)."""
    if method == "GET":
        return _UNTRUSTED_GET.fullmatch(path) is not None
    if method == "POST":
        return _UNTRUSTED_POST.fullmatch(path) is not None
    return False


def is_trusted(request: web.Request) -> bool:
    """True for the unix socket and for HTTPS clients with a trusted certificate. A request
    that never went through trust_middleware counts as untrusted."""
    return request.get(TRUSTED) is True


def peer_fingerprint(request: web.Request) -> str | None:
    """sha256 of the client certificate presented on this TLS connection, if any."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return hashlib.sha256(der).hexdigest() if der else None


def _over_unix_socket(request: web.Request) -> bool:
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    return sock is not None and sock.family == socket.AF_UNIX


def _decide(request: web.Request) -> bool:
    if _over_unix_socket(request):
        return True  # the socket's mode (0660 root) is the access control
    fingerprint = peer_fingerprint(request)
    # Looked up on every request: a certificate removed from the trust store loses access at
    # once, even on a connection kept alive from before.
    return fingerprint is not None and db_certificates.is_trusted(
        request.app[STATE].db, fingerprint)


@web.middleware
async def trust_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Mark the request trusted or not; refuse untrusted ones outside the allow-list. Runs
    inside error_middleware, so the refusal is an LXD error envelope (403)."""
    trusted = _decide(request)
    request[TRUSTED] = trusted
    if not trusted and not untrusted_may(request.method, request.rel_url.path_safe):
        raise Forbidden("not authorized")
    return await handler(request)
