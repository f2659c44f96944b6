"""Per-container cgroups on cgroup v1, hybrid and v2 hosts.

Standalone (stdlib only) because helper.py loads it by path. Paths are recorded per hierarchy as
{key: {"mount": <mountpoint>, "path": <path inside the hierarchy>}}; key is "unified" for cgroup2
and the /proc/<pid>/cgroup controller field ("memory", "cpu,cpuacct", "name=systemd") for v1.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass

UNIFIED = "unified"
# A cgroup removed under us: ENOENT when opening its files, ENODEV when reading an open one.
GONE = (errno.ENOENT, errno.ENODEV)
SYSTEMD = "name=systemd"
# Files a delegated cgroup2 subtree owner needs (see cgroup-v2.rst "Delegation Containment").
V2_DELEGATE = ("cgroup.procs", "cgroup.threads", "cgroup.subtree_control")
_V1_NOT_CONTROLLERS = {"rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode"}

Paths = dict[str, dict[str, str]]


@dataclass(frozen=True)
class Hierarchy:
    key: str
    mount: str
    own: str  # this process's cgroup in the hierarchy

    @property
    def v2(self) -> bool:
        return self.key == UNIFIED


@dataclass(frozen=True)
class Layout:
    mode: str  # "v2", "hybrid" or "v1"
    hierarchies: tuple[Hierarchy, ...]

    @property
    def named_systemd(self) -> bool:
        return any(h.key == SYSTEMD for h in self.hierarchies)


def parse_proc_cgroup(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        _id, ctrl, path = line.split(":", 2)
        out[ctrl or UNIFIED] = path
    return out


def parse_mountinfo(text: str) -> list[tuple[str, str, str, set[str]]]:
    """(mountpoint, fstype, root, superblock options) of every cgroup/cgroup2 mount."""
    out = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(rfields) < 3 or rfields[0] not in ("cgroup", "cgroup2"):
            continue
        mountpoint = fields[4].replace("\\040", " ")
        out.append((mountpoint, rfields[0], fields[3], set(rfields[2].split(","))))
    return out


def plan_layout(mounts: list[tuple[str, str, str, set[str]]], own: dict[str, str]) -> Layout:
    """Match mounted hierarchies to this process's cgroups (pure)."""
    hier: dict[str, Hierarchy] = {}
    for mountpoint, fstype, root, opts in mounts:
        if root != "/":
            continue  # a bind of a subtree: not a place to create cgroups in
        if fstype == "cgroup2":
            key = UNIFIED
        else:
            names = opts - _V1_NOT_CONTROLLERS
            names = {n for n in names if "=" not in n or n.startswith("name=")}
            key = next((k for k in own if k != UNIFIED and set(k.split(",")) == names), "")
        if key and key in own and key not in hier:
            hier[key] = Hierarchy(key, mountpoint, own[key])
    v1 = [h for h in hier.values() if not h.v2 and h.key != SYSTEMD]
    mode = "v2" if not v1 and UNIFIED in hier and SYSTEMD not in hier else (
        "hybrid" if UNIFIED in hier else "v1")
    return Layout(mode, tuple(hier.values()))


def detect() -> Layout:
    with open("/proc/self/mountinfo") as f:
        mounts = parse_mountinfo(f.read())
    with open("/proc/self/cgroup") as f:
        own = parse_proc_cgroup(f.read())
    return plan_layout(mounts, own)


def container_paths(layout: Layout, name: str) -> Paths:
    """Where the container's cgroups go: under our own cgroup in each hierarchy (so the limits
    we are under still apply), except on pure v2, where our cgroup holds processes and the
    no-internal-process rule forces a top-level machined/ subtree."""
    paths: Paths = {}
    for h in layout.hierarchies:
        parent = "/" if layout.mode == "v2" else h.own
        paths[h.key] = {"mount": h.mount,
                        "path": os.path.join(parent, "machined", name).replace("//", "/")}
    return paths


def _dir(entry: dict[str, str]) -> str:
    return entry["mount"] + entry["path"]


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise OSError(e.errno, f"Failed writing {value!r} to {path}: {os.strerror(e.errno or 0)}"
                      ) from None
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def plan_limits(limits: dict[str, str], v2: bool) -> list[tuple[str, str, str]]:
    """(controller, file, value) writes for limits {"memory": bytes, "cpu": cpus,
    "processes": n}; pure."""
    out = []
    if limits.get("memory"):
        out.append(("memory", "memory.max" if v2 else "memory.limit_in_bytes",
                    str(int(limits["memory"]))))
    if limits.get("processes"):
        out.append(("pids", "pids.max", str(int(limits["processes"]))))
    if limits.get("cpu"):
        period = 100000
        quota = int(float(limits["cpu"]) * period)
        if v2:
            out.append(("cpu", "cpu.max", f"{quota} {period}"))
        else:
            out += [("cpu", "cpu.cfs_period_us", str(period)),
                    ("cpu", "cpu.cfs_quota_us", str(quota))]
    return out


# Device whitelist for v1 (what LXC allows by default); v2 would need a BPF program.
V1_DEVICES = ("c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm",
              "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:229 rwm",
              "c 10:200 rwm")


def _mkdir_v1(parent: str, leaf: str, cpuset: bool) -> None:
    path = os.path.join(parent, leaf)
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        pass
    if cpuset:
        # New v1 cpusets start empty and refuse tasks until cpus and mems are filled in.
        for f in ("cpuset.cpus", "cpuset.mems"):
            if not _read(os.path.join(path, f)).strip():
                _write(os.path.join(path, f), _read(os.path.join(parent, f)).strip())


def create(layout: Layout, name: str, limits: dict[str, str], root_uid: int, root_gid: int,
           restrict_devices: bool) -> Paths:
    """Create the container's cgroups; chown the ones systemd manages to the mapped root.
    On failure everything created is removed again."""
    paths = container_paths(layout, name)
    try:
        for key, entry in paths.items():
            d = _dir(entry)
            if os.path.exists(d):
                raise OSError(errno.EEXIST, f"Cgroup {d} already exists")
            parent = os.path.dirname(d)
            if key == UNIFIED:
                os.makedirs(d, 0o755)
                if layout.mode == "v2":
                    _enable_controllers(entry["mount"], os.path.dirname(entry["path"]))
            else:
                cpuset = "cpuset" in key.split(",")
                _mkdir_v1(os.path.dirname(parent), os.path.basename(parent), cpuset)
                _mkdir_v1(parent, os.path.basename(d), cpuset)
        applied: set[str] = set()
        for key, entry in paths.items():
            v2 = key == UNIFIED
            # On hybrid hosts the cgroup2 tree usually has no controllers: use v1 there.
            have = (_read(os.path.join(_dir(entry), "cgroup.controllers")).split() if v2
                    else key.split(","))
            for ctrl, fname, value in plan_limits(limits, v2):
                if ctrl in have:
                    _write(os.path.join(_dir(entry), fname), value)
                    applied.add(ctrl)
            if restrict_devices and "devices" in key.split(","):
                _write(os.path.join(_dir(entry), "devices.deny"), "a")
                for rule in V1_DEVICES:
                    _write(os.path.join(_dir(entry), "devices.allow"), rule)
            if (key in (UNIFIED, SYSTEMD)) and (root_uid or root_gid):
                _delegate(_dir(entry), v2, root_uid, root_gid)
        missing = {c for c, _f, _v in plan_limits(limits, False)} - applied
        if missing:
            raise OSError(errno.ENOTSUP, "No cgroup controller for limits: "
                          + ", ".join(sorted(missing)))
    except BaseException:
        remove(paths)
        raise
    return paths


def _enable_controllers(mount: str, parent: str) -> None:
    """Pure v2: enable every available controller from the root down to machined/."""
    node = mount
    for part in [p for p in parent.split("/") if p]:
        wanted = _read(os.path.join(node, "cgroup.controllers")).split()
        enabled = _read(os.path.join(node, "cgroup.subtree_control")).split()
        for c in wanted:
            if c not in enabled:
                try:
                    _write(os.path.join(node, "cgroup.subtree_control"), "+" + c)
                except OSError:
                    pass  # e.g. cpu while a realtime task lives here: run without it
        node = os.path.join(node, part)


def _delegate(path: str, v2: bool, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    names = V2_DELEGATE if v2 else os.listdir(path)
    for n in names:
        f = os.path.join(path, n)
        if os.path.isfile(f):
            os.chown(f, uid, gid)


def attach(paths: Paths, pid: int) -> None:
    for entry in paths.values():
        _write(os.path.join(_dir(entry), "cgroup.procs"), str(pid))


def procs_files(paths: Paths, init_pid: int) -> list[str]:
    """cgroup.procs files of init's cgroups (they may be deeper than the container's top one,
    e.g. init.scope under systemd; joining those keeps v2's no-internal-process rule)."""
    try:
        current = parse_proc_cgroup(_read(f"/proc/{init_pid}/cgroup"))
    except OSError:
        current = {}
    out = []
    for key, entry in paths.items():
        path = current.get(key, "")
        if not (path == entry["path"] or path.startswith(entry["path"] + "/")):
            path = entry["path"]  # init left its cgroup: never escape the container's own
        out.append(entry["mount"] + path + "/cgroup.procs")
    return out


def _walk(path: str) -> list[str]:
    """All cgroup directories below path, deepest first (path itself last)."""
    out = []
    for dirpath, _dirs, _files in os.walk(path, topdown=False):
        out.append(dirpath)
    return out


def _pids(path: str) -> set[int]:
    pids = set()
    for d in _walk(path):
        try:
            pids.update(int(p) for p in _read(os.path.join(d, "cgroup.procs")).split())
        except OSError:
            pass
    return pids


def _freezer(paths: Paths) -> tuple[str, bool] | None:
    for key, entry in paths.items():
        if "freezer" in key.split(","):
            return _dir(entry), False
    if UNIFIED in paths and os.path.exists(os.path.join(_dir(paths[UNIFIED]), "cgroup.freeze")):
        return _dir(paths[UNIFIED]), True
    return None


def set_frozen(paths: Paths, frozen: bool, timeout: float = 5.0) -> None:
    found = _freezer(paths)
    if found is None:
        raise OSError(errno.ENOTSUP, "No freezer cgroup for this container")
    d, v2 = found
    if v2:
        _write(os.path.join(d, "cgroup.freeze"), "1" if frozen else "0")
    else:
        _write(os.path.join(d, "freezer.state"), "FROZEN" if frozen else "THAWED")
    deadline = time.monotonic() + timeout
    while is_frozen(paths) != frozen:
        if time.monotonic() > deadline:
            raise TimeoutError(f"Cgroup {d} did not become {'frozen' if frozen else 'thawed'}")
        time.sleep(0.005)


def is_frozen(paths: Paths) -> bool:
    found = _freezer(paths)
    if found is None:
        return False
    d, v2 = found
    try:
        if v2:
            return "frozen 1" in _read(os.path.join(d, "cgroup.events"))
        return _read(os.path.join(d, "freezer.state")).strip() == "FROZEN"
    except OSError as e:
        if e.errno in GONE:  # the container just stopped and its monitor removed the cgroup
            return False
        raise


def kill(paths: Paths) -> None:
    """SIGKILL every process in the container's cgroups."""
    for entry in paths.values():
        kill_file = os.path.join(_dir(entry), "cgroup.kill")
        if os.path.exists(kill_file):
            try:
                _write(kill_file, "1")
            except OSError:
                continue
            # Killed tasks of a frozen cgroup (a v1 freezer on hybrid hosts) die only once
            # thawed.
            if is_frozen(paths):
                try:
                    set_frozen(paths, False, timeout=1.0)
                except OSError:
                    pass  # gone already: the kill went through
            return
    # v1 only: freeze so nothing forks while we kill, then thaw so the kills are delivered.
    frozen = False
    try:
        set_frozen(paths, True, timeout=1.0)
        frozen = True
    except OSError:
        pass
    for entry in paths.values():
        for pid in _pids(_dir(entry)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if frozen:
        set_frozen(paths, False, timeout=1.0)


def remove(paths: Paths, timeout: float = 5.0) -> None:
    """Kill what is left and remove the container's cgroups (and machined/ when empty)."""
    existing = {k: e for k, e in paths.items() if os.path.isdir(_dir(e))}
    if any(_pids(_dir(e)) for e in existing.values()):
        kill(existing)
    deadline = time.monotonic() + timeout
    for entry in existing.values():
        for d in _walk(_dir(entry)):
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    # Killed tasks leave the cgroup asynchronously: EBUSY for a moment.
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise OSError(e.errno, f"Failed removing cgroup {d}: {e.strerror}"
                                      ) from None
                    time.sleep(0.01)
        try:
            os.rmdir(os.path.dirname(_dir(entry)))
        except OSError:
            pass  # other containers still use machined/


def usage(paths: Paths) -> tuple[int, int, int, int]:
    """(memory bytes, memory peak, cpu ns, process count)."""
    mem = peak = cpu = 0
    procs = -1
    for key, entry in paths.items():
        d, ctrls = _dir(entry), key.split(",")
        try:
            if "memory" in ctrls:
                mem = int(_read(os.path.join(d, "memory.usage_in_bytes")))
                peak = int(_read(os.path.join(d, "memory.max_usage_in_bytes")))
            if "cpuacct" in ctrls:
                cpu = int(_read(os.path.join(d, "cpuacct.usage")))
            if "pids" in ctrls:
                procs = int(_read(os.path.join(d, "pids.current")))
        except OSError:
            pass
    if UNIFIED in paths:
        d = _dir(paths[UNIFIED])
        if not mem and os.path.exists(os.path.join(d, "memory.current")):
            mem = int(_read(os.path.join(d, "memory.current")))
            if os.path.exists(os.path.join(d, "memory.peak")):
                peak = int(_read(os.path.join(d, "memory.peak")))
        if not cpu and os.path.exists(os.path.join(d, "cpu.stat")):
            for line in _read(os.path.join(d, "cpu.stat")).splitlines():
                if line.startswith("usage_usec "):
                    cpu = int(line.split()[1]) * 1000
        if procs < 0 and os.path.exists(os.path.join(d, "pids.current")):
            procs = int(_read(os.path.join(d, "pids.current")))
    if procs < 0:
        entry = next(iter(paths.values()), None)
        procs = len(_pids(_dir(entry))) if entry else 0
    return mem, peak, cpu, procs
