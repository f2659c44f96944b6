"""`mc list`: instances as a table (columns ns46tS by default), csv, json or yaml."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection
from typing import Any

import click

from cli.context import Env, format_option, pass_env
from cli.errors import CliError
from cli.output import format_bytes, format_time, render
from cli.params import REMOTES

DEFAULT_COLUMNS = "ns46tS"
Instance = dict[str, Any]


def addresses(inst: Instance, family: str) -> str:
    """One `addr (iface)` per line, global scope only, loopback skipped, sorted."""
    network = (inst.get("state") or {}).get("network") or {}
    found = []
    for iface, net in network.items():
        if iface == "lo":
            continue
        for addr in net.get("addresses") or []:
            if addr.get("family") == family and addr.get("scope") not in ("link", "local"):
                found.append(f"{addr.get('address')} ({iface})")
    return "\n".join(sorted(found))


def instance_type(inst: Instance) -> str:
    kind = str(inst.get("type") or "container").upper()
    return f"{kind} (EPHEMERAL)" if inst.get("ephemeral") else kind


def _state(inst: Instance) -> dict[str, Any]:
    return inst.get("state") or {}


def _state_value(inst: Instance, key: str) -> str:
    value = _state(inst).get(key)
    return "" if value in (None, 0, -1) else str(value)


def _memory(inst: Instance) -> str:
    usage = (_state(inst).get("memory") or {}).get("usage")
    return format_bytes(usage) if usage else ""


def _pool(inst: Instance) -> str:
    """The storage pool of the root disk (type disk, path /) in the expanded devices."""
    for dev in (inst.get("expanded_devices") or {}).values():
        if isinstance(dev, dict) and dev.get("type") == "disk" and dev.get("path") == "/":
            return str(dev.get("pool", ""))
    return ""


def _cpu(inst: Instance) -> str:
    usage = (_state(inst).get("cpu") or {}).get("usage")
    return f"{int(usage) // 1_000_000_000}s" if usage else ""


COLUMNS: dict[str, tuple[str, Callable[[Instance], str]]] = {
    "n": ("NAME", lambda i: str(i.get("name", ""))),
    "s": ("STATE", lambda i: str(i.get("status", "")).upper()),
    "4": ("IPV4", lambda i: addresses(i, "inet")),
    "6": ("IPV6", lambda i: addresses(i, "inet6")),
    "t": ("TYPE", instance_type),
    "S": ("SNAPSHOTS", lambda i: str(len(i.get("snapshots") or []))),
    "a": ("ARCHITECTURE", lambda i: str(i.get("architecture", ""))),
    "b": ("STORAGE POOL", _pool),
    "c": ("CREATED AT", lambda i: format_time(i.get("created_at"))),
    "l": ("LAST USED AT", lambda i: format_time(i.get("last_used_at"))),
    "d": ("DESCRIPTION", lambda i: str(i.get("description", ""))),
    "p": ("PID", lambda i: _state_value(i, "pid")),
    "N": ("PROCESSES", lambda i: _state_value(i, "processes")),
    "P": ("PROFILES", lambda i: "\n".join(i.get("profiles") or [])),
    "m": ("MEMORY USAGE", _memory),
    "u": ("CPU USAGE", _cpu),
    "f": ("BASE IMAGE", lambda i: (i.get("config") or {}).get("volatile.base_image", "")[:12]),
    "F": ("BASE IMAGE", lambda i: (i.get("config") or {}).get("volatile.base_image", "")),
}


def parse_columns(spec: str) -> list[tuple[str, Callable[[Instance], str]]]:
    """`ns46tS`, or comma-separated entries mixing shorthand and `[config:]key[:NAME[:width]]`."""
    columns = []
    entries = spec.split(",") if "," in spec or "." in spec or ":" in spec else list(spec)
    for entry in entries:
        if not entry:
            raise CliError(f'Empty column entry in "{spec}"')
        if entry in COLUMNS:
            columns.append(COLUMNS[entry])
            continue
        if len(entry) > 1 and all(c in COLUMNS for c in entry):
            columns.extend(COLUMNS[c] for c in entry)
            continue
        columns.append(_custom_column(entry))
    return columns


def _custom_column(entry: str) -> tuple[str, Callable[[Instance], str]]:
    parts = entry.split(":")
    if parts[0] in ("config", "devices"):
        parts = parts[1:]
    if not parts or not parts[0] or "." not in parts[0] and parts[0] not in ("user",):
        raise CliError(f'Unknown column "{entry}"')
    key = parts[0]
    name = parts[1] if len(parts) > 1 and parts[1] else key.upper()
    width = 0
    if len(parts) > 2:
        if not parts[2].isdigit():
            raise CliError(f'Invalid max width "{parts[2]}" in column "{entry}"')
        width = int(parts[2])

    def get(inst: Instance) -> str:
        value = str((inst.get("config") or {}).get(key, ""))
        return value[:width] if width else value

    return name, get


SHORT_KEYS = {
    "s.": "security.",
    "u.": "user.",
    "l.": "limits.",
    "b.": "boot.",
    "v.": "volatile.",
    "e.": "environment.",
}


def _matches(pattern: str, value: str) -> bool:
    if pattern == value:
        return True
    try:
        return re.fullmatch(pattern, value) is not None
    except re.error:
        return False


def _has_address(inst: Instance, family: str, wanted: str) -> bool:
    """lxc's ipv4=/ipv6= filters: one of the instance's addresses equals `wanted`, or lies in
    it when it is a subnet (10.1.2.0/24)."""
    try:
        subnet = ipaddress.ip_network(wanted, strict=False) if "/" in wanted else None
    except ValueError:
        return False
    for net in ((inst.get("state") or {}).get("network") or {}).values():
        for addr in net.get("addresses") or []:
            if addr.get("family") != family:
                continue
            text = str(addr.get("address", ""))
            if subnet is None:
                if text == wanted:
                    return True
                continue
            try:
                if ipaddress.ip_address(text) in subnet:
                    return True
            except ValueError:
                continue
    return False


def matches(inst: Instance, filters: list[str]) -> bool:
    """All filters must hold: a bare word is a name prefix (or regex), k=v matches config;
    status=, type=, architecture=, ipv4=, ipv6= take comma-separated values."""
    for f in filters:
        key, sep, value = f.partition("=")
        name = str(inst.get("name", ""))
        if not sep:
            if not (name.startswith(f) or _matches(f, name)):
                return False
            continue
        if key in ("status", "state"):
            wanted = [v.lower() for v in value.split(",")]
            if str(inst.get("status", "")).lower() not in wanted:
                return False
            continue
        if key in ("ipv4", "ipv6"):
            family = "inet" if key == "ipv4" else "inet6"
            if not any(_has_address(inst, family, v) for v in value.split(",")):
                return False
            continue
        if key in ("type", "architecture", "name", "description"):
            if not any(_matches(v, str(inst.get(key, ""))) for v in value.split(",")):
                return False
            continue
        for short, full in SHORT_KEYS.items():
            if key.startswith(short):
                key = full + key[len(short) :]
        config = inst.get("config") or {}
        if key not in config or not _matches(value, str(config[key])):
            return False
    return True


def split_args(
    args: tuple[str, ...], remotes: Collection[str] = REMOTES
) -> tuple[str | None, list[str]]:
    """`[remote:] [filter...]`: (the remote the first argument names or None, the filters)."""
    filters = list(args)
    if filters and ":" in filters[0] and "=" not in filters[0].partition(":")[0]:
        remote, _, rest = filters[0].partition(":")
        if remote not in remotes:
            raise CliError(f'The remote "{remote}" doesn\'t exist')
        return remote, ([rest] if rest else []) + filters[1:]
    return None, filters


def remote_filters(env: Env, args: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """split_args with this user's remotes (their config is read only when one is named)."""
    if args and ":" in args[0]:
        return split_args(args, env.config().names())
    return split_args(args)


def build_rows(
    instances: list[Instance], columns: list[tuple[str, Callable[[Instance], str]]]
) -> list[list[str]]:
    return [[get(i) for _, get in columns] for i in instances]


@click.command("list")
@click.argument("args", nargs=-1, metavar="[<remote>:] [<filter>...]")
@click.option(
    "-c",
    "--columns",
    default=DEFAULT_COLUMNS,
    show_default=True,
    help="Columns: n s 4 6 t S a b c l d p N P m u f F, or config keys.",
)
@format_option
@click.option("--fast", is_flag=True, help="Same as -c nsacPt.")
@pass_env
def list_cmd(env: Env, args: tuple[str, ...], columns: str, fmt: str, fast: bool) -> None:
    """List instances.

    Filters: a bare word matches name prefixes; key=value matches config keys
    (s.privileged=true, u.tag=x) or status=, type=, architecture=, ipv4=, ipv6= (an
    address or a subnet: ipv4=10.1.2.0/24).
    """
    remote, filters = remote_filters(env, args)
    cols = parse_columns("nsacPt" if fast else columns)
    instances = env.client(remote).get("/1.0/instances?recursion=2") or []
    shown = sorted((i for i in instances if matches(i, filters)), key=lambda i: i.get("name", ""))
    text = render(fmt, [c[0] for c in cols], build_rows(shown, cols), shown)
    click.echo(text, nl=False)
