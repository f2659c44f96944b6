"""The HTTPS listener (core.https_address), with TLS client certificates as LXD has them.

Nothing listens until core.https_address is set; a change rebinds at once, unsetting closes
the port. The server certificate is `$MACHINED_DIR/server.crt|key`, made on first need.

Client authentication. Python's ssl cannot request a client certificate without verifying it,
so the trust store itself is the verify store: the server requests a certificate
(CERT_OPTIONAL), the trusted certificates are the only roots, and VERIFY_X509_PARTIAL_CHAIN
lets a self-signed trusted certificate verify as its own anchor. Hence:
  - no certificate: the handshake succeeds, the caller is untrusted (public images, join);
  - a trusted certificate: verified, and trusted per request (its sha256 is in the DB);
  - any other certificate: the server refuses the handshake (asyncio drops the connection;
    the client sees it closed right after the handshake). An LXD server instead accepts the
    connection and treats the caller as untrusted; mc therefore presents its certificate only
    to remotes it joined (not to public ones), and a client joining with a token sends its
    certificate in the POST body instead of in the handshake.
Every change to the trust store builds a fresh context that the base context's SNI callback
(called on every handshake, SNI or not) swaps in: a removed certificate cannot complete another
handshake, and is untrusted at once on connections kept alive from before (the per-request DB
check in api/access.py). TLS 1.3 only, as LXD and Incus.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import ssl
from pathlib import Path

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from machined.db import certificates as db_certificates
from machined.db import settings
from machined.errors import MachinedError
from machined.state import State
from machined.trust import certs, tokens

log = logging.getLogger("machined.https")
ADDRESS_KEY = "core.https_address"
CLOSE_GRACE = 10.0  # seconds a request in progress may finish when HTTPS stops


class HttpsEndpoint:
    """Owns the TCP site of the API's runner and the TLS contexts."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.runner: web.AppRunner | None = None
        self.site: web.TCPSite | None = None
        self.address = ""  # what we listen on now ("" = not listening)
        self._live: ssl.SSLContext | None = None
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def cert_path(self) -> Path:
        return self.state.paths.root / "server.crt"

    @property
    def key_path(self) -> Path:
        return self.state.paths.root / "server.key"

    def server_pem(self) -> str:
        """The daemon's certificate (PEM), made now if it does not exist yet."""
        certs.ensure_server_certificate(self.cert_path, self.key_path, self._listen_host())
        return self.cert_path.read_text()

    def _listen_host(self) -> str:
        address = settings.get_all(self.state.db).get(ADDRESS_KEY, "")
        return tokens.split_listen(address)[0] if address else ""

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self, runner: web.AppRunner) -> None:
        """At daemon start: listen if core.https_address is set. A failure to bind is logged,
        not fatal: the unix socket still serves (and can fix the address)."""
        self.runner = runner
        address = settings.get_all(self.state.db).get(ADDRESS_KEY, "")
        if not address:
            return
        try:
            await self._bind(address)
        except OSError as e:
            log.error("HTTPS API not started: cannot listen on %s: %s", address, e)

    async def stop(self) -> None:
        """Close the port and end the HTTPS connections: idle ones at once, busy ones after
        their current request (cut after CLOSE_GRACE seconds). This runs in the background:
        the request that unset the address may itself have come over HTTPS."""
        if self.site is not None:
            await self.site.stop()
        self.site, self.address, self._live = None, "", None
        server = self.runner.server if self.runner is not None else None
        handlers = [h for h in (server.connections if server is not None else [])
                    if h.transport is not None
                    and h.transport.get_extra_info("ssl_object") is not None]
        if handlers:
            task = asyncio.create_task(_shut(handlers))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def on_config(self, old: dict[str, str], new: dict[str, str]) -> None:
        """State.config_listeners entry: rebind when core.https_address changed."""
        address = new.get(ADDRESS_KEY, "")
        if address != old.get(ADDRESS_KEY, ""):  # other keys' changes never fail on a bind
            await self.apply(address)

    async def apply(self, address: str) -> None:
        """Listen on `address` ("" = stop listening). On a bind failure the previous listener
        is restored and the error names both."""
        if address == self.address:
            return
        previous = self.address
        await self.stop()
        if not address:
            log.info("HTTPS API stopped")
            return
        try:
            await self._bind(address)
        except OSError as e:
            still = ""
            if previous:
                try:
                    await self._bind(previous)
                    still = f"; the API still listens on {previous}"
                except OSError:
                    pass
            # asyncio words bind errors at length; getaddrinfo's errnos are negative
            reason = os.strerror(e.errno) if (e.errno or 0) > 0 else (e.strerror or str(e))
            raise MachinedError(f"Cannot listen on {address} (core.https_address): "
                                f"{reason}{still}") from None

    async def _bind(self, address: str) -> None:
        if self.runner is None:
            raise MachinedError("The API is not running yet")
        host, port = tokens.split_listen(address)
        site = web.TCPSite(self.runner, host or None, port, ssl_context=self._base_context())
        await site.start()
        self.site, self.address = site, address
        log.info("HTTPS API listening on %s (certificate %s)", address,
                 certs.fingerprint(self.cert_path.read_bytes())[:12])

    # -- TLS contexts ---------------------------------------------------------------------
    def _base_context(self) -> ssl.SSLContext:
        """The context the listener is created with: a vehicle for the SNI callback, which
        hands every handshake the current context. It trusts no client certificate itself."""
        self.server_pem()
        base = self._context([])
        self._live = self._trusting_context()
        base.sni_callback = self._pick_context
        return base

    def _pick_context(self, ssl_object: ssl.SSLObject, server_name: str | None,
                      base: ssl.SSLContext) -> None:
        live = self._live
        if live is not None:
            ssl_object.context = live

    def trust_changed(self) -> None:
        """After a certificate is added or removed: the next handshake verifies against the
        new store. (Not listening: the next bind builds it.)"""
        if self._live is not None:
            self._live = self._trusting_context()

    def _trusting_context(self) -> ssl.SSLContext:
        return self._context([rec.certificate
                              for rec in db_certificates.list_all(self.state.db)])

    def _context(self, pems: list[str]) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(self.cert_path, self.key_path)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        for pem in pems:
            try:
                ctx.load_verify_locations(cadata=pem)
            except ssl.SSLError as e:  # one bad row must not lock every client out
                log.error("Ignoring an unusable trusted certificate: %s", e)
        return ctx

    def environment(self) -> dict[str, object]:
        """GET /1.0 environment keys, as LXD: addresses, certificate, certificate_fingerprint
        (empty while no certificate has been made)."""
        try:
            pem = self.cert_path.read_text()
        except FileNotFoundError:
            pem = ""
        return {"addresses": self.token_addresses() if self.address else [],
                "certificate": pem,
                "certificate_fingerprint": certs.fingerprint(pem) if pem else ""}

    # -- join tokens ----------------------------------------------------------------------
    def token_addresses(self) -> list[str]:
        """Where a joining client can reach this listener (for the token)."""
        return tokens.addresses_for(self.address, local_addresses())


async def _shut(handlers: list[RequestHandler]) -> None:
    """As aiohttp's own shutdown: close() ends idle keep-alive connections' wait for a next
    request, shutdown() lets a request in progress finish (for CLOSE_GRACE seconds at most)
    and closes the transport."""
    for handler in handlers:
        handler.close()
    await asyncio.gather(*(h.shutdown(CLOSE_GRACE) for h in handlers),
                         return_exceptions=True)


def local_addresses() -> list[str]:
    """This host's global unicast addresses (IPv4 then IPv6), read from /proc."""
    return _ipv4_addresses() + _ipv6_addresses()


def _ipv4_addresses() -> list[str]:
    found: dict[str, None] = {}
    last = ""
    try:
        with open("/proc/net/fib_trie") as f:
            for line in f:
                text = line.strip()
                if text.startswith(("|-- ", "+-- ")):
                    last = text[4:].split()[0]
                elif text.startswith("/32 host LOCAL") and last:
                    if not ipaddress.ip_address(last).is_loopback:
                        found[last] = None
    except (OSError, ValueError):
        return []
    return list(found)


def _ipv6_addresses() -> list[str]:
    found: list[str] = []
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 6 or fields[5] == "lo" or fields[3] != "00":
                    continue  # loopback, link-local and other scopes are no use to a client
                found.append(str(ipaddress.IPv6Address(int(fields[0], 16))))
    except (OSError, ValueError):
        return []
    return found


HTTPS = web.AppKey("https", HttpsEndpoint)
