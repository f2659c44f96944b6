"""LaunchSpec and the pure planning around it (stdlib only, no I/O except default_idmap's read).

helper.py loads this module by path, so it must not import anything from the package.
"""

from __future__ import annotations

import json
import signal
from dataclasses import asdict, dataclass, field
from typing import Any

IdMap = list[tuple[int, int, int]]

# LXD's default when /etc/subuid has no range for root.
DEFAULT_IDMAP_BASE = 1000000
DEFAULT_IDMAP_COUNT = 1000000000


@dataclass
class LaunchSpec:
    name: str
    rootfs: str
    hostname: str
    init: list[str]
    environment: dict[str, str]
    privileged: bool
    uid_map: IdMap
    gid_map: IdMap
    run_dir: str
    console_log: str
    stop_signal: int
    limits: dict[str, str] = field(default_factory=dict)
    # Device mounts (machined.config.devices.runtime_devices): disk binds and unix nodes.
    devices: list[dict[str, Any]] = field(default_factory=list)
    # Network interfaces made on the host by the daemon (network/nics.py), moved into the
    # container's network namespace before its init runs: {"host_peer": name on the host,
    # "name": interface name inside, e.g. eth0}.
    nics: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LaunchSpec:
        raw = json.loads(text)
        raw["uid_map"] = [tuple(e) for e in raw.get("uid_map", [])]
        raw["gid_map"] = [tuple(e) for e in raw.get("gid_map", [])]
        return cls(**raw)

    def root_ids(self) -> tuple[int, int]:
        """Host uid/gid that container root maps to (0/0 when privileged)."""
        if self.privileged:
            return 0, 0
        return map_root(self.uid_map), map_root(self.gid_map)


def map_root(idmap: IdMap) -> int:
    for inside, outside, _count in idmap:
        if inside == 0:
            return outside
    raise ValueError("The id map does not map container root (id 0).")


def parse_subid(text: str, user: str = "root", uid: int = 0) -> list[tuple[int, int]]:
    """Ranges (start, count) delegated to `user` in /etc/subuid or /etc/subgid format."""
    ranges = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (user, str(uid)):
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if count > 0:
            ranges.append((start, count))
    return ranges


def pick_idmap(uid_ranges: list[tuple[int, int]], gid_ranges: list[tuple[int, int]],
               minimum: int = 65536) -> tuple[IdMap, IdMap]:
    """First delegated range big enough for a full distribution, else LXD's default."""

    def one(ranges: list[tuple[int, int]]) -> IdMap:
        for start, count in ranges:
            if count >= minimum:
                return [(0, start, count)]
        return [(0, DEFAULT_IDMAP_BASE, DEFAULT_IDMAP_COUNT)]

    return one(uid_ranges), one(gid_ranges)


def default_idmap(subuid: str = "/etc/subuid", subgid: str = "/etc/subgid") -> tuple[IdMap, IdMap]:
    def read(path: str) -> list[tuple[int, int]]:
        try:
            with open(path) as f:
                return parse_subid(f.read())
        except FileNotFoundError:
            return []

    return pick_idmap(read(subuid), read(subgid))


def stop_signal_for(init_path: str) -> int:
    """Signal that makes `init_path` (resolved inside the rootfs) shut down cleanly."""
    base = init_path.rsplit("/", 1)[-1]
    if base == "systemd":
        return signal.SIGRTMIN + 3
    if base == "busybox":
        return signal.SIGUSR1  # busybox init: USR1 halt, USR2 poweroff, TERM reboot
    return signal.SIGPWR  # sysvinit, and what LXC sends by default


def build_spec(name: str, rootfs: str, run_dir: str, console_log: str, *,
               privileged: bool = False, init: list[str] | None = None,
               environment: dict[str, str] | None = None, limits: dict[str, str] | None = None,
               hostname: str | None = None, stop_signal: int | None = None,
               idmap: tuple[IdMap, IdMap] | None = None,
               devices: list[dict[str, Any]] | None = None) -> LaunchSpec:
    uid_map, gid_map = ([], []) if privileged else (idmap or default_idmap())
    init = init or ["/sbin/init"]
    return LaunchSpec(
        name=name, rootfs=rootfs, hostname=hostname or name, init=init,
        environment=dict(environment or {}), privileged=privileged, uid_map=list(uid_map),
        gid_map=list(gid_map), run_dir=run_dir, console_log=console_log,
        stop_signal=stop_signal if stop_signal is not None else stop_signal_for(init[0]),
        limits=dict(limits or {}), devices=list(devices or []))


@dataclass(frozen=True)
class MountOp:
    """One step of the container's filesystem setup, with paths inside the container.

    kind: "mount" (fstype/source/data), "bind" (host source path, or "@console" for the
    console pty), "dir", "file", "symlink" (source is the link text), "remount".
    """

    kind: str
    target: str
    source: str | None = None
    fstype: str | None = None
    flags: tuple[str, ...] = ()
    data: str | None = None


DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def plan_mounts(cgroup_mode: str, named_systemd: bool) -> list[MountOp]:
    """The mount list for a full-OS container. cgroup_mode: "v2", "hybrid" or "v1"."""
    nse = ("nosuid", "nodev", "noexec")
    ops = [
        MountOp("dir", "/proc"),
        MountOp("mount", "/proc", "proc", "proc", nse),
        MountOp("dir", "/sys"),
        MountOp("mount", "/sys", "sysfs", "sysfs", ("ro",) + nse),
    ]
    if cgroup_mode == "v2":
        ops.append(MountOp("mount", "/sys/fs/cgroup", "cgroup2", "cgroup2", nse))
    else:
        ops.append(MountOp("mount", "/sys/fs/cgroup", "tmpfs", "tmpfs", nse, "mode=755"))
        if cgroup_mode == "hybrid":
            ops += [MountOp("dir", "/sys/fs/cgroup/unified"),
                    MountOp("mount", "/sys/fs/cgroup/unified", "cgroup2", "cgroup2", nse)]
        if named_systemd:
            ops += [MountOp("dir", "/sys/fs/cgroup/systemd"),
                    MountOp("mount", "/sys/fs/cgroup/systemd", "cgroup", "cgroup", nse,
                            "none,name=systemd")]
        # systemd must not create hierarchies of its own next to ours.
        ops.append(MountOp("remount", "/sys/fs/cgroup", None, None, ("ro",) + nse))
    ops += [
        MountOp("dir", "/dev"),
        MountOp("mount", "/dev", "tmpfs", "tmpfs", ("nosuid",), "mode=755,size=65536k"),
    ]
    for dev in DEVICES:
        ops += [MountOp("file", f"/dev/{dev}"), MountOp("bind", f"/dev/{dev}", f"/dev/{dev}")]
    ops += [
        MountOp("file", "/dev/console"),
        MountOp("bind", "/dev/console", "@console"),
        MountOp("dir", "/dev/pts"),
        MountOp("mount", "/dev/pts", "devpts", "devpts", ("nosuid", "noexec"),
                "newinstance,ptmxmode=0666,mode=0620,gid=5"),
        MountOp("symlink", "/dev/ptmx", "pts/ptmx"),
        MountOp("dir", "/dev/shm"),
        MountOp("mount", "/dev/shm", "tmpfs", "tmpfs", ("nosuid", "nodev"), "mode=1777"),
        MountOp("symlink", "/dev/fd", "/proc/self/fd"),
        MountOp("symlink", "/dev/stdin", "/proc/self/fd/0"),
        MountOp("symlink", "/dev/stdout", "/proc/self/fd/1"),
        MountOp("symlink", "/dev/stderr", "/proc/self/fd/2"),
    ]
    return ops


def map_id(idmap: IdMap, value: int) -> int:
    """Host id of container id `value` (identity when there is no map: privileged)."""
    if not idmap:
        return value
    for inside, outside, count in idmap:
        if inside <= value < inside + count:
            return outside + value - inside
    raise ValueError(f"Id {value} is outside the container's id map")


def device_rules(devices: list[dict[str, Any]]) -> list[str]:
    """cgroup v1 devices.allow lines for the unix-char/unix-block devices (numbers known)."""
    rules = []
    for dev in devices:
        if dev["type"] in ("unix-char", "unix-block") and dev.get("major") is not None:
            kind = "c" if dev["type"] == "unix-char" else "b"
            rules.append(f"{kind} {dev['major']}:{dev['minor']} rwm")
    return rules
