"""/1.0/certificates: the TLS client certificates the HTTPS API trusts, and join tokens.

As LXD, with two differences:
  - A token is created by `POST {"token": true, "name": ...}` and answered synchronously
    (metadata: the encoded `token` plus LXD's operation metadata fields `secret`,
    `fingerprint`, `addresses`, `expires_at`, `request`), not as a pending operation; it is
    stored (as sha256 of its secret) and survives daemon restarts. Pending tokens are listed
    at GET /1.0/certificates/tokens and revoked by DELETE /1.0/certificates/tokens/<name>
    (LXD: operations of class "token").
  - A client joining with a token sends its certificate in the body (`certificate`, with
    `trust_token`): a certificate the server does not trust yet cannot complete a TLS
    handshake here (see api/https.py), so LXD's "the certificate of this connection" is not
    available.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from machined import clock
from machined.api.access import is_trusted
from machined.api.context import STATE
from machined.api.https import HTTPS
from machined.api.responses import json_body, sync
from machined.config.schema import SERVER_KEYS
from machined.config.validate import parse_expiry
from machined.db import certificates as db_certificates
from machined.db import settings
from machined.errors import BadRequest, Forbidden, NotFound
from machined.trust import certs, tokens

log = logging.getLogger("machined.trust")
routes = web.RouteTableDef()
UNTRUSTED_BODY_LIMIT = 64 * 1024  # a join request is a certificate and a token
EXPIRY_KEY = "core.remote_token_expiry"


def _url(fingerprint: str) -> str:
    return f"/1.0/certificates/{fingerprint}"


# Registered before /1.0/certificates/{fingerprint}, which would otherwise match "tokens".
@routes.get("/1.0/certificates/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    """Pending join tokens (their secrets are not kept: only name and times)."""
    db = request.app[STATE].db
    db_certificates.prune_tokens(db, clock.now_iso())
    return sync([{"name": t.name, "created_at": t.created_at, "expires_at": t.expires_at}
                 for t in db_certificates.list_tokens(db)])


@routes.delete("/1.0/certificates/tokens/{name}")
async def revoke_tokens(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if db_certificates.delete_tokens(request.app[STATE].db, name) == 0:
        raise NotFound(f"No pending trust token for {name!r}")
    return sync()


@routes.get("/1.0/certificates")
async def list_certificates(request: web.Request) -> web.Response:
    records = db_certificates.list_all(request.app[STATE].db)
    if request.query.get("recursion", "0") != "0":
        return sync([r.to_json() for r in records])
    return sync([_url(r.fingerprint) for r in records])


@routes.get("/1.0/certificates/{fingerprint}")
async def get_certificate(request: web.Request) -> web.Response:
    db = request.app[STATE].db
    return sync(db_certificates.find(db, request.match_info["fingerprint"]).to_json())


@routes.delete("/1.0/certificates/{fingerprint}")
async def delete_certificate(request: web.Request) -> web.Response:
    db = request.app[STATE].db
    rec = db_certificates.find(db, request.match_info["fingerprint"])
    db_certificates.delete(db, rec.fingerprint)
    request.app[HTTPS].trust_changed()
    log.info("Removed trusted certificate %s (%s)", rec.fingerprint[:12], rec.name)
    return sync()


@routes.post("/1.0/certificates")
async def post_certificates(request: web.Request) -> web.Response:
    """Trusted: add a certificate, or issue a token. Anyone: join with a token."""
    trusted = is_trusted(request)
    body = await (json_body(request) if trusted else _small_json_body(request))
    if body.get("trust_token"):
        return await _join(request, body)
    if not trusted:
        raise Forbidden("not authorized")
    if body.get("token") is True:
        return _issue_token(request, body)
    if body.get("token") not in (None, False):
        raise BadRequest("token must be true or false")
    return _add(request, body)


def _name(body: dict[str, Any], default: str = "") -> str:
    name = body.get("name", default)
    if not isinstance(name, str):
        raise BadRequest("name must be a string")
    name = name.strip() or default
    if len(name) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BadRequest(f"Invalid certificate name {name[:80]!r}: at most 255 characters, "
                         "no control characters")
    return name


def _check_type(body: dict[str, Any]) -> None:
    kind = body.get("type") or "client"
    if kind != "client":
        raise BadRequest(f"Certificate type {kind!r} is not supported (accepted: client)")


def _record(body: dict[str, Any], name: str) -> db_certificates.CertificateRecord:
    data = body.get("certificate")
    if not isinstance(data, str) or not data.strip():
        raise BadRequest("certificate is required: the client certificate as PEM or as "
                         "base64 DER")
    cert = certs.parse_certificate(data)
    certs.check_client_certificate(cert, clock.now())
    return db_certificates.CertificateRecord(
        fingerprint=certs.fingerprint(cert), name=name or certs.common_name(cert),
        certificate=certs.pem_text(cert), created_at=clock.now_iso())


def _add(request: web.Request, body: dict[str, Any]) -> web.Response:
    _check_type(body)
    rec = _record(body, _name(body))
    db_certificates.add(request.app[STATE].db, rec)
    request.app[HTTPS].trust_changed()
    log.info("Trusted certificate %s (%s)", rec.fingerprint[:12], rec.name)
    return sync()


def _issue_token(request: web.Request, body: dict[str, Any]) -> web.Response:
    _check_type(body)
    name = _name(body)
    if not name:
        raise BadRequest("A trust token needs the name of the client it is for")
    state = request.app[STATE]
    https = request.app[HTTPS]
    if not https.address:
        raise BadRequest("Can't issue a trust token while the server isn't listening on the "
                         "network: set core.https_address first (e.g. mc config set "
                         "core.https_address 127.0.0.1:8443)")
    expiry = settings.get_all(state.db).get(EXPIRY_KEY) or SERVER_KEYS[EXPIRY_KEY].default
    now = clock.now()
    token = tokens.make(name, certs.fingerprint(https.server_pem()), https.token_addresses(),
                        now, parse_expiry(expiry))
    db_certificates.prune_tokens(state.db, tokens.iso(now))
    db_certificates.add_token(state.db, db_certificates.TokenRecord(
        secret_sha256=tokens.secret_hash(token.secret), name=name, created_at=tokens.iso(now),
        expires_at=token.expires_at))
    log.info("Issued a trust token for %s (expires %s)", name, token.expires_at)
    return sync({"token": token.encode(), "secret": token.secret,
                 "fingerprint": token.fingerprint, "addresses": token.addresses,
                 "expires_at": token.expires_at,
                 "request": {"name": name, "type": "client", "token": True}})


async def _join(request: web.Request, body: dict[str, Any]) -> web.Response:
    _check_type(body)
    secret = _secret(body["trust_token"])
    rec = _record(body, _name(body))
    state = request.app[STATE]
    try:
        name = db_certificates.join(state.db, tokens.secret_hash(secret), clock.now_iso(), rec)
    except Forbidden:
        log.warning("Refused a trust token from %s", request.remote)
        raise
    request.app[HTTPS].trust_changed()
    log.info("Trusted certificate %s (%s) from %s with a token", rec.fingerprint[:12], name,
             request.remote)
    return sync({"fingerprint": rec.fingerprint, "name": name})


def _secret(value: object) -> str:
    """The token's secret; the whole token (as `mc config trust add` prints it) also does."""
    if not isinstance(value, str):
        raise BadRequest("trust_token must be a string")
    try:
        return tokens.decode(value).secret
    except tokens.TokenError:
        return value.strip()


async def _small_json_body(request: web.Request) -> dict[str, Any]:
    """An untrusted caller's JSON body, refused past UNTRUSTED_BODY_LIMIT before it is read
    whole (the app accepts huge uploads from trusted callers)."""
    if (request.content_length or 0) > UNTRUSTED_BODY_LIMIT:
        raise BadRequest(f"Request body too large (at most {UNTRUSTED_BODY_LIMIT} bytes)")
    data = bytearray()
    while chunk := await request.content.read(UNTRUSTED_BODY_LIMIT + 1 - len(data)):
        data += chunk
        if len(data) > UNTRUSTED_BODY_LIMIT:
            raise BadRequest(f"Request body too large (at most {UNTRUSTED_BODY_LIMIT} bytes)")
    if not data:
        return {}
    parsed = json.loads(data)
    if not isinstance(parsed, dict):
        raise BadRequest("Request body must be a JSON object")
    return parsed
