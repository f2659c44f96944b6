"""Shared fixtures. `daemon` starts a real machined on a temporary MACHINED_DIR (never the
host's real one) and, at the end, force-stops and deletes every container it made and checks
that nothing is left behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
IMAGE_CACHE = Path(os.environ.get("MACHINED_TEST_CACHE", "/var/cache/machined-test")) / "images"

is_root = os.geteuid() == 0
needs_root = pytest.mark.skipif(not is_root, reason="needs root")


@dataclass
class Result:
    code: int
    out: str
    err: str


class Daemon:
    def __init__(self, root: Path) -> None:
        self.root = root
        # Each daemon's mc gets its own client config (remotes, client certificate): tests
        # never read or write the user's ~/.config/mc.
        # MACHINED_INIT_NETWORK=none: no default bridge (mcbr0, NAT on) at the first start;
        # network tests make their own bridges with ipv4.nat=false.
        self.env = {**os.environ, "MACHINED_DIR": os.fspath(root),
                    "MC_CONF": os.fspath(root.parent / "mc-conf"),
                    "MACHINED_INIT_NETWORK": "none"}
        self.proc: subprocess.Popen[bytes] | None = None

    mc_path = os.fspath(BIN / "mc")
    machined_path = os.fspath(BIN / "machined")

    @property
    def socket(self) -> Path:
        return self.root / "unix.socket"

    def start(self) -> None:
        with open(self.root.parent / "machined.stderr", "ab") as log:
            self.proc = subprocess.Popen([os.fspath(BIN / "machined")], env=self.env,
                                         stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("machined exited at start: "
                                   + (self.root.parent / "machined.stderr").read_text()[-2000:])
            if self.socket.exists() and self.mc("info").code == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("machined did not become ready in 30 s")

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def mc(self, *args: str, input: str | None = None, timeout: float = 300) -> Result:
        proc = subprocess.run([os.fspath(BIN / "mc"), *args], env=self.env, input=input,
                              capture_output=True, text=True, timeout=timeout)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, input: str | None = None, timeout: float = 300) -> str:
        res = self.mc(*args, input=input, timeout=timeout)
        assert res.code == 0, f"mc {' '.join(args)} failed ({res.code}): {res.err}{res.out}"
        return res.out

    def instances(self) -> list[dict]:
        return json.loads(self.ok("list", "--format", "json"))

    def api(self, method: str, path: str, data: object = None) -> object:
        """A raw API call over the unix socket (waits for operations); errors raise
        cli.errors.ApiError (status, message)."""
        from cli.client import Client

        client = Client(os.fspath(self.socket))
        try:
            return client.call(method, path, data)
        finally:
            client.close()

    def instance_dir(self, name: str) -> Path:
        """Where instance `name`'s volume is on the host (metadata.yaml, rootfs/): its pool
        and volume read from the daemon's database (volumes are named once, at create, and
        keep their names through renames). btrfs loop pools are mounted only inside the
        daemon's mount namespace."""
        import sqlite3

        db = sqlite3.connect(f"file:{self.root / 'database/machined.db'}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT storage_pool, volume FROM instances WHERE name = ?",
                             [name]).fetchone()
            assert row is not None, f"no instance {name!r}"
            pool, volume = row
            conf = db.execute("SELECT driver, config FROM storage_pools WHERE name = ?",
                              [pool]).fetchone()
        finally:
            db.close()
        source = json.loads(conf[1]).get("source", "") if conf else ""
        if pool != "default" and conf[0] == "dir" and source:
            return Path(source) / "containers" / volume
        return self.root / "storage-pools" / pool / "containers" / volume


@pytest.fixture(scope="session")
def daemon() -> Iterator[Daemon]:
    if not is_root:
        pytest.skip("machined needs root")
    with spawn_daemon() as d:
        yield d


@contextlib.contextmanager
def spawn_daemon(env: dict[str, str] | None = None) -> Iterator[Daemon]:
    """A further real machined on its own temporary MACHINED_DIR (and its own MC_CONF), e.g.
    a second server for remote tests; torn down (containers deleted) on exit."""
    base = Path(tempfile.mkdtemp(prefix="machined-test-"))
    os.chmod(base, 0o711)
    d = Daemon(base / "state")
    d.env.update(env or {})
    d.start()
    try:
        yield d
    finally:
        _teardown(d, base)


def _teardown(d: Daemon, base: Path) -> None:
    try:
        if d.proc is None:
            d.start()
        for inst in d.instances():
            d.mc("delete", "--force", inst["name"])
    finally:
        d.kill()
    leftovers = [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                 if os.fspath(base) in line]
    network_leftovers = remove_network_leftovers(d.root)
    shutil.rmtree(base, ignore_errors=True)
    assert not leftovers, f"mounts left behind: {leftovers}"
    assert not network_leftovers, f"network objects left behind: {network_leftovers}"


def remove_network_leftovers(root: Path) -> list[str]:
    """Kill the dnsmasq processes of state directory `root` (by PID, only those whose
    command line names it) and delete the host interfaces carrying its link tag; returns
    what it found (a test that deletes its networks leaves nothing)."""
    from pyroute2 import IPRoute

    from machined.paths import Paths

    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"dnsmasq") and any(
                os.fsencode(root) + b"/" in arg for arg in argv):
            found.append(f"dnsmasq pid {entry.name}")
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)
    tag = Paths(root).link_tag
    with IPRoute() as ipr:
        for link in ipr.get_links():
            alias = link.get_attr("IFLA_IFALIAS") or ""
            if alias.split(" ")[0] == tag:
                found.append(f"interface {link.get_attr('IFLA_IFNAME')} ({alias})")
                with contextlib.suppress(Exception):
                    ipr.link("del", index=link["index"])
    return found


@pytest.fixture(scope="session")
def btrfs_pool(daemon: Daemon) -> Iterator[str]:
    """A btrfs pool on a 3 GiB sparse loop file the daemon makes (in its MACHINED_DIR/disks),
    shared by the session; deleted at the end, the instances on it first."""
    name = "t5btrfs"
    daemon.api("POST", "/1.0/storage-pools",
               {"name": name, "driver": "btrfs", "config": {"size": "3GiB"}})
    img = daemon.root / "disks" / f"{name}.img"
    try:
        yield name
    finally:
        delete_pool(daemon, name)
    assert not img.exists()
    deadline = time.monotonic() + 10
    while os.fspath(img) in subprocess.run(["losetup", "-a"], capture_output=True,
                                           text=True).stdout:
        assert time.monotonic() < deadline, f"a loop device is left on {img}"
        time.sleep(0.1)


def delete_pool(daemon: Daemon, name: str) -> None:
    """Delete the instances using pool `name`, then the pool."""
    pool = daemon.api("GET", f"/1.0/storage-pools/{name}")
    assert isinstance(pool, dict)
    for url in pool.get("used_by") or []:
        if url.startswith("/1.0/instances/"):
            daemon.mc("delete", "--force", url.rsplit("/", 1)[1])
    daemon.api("DELETE", f"/1.0/storage-pools/{name}")


@pytest.fixture
def dir_pool_factory(daemon: Daemon) -> Iterator[Callable[[str], str]]:
    """make(name) -> name: a dir pool at a fresh source directory (outside MACHINED_DIR);
    every pool made is deleted (with its instances) at the end of the test."""
    made: list[tuple[str, Path]] = []

    def make(name: str) -> str:
        source = Path(tempfile.mkdtemp(prefix=f"machined-{name}-"))
        daemon.api("POST", "/1.0/storage-pools",
                   {"name": name, "driver": "dir", "config": {"source": os.fspath(source)}})
        made.append((name, source))
        return name

    yield make
    for name, source in made:
        delete_pool(daemon, name)
        shutil.rmtree(source, ignore_errors=True)


def built_image(recipe: str, fmt: str) -> list[Path]:
    """Build (or reuse from the cache outside the clone) an image from images/<recipe>.yaml."""
    from machined.images.build import build_image

    IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
    return list(build_image(REPO / "images" / f"{recipe}.yaml", IMAGE_CACHE, fmt=fmt).paths)


@pytest.fixture(scope="session")
def busybox_image(daemon: Daemon) -> str:
    paths = built_image("busybox", "unified")
    daemon.ok("image", "import", *map(os.fspath, paths), "--alias", "busybox")
    return "busybox"


@pytest.fixture(scope="session")
def debian_image(daemon: Daemon) -> str:
    paths = built_image("debian-12", "split")
    daemon.ok("image", "import", *map(os.fspath, paths), "--alias", "debian/12", timeout=600)
    return "debian/12"
