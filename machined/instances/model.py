"""Pure rules about instances: names, expanded config, exec environment, status codes."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from machined.errors import BadRequest

_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,62}$")

STATUS_CODES = {"Running": 103, "Stopped": 102, "Frozen": 110, "Error": 112}

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def check_name(name: str) -> None:
    if not _NAME.match(name) or name.endswith("-"):
        raise BadRequest(
            f"Invalid instance name {name!r}: use 1 to 63 letters, digits and hyphens, "
            "starting with a letter and not ending with a hyphen")


def expand(profiles: list[tuple[dict[str, str], dict[str, dict[str, str]]]],
           config: Mapping[str, str], devices: Mapping[str, dict[str, str]]
           ) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Profiles apply in order, then the instance's own config and devices win."""
    exp_config: dict[str, str] = {}
    exp_devices: dict[str, dict[str, str]] = {}
    for p_config, p_devices in profiles:
        exp_config.update(p_config)
        exp_devices.update(p_devices)
    exp_config.update(config)
    exp_devices.update(devices)
    return exp_config, exp_devices


DEFAULT_POOL = "default"


def root_pool(expanded_devices: Mapping[str, Mapping[str, str]]) -> str:
    """The storage pool of an instance's root disk (`path: /`): its `pool` key, or the
    default pool when it names none or there is no root disk."""
    for dev in expanded_devices.values():
        if dev.get("type") == "disk" and dev.get("path") == "/":
            return dev.get("pool") or DEFAULT_POOL
    return DEFAULT_POOL


def root_pool_change(name: str, current: str, expanded_devices: Mapping[str, Mapping[str, str]]
                     ) -> str | None:
    """The refusal when a change would move instance `name` (whose root volume is on pool
    `current`) to another pool: LXD refuses changing the root pool in place, a move copies."""
    wanted = root_pool(expanded_devices)
    if wanted == current:
        return None
    return (f"Instance {name!r} is on pool {current!r}; move it with: mc move {name} "
            f"--storage {wanted}")


def exec_environment(requested: Mapping[str, str], config: Mapping[str, str], uid: int,
                     has_snap: bool = False) -> dict[str, str]:
    """As LXD: the request wins, then environment.* keys, then defaults for what is unset."""
    env = dict(requested)
    for key, value in config.items():
        if key.startswith("environment."):
            env.setdefault(key[len("environment."):], value)
    path = DEFAULT_PATH + (":/snap/bin" if has_snap else "")
    env.setdefault("PATH", path)
    env.setdefault("LANG", "C.UTF-8")
    if uid == 0:
        env.setdefault("HOME", "/root")
        env.setdefault("USER", "root")
    return env


def runtime_limits(config: Mapping[str, str], host_memory: int) -> dict[str, str]:
    """limits.* keys (already validated) -> the runtime's limits (see runtime/cglimits.py)."""
    from machined.config.validate import parse_allowance, parse_bool, parse_size

    limits: dict[str, str] = {}
    memory = config.get("limits.memory", "")
    if memory.endswith("%"):
        limits["memory"] = str(int(host_memory * float(memory[:-1]) / 100))
    elif memory:
        limits["memory"] = str(parse_size(memory))
    if memory and config.get("limits.memory.enforce") == "soft":
        limits["memory_enforce"] = "soft"
    swap = config.get("limits.memory.swap", "")
    if swap:
        try:
            if not parse_bool(swap):
                limits["memory_swap"] = "false"
        except ValueError:
            limits["memory_swap"] = str(parse_size(swap))
    cpu = config.get("limits.cpu", "")
    if cpu:
        limits["cpu_count" if cpu.isdigit() else "cpuset"] = cpu
    allowance = config.get("limits.cpu.allowance", "")
    if allowance:
        parsed = parse_allowance(allowance)
        limits["cpu_allowance"] = (f"{parsed}%" if isinstance(parsed, int)
                                   else f"{parsed[0]}/{parsed[1]}")
    for key, name in (("limits.cpu.priority", "cpu_priority"), ("limits.processes", "processes"),
                      ("limits.disk.priority", "disk_priority")):
        if config.get(key):
            limits[name] = str(int(config[key]))
    return limits


def resolve_in_rootfs(readlink: Callable[[str], str | None], path: str,
                      max_links: int = 40) -> str | None:
    """Resolve `path` as the container would see it, with `readlink(p)` answering for a path
    inside the rootfs (None: not a symlink). Pure: never touches the host filesystem, so a
    hostile link cannot point the lookup outside the rootfs."""
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        target = readlink("/" + "/".join([*resolved, part]))
        if target is None:
            resolved.append(part)
            continue
        links += 1
        if links > max_links:
            return None
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p] + parts
    return "/" + "/".join(resolved)


def describe_change(before: Any, after: Any) -> str:
    """What an instance update changed, for the log: config keys set or unset (names only:
    values may be secrets), devices, profiles, description, ephemeral. `before`/`after` are
    instance records (config, devices, profiles, description, ephemeral)."""
    parts = []
    changed = sorted(k for k in set(before.config) | set(after.config)
                     if before.config.get(k) != after.config.get(k))
    if changed:
        parts.append("config " + ", ".join(
            k if k in after.config else f"{k} (unset)" for k in changed))
    devices = sorted(k for k in set(before.devices) | set(after.devices)
                     if before.devices.get(k) != after.devices.get(k))
    if devices:
        parts.append("devices " + ", ".join(
            d if d in after.devices else f"{d} (removed)" for d in devices))
    if before.profiles != after.profiles:
        parts.append("profiles " + (", ".join(after.profiles) or "none"))
    for field in ("description", "ephemeral"):
        if getattr(before, field) != getattr(after, field):
            parts.append(field)
    return "; ".join(parts) or "no change"
