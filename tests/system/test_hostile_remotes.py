"""Hostile image servers against a real machined: a simplestreams mirror or another "machined"
that lies (sizes, fingerprints, endless answers), redirects off https, or holds a certificate
signed by a pinned one. Each attack is refused with one sentence and leaves nothing behind.
Servers listen on 127.0.0.1 only."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from cli.client import Client
from cli.errors import ApiError
from tests.conftest import Daemon, built_image, needs_root, spawn_daemon
from tests.streamserver import StreamServer, listen, make_ca, make_certificate
from tests.system.test_remote_images import ALIAS, Tree, sha

pytestmark = [pytest.mark.system, needs_root]

Route = Callable[[http.server.BaseHTTPRequestHandler], None]


class _Handler(http.server.SimpleHTTPRequestHandler):
    routes: dict[str, Route]
    requests: list[str]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0]
        self.requests.append(path)
        route = self.routes.get(path)
        if route is not None:
            route(self)
        elif self.directory is not None:
            super().do_GET()
        else:
            self.send_error(404)


class HostileServer:
    """Scripted answers for some paths (`routes`), the files of `root` for the others; https
    with `tls`, on `port` (0: any free one)."""

    def __init__(self, routes: dict[str, Route], *, root: Path | None = None,
                 tls: tuple[Path, Path] | None = None, port: int = 0) -> None:
        self.routes = routes
        self.requests: list[str] = []
        handler = type("Handler", (_Handler,), {"routes": routes, "requests": self.requests})
        self.httpd, self.url = listen(
            functools.partial(handler, directory=str(root) if root else None), tls, port)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send(handler: http.server.BaseHTTPRequestHandler, status: int, body: bytes = b"",
         headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    try:
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the daemon stopped reading: what these tests want


def endless(handler: http.server.BaseHTTPRequestHandler, tail: bytes) -> None:
    """200 without a Content-Length: 100 MiB of white space, then `tail`, then the end of
    the connection (a daemon that reads it all in gets valid JSON)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.end_headers()
    handler.close_connection = True
    try:
        for _ in range(100):
            handler.wfile.write(b" " * (1 << 20))
        handler.wfile.write(tail)
    except (BrokenPipeError, ConnectionResetError):
        pass


def api(metadata: object, status: int = 200) -> Route:
    """An LXD-style answer."""
    envelope = ({"type": "sync", "status_code": 200, "metadata": metadata} if status == 200
                else {"type": "error", "error_code": status, "error": "not found"})
    return lambda h: send(h, status, json.dumps(envelope).encode(),
                          {"Content-Type": "application/json"})


def redirect(location: str) -> Route:
    return lambda h: send(h, 302, headers={"Location": location})


class World:
    def __init__(self, daemon: Daemon, base: Path, unified: bytes) -> None:
        self.daemon = daemon
        self.api = Client(os.fspath(daemon.socket))
        self.base = base
        self.unified = unified
        self.certs = base / "certs"
        self.certs.mkdir()
        self.ca = make_ca(self.certs)

    def tree(self, name: str) -> Tree:
        root = self.base / name
        shutil.rmtree(root, ignore_errors=True)
        return Tree(root)

    def images(self) -> dict[str, dict]:
        return {i["fingerprint"]: i for i in self.api.get("/1.0/images?recursion=1")}

    def copy(self, source: dict) -> str:
        meta = self.api.post("/1.0/images", {"source": {"type": "image", **source}})["metadata"]
        return str(meta["fingerprint"])

    def refused(self, source: dict, message: str) -> str:
        with pytest.raises(ApiError) as err:
            self.copy(source)
        assert message in err.value.message, err.value.message
        assert self.images() == {} and self.leftovers() == []
        return err.value.message

    def leftovers(self) -> list[str]:
        root = self.daemon.root
        found = [p.name for p in (root / "tmp").iterdir() if not p.name.startswith("spare-")]
        for d in (root / "images", root / "storage-pools" / "default" / "images"):
            found += [p.name for p in d.iterdir()] if d.exists() else []
        return found


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    base = tmp_path_factory.mktemp("hr")
    (unified,) = built_image("busybox", "unified")
    with spawn_daemon() as daemon:
        w = World(daemon, base, unified.read_bytes())
        yield w
        w.api.close()


@pytest.fixture(autouse=True)
def clean(world):
    yield
    for inst in world.daemon.instances():
        world.daemon.mc("delete", "--force", inst["name"])
    for fp in world.images():
        world.api.delete(f"/1.0/images/{fp}")


def stream(server: str, certificate: str = "", alias: str = ALIAS) -> dict:
    return {"server": server, "protocol": "simplestreams", "alias": alias,
            "certificate": certificate}


# ---------------------------------------------------------------------------- TLS


def test_a_pinned_ca_admits_no_certificate_it_signed(world):
    """Pinning is of exactly one certificate: OpenSSL with the pinned certificate as the only
    anchor would also take any certificate it signed, for any host name."""
    tree = world.tree("pinned-ca")
    fp = tree.add_unified(world.unified, "2026-01-01T00:00:00Z")
    ca_path, ca_cert, ca_key = world.ca
    leaf = make_certificate(world.certs, "leaf", ca=(ca_cert, ca_key))
    with StreamServer(tree.root, tls=leaf) as srv:
        world.refused(stream(srv.url, ca_path.read_text()),
                      "certificate verification failed: the pinned certificate does not match")
        assert world.copy(stream(srv.url, leaf[0].read_text())) == fp


def test_redirects_never_leave_https(world):
    tree = world.tree("redirects")
    fp = tree.add_unified(world.unified, "2026-01-01T00:00:00Z")
    pinned = make_certificate(world.certs, "redirecting")
    pem = pinned[0].read_text()
    index = "/streams/v1/index.json"
    with StreamServer(tree.root) as plain, \
            HostileServer({}, root=tree.root, tls=pinned) as good:
        routes = {index: redirect(f"{plain.url}{index}")}
        with HostileServer(routes, root=tree.root, tls=pinned) as srv:
            world.refused(stream(srv.url, pem), f"Refusing the redirect from {srv.url}{index} "
                                                f"to {plain.url}{index}: only to https://")
            assert plain.behaviour.requests == []
            routes[index] = redirect("file:///etc/passwd")
            world.refused(stream(srv.url, pem), "only to https://")
            # within https (the next server must hold the pinned certificate too), and from
            # http up to https, redirects are followed
            routes[index] = redirect(f"{good.url}{index}")
            assert world.copy(stream(srv.url, pem)) == fp
        world.api.delete(f"/1.0/images/{fp}")
        with HostileServer({index: redirect(f"{good.url}{index}")}, root=tree.root) as up:
            assert world.copy(stream(up.url, pem)) == fp
        assert good.requests.count(index) == 2


def test_an_index_fetched_under_one_pin_never_answers_for_another(world):
    """Someone who once got a wrong certificate pinned (an attacker's, in the middle) must not
    choose, for an hour, which of the mirror's images a correctly pinned launch gets: not
    through the cached index, nor through the cached image it made."""
    tree = world.tree("pins")
    old = tree.add_unified(world.unified, "2025-01-01T00:00:00Z")
    new = tree.add_unified(_other_member(world.unified), "2026-01-01T00:00:00Z")
    # the attacker's copy of the mirror's index still offers the old (say vulnerable) image
    stale = world.tree("pins-stale")
    shutil.copytree(tree.root, stale.root)
    stale.products, stale.paths = json.loads(json.dumps(tree.products)), dict(tree.paths)
    stale.products = _without(stale.products, new)
    stale.write()
    attacker = make_certificate(world.certs, "attacker")
    mirror = make_certificate(world.certs, "mirror")
    with HostileServer({}, root=stale.root, tls=attacker) as srv:
        port = srv.port
        world.api.post("/1.0/instances", {"name": "hr-p1", "source": {
            "type": "image", **stream(srv.url, attacker[0].read_text())}})
    with HostileServer({}, root=tree.root, tls=mirror, port=port) as srv:
        world.api.post("/1.0/instances", {"name": "hr-p2", "source": {
            "type": "image", **stream(srv.url, mirror[0].read_text())}})
        assert "/streams/v1/index.json" in srv.requests
    bases = {n: world.api.get(f"/1.0/instances/{n}")["config"]["volatile.base_image"]
             for n in ("hr-p1", "hr-p2")}
    assert bases == {"hr-p1": old, "hr-p2": new}


def _other_member(data: bytes) -> bytes:
    """The same image as another gzip member: another fingerprint."""
    import gzip

    return gzip.compress(gzip.decompress(data), mtime=1_600_000_099)


def _without(products: dict, fp: str) -> dict:
    from machined.images import simplestreams as ss

    return ss.remove_image(products, fp)


# ---------------------------------------------------------------------------- machined


@pytest.fixture(scope="module")
def machined_tls(world) -> tuple[tuple[Path, Path], str]:
    pair = make_certificate(world.certs, "machined")
    return pair, pair[0].read_text()


def remote(url: str, pem: str, **name: str) -> dict:
    return {"server": url, "protocol": "machined", "certificate": pem, **name}


def image_info(fp: str, size: object) -> dict:
    return {"fingerprint": fp, "size": size, "type": "container", "architecture": "x86_64",
            "public": True, "properties": {}}


def test_an_endless_machined_answer_is_cut_off(world, machined_tls):
    """A JSON answer is read up to 64 MiB, never whole into the daemon's memory."""
    pair, pem = machined_tls
    fp = sha(world.unified)
    tail = json.dumps({"type": "sync", "metadata": {"target": fp}}).encode()
    routes = {"/1.0/images/aliases/big": lambda h: send(h, 200, b" " * (65 << 20) + tail),
              "/1.0/images/aliases/endless": lambda h: endless(h, tail),
              f"/1.0/images/{fp}": api(image_info(fp, len(world.unified)))}
    with HostileServer(routes, tls=pair) as srv:
        for alias in ("big", "endless"):
            world.refused(remote(srv.url, pem, alias=alias), "larger than 64 MiB")
        assert f"/1.0/images/{fp}" not in srv.requests


@pytest.mark.parametrize("size", [0, None, "12", -5, True])
def test_a_machined_image_without_a_size_is_not_downloaded(world, machined_tls, size):
    """The size the server gives bounds the download: without one, an endless export would
    fill the disk before the fingerprint check could refuse it."""
    pair, pem = machined_tls
    fp = sha(world.unified)
    routes = {"/1.0/images/aliases/u": api({"target": fp}),
              f"/1.0/images/{fp}": api(image_info(fp, size)),
              f"/1.0/images/{fp}/export": lambda h: send(h, 200, world.unified)}
    with HostileServer(routes, tls=pair) as srv:
        world.refused(remote(srv.url, pem, alias="u"),
                      f"described image {fp} without a valid size (got {size!r})")
        assert f"/1.0/images/{fp}/export" not in srv.requests


def test_a_machined_server_cannot_answer_with_another_image(world, machined_tls):
    """Asked for an image by fingerprint (or an alias's target), the server must describe
    that image: the download's hash check only proves the files are the image it named."""
    pair, pem = machined_tls
    fp = sha(world.unified)
    info = api(image_info(fp, len(world.unified)))
    routes = {"/1.0/images/aliases/abcdef": api(None, 404), "/1.0/images/abcdef": info,
              "/1.0/images/aliases/other": api({"target": "abcdef"}),
              "/1.0/images/aliases/escape": api({"target": "../../1.0/instances"}),
              f"/1.0/images/{fp}": info,
              f"/1.0/images/{fp}/export": lambda h: send(h, 200, world.unified)}
    with HostileServer(routes, tls=pair) as srv:
        world.refused(remote(srv.url, pem, fingerprint="abcdef"),
                      f"answered the request for image abcdef with another image, {fp}")
        world.refused(remote(srv.url, pem, alias="other"), "with another image")
        world.refused(remote(srv.url, pem, alias="escape"),
                      "answered alias 'escape' with the target '../../1.0/instances', not an "
                      "image fingerprint")
        assert not any(r.endswith("/export") or "instances" in r for r in srv.requests)
        # the honest answer to the same request downloads
        routes["/1.0/images/aliases/honest"] = api({"target": fp})
        assert world.copy(remote(srv.url, pem, alias="honest")) == fp


# ---------------------------------------------------------------------------- mc


def multipart(parts: list[tuple[str, str, bytes]], boundary: str = "hostile-boundary") -> Route:
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"'
        f"\r\nContent-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
        for name, filename, data in parts) + f"--{boundary}--\r\n".encode()
    return lambda h: send(h, 200, body,
                          {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def test_mc_export_writes_only_plain_names_inside_the_target(world, machined_tls, tmp_path):
    """A machined remote names the exported files and the image: mc keeps a name only if it
    is a plain file name, and writes nothing that does not hash to the fingerprint."""
    pair, pem = machined_tls
    meta, rootfs = (p.read_bytes() for p in built_image("busybox", "split"))
    fp = sha(meta + rootfs)
    outside = tmp_path / "outside"
    routes = {
        "/1.0": api({"api_version": "1.0", "auth": "untrusted"}),
        "/1.0/images/aliases/names": api({"target": fp}),
        f"/1.0/images/{fp}/export": multipart([
            ("metadata", "../outside/meta.tar.xz", meta), ("rootfs", "/tmp/rootfs", rootfs)]),
        # a "fingerprint" that is a path: never used as a file name
        "/1.0/images/aliases/path": api({"target": "../outside/escape"}),
        "/1.0/images/../outside/escape/export": lambda h: send(h, 200, b"pwned"),
    }
    target = tmp_path / "target"
    target.mkdir()
    with HostileServer(routes, tls=pair) as srv:
        world.daemon.ok("remote", "add", "hr-evil", srv.url, "--accept-certificate",
                        "--public")
        try:
            world.daemon.ok("image", "export", "hr-evil:names", os.fspath(target))
            assert sorted(p.name for p in target.iterdir()) == [fp, f"{fp}.root"]
            assert (target / fp).read_bytes() == meta
            res = world.daemon.mc("image", "export", "hr-evil:path", os.fspath(target))
            assert res.code == 1 and res.err.strip() == (
                "Error: The server answered alias \"path\" with '../outside/escape', not an "
                "image fingerprint"), res.err
            assert not any("outside" in r for r in srv.requests)
        finally:
            world.daemon.ok("remote", "remove", "hr-evil")
    assert not outside.exists()
    assert sorted(p.name for p in target.iterdir()) == [fp, f"{fp}.root"]


def _lying_length(body: bytes, extra: int) -> Route:
    def route(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(body) + extra))
        h.end_headers()
        h.close_connection = True
        h.wfile.write(body)
    return route


@pytest.mark.parametrize("case, message", [
    ("extra part", "larger than the"),
    ("renamed part", "Image export part 'evil' is unexpected"),
    ("swapped parts", "Image export part 'rootfs' is unexpected"),
    ("nested", "nested multipart"),
    ("longer than sent", "failed after"),
    ("shorter than sent", "is truncated: got"),
])
def test_machined_exports_that_are_not_the_image_are_refused(world, machined_tls, case,
                                                             message):
    pair, pem = machined_tls
    meta, rootfs = (p.read_bytes() for p in built_image("busybox", "split"))
    fp = sha(meta + rootfs)
    export = {
        "extra part": multipart([("metadata", "m", meta), ("rootfs", "r", rootfs),
                                 ("rootfs", "again", b"x" * 4096)]),
        "renamed part": multipart([("evil", "m", meta), ("rootfs", "r", rootfs)]),
        "swapped parts": multipart([("rootfs", "r", rootfs), ("metadata", "m", meta)]),
        "nested": lambda h: send(h, 200, (
            b"--outer\r\nContent-Type: multipart/mixed; boundary=inner\r\n\r\n--inner\r\n"
            b"\r\nx\r\n--inner--\r\n\r\n--outer--\r\n"),
            {"Content-Type": "multipart/form-data; boundary=outer"}),
        "longer than sent": _lying_length(meta + rootfs, 1000),
        "shorter than sent": _lying_length(meta + rootfs, -1000),
    }[case]
    routes = {"/1.0/images/aliases/split": api({"target": fp}),
              f"/1.0/images/{fp}": api(image_info(fp, len(meta) + len(rootfs))),
              f"/1.0/images/{fp}/export": export}
    with HostileServer(routes, tls=pair) as srv:
        world.refused(remote(srv.url, pem, alias="split"), message)


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "%2e%2e/%2e%2e/x",
                                  "//127.0.0.1:{port}/x", "http://127.0.0.1:{port}/x",
                                  "images/./x", "images\\..\\x"])
def test_stream_paths_never_leave_the_server_tree(world, path):
    """A products file naming an image file outside the tree (or on another host) offers no
    such image, and an index naming such a products file is refused: nothing is fetched."""
    tree = world.tree("paths")
    fp = tree.add_unified(world.unified, "2026-01-01T00:00:00Z")
    with StreamServer(world.base) as elsewhere:
        bad = path.format(port=elsewhere.url.rsplit(":", 1)[1])
        tree.edit(fp, "unified", path=bad)
        with StreamServer(tree.root) as srv:
            world.refused(stream(srv.url), "not found")
            assert all(r.startswith("/streams/v1/") for r in srv.behaviour.requests)
        (tree.root / "streams/v1/index.json").write_text(json.dumps({"index": {"images": {
            "datatype": "image-downloads", "path": bad, "products": ["x"]}}}))
        with StreamServer(tree.root) as srv:  # another address: not the cached index
            world.refused(stream(srv.url), "Invalid simplestreams index")
            assert srv.behaviour.requests == ["/streams/v1/index.json"]
        assert elsewhere.behaviour.requests == []


def test_mc_pins_exactly_one_certificate_when_browsing_a_stream(world, tmp_path):
    """mc reads a simplestreams index itself (image list/info): a pinned certificate that can
    sign must not vouch for the certificates it signed there either."""
    tree = world.tree("mc-pin")
    fp = tree.add_unified(world.unified, "2026-01-01T00:00:00Z")
    ca_path, ca_cert, ca_key = world.ca
    leaf = make_certificate(world.certs, "mc-leaf", ca=(ca_cert, ca_key))
    conf = Path(world.daemon.env["MC_CONF"])
    with StreamServer(tree.root, tls=leaf) as srv:
        world.daemon.ok("remote", "add", "hr-ss", srv.url, "--protocol", "simplestreams",
                        "--accept-certificate")
        try:
            assert fp[:12] in world.daemon.ok("image", "list", "hr-ss:")
            pinned = conf / "servercerts" / "hr-ss.crt"
            assert pinned.read_text() == leaf[0].read_text()
            pinned.write_text(ca_path.read_text())  # the CA that signed it, pinned instead
            res = world.daemon.mc("image", "list", "hr-ss:")
            assert res.code == 1 and "is not the pinned one" in res.err, res.err
            assert fp[:12] not in res.out
        finally:
            world.daemon.ok("remote", "remove", "hr-ss")


def test_mc_export_never_replaces_a_file_the_server_named(world, machined_tls, tmp_path):
    """As curl -J: the file names a remote gives may create files, not replace them (a
    hostile remote would name its export Makefile). Names with the fingerprint in them are
    image files: exporting the same image twice replaces them, as lxc does."""
    pair, pem = machined_tls
    meta, rootfs = (p.read_bytes() for p in built_image("busybox", "split"))
    fp = sha(meta + rootfs)
    routes = {
        "/1.0": api({"api_version": "1.0", "auth": "untrusted"}),
        "/1.0/images/aliases/mk": api({"target": fp}),
        f"/1.0/images/{fp}/export": multipart([("metadata", f"meta-{fp}.tar.xz", meta),
                                               ("rootfs", "Makefile", rootfs)]),
    }
    target = tmp_path / "project"
    target.mkdir()
    (target / "Makefile").write_text("precious\n")
    with HostileServer(routes, tls=pair) as srv:
        world.daemon.ok("remote", "add", "hr-mk", srv.url, "--accept-certificate", "--public")
        try:
            res = world.daemon.mc("image", "export", "hr-mk:mk", os.fspath(target))
            assert res.code == 1 and f"{target}/Makefile already exists" in res.err, res.err
            assert sorted(p.name for p in target.iterdir()) == ["Makefile"]
            assert (target / "Makefile").read_text() == "precious\n"
            (target / "Makefile").unlink()
            world.daemon.ok("image", "export", "hr-mk:mk", os.fspath(target))
            assert sorted(p.name for p in target.iterdir()) == ["Makefile", f"meta-{fp}.tar.xz"]
            assert (target / "Makefile").read_bytes() == rootfs
            routes[f"/1.0/images/{fp}/export"] = multipart([
                ("metadata", f"meta-{fp}.tar.xz", meta), ("rootfs", f"{fp}.squashfs", rootfs)])
            (target / "Makefile").unlink()
            for _ in range(2):
                world.daemon.ok("image", "export", "hr-mk:mk", os.fspath(target))
            assert sorted(p.name for p in target.iterdir()) == [f"{fp}.squashfs",
                                                                f"meta-{fp}.tar.xz"]
        finally:
            world.daemon.ok("remote", "remove", "hr-mk")
