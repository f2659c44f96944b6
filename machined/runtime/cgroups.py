"""Per-container cgroups on cgroup v1, hybrid and v2 hosts.

Standalone (stdlib only) because helper.py loads it by path. Paths are recorded per hierarchy as
{key: {"mount": <mountpoint>, "path": <path inside the hierarchy>}}; key is "unified" for cgroup2
and the /proc/<pid>/cgroup controller field ("memory", "cpu,cpuacct", "name=systemd") for v1.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from dataclasses import dataclass

try:
    from machined.runtime import cglimits
except ImportError:  # loaded by path from helper.py (python -I -S): siblings are top-level
    import cglimits  # type: ignore[no-redef]

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
    """One write(2) of value (cgroup files take a value per write); the OSError keeps the
    errno (ENOENT/ENODEV: the cgroup is gone) and names the file and the value."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise OSError(e.errno, f"Failed writing {value!r} to {path}: {os.strerror(e.errno or 0)}"
                      ) from None


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


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
           restrict_devices: bool, device_rules: list[str] | tuple[str, ...] = ()) -> Paths:
    """Create the container's cgroups; chown the ones systemd manages to the mapped root.
    device_rules ("c 1:5 rwm") are allowed on top of the whitelist (unix-char/unix-block
    devices; v1 only: v2 would need a BPF device program). On failure everything created
    is removed again."""
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
        for warning in apply_limits(paths, limits, reset=False):
            print(f"warning: {warning}", file=sys.stderr)  # the monitor's log
        for key, entry in paths.items():
            v2 = key == UNIFIED
            if restrict_devices and "devices" in key.split(","):
                _write(os.path.join(_dir(entry), "devices.deny"), "a")
                for rule in V1_DEVICES:
                    _write(os.path.join(_dir(entry), "devices.allow"), rule)
            if "devices" in key.split(","):
                for rule in device_rules:
                    _write(os.path.join(_dir(entry), "devices.allow"), rule)
            if (key in (UNIFIED, SYSTEMD)) and (root_uid or root_gid):
                _delegate(_dir(entry), v2, root_uid, root_gid)
    except BaseException:
        remove(paths)
        raise
    return paths


def _enable_controllers(mount: str, parent: str) -> None:
    """Pure v2: enable every available controller from the root down to machined/."""
    # Every level down to machined/ itself: a cgroup gets the controllers its parent's
    # cgroup.subtree_control enables, so machined/<name> needs them enabled in machined/.
    node = mount
    nodes = [node]
    for part in [p for p in parent.split("/") if p]:
        node = os.path.join(node, part)
        nodes.append(node)
    for node in nodes:
        wanted = _read(os.path.join(node, "cgroup.controllers")).split()
        enabled = _read(os.path.join(node, "cgroup.subtree_control")).split()
        for c in wanted:
            if c not in enabled:
                try:
                    _write(os.path.join(node, "cgroup.subtree_control"), "+" + c)
                except OSError:
                    pass  # e.g. cpu while a realtime task lives here: run without it


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


def _locations(paths: Paths) -> dict[str, tuple[str, bool]]:
    """controller -> (the container's cgroup directory, is v2). v1 wins on hybrid hosts, whose
    cgroup2 tree usually has no controllers."""
    loc: dict[str, tuple[str, bool]] = {}
    for key, entry in paths.items():
        if key not in (UNIFIED, SYSTEMD):
            for ctrl in key.split(","):
                loc.setdefault(ctrl, (_dir(entry), False))
    if UNIFIED in paths:
        d = _dir(paths[UNIFIED])
        try:
            ctrls = _read(os.path.join(d, "cgroup.controllers")).split()
        except FileNotFoundError:
            ctrls = []
        for ctrl in ctrls:
            loc.setdefault(ctrl, (d, True))
    return loc


def _parent_cpus(loc: dict[str, tuple[str, bool]]) -> list[int]:
    """CPUs the container's parent cgroup may use: what limits.cpu can choose from."""
    if "cpuset" not in loc:
        return sorted(os.sched_getaffinity(0))
    d, v2 = loc["cpuset"]
    name = "cpuset.cpus.effective" if v2 else "cpuset.effective_cpus"
    try:
        return cglimits.parse_cpus(_read(os.path.join(os.path.dirname(d), name)))
    except FileNotFoundError:
        return sorted(os.sched_getaffinity(0))


def apply_limits(paths: Paths, limits: dict[str, str], reset: bool = True) -> list[str]:
    """Write `limits` into the container's existing cgroups. With reset, absent limits go
    back to unlimited/default (a live update); without, only set ones are written (creation).
    Returns warnings for limits this host cannot enforce; raises OSError for limits that
    cannot be applied at all (no controller, a CPU that does not exist, a write refused)."""
    loc = _locations(paths)
    v1 = {c for c, (_d, v2) in loc.items() if not v2}
    v2s = {c for c, (_d, v2) in loc.items() if v2}
    required, optional = cglimits.missing_controllers(limits, v1, v2s)
    if required:
        raise OSError(errno.ENOTSUP, "No cgroup controller for limits: " + ", ".join(required))
    warnings = [f"{key}: no cgroup controller for it" for key in optional]
    files: set[str] = set()
    for d in {d for d, _v2 in loc.values()}:
        files.update(os.listdir(d))
    cpus = _parent_cpus(loc)
    writes: list[tuple[str, str]] = []
    for version in sorted({v2 for _d, v2 in loc.values()}):
        try:
            plan = cglimits.plan_limits(limits, version, cpus, files, reset)
        except cglimits.LimitError as e:
            raise OSError(errno.EINVAL, str(e)) from None
        for ctrl, fname, value in plan.writes:
            where = loc.get(ctrl)
            if where is not None and where[1] == version:
                # An empty v2 cpuset.cpus ("the parent's") needs a non-empty write.
                writes.append((os.path.join(where[0], fname), value or "\n"))
        warnings += [msg for ctrl, msg in plan.skipped if loc.get(ctrl, ("", version))[1]
                     == version]
    _write_all(writes)
    return warnings


def _write_all(writes: list[tuple[str, str]]) -> None:
    """All or nothing: when the kernel refuses a write (e.g. a memory limit below what the
    container uses), the files already written get their previous values back, in reverse."""
    done: list[tuple[str, str]] = []
    try:
        for path, value in writes:
            before = _read(path).strip()
            _write(path, value)
            done.append((path, before))
    except OSError:
        for path, before in reversed(done):
            try:
                _write(path, before or "\n")
            except OSError:
                pass  # best effort: the original error is the one to report
        raise


def _read_int(path: str, optional: bool = False) -> int:
    """An integer cgroup file; "max" and (when optional) a missing file read as 0."""
    try:
        text = _read(path).strip()
    except FileNotFoundError:
        if optional:
            return 0
        raise
    return 0 if text == "max" else int(text)


def usage(paths: Paths) -> dict[str, int]:
    """Counters of a running container: memory/memory_peak/swap/swap_peak (bytes), cpu_ns,
    processes, memory_limit (bytes, 0 = none). Raises OSError (errno in GONE) when the
    container stopped meanwhile."""
    loc = _locations(paths)
    out = {"memory": 0, "memory_peak": 0, "swap": 0, "swap_peak": 0, "cpu_ns": 0,
           "processes": 0, "memory_limit": 0}
    if "memory" in loc:
        out.update(_memory_usage(*loc["memory"]))
    if "cpuacct" in loc:
        out["cpu_ns"] = _read_int(os.path.join(loc["cpuacct"][0], "cpuacct.usage"))
    elif UNIFIED in paths:  # cpu.stat is a core file of every cgroup2 cgroup
        stat = os.path.join(_dir(paths[UNIFIED]), "cpu.stat")
        for line in _read(stat).splitlines():
            if line.startswith("usage_usec "):
                out["cpu_ns"] = int(line.split()[1]) * 1000
    if "pids" in loc:
        out["processes"] = _read_int(os.path.join(loc["pids"][0], "pids.current"))
    else:
        entry = next(iter(paths.values()), None)
        out["processes"] = len(_pids(_dir(entry))) if entry else 0
    return out


def _memory_usage(d: str, v2: bool) -> dict[str, int]:
    def f(name: str, optional: bool = False) -> int:
        return _read_int(os.path.join(d, name), optional)

    if v2:
        return {"memory": f("memory.current"), "memory_peak": f("memory.peak", True),
                "swap": f("memory.swap.current", True), "swap_peak": f("memory.swap.peak", True),
                "memory_limit": f("memory.max")}
    memory, peak = f("memory.usage_in_bytes"), f("memory.max_usage_in_bytes")
    memsw, memsw_peak = f("memory.memsw.usage_in_bytes", True), f(
        "memory.memsw.max_usage_in_bytes", True)
    limit = f("memory.limit_in_bytes")
    return {"memory": memory, "memory_peak": peak, "swap": max(0, memsw - memory),
            "swap_peak": max(0, memsw_peak - peak),
            # v1 shows "no limit" as the largest page-aligned number
            "memory_limit": limit if limit < 1 << 62 else 0}
