"""The crash-point walk (issue 7). Every named step of every multi-step operation
(machined/crash.py POINTS) is made to kill the daemon as `kill -9` would
(MACHINED_CRASH_AT=<name>) on a private daemon, while a bystander container runs through the
whole walk. After each crash the daemon starts again and `check()` holds it to: PRAGMA
integrity_check ok; the database and the disk agree (every row's volume exists; no
container, snapshot or image volume, spare, image file, tmp/ entry, logs/ or run/ directory,
network directory, tagged bridge or dnsmasq that no row names; no journal left); stopped
instances keep no cgroups, mounts or tagged nic interfaces; recorded power states match what
runs; the bystander has the same init PID. Each scenario then checks that its operation
happened wholly or not at all, and that it can be done again. Scenarios share their setup
between their points (a restart costs about a second)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import signal
import sqlite3
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from machined import crash
from machined.images import simplestreams as ss
from machined.paths import Paths
from tests.conftest import Daemon, Result, built_image, needs_root, spawn_daemon
from tests.streamserver import StreamServer

pytestmark = [pytest.mark.system, needs_root]

BYSTANDER = "t7c-by"
NET, NET2 = "t7c0", "t7c1"
NET2_ARGS = ("ipv4.address=10.214.72.1/24", "ipv4.nat=false", "ipv6.address=none")
POOL = "t7cpool"
LOST = re.compile(r"Lost the connection|machined is not running")
NO_LIMIT = 1 << 62  # memory.limit_in_bytes above this: unlimited
STREAM_PROPS = {"os": "t7c", "release": "1", "variant": "default", "description": "t7c tiny"}
STREAM_ALIAS = "t7c/1"


@dataclass
class Walk:
    d: Daemon
    base: Path
    bystander_pid: int
    covered: set[str] = field(default_factory=set)
    crashes: int = 0
    crash_seconds: float = 0.0
    check_seconds: float = 0.0


@pytest.fixture(scope="module")
def walk(tmp_path_factory) -> Iterator[Walk]:
    base = tmp_path_factory.mktemp("t7c")
    with spawn_daemon() as d:
        try:
            d.ok("image", "import", *map(os.fspath, built_image("busybox", "unified")),
                 "--alias", "busybox")
            d.ok("network", "create", NET, "ipv4.address=10.214.71.1/24", "ipv4.nat=false",
                 "ipv6.address=none")
            d.ok("launch", "busybox", BYSTANDER)
            w = Walk(d, base, init_pid(d, BYSTANDER))
            started = time.monotonic()
            yield w
            print(f"\ncrash-point walk: {w.crashes} crashes, {w.crash_seconds:.0f} s in crash "
                  f"cycles ({w.crash_seconds / max(w.crashes, 1):.1f} s each, of which "
                  f"{w.check_seconds / max(w.crashes, 1):.2f} s checking), "
                  f"{time.monotonic() - started:.0f} s in all")
        finally:
            d.env.pop("MACHINED_CRASH_AT", None)
            if d.proc is None or d.proc.poll() is not None:
                d.proc = None
                d.start()
            for inst in d.instances():
                d.mc("delete", "--force", inst["name"])
            for net in (NET2, NET):
                d.mc("network", "delete", net)
            d.mc("storage", "delete", POOL)


# ---------------------------------------------------------------------------- crashing

def crash_at(w: Walk, point: str, trigger: Callable[[], object]) -> object:
    """Restart the daemon set to die at `point`, run `trigger` (which must reach it), see
    it die by SIGKILL, start it again normally and check() everything."""
    d = w.d
    started = time.monotonic()
    d.kill()  # a clean stop: containers keep running
    d.env["MACHINED_CRASH_AT"] = point
    try:
        d.start()
        proc = d.proc
        assert proc is not None
        outcome = trigger()
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"machined did not die at {point} (the trigger gave {outcome!r})")
        assert code == -signal.SIGKILL, f"{point}: machined exited with {code}, not SIGKILL"
        d.proc = None
    finally:
        d.env.pop("MACHINED_CRASH_AT", None)
        if d.proc is not None:
            d.kill()
    d.start()
    w.covered.add(point)
    checking = time.monotonic()
    check(w, point)
    w.crashes += 1
    w.check_seconds += time.monotonic() - checking
    w.crash_seconds += time.monotonic() - started
    return outcome


def mc_dies(d: Daemon, *args: str) -> Callable[[], Result]:
    def run() -> Result:
        res = d.mc(*args, timeout=120)
        assert res.code != 0 and LOST.search(res.err), \
            f"mc {' '.join(args)} should have lost its daemon: {res}"
        return res
    return run


def api_dies(d: Daemon, method: str, path: str, body: object = None) -> Callable[[], str]:
    def run() -> str:
        try:
            d.api(method, path, body)
        except Exception as e:  # noqa: BLE001 - the client's connection error
            assert LOST.search(str(e)), f"{method} {path}: {e!r}"
            return str(e)
        pytest.fail(f"{method} {path} succeeded: the daemon did not die")
    return run


# ---------------------------------------------------------------------------- checking

def rows(d: Daemon, sql: str) -> list[tuple]:
    db = sqlite3.connect(f"file:{d.root / 'database/machined.db'}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def names(path: Path) -> set[str]:
    return set(os.listdir(path)) if path.is_dir() else set()


def check(w: Walk, point: str) -> None:
    """The database and the disk agree, and nothing of a stopped instance is left around."""
    d = w.d
    root = d.root
    assert rows(d, "PRAGMA integrity_check") == [("ok",)], point
    instances = {n: (p, v) for n, p, v in rows(d, "SELECT name, storage_pool, volume "
                                                  "FROM instances")}
    power = dict(rows(d, "SELECT i.name, c.value FROM instances i JOIN instances_config c "
                         "ON c.instance_id = i.id AND c.key = 'volatile.last_state.power'"))
    snapshots = rows(d, "SELECT i.storage_pool, s.volume FROM instances_snapshots s "
                        "JOIN instances i ON i.id = s.instance_id")
    images = dict(rows(d, "SELECT fingerprint, split FROM images"))
    pools = {n: (drv, json.loads(c)) for n, drv, c in rows(d, "SELECT name, driver, config "
                                                             "FROM storage_pools")}
    networks = {n for (n,) in rows(d, "SELECT name FROM networks")}
    problems: list[str] = []

    def expect(what: str, found: object, wanted: object) -> None:
        if found != wanted:
            problems.append(f"{what}: found {found!r}, expected {wanted!r}")

    # Volumes, per pool: exactly the ones rows name; tmp/ holds only spare copies being made.
    spare_copies = tuple(f"copy-{fp[:40]}" for fp in images)
    for pool, (driver, config) in pools.items():
        assert driver == "dir", pool
        proot = root / "storage-pools/default" if pool == "default" else Path(config["source"])
        tmp = root / "tmp" if pool == "default" else proot / "tmp"
        expect(f"{pool}/containers", names(proot / "containers"),
               {v for p, v in instances.values() if p == pool})
        expect(f"{pool}/snapshots", names(proot / "snapshots"),
               {v for p, v in snapshots if p == pool})
        for name, (p, v) in instances.items():
            if p == pool and not (proot / "containers" / v / "rootfs").is_dir():
                problems.append(f"instance {name}: no rootfs in {pool}/containers/{v}")
        expect(f"{pool}/images without a row", names(proot / "images") - set(images), set())
        expect(f"{pool}/spares without a row",
               {e.split(".")[0] for e in names(proot / "spares")} - set(images), set())
        expect(f"{pool}/tmp", {e for e in names(tmp) if not e.startswith(spare_copies)}, set())
    # Image files <-> rows, and every image unpacked in the default pool.
    expect("images/", names(root / "images"),
           set(images) | {f"{fp}.rootfs" for fp, split in images.items() if split})
    expect("default pool image volumes", {fp for fp in images if not (
        root / "storage-pools/default/images" / fp / "rootfs").is_dir()}, set())
    # Per-instance directories and journals.
    expect("logs/ directories without a row",
           {e.name for e in (root / "logs").iterdir() if e.is_dir()} - set(instances), set())
    expect("run/ directories without a row", names(root / "run") - set(instances), set())
    expect("journals", sorted([*(p.name for p in (root / "logs").glob(".rename-*")),
                               *(p.name for p in (root / "storage-pools").glob(".pending-*"))]),
           [])
    # Networks: directories, tagged bridges and dnsmasq exactly for the rows.
    links = tagged_links(root)
    expect("networks/", names(root / "networks"), networks)
    expect("tagged bridges", {n for n, kind, _ in links if kind == "bridge"}, networks)
    expect("dnsmasq", dnsmasq_networks(root), networks)
    # Instances: what runs is recorded RUNNING, what does not keeps nothing around.
    nic_owners = {owner.split("/")[0] for _, kind, owner in links if kind == "nic"}
    assert d.proc is not None
    mounts = Path(f"/proc/{d.proc.pid}/mountinfo").read_text()
    for inst in d.api("GET", "/1.0/instances?recursion=1"):
        name, status = inst["name"], inst["status"]
        if status == "Running":
            expect(f"{name}: power state", power.get(name), "RUNNING")
            continue
        expect(f"{name}: status", status, "Stopped")
        expect(f"{name}: power state", power.get(name), "STOPPED")
        if name in nic_owners:
            problems.append(f"{name} is stopped but has tagged nic interfaces")
        left = [p for p in cgroup_dirs(d.proc.pid, name) if p.exists()]
        expect(f"{name}: cgroups", left, [])
        pool, volume = instances[name]
        for path in (f"/{volume}/", os.fspath(d.root / "run" / name)):
            if path in mounts:
                problems.append(f"{name} is stopped but a mount names {path}")
    expect("bystander init pid", init_pid(d, BYSTANDER), w.bystander_pid)
    assert not problems, f"after a crash at {point}:\n  " + "\n  ".join(problems)


def tagged_links(root: Path) -> list[tuple[str, str, str]]:
    """(name, kind, owner) of the host interfaces carrying this daemon's tag."""
    from pyroute2 import IPRoute

    tag = Paths(root).link_tag
    found = []
    with IPRoute() as ipr:
        for link in ipr.get_links():
            parts = (link.get_attr("IFLA_IFALIAS") or "").split(" ")
            if len(parts) == 3 and parts[0] == tag:
                found.append((link.get_attr("IFLA_IFNAME"), parts[1], parts[2]))
    return found


def dnsmasq_networks(root: Path) -> set[str]:
    """Networks of state directory `root` that have a dnsmasq process."""
    found = set()
    marker = os.fsencode(root / "networks") + b"/"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"dnsmasq"):
            for arg in argv:
                if marker in arg:
                    found.add(arg.split(marker, 1)[1].split(b"/")[0].decode())
    return found


def cgroup_dirs(pid: int, name: str) -> list[Path]:
    """Where instance `name`'s cgroups would be: machined/<name> below the daemon's own
    cgroup in every hierarchy it is in."""
    mounts: list[tuple[set[str], str]] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fstype, _source, options = post.split()[:3]
        if fstype in ("cgroup", "cgroup2"):
            mounts.append(({"cgroup2"} if fstype == "cgroup2" else set(options.split(",")),
                           pre.split()[4]))
    dirs = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _hid, controllers, path = line.split(":", 2)
        wanted = set(controllers.split(",")) if controllers else {"cgroup2"}
        for opts, mountpoint in mounts:
            if wanted <= opts:
                dirs.append(Path(mountpoint + path.rstrip("/")) / "machined" / name)
                break
    return dirs


# ---------------------------------------------------------------------------- helpers

def init_pid(d: Daemon, name: str) -> int:
    state = d.api("GET", f"/1.0/instances/{name}/state")
    assert state["status"] == "Running", f"{name} is {state['status']}"
    return int(state["pid"])


def exists(d: Daemon, name: str) -> bool:
    return f"/1.0/instances/{name}" in d.api("GET", "/1.0/instances")


def status(d: Daemon, name: str) -> str:
    return d.api("GET", f"/1.0/instances/{name}/state")["status"]


def snapshot_volumes(d: Daemon, name: str) -> dict[str, str]:
    return dict(rows(d, "SELECT s.name, s.volume FROM instances_snapshots s JOIN instances i "
                        f"ON i.id = s.instance_id WHERE i.name = '{name}'"))


def works(d: Daemon, name: str) -> None:
    """The instance starts, runs a command and stops."""
    d.ok("start", name)
    assert d.mc("exec", name, "--", "true").code == 0
    d.ok("stop", name, "--force")


def image_rows(d: Daemon) -> dict[str, list[str]]:
    """fingerprint -> its aliases."""
    found: dict[str, list[str]] = {fp: [] for (fp,) in rows(d, "SELECT fingerprint FROM images")}
    for fp, alias in rows(d, "SELECT i.fingerprint, a.name FROM images_aliases a "
                             "JOIN images i ON i.id = a.image_id"):
        found[fp].append(alias)
    return found


def tiny_image(n: int) -> bytes:
    """A minimal unified image (metadata.yaml, a rootfs with one file), unique per `n`."""
    meta = yaml.safe_dump({"architecture": platform.machine(),
                           "creation_date": 1_700_000_000 + n,
                           "properties": {"description": f"t7c tiny {n}", "os": "t7c"}})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("metadata.yaml", meta.encode()), ("rootfs/hello", b"hello\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            if name.startswith("rootfs/"):
                folder = tarfile.TarInfo("rootfs")
                folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
                tar.addfile(folder)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Stream:
    """A simplestreams tree of tiny images, one version per add()."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.products = ss.empty_products()

    def add(self, n: int) -> str:
        data = tiny_image(n)
        fp = hashlib.sha256(data).hexdigest()
        created = f"2026-01-0{n}T00:00:00Z"
        path = f"{ss.version_dir(STREAM_PROPS, 'x86_64', ss.serial_for(created))}/lxd.tar.gz"
        (self.root / path).parent.mkdir(parents=True, exist_ok=True)
        (self.root / path).write_bytes(data)
        self.products = ss.add_image(
            self.products, fingerprint=fp, properties=STREAM_PROPS, architecture="x86_64",
            created_at=created, aliases=[STREAM_ALIAS],
            files=[ss.StreamFile("unified", path, fp, len(data), "lxd_combined.tar.gz")])
        streams = self.root / "streams/v1"
        streams.mkdir(parents=True, exist_ok=True)
        (streams / "images.json").write_text(json.dumps(self.products))
        (streams / "index.json").write_text(json.dumps(ss.make_index(self.products)))
        return fp


# ---------------------------------------------------------------------------- the walk

def test_instance_create(walk):
    d = walk.d
    for point in ("instance.create.volume", "instance.create.row"):
        crash_at(walk, point, mc_dies(d, "init", "busybox", "t7c-new"))
        if point == "instance.create.row":
            works(d, "t7c-new")  # the row was committed: a whole instance
        else:
            assert not exists(d, "t7c-new")
            d.ok("init", "busybox", "t7c-new")  # nothing in the way
        d.ok("delete", "t7c-new")


def memory_limit(d: Daemon, name: str) -> int:
    state = json.loads((d.root / "run" / name / "state.json").read_text())
    memory = state["cgroups"]["memory"]
    return int(Path(memory["mount"] + memory["path"], "memory.limit_in_bytes").read_text())


def test_instance_start_config_stop(walk):
    """An instance with a nic on a managed network: a crash before its container runs
    leaves no veth, cgroup or mount; one after leaves it running and recorded RUNNING; a
    crash between applying limits and storing them leaves the stored limits in force."""
    d, sub = walk.d, "t7c-sub"
    d.api("POST", "/1.0/instances", {
        "name": sub, "source": {"type": "image", "alias": "busybox"},
        "devices": {"eth0": {"type": "nic", "network": NET, "name": "eth0"}}})
    for point in ("instance.start.templates", "instance.start.nics"):
        crash_at(walk, point, mc_dies(d, "start", sub))
        assert status(d, sub) == "Stopped"
    crash_at(walk, "instance.start.running", mc_dies(d, "start", sub))
    assert status(d, sub) == "Running"
    assert d.mc("exec", sub, "--", "true").code == 0
    crash_at(walk, "instance.update.applied",
             mc_dies(d, "config", "set", sub, "limits.memory", "96MB"))
    assert "limits.memory" not in d.api("GET", f"/1.0/instances/{sub}")["config"]
    assert memory_limit(d, sub) > NO_LIMIT  # as stored, not as the lost change had it
    d.ok("config", "set", sub, "limits.memory", "96MB")
    assert memory_limit(d, sub) < NO_LIMIT
    d.ok("config", "unset", sub, "limits.memory")
    crash_at(walk, "instance.stop.recorded", mc_dies(d, "stop", sub))
    assert status(d, sub) == "Running"  # not stopped, and recorded RUNNING again (check)
    crash_at(walk, "instance.stop.stopped", mc_dies(d, "stop", sub))
    assert status(d, sub) == "Stopped"
    works(d, sub)


def test_instance_rename(walk):
    """The logs directory follows the row (journaled), and so do the DHCP hosts."""
    d, sub, new = walk.d, "t7c-sub", "t7c-ren"
    assert (d.root / "logs" / sub / "console.log").exists()
    crash_at(walk, "instance.rename.row", mc_dies(d, "rename", sub, new))
    assert exists(d, new) and not exists(d, sub)
    assert (d.root / "logs" / new / "console.log").exists()
    assert not (d.root / "logs" / sub).exists()
    assert f",{new}" in (d.root / "networks" / NET / "dnsmasq.hosts").read_text()
    works(d, new)
    d.ok("rename", new, sub)


def test_instance_delete(walk):
    d, name = walk.d, "t7c-del"
    for point in ("instance.delete.row", "instance.delete.volumes"):
        d.ok("init", "busybox", name)
        works(d, name)  # logs/ and run/ directories
        d.ok("snapshot", name, "s0")
        crash_at(walk, point, mc_dies(d, "delete", name))
        assert not exists(d, name)  # and check() found its volumes and directories gone
    d.ok("init", "busybox", name)  # the name is free
    d.ok("delete", name)


def test_snapshot_and_restore(walk):
    d, name = walk.d, "t7c-snap"
    d.ok("launch", "busybox", name)
    d.ok("snapshot", name, "s0")
    # Killed while the running instance is frozen for the copy: thawed by the next start.
    crash_at(walk, "snapshot.create.copied", mc_dies(d, "snapshot", name, "s1"))
    assert status(d, name) == "Running"
    assert list(snapshot_volumes(d, name)) == ["s0"]
    old = snapshot_volumes(d, name)["s0"]
    crash_at(walk, "snapshot.create.row", mc_dies(d, "snapshot", name, "s0", "--reuse"))
    assert snapshot_volumes(d, name)["s0"] != old  # replaced; the old volume went (check)
    marker = "/t7c-after-s0"
    for point in ("snapshot.restore.stopped", "snapshot.restore.volume",
                  "snapshot.restore.row"):
        if status(d, name) == "Stopped":
            d.ok("start", name)
        d.ok("exec", name, "--", "touch", marker)
        crash_at(walk, point, mc_dies(d, "restore", name, "s0"))
        assert status(d, name) == "Stopped"
        restored = not (d.instance_dir(name) / "rootfs" / marker[1:]).exists()
        assert restored == (point == "snapshot.restore.row"), point
    works(d, name)


def test_copy(walk):
    d, source, name = walk.d, "t7c-snap", "t7c-cp"
    for point in ("instance.copy.snapshots", "instance.copy.volume"):
        crash_at(walk, point, mc_dies(d, "copy", source, name))
        assert not exists(d, name)
    d.ok("copy", source, name)
    assert list(snapshot_volumes(d, name)) == ["s0"]
    d.ok("delete", name)


def test_storage_pool_create(walk):
    d, source = walk.d, walk.base / "pool"
    for point in ("storage.create.made", "storage.create.marker"):
        crash_at(walk, point, mc_dies(d, "storage", "create", POOL, "dir", f"source={source}"))
        assert rows(d, f"SELECT name FROM storage_pools WHERE name = '{POOL}'") == []
        assert names(source) == set(), "the interrupted create was not undone"
    d.ok("storage", "create", POOL, "dir", f"source={source}")


def test_move_to_another_pool(walk):
    d, name, new = walk.d, "t7c-mv", "t7c-mv2"
    d.ok("init", "busybox", name)
    works(d, name)
    d.ok("snapshot", name, "s0")
    body = {"name": new, "pool": POOL}
    crash_at(walk, "instance.move.volumes",
             api_dies(d, "POST", f"/1.0/instances/{name}", body))
    assert rows(d, f"SELECT storage_pool FROM instances WHERE name = '{name}'") == \
        [("default",)]
    crash_at(walk, "instance.move.row", api_dies(d, "POST", f"/1.0/instances/{name}", body))
    assert not exists(d, name)
    assert rows(d, f"SELECT storage_pool FROM instances WHERE name = '{new}'") == [(POOL,)]
    assert (d.root / "logs" / new / "console.log").exists()
    assert list(snapshot_volumes(d, new)) == ["s0"]
    works(d, new)
    d.ok("delete", new)


def test_storage_pool_delete(walk):
    d, source = walk.d, walk.base / "pool"
    crash_at(walk, "storage.delete.destroyed", mc_dies(d, "storage", "delete", POOL))
    assert rows(d, f"SELECT name FROM storage_pools WHERE name = '{POOL}'") == []
    assert names(source) == set()
    d.ok("storage", "create", POOL, "dir", f"source={source}")  # nothing in the way
    d.ok("storage", "delete", POOL)


def test_image_import(walk):
    d = walk.d
    before = image_rows(d)
    for n, point in enumerate(("image.register.received", "image.register.volume",
                               "image.register.files"), 1):
        tarball = walk.base / f"tiny{n}.tar.gz"
        tarball.write_bytes(tiny_image(n))
        crash_at(walk, point, mc_dies(d, "image", "import", os.fspath(tarball),
                                      "--alias", "t7c-tiny"))
        assert image_rows(d) == before
    d.ok("image", "import", os.fspath(tarball), "--alias", "t7c-tiny")
    fp = hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert image_rows(d)[fp] == ["t7c-tiny"]
    d.ok("image", "delete", "t7c-tiny")


def test_image_download_and_refresh(walk):
    d = walk.d
    stream = Stream(walk.base / "stream")
    first = stream.add(1)
    with StreamServer(stream.root) as srv:
        body = {"source": {"type": "image", "mode": "pull", "server": srv.url,
                           "protocol": "simplestreams", "alias": STREAM_ALIAS},
                "auto_update": True, "aliases": [{"name": "t7c-dl"}]}
        crash_at(walk, "image.download.received", api_dies(d, "POST", "/1.0/images", body))
        assert first not in image_rows(d)
        d.api("POST", "/1.0/images", body)
        assert image_rows(d)[first] == ["t7c-dl"]  # with its alias, in the row's transaction
        second = stream.add(2)
        crash_at(walk, "image.refresh.downloaded",
                 api_dies(d, "POST", f"/1.0/images/{first}/refresh"))
        found = image_rows(d)
        assert found[first] == ["t7c-dl"] and found[second] == []
        d.api("POST", f"/1.0/images/{first}/refresh")  # finishes what the crash cut short
        found = image_rows(d)
        assert first not in found and found[second] == ["t7c-dl"]
        third = stream.add(3)
        crash_at(walk, "image.refresh.switched",
                 api_dies(d, "POST", f"/1.0/images/{second}/refresh"))
        found = image_rows(d)
        assert second not in found and found[third] == ["t7c-dl"]  # its files went (check)
        d.api("DELETE", f"/1.0/images/{third}")


def test_publish(walk):
    d, name = walk.d, "t7c-pub"
    d.ok("init", "busybox", name)
    before = image_rows(d)
    crash_at(walk, "image.publish.packed",
             mc_dies(d, "publish", name, "--alias", "t7c-pubimg", "--compression", "none"))
    assert image_rows(d) == before
    d.ok("publish", name, "--alias", "t7c-pubimg", "--compression", "none")
    assert ["t7c-pubimg"] in image_rows(d).values()
    d.ok("image", "delete", "t7c-pubimg")
    d.ok("delete", name)


def test_file_push(walk):
    """Nothing of an interrupted push is visible in the rootfs: no half-written target, no
    temporary file next to it; a replaced file keeps its old content whole."""
    d = walk.d
    rootfs = d.instance_dir(BYSTANDER) / "rootfs"
    small, big, old = walk.base / "small", walk.base / "big", walk.base / "old"
    small.write_bytes(b"new\n")
    big.write_bytes(os.urandom(3 << 20))  # streamed (push_stream), committed in a thread
    old.write_bytes(b"old\n")

    def leftovers() -> list[str]:
        return [n for n in os.listdir(rootfs) if n.startswith(".mc-")]

    crash_at(walk, "files.push.written",
             mc_dies(d, "file", "push", os.fspath(small), f"{BYSTANDER}/t7c-pushed"))
    assert not (rootfs / "t7c-pushed").exists() and leftovers() == []
    d.ok("file", "push", os.fspath(old), f"{BYSTANDER}/t7c-pushed")
    for source in (small, big):
        crash_at(walk, "files.push.written",
                 mc_dies(d, "file", "push", os.fspath(source), f"{BYSTANDER}/t7c-pushed"))
        assert (rootfs / "t7c-pushed").read_bytes() == b"old\n" and leftovers() == []
    d.ok("file", "push", os.fspath(big), f"{BYSTANDER}/t7c-pushed")
    assert (rootfs / "t7c-pushed").read_bytes() == big.read_bytes()
    d.ok("file", "delete", f"{BYSTANDER}/t7c-pushed")


def test_network_create_and_delete(walk):
    d = walk.d
    for point in ("network.create.bridge", "network.create.dnsmasq",
                  "network.create.configured"):
        crash_at(walk, point, mc_dies(d, "network", "create", NET2, *NET2_ARGS))
        assert NET2 not in {n for (n,) in rows(d, "SELECT name FROM networks")}
    d.ok("network", "create", NET2, *NET2_ARGS)
    for point in ("network.delete.stopped", "network.delete.bridge", "network.delete.files"):
        crash_at(walk, point, mc_dies(d, "network", "delete", NET2))
        # The row is the commit point: not deleted, and set up again by the restart.
        assert d.api("GET", f"/1.0/networks/{NET2}")["status"] == "Created"
    d.ok("network", "delete", NET2)


def test_the_daemon_works_after_the_walk(walk):
    d, name = walk.d, "t7c-last"
    d.api("POST", "/1.0/instances", {
        "name": name, "source": {"type": "image", "alias": "busybox"}, "start": True,
        "devices": {"eth0": {"type": "nic", "network": NET, "name": "eth0"}}})
    assert status(d, name) == "Running"
    assert d.ok("exec", name, "--", "cat", "/etc/hostname").strip() == name
    d.ok("delete", "--force", name)
    assert not exists(d, name)
    assert init_pid(d, BYSTANDER) == walk.bystander_pid


def test_the_walk_covers_every_crash_point(walk):
    assert sorted(set(crash.POINTS) - walk.covered) == []
