"""machined/images/download.py: source validation, proxies, progress text, pinned TLS, and the
simplestreams client against an in-process HTTP server (index cache expiry, stale copy on
failure, streamed verification that leaves nothing behind)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from machined.errors import BadRequest, NotFound
from machined.images import download
from machined.images import simplestreams as ss
from machined.paths import Paths

# ---------------------------------------------------------------------------- sources


def test_parse_source_accepts_lxd_shapes():
    src = download.parse_source({"type": "image", "server": "https://images.example.org/",
                                 "protocol": "simplestreams", "alias": "debian/12"})
    assert src == download.Source("https://images.example.org", "simplestreams", "debian/12")
    assert src.record("debian/12")["alias"] == "debian/12"
    by_fp = download.parse_source({"server": "unix:///run/other/unix.socket",
                                   "protocol": "lxd", "fingerprint": "abc123"})
    assert (by_fp.protocol, by_fp.name, by_fp.by_fingerprint) == ("machined", "abc123", True)
    assert download.parse_source({"server": "https://h:8443", "alias": "x"}).protocol \
        == "machined"


@pytest.mark.parametrize(("source", "message"), [
    ({"server": ""}, "needs a server address"),
    ({"server": "images.example.org", "protocol": "simplestreams", "alias": "a"},
     "accepted are http://, https://"),
    ({"server": "http://h", "protocol": "machined", "alias": "a"},
     "accepted are https://, unix://"),
    ({"server": "https://h", "protocol": "oci", "alias": "a"}, "accepted are simplestreams"),
    ({"server": "https://h", "protocol": "simplestreams"}, "needs an alias or a fingerprint"),
    ({"server": "https://h", "protocol": "simplestreams", "fingerprint": "XYZ"},
     "Invalid image fingerprint"),
    ({"server": "https://h", "alias": "a", "mode": "push"}, "accepted is pull"),
    ({"server": "https://h", "alias": "a", "image_type": "virtual-machine"},
     "accepted is container"),
    ({"server": "https://h", "alias": "a", "certificate": "not pem"}, "PEM certificate"),
    ({"server": "https://h/?x=1", "alias": "a"}, "no query"),
])
def test_parse_source_refusals(source, message):
    with pytest.raises(BadRequest, match=message):
        download.parse_source(source)


def test_pinned_certificate_must_parse():
    with pytest.raises(BadRequest, match="Invalid pinned server certificate"):
        download.ssl_context("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    assert download.ssl_context("").check_hostname  # system CAs: hostnames checked


def test_proxies():
    proxies = download.Proxies.from_config({
        "core.proxy_http": "http://proxy:3128", "core.proxy_https": "http://sproxy:3128",
        "core.proxy_ignore_hosts": "localhost, .internal.example,mirror.lan"})
    assert proxies.for_url("http://images.example/x") == "http://proxy:3128"
    assert proxies.for_url("https://images.example/x") == "http://sproxy:3128"
    for direct in ("http://localhost/x", "https://a.internal.example/x",
                   "http://mirror.lan:8000/", "http://sub.mirror.lan/"):
        assert proxies.for_url(direct) is None, direct
    assert download.Proxies().for_url("https://images.example/") is None


def test_progress_text_and_throttle(monkeypatch):
    seen: list[str] = []
    ticks = iter([100.0, 100.0, 100.1, 100.5, 102.0])
    monkeypatch.setattr(download.time, "monotonic", lambda: next(ticks))
    progress = download._Progress(seen.append, "rootfs", 4_000_000)  # started at 100.0
    progress.add(1_000_000)  # t=100.0: the first update is shown at once
    progress.add(1_000_000)  # t=100.1: throttled
    progress.add(1_000_000)  # t=100.5
    assert seen[0].startswith("rootfs: 25% (")
    assert seen[1] == "rootfs: 75% (6.0 MB/s)"
    assert len(seen) == 2
    assert download._Progress(None, "image", 0).text(102.0).startswith("image: 0.0 MB (")


# ---------------------------------------------------------------------------- simplestreams

META, ROOTFS = b"meta" * 1000, b"rootfs" * 50_000
FP = hashlib.sha256(META + ROOTFS).hexdigest()


def _tree() -> dict[str, bytes]:
    files = [ss.StreamFile("meta", "images/a/lxd.tar.xz", hashlib.sha256(META).hexdigest(),
                           len(META), "lxd.tar.xz"),
             ss.StreamFile("rootfs", "images/a/root.squashfs",
                           hashlib.sha256(ROOTFS).hexdigest(), len(ROOTFS), "squashfs")]
    products = ss.add_image(ss.empty_products(), fingerprint=FP,
                            properties={"os": "busybox", "release": "1.35"},
                            architecture="x86_64", created_at="2026-01-01T00:00:00Z",
                            aliases=[], files=files)
    return {"/streams/v1/index.json": json.dumps(ss.make_index(products)).encode(),
            "/streams/v1/images.json": json.dumps(products).encode(),
            "/images/a/lxd.tar.xz": META, "/images/a/root.squashfs": ROOTFS}


class Server:
    """An in-process static server with a request log and per-path status overrides."""

    def __init__(self) -> None:
        self.files = _tree()
        self.requests: list[str] = []
        self.status: dict[str, int] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path)
        if request.path in self.status:
            return web.Response(status=self.status[request.path])
        if request.path not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[request.path])


def run_with_server(tmp_path: Path, work) -> None:
    async def main() -> None:
        server = Server()
        app = web.Application()
        app.router.add_get("/{tail:.*}", server.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            await work(server, f"http://127.0.0.1:{port}")
        finally:
            await runner.cleanup()
    asyncio.run(main())


def _client(tmp_path: Path, url: str) -> download.SimplestreamsServer:
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    counter = iter(range(1000))
    source = download.Source(url, "simplestreams", "busybox/1.35")
    return download.SimplestreamsServer(source, Paths(tmp_path),
                                        lambda label: tmp / f"{label}.{next(counter)}",
                                        host_arch="x86_64")


def _set_clock(monkeypatch, tmp_path: Path, moment: datetime) -> None:
    clock = tmp_path / "clock"
    clock.write_text(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
    monkeypatch.setenv("MACHINED_TEST_CLOCK", str(clock))


def test_index_cache_expiry_and_stale_copy(tmp_path, monkeypatch):
    t0 = datetime(2026, 6, 1, tzinfo=UTC)
    _set_clock(monkeypatch, tmp_path, t0)

    async def work(server: Server, url: str) -> None:
        async with _client(tmp_path, url) as srv:
            assert (await srv.resolve("busybox/1.35")).fingerprint == FP
            assert (await srv.resolve("busybox/1.35")).by_alias is True
            assert (await srv.resolve("busybox/1.35/amd64")).by_alias is True
            by_prefix = await srv.resolve(FP[:10])
            assert by_prefix.fingerprint == FP and by_prefix.by_alias is False
        assert server.requests == ["/streams/v1/index.json", "/streams/v1/images.json"]
        server.requests.clear()
        _set_clock(monkeypatch, tmp_path, t0 + timedelta(minutes=59))
        async with _client(tmp_path, url) as srv:  # fresh: the server is not asked
            await srv.resolve("busybox/1.35")
            assert server.requests == []
            srv.refetch = True  # an explicit refresh asks anyway
            await srv.resolve("busybox/1.35")
            assert len(server.requests) == 2
        server.requests.clear()
        _set_clock(monkeypatch, tmp_path, t0 + timedelta(hours=2))
        server.status["/streams/v1/index.json"] = 503
        async with _client(tmp_path, url) as srv:  # expired, fetch fails: the stale copy
            assert (await srv.resolve("busybox/1.35")).fingerprint == FP
            with pytest.raises(NotFound, match="not found"):
                await srv.resolve("debian/12")
            srv.invalidate()
            with pytest.raises(download.DownloadError, match="HTTP 503"):
                await srv.resolve("busybox/1.35")
        assert "/streams/v1/index.json" in server.requests

    run_with_server(tmp_path, work)


def test_download_verifies_and_reports_progress(tmp_path, monkeypatch):
    monkeypatch.delenv("MACHINED_TEST_CLOCK", raising=False)
    seen: list[str] = []

    async def work(server: Server, url: str) -> None:
        async with _client(tmp_path, url) as srv:
            image = await srv.resolve("busybox/1.35")
            upload = await srv.download(image, seen.append)
            assert upload.fingerprint == FP and upload.size == len(META) + len(ROOTFS)
            assert upload.meta.read_bytes() == META and upload.rootfs is not None
            assert upload.rootfs.read_bytes() == ROOTFS
            upload.meta.unlink()
            upload.rootfs.unlink()
            assert any(s.startswith("metadata: 100% (") for s in seen)
            assert seen[-1].startswith("rootfs: 100% (")
            # corrupt rootfs: both temp files go
            server.files["/images/a/root.squashfs"] = ROOTFS[:-1] + b"X"
            with pytest.raises(download.DownloadError, match="root.squashfs is corrupt"):
                await srv.download(image, None)
            assert list((tmp_path / "tmp").iterdir()) == []
            del server.files["/images/a/root.squashfs"]
            with pytest.raises(download.FileGone, match="HTTP 404"):
                await srv.download(image, None)
            assert list((tmp_path / "tmp").iterdir()) == []
            bad = download.RemoteImage(fingerprint="../../etc", architecture="x86_64",
                                       size=1, properties={}, files=image.files)
            server.requests.clear()
            with pytest.raises(download.DownloadError, match="64 lowercase hex"):
                await srv.download(bad, None)
            assert server.requests == []

    run_with_server(tmp_path, work)
