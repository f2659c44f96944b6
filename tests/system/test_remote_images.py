"""Images from remote servers against simplestreams trees built here from the busybox image
and served on 127.0.0.1 (http, https with a pinned self-signed certificate, https signed by a
CA given to the daemon as SSL_CERT_FILE), and another machined: launch by alias (cached,
reused without a download), verified downloads (corrupt, truncated, mis-hashed, bad
fingerprint: nothing left behind), VM-only streams, auto-update and refresh, cache expiry,
live config changes, index refetch on a 404. Time is driven with MACHINED_TEST_CLOCK."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli.client import Client
from cli.errors import ApiError
from machined.images import simplestreams as ss
from tests.conftest import Daemon, built_image, needs_root, spawn_daemon
from tests.streamserver import StreamServer, make_ca, make_certificate

pytestmark = [pytest.mark.system, needs_root]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "simplestreams"
PROPS = {"os": "busybox", "release": "1.35", "variant": "default",
         "description": "BusyBox 1.35 (test stream)"}
ALIAS = "busybox/1.35"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Tree:
    """A simplestreams tree on disk, written with the pure writer the daemon reads with."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.products = ss.empty_products()
        self.paths: dict[str, list[str]] = {}  # fingerprint -> its file paths

    def add_unified(self, data: bytes, created_at: str) -> str:
        fp = sha(data)
        vdir = ss.version_dir(PROPS, "x86_64", ss.serial_for(created_at))
        path = f"{vdir}/lxd_combined.tar.gz"
        self._put(path, data)
        files = [ss.StreamFile("unified", path, fp, len(data), "lxd_combined.tar.gz")]
        return self._add(fp, files, created_at)

    def add_split(self, meta: bytes, rootfs: bytes, created_at: str) -> str:
        fp = sha(meta + rootfs)
        vdir = ss.version_dir(PROPS, "x86_64", ss.serial_for(created_at))
        paths = f"{vdir}/lxd.tar.xz", f"{vdir}/root.squashfs"
        self._put(paths[0], meta)
        self._put(paths[1], rootfs)
        files = [ss.StreamFile("meta", paths[0], sha(meta), len(meta), "lxd.tar.xz"),
                 ss.StreamFile("rootfs", paths[1], sha(rootfs), len(rootfs), "squashfs")]
        return self._add(fp, files, created_at)

    def _put(self, path: str, data: bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def _add(self, fp: str, files: list[ss.StreamFile], created_at: str) -> str:
        self.products = ss.add_image(self.products, fingerprint=fp, properties=PROPS,
                                     architecture="x86_64", created_at=created_at,
                                     aliases=[], files=files)
        self.paths[fp] = [f.path for f in files]
        self.write()
        return fp

    def remove(self, fp: str) -> None:
        self.products = ss.remove_image(self.products, fp)
        for path in self.paths.pop(fp):
            (self.root / path).unlink()
        self.write()

    def write(self) -> None:
        streams = self.root / "streams" / "v1"
        streams.mkdir(parents=True, exist_ok=True)
        (streams / "images.json").write_text(json.dumps(self.products, indent=1))
        (streams / "index.json").write_text(json.dumps(ss.make_index(self.products)))

    def edit(self, fp: str, role: str, **fields: str) -> None:
        """Change an item of the image in the products file (not the files)."""
        for product in self.products["products"].values():
            for version in product["versions"].values():
                for item in version["items"].values():
                    if item["path"] in self.paths[fp] and (
                            role == "meta") == (item["ftype"] == "lxd.tar.xz"):
                        item.update(fields)
        self.write()


@dataclass
class Env:
    daemon: Daemon
    api: Client
    clock: Path
    base: Path
    ca: tuple[object, object]
    unified: bytes
    meta: bytes
    rootfs: bytes

    def set_clock(self, moment: datetime) -> None:
        tmp = self.clock.with_suffix(".tmp")
        tmp.write_text(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
        os.replace(tmp, self.clock)

    def tree(self, name: str) -> Tree:
        root = self.base / name
        shutil.rmtree(root, ignore_errors=True)
        return Tree(root)

    def images(self) -> dict[str, dict]:
        return {i["fingerprint"]: i for i in self.api.get("/1.0/images?recursion=1")}

    def config(self, **values: str) -> None:
        self.api.patch("/1.0", {"config": {k.replace("__", "."): v for k, v in values.items()}})


def serial(data: bytes, n: int) -> bytes:
    """The same image as another gzip member: a different fingerprint (a new serial)."""
    return gzip.compress(gzip.decompress(data), mtime=1_600_000_000 + n)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    base = tmp_path_factory.mktemp("ri")
    ca_path, ca_cert, ca_key = make_ca(base)
    clock = base / "clock"
    (unified,) = built_image("busybox", "unified")
    meta, rootfs = built_image("busybox", "split")
    with spawn_daemon(env={"MACHINED_TEST_CLOCK": os.fspath(clock), "MACHINED_TASK_TICK": "0.2",
                           "SSL_CERT_FILE": os.fspath(ca_path)}) as daemon:
        api = Client(os.fspath(daemon.socket))
        yield Env(daemon, api, clock, base, (ca_cert, ca_key), unified.read_bytes(),
                  meta.read_bytes(), rootfs.read_bytes())
        api.close()


@pytest.fixture(autouse=True)
def clean(env):
    yield
    env.clock.unlink(missing_ok=True)
    for inst in env.daemon.instances():
        env.daemon.mc("delete", "--force", inst["name"])
    env.api.put("/1.0", {"config": {}})
    for fp in env.images():
        env.api.delete(f"/1.0/images/{fp}")


def source(server: str, alias: str = ALIAS, **extra: str) -> dict:
    return {"type": "image", "mode": "pull", "server": server, "protocol": "simplestreams",
            "alias": alias, **extra}


def launch(env: Env, name: str, src: dict, *, start: bool = False) -> dict:
    return env.api.post("/1.0/instances", {"name": name, "source": src, "start": start})


def copy(env: Env, src: dict, **body) -> dict:
    return env.api.post("/1.0/images", {"source": src, **body})["metadata"]


def leftovers(env: Env) -> list[str]:
    """Files a failed download might have left: tmp/ (spare copies aside), images/, volumes."""
    root = env.daemon.root
    found = [p.name for p in (root / "tmp").iterdir() if not p.name.startswith("spare-")]
    for d in (root / "images", root / "storage-pools" / "default" / "images"):
        found += [p.name for p in d.iterdir()] if d.exists() else []
    return found


def wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# ---------------------------------------------------------------------------- launch, cache


def test_launch_by_alias_caches_and_the_next_launch_downloads_nothing(env):
    tree = env.tree("launch")
    fp = tree.add_unified(env.unified, "2026-01-01T00:00:00Z")
    with StreamServer(tree.root) as srv:
        launch(env, "ri-a1", source(srv.url), start=True)
        assert f"/{tree.paths[fp][0]}" in srv.behaviour.requests
        image = env.images()[fp]
        assert image["cached"] is True and image["auto_update"] is True
        assert image["aliases"] == []  # cached images get no local alias (lxd#2486)
        assert image["update_source"] == {"server": srv.url, "protocol": "simplestreams",
                                          "alias": ALIAS, "certificate": "",
                                          "image_type": "container"}
        assert image["properties"]["description"].startswith("busybox 1.35")
        assert image["last_used_at"] > "2000"
        inst = env.api.get("/1.0/instances/ri-a1")
        assert inst["status"] == "Running"
        assert inst["config"]["volatile.base_image"] == fp
        srv.behaviour.requests.clear()
        launch(env, "ri-a2", source(srv.url))
        # prefer-cached: the cached image is used without asking the server anything
        assert srv.behaviour.requests == []
        assert env.api.get("/1.0/instances/ri-a2")["config"]["volatile.base_image"] == fp
        assert list(env.images()) == [fp]


def test_two_concurrent_launches_download_once(env):
    tree = env.tree("concurrent")
    fp = tree.add_split(env.meta, env.rootfs, "2026-01-01T00:00:00Z")
    with StreamServer(tree.root) as srv:
        ops = [env.api.query("POST", "/1.0/instances",
                             {"name": f"ri-c{i}", "source": source(srv.url)})["operation"]
               for i in (1, 2)]
        for op in ops:
            env.api.wait_operation(op)
        rootfs_path = f"/{tree.paths[fp][1]}"
        assert srv.behaviour.requests.count(rootfs_path) == 1
        assert list(env.images()) == [fp]
        assert env.images()[fp]["update_source"]["alias"] == ALIAS


def test_copy_by_fingerprint_records_no_alias_and_cannot_refresh(env):
    tree = env.tree("byfp")
    fp = tree.add_unified(env.unified, "2026-01-01T00:00:00Z")
    with StreamServer(tree.root) as srv:
        src = source(srv.url)
        del src["alias"]
        result = copy(env, {**src, "fingerprint": fp[:12]}, auto_update=True,
                      aliases=[{"name": "ri-byfp", "description": "d"}])
        assert result == {"fingerprint": fp, "size": len(env.unified)}
        image = env.images()[fp]
        assert image["cached"] is False and image["auto_update"] is False
        assert image["aliases"] == [{"name": "ri-byfp", "description": "d"}]
        assert image["update_source"]["alias"] == ""
        with pytest.raises(ApiError, match="has no source alias to refresh from"):
            env.api.post(f"/1.0/images/{fp}/refresh")
        # an LXD client passes a fingerprint as `alias`: still no source alias
        env.api.delete(f"/1.0/images/{fp}")
        copy(env, source(srv.url, fp[:16]), auto_update=True, aliases=[{"name": "ri-byfp"}])
        assert env.images()[fp]["update_source"]["alias"] == ""
        assert env.images()[fp]["auto_update"] is False
        # the alias is taken now: refused before anything is downloaded
        srv.behaviour.requests.clear()
        with pytest.raises(ApiError, match="Alias 'ri-byfp' already exists"):
            copy(env, source(srv.url), aliases=[{"name": "ri-byfp"}])
        assert srv.behaviour.requests == []


# ---------------------------------------------------------------------------- verification


def test_bad_downloads_leave_nothing_behind(env):
    other = sha(b"something else")
    cases = {
        "corrupt": ("mangle", "is corrupt: its sha256 is"),
        "truncated": ("cut", "failed after|truncated"),
        "http-error": ("status", "HTTP 500"),
        "mis-hashed rootfs": ("rootfs-sha", "root.squashfs is corrupt"),
        "wrong fingerprint": ("combined", "Image fingerprint doesn't match"),
        "bad fingerprint": ("badfp", "not found"),
        "too large": ("size", "larger than the"),
    }
    for n, (case, (kind, message)) in enumerate(cases.items()):
        tree = env.tree(f"bad{n}")
        fp = tree.add_split(env.meta, env.rootfs, "2026-01-01T00:00:00Z")
        rootfs = f"/{tree.paths[fp][1]}"
        with StreamServer(tree.root) as srv:
            if kind == "mangle":
                srv.behaviour.mangle[rootfs] = lambda b: b[:5000] + bytes([b[5000] ^ 1]) + \
                    b[5001:]
            elif kind == "cut":
                srv.behaviour.cut_after[rootfs] = 100_000
            elif kind == "status":
                srv.behaviour.status[rootfs] = 500
            elif kind == "rootfs-sha":
                tree.edit(fp, "rootfs", sha256=other)
            elif kind == "combined":
                tree.edit(fp, "meta", combined_squashfs_sha256=other)
            elif kind == "badfp":
                tree.edit(fp, "meta", combined_squashfs_sha256="Z" * 64)
            elif kind == "size":
                tree.edit(fp, "rootfs", size=1000)
            url = env.api.query("POST", "/1.0/instances",
                                {"name": "ri-bad", "source": source(srv.url)})["operation"]
            op = env.api.get(f"{url}/wait")
            assert op["status"] == "Failure" and re.search(message, op["err"]), (case, op)
            if kind == "combined":  # both files came in whole: the progress said so
                assert op["metadata"]["download_progress"].startswith("rootfs: 100% (")
            assert env.images() == {}, case
            assert leftovers(env) == [], case
            assert not any(i["name"] == "ri-bad" for i in env.daemon.instances()), case


def test_vm_only_stream_offers_no_container(env):
    root = env.base / "vm"
    (root / "streams" / "v1").mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "index-incus-generated-vm.json", root / "streams/v1/index.json")
    shutil.copy(FIXTURES / "products-incus-generated-vm.json", root / "streams/v1/images.json")
    with StreamServer(root) as srv:
        with pytest.raises(ApiError, match='couldn\'t be found for instance type "container", '
                                           'but one was found for instance type '
                                           '"virtual-machine"'):
            launch(env, "ri-vm", source(srv.url, "chr/7.20.6/cloud"))
        with pytest.raises(ApiError, match="not found"):
            launch(env, "ri-vm", source(srv.url, "debian/12"))
        assert not any("disk" in r or "incus.tar" in r for r in srv.behaviour.requests)
    assert env.images() == {} and leftovers(env) == []


def test_bad_sources_are_refused_before_the_operation(env):
    for src, message in [
        ({"server": "ftp://127.0.0.1/", "protocol": "simplestreams"}, "accepted are http"),
        ({"server": "http://127.0.0.1:1", "protocol": "machined"}, "accepted are https"),
        ({"server": "http://127.0.0.1:1", "protocol": "oci"}, "Unsupported image server"),
        ({"server": "http://127.0.0.1:1", "protocol": "simplestreams", "alias": ""},
         "needs an alias or a fingerprint"),
        ({"server": "http://127.0.0.1:1", "protocol": "simplestreams", "fingerprint": "xyz"},
         "Invalid image fingerprint"),
    ]:
        body = {"name": "ri-src", "source": {"type": "image", "alias": ALIAS, **src}}
        resp = env.api.raw("POST", "/1.0/instances", body=json.dumps(body).encode(),
                           headers={"Content-Type": "application/json"})
        assert resp.status == 400 and message in resp.json()["error"], resp.json()
    with pytest.raises(ApiError, match="cannot connect"):
        launch(env, "ri-src", source("http://127.0.0.1:1"))
    assert env.images() == {} and leftovers(env) == []


# ---------------------------------------------------------------------------- TLS


def test_https_pinned_self_signed_and_ca_signed(env):
    tree = env.tree("tls")
    fp = tree.add_split(env.meta, env.rootfs, "2026-01-01T00:00:00Z")
    certs = env.base / "certs"
    certs.mkdir(exist_ok=True)
    self_signed = make_certificate(certs, "self")
    stranger = make_certificate(certs, "stranger")
    ca_signed = make_certificate(certs, "casigned", ca=env.ca)
    pem = self_signed[0].read_text()
    with StreamServer(tree.root, tls=self_signed) as srv:
        with pytest.raises(ApiError, match="certificate verification failed: it is not signed"):
            copy(env, source(srv.url))
        with pytest.raises(ApiError, match="the pinned certificate does not match"):
            copy(env, source(srv.url, certificate=stranger[0].read_text()))
        assert env.images() == {} and leftovers(env) == []
        copy(env, source(srv.url, certificate=pem), auto_update=True,
             aliases=[{"name": "ri-tls"}])
        image = env.images()[fp]
        assert image["update_source"]["certificate"] == pem
        assert image["auto_update"] is True and image["cached"] is False
        # the refresh goes back with the same pinned certificate
        assert env.api.post(f"/1.0/images/{fp}/refresh")["metadata"] == {
            "refreshed": False, "fingerprint": fp}
    env.api.delete(f"/1.0/images/{fp}")
    with StreamServer(tree.root, tls=ca_signed) as srv:  # trusted through SSL_CERT_FILE
        assert copy(env, source(srv.url))["fingerprint"] == fp


# ---------------------------------------------------------------------------- auto-update


def test_auto_update_moves_aliases_and_keeps_cache_state(env):
    tree = env.tree("update")
    fp1 = tree.add_unified(serial(env.unified, 1), "2026-01-01T00:00:00Z")
    start = datetime.now(UTC)
    with StreamServer(tree.root) as srv:
        launch(env, "ri-u1", source(srv.url), start=True)
        env.api.post("/1.0/images/aliases", {"name": "ri-mine", "target": fp1})
        before = env.images()[fp1]
        fp2 = tree.add_unified(serial(env.unified, 2), "2026-02-01T00:00:00Z")
        # 2 h later: the hourly pass runs, but the image's own interval (6 h) has not passed
        env.set_clock(start + timedelta(hours=2))
        time.sleep(1.0)
        assert list(env.images()) == [fp1]
        # a shorter interval takes effect without a restart
        env.config(images__auto_update_interval="1")
        wait_for(lambda: fp2 in env.images() and fp1 not in env.images(), what="auto-update")
        image = env.images()[fp2]
        assert image["aliases"] == [{"name": "ri-mine", "description": ""}]
        assert image["cached"] is True and image["auto_update"] is True
        assert image["last_used_at"] == before["last_used_at"]
        assert image["update_source"] == before["update_source"]
        root = env.daemon.root
        assert not (root / "images" / fp1).exists()
        assert not (root / "storage-pools/default/images" / fp1).exists()
        inst = env.api.get("/1.0/instances/ri-u1")
        assert inst["status"] == "Running" and inst["config"]["volatile.base_image"] == fp1
        env.daemon.ok("exec", "ri-u1", "--", "true")

        # refresh now: nothing new, then a new serial (the fresh index cache is bypassed)
        assert env.api.post(f"/1.0/images/{fp2}/refresh")["metadata"] == {
            "refreshed": False, "fingerprint": fp2}
        fp3 = tree.add_unified(serial(env.unified, 3), "2026-03-01T00:00:00Z")
        assert env.api.post(f"/1.0/images/{fp2}/refresh")["metadata"] == {
            "refreshed": True, "fingerprint": fp3}
        assert list(env.images()) == [fp3]
        assert env.images()[fp3]["aliases"] == [{"name": "ri-mine", "description": ""}]
        assert env.images()[fp3]["last_used_at"] == before["last_used_at"]
        # a launch from the cache still works, from the new image
        launch(env, "ri-u2", source(srv.url))
        assert env.api.get("/1.0/instances/ri-u2")["config"]["volatile.base_image"] == fp3


def test_refresh_refetches_the_index_when_an_image_file_is_gone(env):
    tree = env.tree("gone")
    fp1 = tree.add_unified(serial(env.unified, 11), "2026-01-01T00:00:00Z")
    with StreamServer(tree.root) as srv:
        with pytest.raises(ApiError, match="not found"):  # caches the index
            copy(env, source(srv.url, "no/such/alias"))
        (old_path,) = tree.paths[fp1]
        tree.remove(fp1)  # the server moved on; the daemon's cached index still names fp1
        fp2 = tree.add_unified(serial(env.unified, 12), "2026-02-01T00:00:00Z")
        srv.behaviour.requests.clear()
        assert copy(env, source(srv.url))["fingerprint"] == fp2
        assert srv.behaviour.requests[:3] == [f"/{old_path}", "/streams/v1/index.json",
                                              "/streams/v1/images.json"]
        assert list(env.images()) == [fp2]


# ---------------------------------------------------------------------------- expiry


def test_expiry_deletes_only_cached_unused_images(env):
    env.config(images__auto_update_interval="0")
    tree = env.tree("expiry")
    cached = tree.add_unified(serial(env.unified, 21), "2026-01-01T00:00:00Z")
    copied_tree = env.tree("expiry-copy")
    copied = copied_tree.add_unified(serial(env.unified, 22), "2026-01-01T00:00:00Z")
    start = datetime.now(UTC)
    with StreamServer(tree.root) as srv, StreamServer(copied_tree.root) as srv2:
        launch(env, "ri-e1", source(srv.url))
        copy(env, source(srv2.url))
    imported = sha(env.meta + env.rootfs)
    meta, rootfs = built_image("busybox", "split")
    env.daemon.ok("image", "import", os.fspath(meta), os.fspath(rootfs), "--alias", "ri-imp")
    assert set(env.images()) == {cached, copied, imported}
    assert [fp for fp, i in env.images().items() if i["cached"]] == [cached]
    env.set_clock(start + timedelta(days=5))  # within the default 10 days
    time.sleep(1.0)
    assert set(env.images()) == {cached, copied, imported}
    env.config(images__remote_cache_expiry="3")  # live: the next tick prunes
    wait_for(lambda: cached not in env.images(), what="expiry")
    assert set(env.images()) == {copied, imported}
    # the row goes first, the files just after (in a thread)
    wait_for(lambda: not (env.daemon.root / "images" / cached).exists(), 5, "files removed")
    # the instance made from it owns its copy
    env.daemon.ok("start", "ri-e1")
    assert env.api.get("/1.0/instances/ri-e1")["status"] == "Running"


# ---------------------------------------------------------------------------- machined


def test_copy_from_another_machined(env):
    meta, rootfs = built_image("busybox", "split")
    (unified,) = built_image("busybox", "unified")
    with spawn_daemon() as other:
        other.ok("image", "import", os.fspath(unified), "--alias", "pub", "--public")
        other.ok("image", "import", os.fspath(meta), os.fspath(rootfs), "--alias", "priv")
        split_fp = sha(env.meta + env.rootfs)
        # over its unix socket this daemon is trusted: private images too (multipart export)
        src = {"type": "image", "server": f"unix://{other.socket}", "protocol": "machined",
               "alias": "priv"}
        assert copy(env, src, aliases=[{"name": "ri-priv"}])["fingerprint"] == split_fp
        assert env.images()[split_fp]["update_source"]["protocol"] == "machined"
        launch(env, "ri-m1", {**src, "alias": "pub"})
        unified_fp = sha(env.unified)
        assert env.images()[unified_fp]["cached"] is True
        with pytest.raises(ApiError, match="not found on unix://"):
            copy(env, {**src, "alias": "nope"})
        assert set(env.images()) == {split_fp, unified_fp}
        _https_copy(env, other, unified_fp)


def _https_copy(env: Env, other: Daemon, public_fp: str) -> None:
    """Over HTTPS this daemon is an untrusted client: public images only."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = other.mc("config", "set", "core.https_address", f"127.0.0.1:{port}")
    if res.code != 0:
        pytest.skip(f"HTTPS listener not available: {res.err.strip()}")
    crt = other.root / "server.crt"
    wait_for(crt.exists, 10, "server certificate")
    server = f"https://127.0.0.1:{port}"
    src = {"type": "image", "server": server, "protocol": "machined",
           "certificate": crt.read_text()}
    env.api.delete(f"/1.0/images/{public_fp}")
    assert copy(env, {**src, "alias": "pub"})["fingerprint"] == public_fp
    with pytest.raises(ApiError, match="not found"):
        copy(env, {**src, "alias": "priv"})
    with pytest.raises(ApiError, match="certificate verification failed"):
        copy(env, {"type": "image", "server": server, "protocol": "machined", "alias": "pub"})


def test_daemon_restart_runs_expiry_at_start(env, tmp_path):
    """Both passes run at daemon start (here: expiry of an image unused for 30 days)."""
    tree = env.tree("restart")
    fp = tree.add_unified(serial(env.unified, 31), "2026-01-01T00:00:00Z")
    with StreamServer(tree.root) as srv:
        launch(env, "ri-r1", source(srv.url))
    env.daemon.kill()
    env.api.close()
    env.set_clock(datetime.now(UTC) + timedelta(days=30))
    env.daemon.start()
    wait_for(lambda: fp not in env.images(), 10, "expiry at start")


def test_proxy_settings_are_honoured(env):
    tree = env.tree("proxy")
    fp = tree.add_unified(serial(env.unified, 41), "2026-01-01T00:00:00Z")
    empty = env.base / "proxy-root"
    empty.mkdir(exist_ok=True)
    with StreamServer(tree.root) as srv, StreamServer(empty) as proxy:
        env.config(core__proxy_http=proxy.url)
        with pytest.raises(ApiError, match="HTTP 404"):
            copy(env, source(srv.url))
        assert proxy.behaviour.requests == [f"{srv.url}/streams/v1/index.json"]
        assert srv.behaviour.requests == []
        env.config(core__proxy_ignore_hosts="127.0.0.1")
        assert copy(env, source(srv.url))["fingerprint"] == fp
        assert len(proxy.behaviour.requests) == 1
