"""Resolve and download images from remote servers: simplestreams trees (http/https) and other
machined daemons (protocol `machined`: https, or a unix socket).

Everything downloaded is hostile until verified: files stream to $MACHINED_DIR/tmp (never
whole in memory), each file's sha256 and size are checked against the stream's values while
it arrives, then the combined fingerprint (sha256 of metadata then rootfs bytes, or of the
unified tarball) must equal the fingerprint the image was chosen by. Any mismatch, short or
oversized body, cut connection or HTTP error removes every temporary file and raises a
DownloadError naming the file and what was wrong. A fingerprint that is not 64 hex
characters is refused before anything is downloaded.

Simplestreams index and products files are cached under $MACHINED_DIR/cache/simplestreams/
<sha256(server)>/ for an hour (machined.clock); a stale copy is used when the server cannot be
reached, and the cache is dropped when an image file is gone (404: the tree moved on,
incus#1373)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yarl

from machined import clock
from machined.errors import BadRequest, NotFound
from machined.images import simplestreams as ss
from machined.images.store import Upload
from machined.paths import Paths

log = logging.getLogger("machined.images.download")

PROTOCOLS = ("simplestreams", "machined")
INDEX_PATH = "streams/v1/index.json"
CACHE_EXPIRY = timedelta(hours=1)
CHUNK = 1 << 20
PROGRESS_EVERY = 0.25  # seconds between progress updates (~4/s)
MAX_JSON = 64 << 20  # an index or products file larger than this is refused
TIMEOUT = aiohttp.ClientTimeout(total=None, connect=30, sock_connect=30, sock_read=60)
MAX_REDIRECTS = 10
REDIRECT_STATUSES = (301, 302, 303, 307, 308)

Progress = Callable[[str], None]


class DownloadError(BadRequest):
    """A download failed or did not verify; nothing of it was kept."""


class FileGone(DownloadError):
    """The server answered 404 for an image file: its index may be stale."""


@dataclass(frozen=True)
class Source:
    """Where an image comes from, as given in an API `source` object."""
    server: str
    protocol: str
    name: str  # alias or fingerprint (prefix) as asked
    certificate: str = ""
    image_type: str = "container"
    by_fingerprint: bool = False  # given as `fingerprint` (never an auto-update source)

    def record(self, alias: str) -> dict[str, str]:
        """The images_source row for an image fetched from here (alias '' = by fingerprint)."""
        return {"server": self.server, "protocol": self.protocol, "alias": alias,
                "certificate": self.certificate, "image_type": self.image_type}


def parse_source(source: dict[str, Any]) -> Source:
    """Validate a remote `source` object (one with a `server`); BadRequest says what is wrong
    and what is accepted."""
    server = source.get("server")
    if not isinstance(server, str) or not server.strip():
        raise BadRequest("Image source needs a server address")
    protocol = source.get("protocol") or "machined"
    if protocol in ("lxd", "incus"):
        protocol = "machined"  # what an LXD client sends for a daemon-to-daemon copy
    if protocol not in PROTOCOLS:
        raise BadRequest(f"Unsupported image server protocol {protocol!r}: accepted are "
                         "simplestreams and machined")
    server = normalize_server(server.strip(), protocol)
    mode = source.get("mode") or "pull"
    if mode != "pull":
        raise BadRequest(f"Unsupported image source mode {mode!r}: accepted is pull")
    fingerprint, alias = source.get("fingerprint") or "", source.get("alias") or ""
    if not isinstance(fingerprint, str) or not isinstance(alias, str):
        raise BadRequest("Image source alias and fingerprint must be strings")
    name = fingerprint or alias
    if not name:
        raise BadRequest("Image source needs an alias or a fingerprint")
    if fingerprint and not all(c in "0123456789abcdef" for c in fingerprint):
        raise BadRequest(f"Invalid image fingerprint {fingerprint!r}: expected (a prefix of) "
                         "64 lowercase hex characters")
    certificate = source.get("certificate") or ""
    if not isinstance(certificate, str):
        raise BadRequest("Image source certificate must be a PEM string")
    if certificate and "BEGIN CERTIFICATE" not in certificate:
        raise BadRequest("Image source certificate must be a PEM certificate "
                         "(-----BEGIN CERTIFICATE-----)")
    image_type = source.get("image_type") or "container"
    if image_type != "container":
        raise BadRequest(f"Unsupported image type {image_type!r}: accepted is container")
    return Source(server=server, protocol=protocol, name=name, certificate=certificate,
                  image_type=image_type, by_fingerprint=bool(fingerprint))


def normalize_server(server: str, protocol: str) -> str:
    """The server address without a trailing slash; refuses schemes the protocol cannot use."""
    parsed = urllib.parse.urlsplit(server)
    allowed = ("http", "https") if protocol == "simplestreams" else ("https", "unix")
    if parsed.scheme not in allowed or (parsed.scheme != "unix" and not parsed.hostname):
        shown = ", ".join(f"{s}://" for s in allowed)
        raise BadRequest(f"Invalid {protocol} server address {server!r}: accepted are "
                         f"{shown} addresses")
    if parsed.query or parsed.fragment:
        raise BadRequest(f"Invalid server address {server!r}: no query or fragment allowed")
    return server.rstrip("/") if parsed.scheme != "unix" else server


class _PinnedContext(ssl.SSLContext):
    pinned: frozenset[str] = frozenset()  # sha256 of the DER of each pinned certificate


class _PinnedObject(ssl.SSLObject):
    """A TLS connection that, once the handshake is done, requires the server's own
    certificate to BE a pinned one. OpenSSL, given the pinned certificate as the only anchor
    (with PARTIAL_CHAIN), would also accept any certificate it signed: a pinned CA, or a
    self-signed certificate with CA:TRUE as `openssl req -x509` makes, would then admit
    other certificates, for any host name (there is no host name check)."""

    def do_handshake(self) -> None:
        super().do_handshake()
        der = self.getpeercert(binary_form=True) or b""
        pinned = getattr(self.context, "pinned", frozenset())
        if hashlib.sha256(der).hexdigest() not in pinned:
            raise ssl.SSLCertVerificationError(
                "the server's certificate is not the pinned certificate")


def _pem_fingerprints(pem: str) -> frozenset[str]:
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", pem,
                        re.DOTALL)
    try:
        return frozenset(hashlib.sha256(ssl.PEM_cert_to_DER_cert(b)).hexdigest()
                         for b in blocks)
    except ValueError as e:
        raise BadRequest(f"Invalid pinned server certificate: {e}") from None


def ssl_context(certificate: str) -> ssl.SSLContext:
    """The system CA store (honours SSL_CERT_FILE), or, when a certificate is pinned, that
    certificate and nothing else (a self-signed server: no CA, no hostname check)."""
    if not certificate:
        return ssl.create_default_context()
    ctx = _PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(cadata=certificate)
    except ssl.SSLError as e:
        raise BadRequest(f"Invalid pinned server certificate: {e.reason or e}") from None
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    # asyncio makes its TLS connections with wrap_bio, hence with this class
    ctx.pinned = _pem_fingerprints(certificate)
    ctx.sslobject_class = _PinnedObject
    return ctx


@dataclass
class RemoteImage:
    """An image chosen on a remote, before download."""
    fingerprint: str
    architecture: str
    size: int
    properties: dict[str, str]
    expires_at: str = ""
    files: tuple[ss.StreamFile, ...] = ()  # simplestreams only
    public: bool = False
    by_alias: bool = False  # the name resolved as an alias (not a fingerprint prefix)


@dataclass
class Proxies:
    """core.proxy_http / core.proxy_https / core.proxy_ignore_hosts."""
    http: str = ""
    https: str = ""
    ignore: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: dict[str, str]) -> Proxies:
        ignore = tuple(h.strip().lower() for h in config.get("core.proxy_ignore_hosts", "")
                       .split(",") if h.strip())
        return cls(config.get("core.proxy_http", ""), config.get("core.proxy_https", ""),
                   ignore)

    def for_url(self, url: str) -> str | None:
        parsed = urllib.parse.urlsplit(url)
        host = (parsed.hostname or "").lower()
        if any(host == h or (h.startswith(".") and host.endswith(h)) or host.endswith("." + h)
               for h in self.ignore):
            return None
        proxy = self.https if parsed.scheme == "https" else self.http
        return proxy or None


class _Progress:
    """Formats and throttles progress lines: `rootfs: 45% (12.3 MB/s)`."""

    def __init__(self, callback: Progress | None, label: str, total: int) -> None:
        self.callback, self.label, self.total = callback, label, total
        self.done = 0
        self.started = time.monotonic()
        self.last = 0.0

    def add(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.callback is not None and now - self.last >= PROGRESS_EVERY:
            self.last = now
            self.callback(self.text(now))

    def finish(self) -> None:
        """The last word on a file (100%) is always shown, throttled or not."""
        if self.callback is not None:
            self.callback(self.text(time.monotonic()))

    def text(self, now: float) -> str:
        speed = self.done / max(now - self.started, 1e-3)
        rate = f"{speed / 1e6:.1f} MB/s" if speed >= 1e5 else f"{speed / 1e3:.1f} kB/s"
        if self.total > 0:
            return f"{self.label}: {min(100, self.done * 100 // self.total)}% ({rate})"
        return f"{self.label}: {self.done / 1e6:.1f} MB ({rate})"


class _FileWriter:
    """Writes a download to a temp file off the event loop, hashing it as it goes."""

    def __init__(self, path: Path, combined: Any) -> None:
        self.path = path
        self.combined = combined
        self.own = hashlib.sha256()
        self.size = 0
        self._buf: list[bytes] = []
        self._buffered = 0
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)

    async def write(self, chunk: bytes) -> None:
        self.own.update(chunk)
        self.combined.update(chunk)
        self.size += len(chunk)
        self._buf.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= CHUNK:
            await self._flush()

    async def _flush(self) -> None:
        data = b"".join(self._buf)
        self._buf, self._buffered = [], 0
        if data:
            await asyncio.to_thread(_write_all, self._fd, data)

    async def close(self) -> None:
        if self._fd < 0:
            return
        try:
            await self._flush()
            await asyncio.to_thread(os.fsync, self._fd)
        finally:
            self._close_fd()

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:  # never twice: the number may already belong to another file
            os.close(fd)

    def abort(self) -> None:
        self._close_fd()
        self.path.unlink(missing_ok=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class RemoteServer:
    """One image server, opened for one operation: `async with open_server(...) as srv`."""

    def __init__(self, source: Source, paths: Paths, temp_path: Callable[[str], Path],
                 proxies: Proxies | None = None) -> None:
        self.source = source
        self.paths = paths
        self.temp_path = temp_path
        self.proxies = proxies or Proxies()
        self.session: aiohttp.ClientSession | None = None
        # True: ask the server even if the cached index is fresh (an explicit refresh);
        # a cached copy still serves when the server cannot be reached.
        self.refetch = False

    async def __aenter__(self) -> RemoteServer:
        parsed = urllib.parse.urlsplit(self.source.server)
        connector: aiohttp.BaseConnector
        if parsed.scheme == "unix":
            socket = parsed.path or os.fspath(self.paths.socket)
            connector = aiohttp.UnixConnector(path=socket)
            self.base = "http://machined"
        else:
            # Also for an http server: a redirect to https is then verified, not trusted
            connector = aiohttp.TCPConnector(ssl=ssl_context(self.source.certificate),
                                             limit=4)
            self.base = self.source.server
        self.session = aiohttp.ClientSession(connector=connector, timeout=TIMEOUT,
                                             auto_decompress=False,
                                             headers={"User-Agent": "machined"})
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    @contextlib.asynccontextmanager
    async def _request(self, url: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET, following redirects here rather than in aiohttp, so that none leaves https:
        a redirect from https to http would silently drop the TLS verification (and the
        pinned certificate) for the rest of the way, as apt refuses too."""
        assert self.session is not None
        for _ in range(MAX_REDIRECTS + 1):
            async with self.session.get(url, proxy=self.proxies.for_url(url),
                                        allow_redirects=False) as resp:
                location = resp.headers.get("Location")
                if resp.status not in REDIRECT_STATUSES or not location:
                    yield resp
                    return
                url = _redirect_target(resp.url, location)
        raise DownloadError(f"Too many redirects (more than {MAX_REDIRECTS}) for {url}")

    def describe(self, exc: BaseException) -> str:
        """A connection error as a sentence (TLS failures say what to do)."""
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            hint = ("the pinned certificate does not match" if self.source.certificate else
                    "it is not signed by a CA this machine trusts (pin the server's "
                    "certificate, e.g. mc remote add --accept-certificate)")
            return f"certificate verification failed: {hint}"
        if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
            return "the connection closed before the end of the body"
        if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
            return f"TLS error: {exc}"
        if isinstance(exc, TimeoutError):
            return "timed out"
        if isinstance(exc, aiohttp.ClientConnectorError):
            return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
        return str(exc) or type(exc).__name__

    async def resolve(self, name: str) -> RemoteImage:
        raise NotImplementedError

    async def download(self, image: RemoteImage, progress: Progress | None) -> Upload:
        raise NotImplementedError

    def invalidate(self) -> None:
        """Forget cached index data (after an image file was gone)."""


# ---------------------------------------------------------------------------- simplestreams


class SimplestreamsServer(RemoteServer):
    def __init__(self, source: Source, paths: Paths, temp_path: Callable[[str], Path],
                 proxies: Proxies | None = None, host_arch: str = "") -> None:
        super().__init__(source, paths, temp_path, proxies)
        self.host_arch = host_arch
        # Keyed by the trust too: an index fetched under one pinned certificate (say one
        # accepted by mistake) must not answer for the same address under another.
        key = hashlib.sha256(f"{source.server}\n{source.certificate}".encode()).hexdigest()
        self.cache_dir = paths.root / "cache" / "simplestreams" / key

    async def catalog(self) -> ss.Catalog:
        index = await self.cached_json(INDEX_PATH)
        try:
            product_paths = ss.index_paths(index)
        except ss.StreamError as e:
            raise BadRequest(f"Invalid simplestreams index at {self.url(INDEX_PATH)}: {e}"
                             ) from None
        images: list[ss.StreamImage] = []
        for path in product_paths:
            products = await self.cached_json(path)
            try:
                images.extend(ss.parse_products(products))
            except ss.StreamError as e:
                raise BadRequest(f"Invalid simplestreams products file at {self.url(path)}: "
                                 f"{e}") from None
        return ss.Catalog(images, self.host_arch)

    async def resolve(self, name: str) -> RemoteImage:
        catalog = await self.catalog()
        try:
            image = catalog.resolve(name, self.source.image_type)
        except ss.NoSuchImage as e:
            raise NotFound(f"{e} (on {self.source.server})") from None
        return RemoteImage(fingerprint=image.fingerprint, architecture=image.architecture,
                           size=image.size, properties=dict(image.properties),
                           expires_at=image.expires_at, files=tuple(image.files),
                           by_alias=name in catalog.aliases())

    # The index cache

    def _cache_file(self, path: str) -> Path:
        return self.cache_dir / (hashlib.sha256(path.encode()).hexdigest()[:32] + ".json")

    def invalidate(self) -> None:
        shutil.rmtree(self.cache_dir, ignore_errors=True)

    async def cached_json(self, path: str) -> dict[str, Any]:
        """A stream JSON file: the cached copy if under an hour old, else fetched (and
        cached); a stale copy when the fetch fails."""
        cache = self._cache_file(path)
        cached = _read_cache(cache)
        now = clock.now()
        if cached is not None:
            try:
                fetched = clock.parse_time(cached["fetched_at"])
            except (KeyError, TypeError, ValueError):
                fetched = None
            if fetched is not None and fetched <= now < fetched + CACHE_EXPIRY \
                    and not self.refetch:
                return cached["data"]  # type: ignore[no-any-return]
        url = self.url(path)
        try:
            data = await self._fetch_json(url)
        except DownloadError as e:
            if cached is not None:
                log.warning("Using the cached copy of %s: %s", url, e.message)
                return cached["data"]  # type: ignore[no-any-return]
            raise
        _write_cache(cache, {"fetched_at": clock.iso(now), "url": url, "data": data})
        return data

    async def _fetch_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._request(url) as resp:
                if resp.status != 200:
                    raise DownloadError(f"Could not fetch {url}: HTTP {resp.status} "
                                        f"{resp.reason or ''}".rstrip())
                body = await _read_json_body(resp, url)
                if resp.headers.get("Content-Encoding", "").lower() == "gzip" \
                        or body[:2] == b"\x1f\x8b":
                    body = bytearray(_gunzip(bytes(body), url))
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as e:
            raise DownloadError(f"Could not fetch {url}: {self.describe(e)}") from None
        try:
            data = json.loads(body)
        except ValueError as e:
            raise DownloadError(f"Could not fetch {url}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise DownloadError(f"Could not fetch {url}: not a JSON object")
        return data

    # Files

    async def download(self, image: RemoteImage, progress: Progress | None) -> Upload:
        _check_fingerprint(image.fingerprint)
        combined = hashlib.sha256()
        written: list[_FileWriter] = []
        try:
            for item in image.files:
                label = {"meta": "metadata", "unified": "image"}.get(item.role, item.role)
                writer = _FileWriter(self.temp_path(f"download-{label}"), combined)
                written.append(writer)
                await self._download_file(item, writer, _Progress(progress, label, item.size))
            return _verified_upload(written, combined, image.fingerprint, "the stream says")
        except BaseException:
            for writer in written:
                writer.abort()
            raise

    async def _download_file(self, item: ss.StreamFile, writer: _FileWriter,
                             progress: _Progress) -> None:
        url = self.url(item.path)
        try:
            async with self._request(url) as resp:
                if resp.status == 404:
                    raise FileGone(f"Could not download {item.path}: HTTP 404 Not Found at "
                                   f"{url}")
                if resp.status != 200:
                    raise DownloadError(f"Could not download {item.path}: HTTP {resp.status} "
                                        f"{resp.reason or ''}".rstrip())
                async for chunk in resp.content.iter_chunked(CHUNK):
                    if writer.size + len(chunk) > item.size:
                        raise DownloadError(f"Download of {item.path} is larger than the "
                                            f"{item.size} bytes the stream says")
                    await writer.write(chunk)
                    progress.add(len(chunk))
                if writer.size == item.size:
                    progress.finish()
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as e:
            raise DownloadError(f"Download of {item.path} failed after {writer.size} of "
                                f"{item.size} bytes: {self.describe(e)}") from None
        await writer.close()
        if writer.size != item.size:
            raise DownloadError(f"Download of {item.path} is truncated: got {writer.size} of "
                                f"{item.size} bytes")
        got = writer.own.hexdigest()
        if got != item.sha256:
            raise DownloadError(f"Download of {item.path} is corrupt: its sha256 is {got}, "
                                f"the stream says {item.sha256}")


async def _read_json_body(resp: aiohttp.ClientResponse, url: str) -> bytearray:
    """A JSON document's bytes, refused past MAX_JSON before it is all in memory (a hostile
    server may send an endless body, or lie in Content-Length)."""
    if (resp.content_length or 0) > MAX_JSON:
        raise DownloadError(f"Could not fetch {url}: larger than {MAX_JSON >> 20} MiB")
    body = bytearray()
    async for chunk in resp.content.iter_chunked(CHUNK):
        body += chunk
        if len(body) > MAX_JSON:
            raise DownloadError(f"Could not fetch {url}: larger than {MAX_JSON >> 20} MiB")
    return body


def _redirect_target(current: yarl.URL, location: str) -> str:
    try:
        target = current.join(yarl.URL(location))
    except ValueError:
        raise DownloadError(f"{current} redirects to an invalid address {location!r}") \
            from None
    allowed = ("https",) if current.scheme == "https" else ("http", "https")
    if target.scheme not in allowed:
        raise DownloadError(f"Refusing the redirect from {current} to {target}: only to "
                            f"{' or '.join(s + '://' for s in allowed)} addresses")
    return str(target)


def _gunzip(data: bytes, url: str) -> bytes:
    """A gzipped JSON document, refused past MAX_JSON once inflated (no gzip bombs)."""
    import zlib

    inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header
    try:
        out = inflater.decompress(data, MAX_JSON + 1)
    except zlib.error as e:
        raise DownloadError(f"Could not fetch {url}: bad gzip data ({e})") from None
    if len(out) > MAX_JSON:
        raise DownloadError(f"Could not fetch {url}: larger than {MAX_JSON >> 20} MiB")
    return out


def _read_cache(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("data"), dict) else None


def _write_cache(path: Path, doc: dict[str, Any]) -> None:
    """Best effort (a cache): written aside and renamed, so a reader never sees half."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)
    except OSError as e:
        log.warning("Could not cache %s: %s", doc.get("url"), e)


def _check_fingerprint(fp: str) -> None:
    if not ss.valid_fingerprint(fp):
        raise DownloadError(f"Refusing to download image {fp!r}: a fingerprint must be 64 "
                            "lowercase hex characters")


# ---------------------------------------------------------------------------- machined


class MachinedServer(RemoteServer):
    """Another machined (or LXD-compatible) daemon's image API; untrusted callers see its
    public images only."""

    async def _get_json(self, path: str, *, missing: str = "") -> dict[str, Any] | None:
        url = self.url(path)
        try:
            async with self._request(url) as resp:
                body = await _read_json_body(resp, url)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as e:
            raise DownloadError(f"Could not reach {self.source.server}: "
                                f"{self.describe(e)}") from None
        if status == 404 and missing:
            return None
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise DownloadError(f"{self.source.server} answered {path} with HTTP {status} "
                                "and no API response")
        if status != 200:
            raise DownloadError(f"{self.source.server}: {doc.get('error') or status}")
        meta = doc.get("metadata")
        if not isinstance(meta, dict):
            raise DownloadError(f"{self.source.server} answered {path} without an object")
        return meta

    async def resolve(self, name: str) -> RemoteImage:
        quoted = urllib.parse.quote(name, safe="/")
        fp = name
        alias = await self._get_json(f"/1.0/images/aliases/{quoted}", missing="alias")
        if alias is not None:
            fp = str(alias.get("target") or "")
            if not fp or not all(c in "0123456789abcdef" for c in fp):
                raise DownloadError(f"{self.source.server} answered alias {name!r} with the "
                                    f"target {fp!r}, not an image fingerprint")
        elif not all(c in "0123456789abcdef" for c in name):
            raise NotFound(f"Image {name!r} not found on {self.source.server} (no such "
                           "alias, or it is not public)")
        info = await self._get_json(f"/1.0/images/{fp}", missing="image")
        if info is None:
            raise NotFound(f"Image {name!r} not found on {self.source.server} (no such alias "
                           "or fingerprint, or it is not public)")
        fingerprint = str(info.get("fingerprint") or "")
        _check_fingerprint(fingerprint)
        if not fingerprint.startswith(fp):
            # What was asked for by fingerprint must be what comes: the hash check after
            # the download only proves the files are the image the server named.
            raise DownloadError(f"{self.source.server} answered the request for image {fp} "
                                f"with another image, {fingerprint}")
        size = info.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            # The size bounds the download: without it a server could send without end.
            raise DownloadError(f"{self.source.server} described image {fingerprint} without "
                                f"a valid size (got {size!r})")
        image_type = info.get("type") or "container"
        if image_type != self.source.image_type:
            raise NotFound(f"Image {name!r} on {self.source.server} is a {image_type} image, "
                           f"not a {self.source.image_type}")
        props = info.get("properties") or {}
        return RemoteImage(
            fingerprint=fingerprint, architecture=str(info.get("architecture") or ""),
            size=size,
            properties={str(k): str(v) for k, v in props.items()} if isinstance(props, dict)
            else {}, public=bool(info.get("public")), by_alias=alias is not None)

    async def download(self, image: RemoteImage, progress: Progress | None) -> Upload:
        _check_fingerprint(image.fingerprint)
        url = self.url(f"/1.0/images/{image.fingerprint}/export")
        combined = hashlib.sha256()
        written: list[_FileWriter] = []
        try:
            try:
                async with self._request(url) as resp:
                    if resp.status != 200:
                        raise DownloadError(f"Could not download image {image.fingerprint} "
                                            f"from {self.source.server}: HTTP {resp.status}")
                    if resp.content_type.startswith("multipart/"):
                        await self._receive_parts(resp, image, combined, written, progress)
                    else:
                        writer = _FileWriter(self.temp_path("download-image"), combined)
                        written.append(writer)
                        await self._receive(resp.content, writer, image, 0,
                                            _Progress(progress, "image", image.size))
            except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as e:
                got = sum(w.size for w in written)
                raise DownloadError(f"Download of image {image.fingerprint} failed after "
                                    f"{got} of {image.size} bytes: {self.describe(e)}"
                                    ) from None
            for writer in written:
                await writer.close()
            total = sum(w.size for w in written)
            if image.size and total != image.size:
                raise DownloadError(f"Download of image {image.fingerprint} is truncated: got "
                                    f"{total} of {image.size} bytes")
            return _verified_upload(written, combined, image.fingerprint, "expected")
        except BaseException:
            for writer in written:
                writer.abort()
            raise

    async def _receive_parts(self, resp: aiohttp.ClientResponse, image: RemoteImage,
                             combined: Any, written: list[_FileWriter],
                             progress: Progress | None) -> None:
        reader = aiohttp.MultipartReader.from_response(resp)
        names: list[str] = []
        while (part := await reader.next()) is not None:
            if not isinstance(part, aiohttp.BodyPartReader):
                raise DownloadError("Image export has a nested multipart body")
            name = "rootfs" if (part.name or "").startswith("rootfs") else part.name or ""
            expected = "metadata" if not names else "rootfs"
            if name != expected:
                raise DownloadError(f"Image export part {part.name!r} is unexpected: a split "
                                    "image is a metadata part then a rootfs part")
            names.append(name)
            writer = _FileWriter(self.temp_path(f"download-{name}"), combined)
            written.append(writer)
            before = sum(w.size for w in written[:-1])
            await self._receive(part, writer, image, before,
                                _Progress(progress, name, max(image.size - before, 0)))
        if names != ["metadata", "rootfs"]:
            raise DownloadError("Image export is missing its rootfs part")

    async def _receive(self, stream: Any, writer: _FileWriter, image: RemoteImage,
                       before: int, progress: _Progress) -> None:
        while True:
            chunk = await (stream.read_chunk(CHUNK) if isinstance(stream, aiohttp.BodyPartReader)
                           else stream.read(CHUNK))
            if not chunk:
                break
            if image.size and before + writer.size + len(chunk) > image.size:
                raise DownloadError(f"Download of image {image.fingerprint} is larger than "
                                    f"the {image.size} bytes its server says")
            await writer.write(chunk)
            progress.add(len(chunk))
        progress.finish()


def open_server(source: Source, paths: Paths, temp_path: Callable[[str], Path], *,
                proxies: Proxies | None = None, host_arch: str = "") -> RemoteServer:
    if source.protocol == "simplestreams":
        return SimplestreamsServer(source, paths, temp_path, proxies, host_arch)
    return MachinedServer(source, paths, temp_path, proxies)



def _verified_upload(written: list[_FileWriter], combined: Any, fingerprint: str,
                     claim: str) -> Upload:
    """The downloaded files as an Upload, once their combined hash is the fingerprint the
    server claimed (meta then rootfs, or the unified file); the caller removes them if not."""
    got = combined.hexdigest()
    if got != fingerprint:
        raise DownloadError(f"Image fingerprint doesn't match: the downloaded files hash to "
                            f"{got}, {claim} {fingerprint}")
    rootfs = written[1].path if len(written) > 1 else None
    return Upload(meta=written[0].path, rootfs=rootfs, fingerprint=fingerprint,
                  size=sum(w.size for w in written))
