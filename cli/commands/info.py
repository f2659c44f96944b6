"""`mc info [NAME] [--show-log]`: instance details like `lxc info`, or the server's."""

from __future__ import annotations

import sys
from typing import Any

import click

from cli.client import Client
from cli.context import Env, pass_env
from cli.errors import ApiError
from cli.output import (
    format_bytes,
    format_time,
    format_upload_date,
    printable,
    render_table,
    render_yaml,
)
from cli.params import url_part


def format_info(inst: dict[str, Any], state: dict[str, Any],
                warnings: list[dict[str, Any]] | None = None) -> str:
    """The text of `mc info <instance>` (pure); `warnings`: the server's warnings about
    this instance."""
    lines = [f"Name: {inst.get('name', '')}"]
    if inst.get("description"):
        lines.append(f"Description: {inst['description']}")
    lines.append(f"Status: {str(state.get('status') or inst.get('status', '')).upper()}")
    kind = str(inst.get("type") or "container")
    lines.append(f"Type: {kind} (ephemeral)" if inst.get("ephemeral") else f"Type: {kind}")
    lines.append(f"Architecture: {inst.get('architecture', '')}")
    if (state.get("pid") or 0) > 0:
        lines.append(f"PID: {state['pid']}")
    if created := format_time(inst.get("created_at")):
        lines.append(f"Created: {created}")
    if used := format_time(inst.get("last_used_at")):
        lines.append(f"Last Used: {used}")
    resources = _resources(state)
    if resources:
        lines += ["", "Resources:", *resources]
    limits = _limits(inst)
    if limits:
        lines += ["", "Limits:", *limits]
    snapshots = inst.get("snapshots") or []
    if snapshots:
        rows = [
            [
                str(s.get("name", "")).rpartition("/")[2],
                format_time(s.get("created_at")),
                format_time(s.get("expires_at")),
                "YES" if s.get("stateful") else "NO",
            ]
            for s in snapshots
        ]
        table = render_table(["NAME", "TAKEN AT", "EXPIRES AT", "STATEFUL"], rows)
        lines += ["", "Snapshots:", table.rstrip("\n")]
    if warnings:
        lines += ["", "Warnings:", *(_warning_line(w) for w in warnings)]
    return "\n".join(lines) + "\n"


def _warning_line(w: dict[str, Any]) -> str:
    """`  instance-autostart-failure (new, 3 times, last Jan 2, 2006 at 3:04pm (UTC)): <msg>`"""
    count = w.get("count") or 1
    times = "once" if count == 1 else f"{count} times"
    when = format_upload_date(w.get("last_seen_at"))
    text = (f"{w.get('type', '')} ({w.get('status', '')}, {times}, last {when}): "
            f"{w.get('last_message', '')}")
    return "  " + printable(text).replace("\n", " ")


def instance_warnings(client: Client, name: str) -> list[dict[str, Any]]:
    """The server's warnings about instance `name` (none from a server without them)."""
    try:
        found = client.get("/1.0/warnings?recursion=1") or []
    except ApiError:
        return []
    url = f"/1.0/instances/{name}"
    return [w for w in found if isinstance(w, dict) and w.get("entity_url") == url]


def _resources(state: dict[str, Any]) -> list[str]:
    if (state.get("pid") or 0) <= 0 and not state.get("processes"):
        return []
    out = [f"  Processes: {state.get('processes', 0)}"]
    cpu = (state.get("cpu") or {}).get("usage")
    if cpu is not None:
        out += ["  CPU usage:", f"    CPU usage (in seconds): {int(cpu) // 1_000_000_000}"]
    memory = state.get("memory") or {}
    if memory.get("usage"):
        out += ["  Memory usage:", f"    Memory (current): {format_bytes(memory['usage'])}"]
        if memory.get("usage_peak"):
            out.append(f"    Memory (peak): {format_bytes(memory['usage_peak'])}")
        if memory.get("total"):
            out.append(f"    Memory (limit): {format_bytes(memory['total'])}")
        if memory.get("swap_usage"):
            out.append(f"    Swap (current): {format_bytes(memory['swap_usage'])}")
    network = state.get("network") or {}
    if network:
        out.append("  Network usage:")
        for iface, net in sorted(network.items()):
            out.append(f"    {printable(iface)}:")  # the container names its interfaces
            out += _iface(net)
    return out


def _limits(inst: dict[str, Any]) -> list[str]:
    """The limits.* keys in effect (profiles applied)."""
    config = inst.get("expanded_config") or inst.get("config") or {}
    return [f"  {k}: {v}" for k, v in sorted(config.items()) if k.startswith("limits.") and v]


def _iface(net: dict[str, Any]) -> list[str]:
    """One interface of `Network usage:` (lxc's layout: counters, then IP addresses)."""
    out = []
    for label, key in (
        ("Type", "type"),
        ("State", "state"),
        ("Host interface", "host_name"),
        ("MAC address", "hwaddr"),
        ("MTU", "mtu"),
    ):
        if net.get(key):
            value = str(net[key]).upper() if key == "state" else str(net[key])
            out.append(f"      {label}: {printable(value)}")
    counters = net.get("counters") or {}
    for label, key in (
        ("Bytes received", "bytes_received"),
        ("Bytes sent", "bytes_sent"),
        ("Packets received", "packets_received"),
        ("Packets sent", "packets_sent"),
    ):
        if key in counters:
            value = counters[key]
            out.append(f"      {label}: {format_bytes(value) if 'Bytes' in label else value}")
    addresses = net.get("addresses") or []
    if addresses:
        out.append("      IP addresses:")
        out += address_lines(addresses, "        ")
    return out


def address_lines(addresses: list[dict[str, Any]], indent: str) -> list[str]:
    """`inet:  10.1.2.3/24 (global)`, `inet6: fd42::5/64 (global)`, one per address."""
    out = []
    for a in addresses:
        mask = f"/{a['netmask']}" if a.get("netmask") not in (None, "") else ""
        family = f"{a.get('family')}:"
        text = f"{family:<6} {a.get('address')}{mask} ({a.get('scope')})"
        out.append(indent + printable(text))
    return out


def console_log(client: Client, name: str) -> bytes:
    resp = client.raw("GET", f"/1.0/instances/{url_part(name)}/console")
    if resp.status >= 400:
        from cli.client import error_from

        raise error_from(resp)
    return resp.body


@click.command("info")
@click.argument("name", required=False, metavar="[<remote>:][<instance>]")
@click.option("--show-log", is_flag=True, help="Show the instance's console log.")
@pass_env
def info(env: Env, name: str | None, show_log: bool) -> None:
    """Show instance or server information."""
    if not name or name.endswith(":"):
        remote = env.split(name)[0] if name else None
        click.echo(render_yaml(env.client(remote).get("/1.0")), nl=False)
        return
    client, inst_name = env.target(name)
    base = f"/1.0/instances/{url_part(inst_name)}"
    inst = client.get(base) or {}
    state = client.get(f"{base}/state") or {}
    snaps = inst.get("snapshots")
    if not isinstance(snaps, list) or not all(isinstance(x, dict) for x in snaps):
        try:
            inst["snapshots"] = client.get(f"{base}/snapshots?recursion=1") or []
        except ApiError:  # snapshots are optional in the daemon
            inst["snapshots"] = []
    click.echo(format_info(inst, state, instance_warnings(client, inst_name)), nl=False)
    if show_log:
        click.echo("\nLog:\n")
        sys.stdout.flush()
        sys.stdout.buffer.write(console_log(client, inst_name))
        sys.stdout.flush()
