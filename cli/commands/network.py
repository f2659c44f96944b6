"""`mc network ...`: managed bridges and the instances' nics on them, as `lxc network`.

    mc network create mcbr1 ipv4.address=10.123.45.1/24 ipv4.nat=false ipv6.address=none
    mc network attach mcbr1 c1 eth1 ; mc network list-leases mcbr1 ; mc network delete mcbr1
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from cli.commands.device import Target, add_device, note_next_start, parse_settings
from cli.commands.info import address_lines
from cli.context import Env, format_option, pass_env
from cli.errors import CliError
from cli.lazy import LazyGroup
from cli.output import format_bytes, parse_format, printable, render, render_yaml
from cli.params import parse_key_values, url_part
from cli.yamledit import (
    edit_object,
    get_value,
    parse_writable_yaml,
    set_values,
    sorted_map,
    unset_value,
    writable,
)

if TYPE_CHECKING:
    from cli.client import Client

Network = dict[str, Any]
LIST_HEADER = ["NAME", "TYPE", "MANAGED", "IPV4", "IPV6", "DESCRIPTION", "USED BY", "STATE"]
LEASES_HEADER = ["HOSTNAME", "MAC ADDRESS", "IP ADDRESS", "TYPE"]
PROPERTIES = ("description", "name", "type", "managed", "status")
EDIT_HELP = """\
### This is a YAML representation of a network.
### Any line starting with a '#' will be ignored.
###
### Only the config and the description can be changed, e.g.
### config:
###   ipv4.address: 10.62.42.1/24
###   ipv4.nat: "false"
###   ipv6.address: none
###
"""


def network_url(name: str) -> str:
    return f"/1.0/networks/{url_part(name)}"


def _target(env: Env, arg: str) -> tuple[Client, str]:
    return env.target(arg, "network")


def network_row(net: Network) -> list[str]:
    config = net.get("config") or {}
    return [
        str(net.get("name", "")),
        str(net.get("type", "")),
        "YES" if net.get("managed") else "NO",
        str(config.get("ipv4.address", "")),
        str(config.get("ipv6.address", "")),
        str(net.get("description") or ""),
        str(len(net.get("used_by") or [])),
        str(net.get("status") or "").upper(),
    ]


def lease_row(lease: dict[str, Any]) -> list[str]:
    return [str(lease.get("hostname", "")), str(lease.get("hwaddr", "")),
            str(lease.get("address", "")), str(lease.get("type", "")).upper()]


def create_request(name: str, settings: tuple[str, ...], kind: str,
                   description: str | None, document: Network | None = None) -> Network:
    """The POST /1.0/networks body: a YAML document's config and description (network
    create < file), then the key=value arguments and --description over them."""
    doc = document or {}
    body: Network = {"name": name, "type": kind,
                     "config": {**doc.get("config", {}), **parse_key_values(settings)}}
    if description is not None:
        body["description"] = description
    elif "description" in doc:
        body["description"] = doc["description"]
    return body


def network_yaml(net: Network) -> str:
    """`network show` (the fields of LXD's network object)."""
    return render_yaml({
        "name": net.get("name", ""),
        "description": net.get("description") or "",
        "type": net.get("type", ""),
        "managed": bool(net.get("managed")),
        "status": net.get("status") or "",
        "config": sorted_map(net.get("config") or {}),
        "used_by": net.get("used_by") or [],
        "locations": net.get("locations") or ["none"],
    })


def instance_nic(net: Network, ifname: str | None = None) -> dict[str, str]:
    """The nic device that puts an instance on network `net` (as lxc: a managed network by
    name; an unmanaged bridge as bridged, any other host interface as macvlan parent)."""
    name = str(net.get("name", ""))
    if net.get("managed"):
        nic = {"type": "nic", "network": name}
    else:
        kind = "bridged" if net.get("type") == "bridge" else "macvlan"
        nic = {"type": "nic", "nictype": kind, "parent": name}
    if ifname:
        nic["name"] = ifname
    return nic


def nic_matches(dev: dict[str, str], network: str) -> bool:
    return dev.get("type") == "nic" and network in (dev.get("network"), dev.get("parent"))


def device_to_detach(obj: dict[str, Any], network: str, device: str | None,
                     owner: str) -> str:
    """The name of the local nic on `network` that `detach` removes (a given `device` must
    be one)."""
    devices = obj.get("devices") or {}
    if device is not None:
        if device not in devices:
            raise CliError(f"Device {device!r} doesn't exist on {owner}")
        if not nic_matches(devices[device], network):
            raise CliError(f"Device {device!r} of {owner} is not a nic on network {network}")
        return device
    found = sorted(n for n, d in devices.items() if nic_matches(d, network))
    if len(found) > 1:
        raise CliError(f"{owner} has several nics on network {network} "
                       f"({', '.join(found)}): name the one to detach")
    if found:
        return found[0]
    inherited = sorted(n for n, d in (obj.get("expanded_devices") or {}).items()
                       if nic_matches(d, network))
    if inherited:
        raise CliError(f"The nic {inherited[0]!r} of {owner} on network {network} comes from "
                       "a profile: detach it from the profile (mc network detach-profile) or "
                       f"mask it (mc config device add {owner} {inherited[0]} none)")
    raise CliError(f"{owner} has no nic on network {network}")


def format_network_state(name: str, state: dict[str, Any]) -> str:
    """`network info` (the /1.0/networks/<n>/state object), laid out as lxc does."""
    lines = [f"Name: {printable(name)}"]
    for label, key in (("MAC address", "hwaddr"), ("MTU", "mtu"), ("State", "state"),
                       ("Type", "type")):
        if state.get(key) not in (None, ""):
            lines.append(f"{label}: {printable(str(state[key]))}")
    addresses = state.get("addresses") or []
    if addresses:
        lines += ["", "IP addresses:", *address_lines(addresses, "  ")]
    counters = state.get("counters") or {}
    if counters:
        lines += ["", "Network usage:"]
        for label, key in (("Bytes received", "bytes_received"), ("Bytes sent", "bytes_sent"),
                           ("Packets received", "packets_received"),
                           ("Packets sent", "packets_sent")):
            value = int(counters.get(key) or 0)
            lines.append(f"  {label}: {format_bytes(value) if 'Bytes' in label else value}")
    bridge = state.get("bridge") or {}
    if bridge:
        lines += ["", "Bridge:"]
        for label, key in (("ID", "id"), ("STP", "stp"), ("Forward delay", "forward_delay"),
                           ("Default VLAN ID", "vlan_default"),
                           ("VLAN filtering", "vlan_filtering")):
            if key in bridge:
                value = bridge[key]
                shown = str(value).lower() if isinstance(value, bool) else str(value)
                lines.append(f"  {label}: {printable(shown)}")
        uppers = ", ".join(printable(str(u)) for u in bridge.get("upper_devices") or [])
        lines.append(f"  Upper devices: {uppers}")
    return "\n".join(lines) + "\n"


@click.group("network", cls=LazyGroup,
             aliases={"ls": "list", "mv": "rename", "rm": "delete"})
def network() -> None:
    """Manage and attach instances to networks.

    \b
      mc network create mcbr1 ipv4.address=10.123.45.1/24 ipv4.nat=false ipv6.address=none
      mc network set mcbr1 ipv4.dhcp.ranges 10.123.45.50-10.123.45.99
      mc launch busybox c1 --network mcbr1 ; mc network attach mcbr1 c2 eth1
      mc network list-leases mcbr1 ; mc network info mcbr1

    A managed network is a bridge machined makes, with DHCP and DNS (dnsmasq) and, with
    ipv4.nat=true, NAT to the outside. Instances join it with a nic device
    (network=<name>); `list` also shows the host's own interfaces (unmanaged).
    """


@network.command("list")
@click.argument("remote", required=False, metavar="[<remote>:]")
@format_option
@pass_env
def list_cmd(env: Env, remote: str | None, fmt: str) -> None:
    """List networks (managed ones and the host's interfaces)."""
    where = None
    if remote is not None:
        where, rest = env.split(remote)
        if rest or ":" not in remote:
            raise click.UsageError(f'Unexpected argument "{remote}": expected [<remote>:]')
    parse_format(fmt)  # a usage error before the daemon is asked anything
    nets = sorted(env.client(where).get("/1.0/networks?recursion=1") or [],
                  key=lambda n: str(n.get("name")))
    click.echo(render(fmt, LIST_HEADER, [network_row(n) for n in nets], nets), nl=False)


@network.command("create", short_help="Create a managed network.")
@click.argument("name", metavar="[<remote>:]<network>")
@click.argument("settings", nargs=-1, metavar="[<key>=<value>...]")
@click.option("-t", "--type", "kind", default="bridge", show_default=True,
              help="Network type (bridge).")
@click.option("--description", help="Network description.")
@pass_env
def create(env: Env, name: str, settings: tuple[str, ...], kind: str,
           description: str | None) -> None:
    """Create a managed network; YAML on stdin (not a terminal) may give its config.

    \b
      mc network create mcbr1 ipv4.address=10.123.45.1/24 ipv4.nat=false ipv6.address=none
      mc network create mcbr2            (ipv4.address=auto ipv6.address=auto: random
                                          free subnets, NAT on, as lxc)
    Keys: see `docs/config.md` (Network keys).
    """
    client, name = _target(env, name)
    document = None if sys.stdin.isatty() else parse_writable_yaml(sys.stdin.read())
    client.post("/1.0/networks", create_request(name, settings, kind, description, document))
    env.say(f"Network {name} created")


@network.command("delete")
@click.argument("names", nargs=-1, required=True, metavar="[<remote>:]<network>...")
@pass_env
def delete(env: Env, names: tuple[str, ...]) -> None:
    """Delete managed networks (no instance or profile may use them)."""
    for arg in names:
        client, name = _target(env, arg)
        client.delete(network_url(name))
        env.say(f"Network {name} deleted")


@network.command("rename")
@click.argument("old", metavar="[<remote>:]<network>")
@click.argument("new", metavar="<new-name>")
@pass_env
def rename(env: Env, old: str, new: str) -> None:
    """Rename a managed network (not while it is used)."""
    client, old = _target(env, old)
    client.post(network_url(old), {"name": new})
    env.say(f"Network {old} renamed to {new}")


@network.command("show")
@click.argument("name", metavar="[<remote>:]<network>")
@pass_env
def show(env: Env, name: str) -> None:
    """Show a network as YAML."""
    client, name = _target(env, name)
    click.echo(network_yaml(client.get(network_url(name)) or {}), nl=False)


@network.command("info")
@click.argument("name", metavar="[<remote>:]<network>")
@pass_env
def info(env: Env, name: str) -> None:
    """Show a network's state: addresses, traffic counters, bridge ports."""
    client, name = _target(env, name)
    state = client.get(f"{network_url(name)}/state") or {}
    click.echo(format_network_state(name, state), nl=False)


@network.command("get")
@click.argument("name", metavar="[<remote>:]<network>")
@click.argument("key", metavar="<key>")
@click.option("-p", "--property", "prop", is_flag=True, help="Get a property (description...).")
@pass_env
def get(env: Env, name: str, key: str, prop: bool) -> None:
    """Print a network config key (empty if unset), or a property with -p."""
    client, name = _target(env, name)
    net = client.get(network_url(name)) or {}
    click.echo(get_value(net, key, prop, PROPERTIES, "network"))


def _managed(client: Client, name: str) -> dict[str, Any]:
    """The network, refused as lxc does when it is a host interface machined does not
    manage (the daemon would only say it does not know it)."""
    net = client.get(network_url(name)) or {}
    if net.get("managed") is False:
        raise CliError(f"Only managed networks can be modified: {name} is a host interface "
                       f"({net.get('type') or 'unknown'})")
    return dict(net)


@network.command("set")
@click.argument("name", metavar="[<remote>:]<network>")
@click.argument("settings", nargs=-1, required=True, metavar="<key>=<value>...")
@click.option("-p", "--property", "prop", is_flag=True, help="Set a property (description).")
@pass_env
def set_cmd(env: Env, name: str, settings: tuple[str, ...], prop: bool) -> None:
    """Set network config keys (`key=value...` or `key value`)."""
    client, name = _target(env, name)
    values = parse_settings(settings)
    body = writable(_managed(client, name))
    set_values(body, values, prop, "network")
    client.put(network_url(name), body)


@network.command("unset")
@click.argument("name", metavar="[<remote>:]<network>")
@click.argument("key", metavar="<key>")
@click.option("-p", "--property", "prop", is_flag=True, help="Unset a property (description).")
@pass_env
def unset(env: Env, name: str, key: str, prop: bool) -> None:
    """Unset a network config key (its default applies again), or a property with -p."""
    client, name = _target(env, name)
    body = writable(_managed(client, name))
    unset_value(body, key, prop, "network")
    client.put(network_url(name), body)


@network.command("edit", short_help="Edit a network as YAML.")
@click.argument("name", metavar="[<remote>:]<network>")
@pass_env
def edit(env: Env, name: str) -> None:
    """Edit a network as YAML: in $EDITOR on a terminal, else read from stdin."""
    client, name = _target(env, name)
    edit_object(client, network_url(name), network_yaml, EDIT_HELP, "the network")


@network.command("list-leases")
@click.argument("name", metavar="[<remote>:]<network>")
@format_option
@pass_env
def list_leases(env: Env, name: str, fmt: str) -> None:
    """List a managed network's DHCP leases and static reservations."""
    parse_format(fmt)
    client, name = _target(env, name)
    leases = client.get(f"{network_url(name)}/leases") or []
    click.echo(render(fmt, LEASES_HEADER, [lease_row(x) for x in leases], leases), nl=False)


def _owner(env: Env, kind: str, network_arg: str, owner_arg: str
           ) -> tuple[Client, str, Target]:
    """The network's client and name, and the instance or profile on the same remote."""
    remote, network_name = env.split(network_arg)
    if not network_name:
        raise CliError(f'Missing network name in "{network_arg}"')
    owner_remote, owner = env.split(owner_arg) if ":" in owner_arg else (remote, owner_arg)
    if owner_remote != remote:
        raise CliError(f"The network and the {kind} must be on the same remote "
                       f'("{remote}" and "{owner_remote}")')
    if not owner:
        raise CliError(f'Missing {kind} name in "{owner_arg}"')
    return env.client(remote), network_name, Target(kind, owner, remote)


def _attach(env: Env, kind: str, network_arg: str, owner_arg: str, device: str | None,
            ifname: str | None) -> None:
    client, name, target = _owner(env, kind, network_arg, owner_arg)
    nic = instance_nic(client.get(network_url(name)) or {}, ifname)
    dev = device or name  # as lxc: the device is named after the network
    obj = target.load(env)
    devices = add_device(dict(obj.get("devices") or {}), dev, "nic",
                         tuple(f"{k}={v}" for k, v in nic.items() if k != "type"), target.name)
    target.save(env, obj, devices)
    env.say(f"Device {dev} added to {target.name}")
    note_next_start(target, obj, ["nic"])


def _detach(env: Env, kind: str, network_arg: str, owner_arg: str,
            device: str | None) -> None:
    _client, name, target = _owner(env, kind, network_arg, owner_arg)
    obj = target.load(env)
    dev = device_to_detach(obj, name, device, target.name)
    target.save(env, obj, {k: v for k, v in (obj.get("devices") or {}).items() if k != dev})
    env.say(f"Device {dev} removed from {target.name}")
    note_next_start(target, obj, ["nic"], "removal")


@network.command("attach", short_help="Attach a network to an instance (a nic).")
@click.argument("network_arg", metavar="[<remote>:]<network>")
@click.argument("instance", metavar="<instance>")
@click.argument("device", required=False, metavar="[<device>]")
@click.argument("ifname", required=False, metavar="[<interface>]")
@pass_env
def attach(env: Env, network_arg: str, instance: str, device: str | None,
           ifname: str | None) -> None:
    """Add a nic on the network to an instance: device name = the network's unless given,
    interface name inside = machined's choice (eth0, eth1...) unless given."""
    _attach(env, "instance", network_arg, instance, device, ifname)


@network.command("detach", short_help="Detach a network from an instance.")
@click.argument("network_arg", metavar="[<remote>:]<network>")
@click.argument("instance", metavar="<instance>")
@click.argument("device", required=False, metavar="[<device>]")
@pass_env
def detach(env: Env, network_arg: str, instance: str, device: str | None) -> None:
    """Remove the instance's nic on the network (name it if there are several)."""
    _detach(env, "instance", network_arg, instance, device)


@network.command("attach-profile", short_help="Attach a network to a profile (a nic).")
@click.argument("network_arg", metavar="[<remote>:]<network>")
@click.argument("profile", metavar="<profile>")
@click.argument("device", required=False, metavar="[<device>]")
@click.argument("ifname", required=False, metavar="[<interface>]")
@pass_env
def attach_profile(env: Env, network_arg: str, profile: str, device: str | None,
                   ifname: str | None) -> None:
    """Add a nic on the network to a profile (device name = the network's unless given)."""
    _attach(env, "profile", network_arg, profile, device, ifname)


@network.command("detach-profile", short_help="Detach a network from a profile.")
@click.argument("network_arg", metavar="[<remote>:]<network>")
@click.argument("profile", metavar="<profile>")
@click.argument("device", required=False, metavar="[<device>]")
@pass_env
def detach_profile(env: Env, network_arg: str, profile: str, device: str | None) -> None:
    """Remove the profile's nic on the network (name it if there are several)."""
    _detach(env, "profile", network_arg, profile, device)
