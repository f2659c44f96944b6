"""Instance nics on the host side: what to make (pure planning) and making it (pyroute2).

A bridged nic is a veth pair: the host side (`veth<8 hex>`, or the nic's `host_name`) joins
the bridge and comes up; the peer, made under a temporary name `mcp<8 hex>` with the nic's
MAC, is moved into the container's network namespace and renamed by the runtime
(LaunchSpec.nics). A macvlan nic is made on its parent under a temporary name and moved the
same way. While on the host every interface made carries the link tag
"<tag> nic <instance>/<device>" (IFLA_IFALIAS), so a failed start, a stop or the next daemon
start deletes exactly ours: the machine is shared with other daemons and the host's own
interfaces.

The netlink functions block: the daemon runs them in a worker thread (pyroute2's IPRoute
drives its own event loop, which cannot run on the daemon's).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from machined.errors import BadRequest, Conflict

MAC_PREFIX = "00:16:3e"  # Xensource's OUI, as LXD uses for instance nics
NIC_VOLATILE = ("hwaddr", "host_name", "name")  # volatile.<device>.<key> kept per nic
SUPPORTED = ("bridged", "macvlan")
_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,14}$")

Rand = Callable[[int], bytes]
Devices = Mapping[str, Mapping[str, str]]


# ---------------------------------------------------------------- planning (pure)


@dataclass(frozen=True)
class NicPlan:
    """One nic of a start: what the daemon makes on the host and the runtime moves in."""

    device: str          # device name (eth0, net1, ...)
    kind: str            # "bridged" | "macvlan"
    parent: str          # the bridge, or the macvlan's parent interface
    network: str | None  # the managed network, when the bridge is one
    name: str            # interface name inside the container
    hwaddr: str
    peer: str            # temporary host name of the interface that moves in
    host_name: str       # host side of a veth pair ("" for macvlan)
    mtu: int | None      # None: the parent's

    def alias(self, tag: str, instance: str) -> str:
        return f"{tag} nic {instance}/{self.device}"

    def spec(self, tag: str, instance: str) -> dict[str, str]:
        """Its LaunchSpec.nics entry; the alias is restored when a reboot from inside
        brings the interface back to the host for a moment."""
        return {"device": self.device, "name": self.name, "host_peer": self.peer,
                "alias": self.alias(tag, instance), "hwaddr": self.hwaddr}


def nic_devices(devices: Devices) -> list[tuple[str, Mapping[str, str]]]:
    """The nic devices of expanded devices, in device-name order (the order of eth0, eth1...
    and of their creation)."""
    return [(name, dev) for name, dev in sorted(devices.items()) if dev.get("type") == "nic"]


def nictype(dev: Mapping[str, str]) -> str:
    return "bridged" if dev.get("network") else dev.get("nictype", "")


def managed_network(dev: Mapping[str, str], managed: Collection[str]) -> str | None:
    """The managed network a nic is on: `network=`, or (as LXD) `nictype=bridged` with a
    `parent` that is a managed network's bridge."""
    if dev.get("network"):
        return dev["network"]
    if dev.get("nictype") == "bridged" and dev.get("parent") in managed:
        return dev["parent"]
    return None


def random_mac(taken: Collection[str] = (), rand: Rand = os.urandom) -> str:
    """A MAC under LXD's prefix 00:16:3e not in `taken` (lowercase)."""
    taken = {mac.lower() for mac in taken}
    while True:
        mac = MAC_PREFIX + "".join(f":{b:02x}" for b in rand(3))
        if mac not in taken:
            return mac


def random_ifname(prefix: str, taken: Collection[str] = (), rand: Rand = os.urandom) -> str:
    """`<prefix><8 hex>` (veth..., mcp...): 11 characters, within IFNAMSIZ."""
    while True:
        name = prefix + rand(4).hex()
        if name not in taken:
            return name


def inside_names(nics: list[tuple[str, Mapping[str, str]]],
                 volatile: Mapping[str, str]) -> dict[str, str]:
    """device -> interface name inside: the nic's `name`, else the name it got at an earlier
    start (volatile.<dev>.name) while no other nic claims it, else the first free ethN in
    device-name order (LXD)."""
    out = {device: dev["name"] for device, dev in nics if dev.get("name")}
    used = set(out.values())
    for device, _dev in nics:
        previous = volatile.get(f"volatile.{device}.name", "")
        if device not in out and _IFNAME.match(previous) and previous not in used:
            out[device] = previous
            used.add(previous)
    number = 0
    for device, _dev in nics:
        if device in out:
            continue
        while f"eth{number}" in used:
            number += 1
        out[device] = f"eth{number}"
        used.add(out[device])
    return out


def plan_nics(nics: list[tuple[str, Mapping[str, str]]], volatile: Mapping[str, str],
              parents: Mapping[str, tuple[str, str | None]], taken_macs: Collection[str],
              rand: Rand = os.urandom) -> list[NicPlan]:
    """The nics of one start. `parents`: device -> (host interface it attaches to, managed
    network or None). MACs: the nic's `hwaddr`, else the one it got before
    (volatile.<dev>.hwaddr), else a new one not in `taken_macs`."""
    names = inside_names(nics, volatile)
    taken = {m.lower() for m in taken_macs}
    ifnames = {dev["host_name"] for _, dev in nics if dev.get("host_name")}
    plans = []
    for device, dev in nics:
        mac = (dev.get("hwaddr") or volatile.get(f"volatile.{device}.hwaddr", "")).lower()
        if not _MAC.match(mac):
            mac = random_mac(taken, rand)
        taken.add(mac)
        kind = nictype(dev)
        parent, network = parents[device]
        host_name = ""
        if kind == "bridged":
            host_name = dev.get("host_name") or random_ifname("veth", ifnames, rand)
        peer = random_ifname("mcp", ifnames, rand)
        ifnames |= {host_name, peer}
        plans.append(NicPlan(
            device=device, kind=kind, parent=parent, network=network, name=names[device],
            hwaddr=mac, peer=peer, host_name=host_name,
            mtu=int(dev["mtu"]) if dev.get("mtu") else None))
    return plans


def volatile_updates(plans: list[NicPlan], devices: Devices,
                     volatile: Mapping[str, str]) -> dict[str, str | None]:
    """The volatile keys to store for a start (None removes): volatile.<dev>.hwaddr when the
    nic has no `hwaddr` (kept forever), .name when it has no `name`, .host_name always; the
    nic keys of devices that are no longer nics go (LXD)."""
    want: dict[str, str | None] = {}
    for plan in plans:
        dev = devices[plan.device]
        prefix = f"volatile.{plan.device}."
        want[prefix + "hwaddr"] = None if dev.get("hwaddr") else plan.hwaddr
        want[prefix + "name"] = None if dev.get("name") else plan.name
        want[prefix + "host_name"] = plan.host_name or plan.peer
    nics = {plan.device for plan in plans}
    for key in volatile:
        device, _, last = key.removeprefix("volatile.").rpartition(".")
        if key.startswith("volatile.") and last in NIC_VOLATILE and device and device not in nics:
            want[key] = None
    return {k: v for k, v in want.items() if volatile.get(k) != v}


def parse_alias(alias: str, tag: str) -> tuple[str, str] | None:
    """(instance, device) of a nic link tagged `tag`, else None."""
    parts = alias.split(" ")
    if len(parts) != 3 or parts[0] != tag or parts[1] != "nic" or "/" not in parts[2]:
        return None
    instance, _, device = parts[2].partition("/")
    return instance, device


# ---------------------------------------------------------------- netlink (blocking)


def create_links(plans: list[NicPlan], tag: str, instance: str) -> None:
    """Make every nic of `plans` on the host, after deleting what an earlier start of the
    instance may have left; on any failure delete what was made (all of the instance's
    tagged links) and raise BadRequest/Conflict naming the device."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        _delete(ipr, tag, lambda owner: owner == instance)
        try:
            for plan in plans:
                _create(ipr, plan, plan.alias(tag, instance))
        except BaseException:
            _delete(ipr, tag, lambda owner: owner == instance)
            raise


def delete_links(tag: str, owner: Callable[[str], bool]) -> list[str]:
    """Delete the nic links tagged `tag` whose instance `owner(instance)` accepts; returns
    their names. A veth host side takes its peer (in a container or not) with it."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return _delete(ipr, tag, owner)


def _tagged(ipr: Any, tag: str) -> Iterator[tuple[int, str, tuple[str, str]]]:
    for link in ipr.get_links():
        owner = parse_alias(link.get_attr("IFLA_IFALIAS") or "", tag)
        if owner is not None:
            yield link["index"], link.get_attr("IFLA_IFNAME"), owner


def _delete(ipr: Any, tag: str, owner: Callable[[str], bool]) -> list[str]:
    from pyroute2.netlink.exceptions import NetlinkError

    deleted = []
    for index, ifname, (instance, _device) in list(_tagged(ipr, tag)):
        if not owner(instance):
            continue
        try:
            ipr.link("del", index=index)
            deleted.append(ifname)
        except NetlinkError as e:
            if e.code != errno.ENODEV:  # gone meanwhile (its peer's namespace went first)
                raise
    return deleted


def _link(ipr: Any, ifname: str) -> Any:
    found = ipr.link_lookup(ifname=ifname)
    return next(iter(ipr.get_links(found[0])), None) if found else None


def _kind(link: Any) -> str:
    info = link.get_attr("IFLA_LINKINFO")
    return (info.get_attr("IFLA_INFO_KIND") if info is not None else None) or ""


def _create(ipr: Any, plan: NicPlan, alias: str) -> None:
    from pyroute2.netlink.exceptions import NetlinkError

    what = f"Device {plan.device!r}"
    parent = _link(ipr, plan.parent)
    if plan.kind == "bridged":
        if parent is None:
            raise BadRequest(f"{what}: bridge {plan.parent!r} does not exist on the host")
        if _kind(parent) != "bridge":
            raise BadRequest(f"{what}: host interface {plan.parent!r} is not a bridge "
                             "(nictype=macvlan attaches to any interface)")
    elif parent is None:
        raise BadRequest(f"{what}: parent interface {plan.parent!r} does not exist on the host")
    mtu = plan.mtu or parent.get_attr("IFLA_MTU")
    made = plan.host_name if plan.kind == "bridged" else plan.peer
    try:
        if plan.kind == "bridged":
            ipr.link("add", ifname=plan.host_name, kind="veth", mtu=mtu,
                     peer={"ifname": plan.peer, "address": plan.hwaddr, "mtu": mtu})
        else:
            ipr.link("add", ifname=plan.peer, kind="macvlan", link=parent["index"],
                     macvlan_mode="bridge", address=plan.hwaddr, mtu=mtu)
    except NetlinkError as e:
        if e.code == errno.EEXIST:
            raise Conflict(f"{what}: host interface name {made!r} is already in use") from None
        raise BadRequest(f"{what}: cannot create the {plan.kind} interface on "
                         f"{plan.parent!r} (mtu {mtu}): {os.strerror(e.code)}") from None
    # The kernel ignores IFLA_IFALIAS when a link is created: tagged right after.
    for ifname in filter(None, (plan.host_name, plan.peer)):
        index = ipr.link_lookup(ifname=ifname)[0]
        ipr.link("set", index=index, ifalias=alias)
    if plan.kind == "bridged":
        _no_ipv6(plan.host_name)
        try:
            ipr.link("set", index=ipr.link_lookup(ifname=plan.host_name)[0],
                     master=parent["index"], state="up")
        except NetlinkError as e:
            raise BadRequest(f"{what}: cannot attach {plan.host_name!r} to bridge "
                             f"{plan.parent!r}: {os.strerror(e.code)}") from None


def _no_ipv6(ifname: str) -> None:
    """A bridge port needs no addresses: without IPv6 the host side makes no link-local
    address and sends no solicitations onto the bridge (LXD does the same). Best effort: a
    host without IPv6 has no such file."""
    try:
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f:
            f.write("1")
    except OSError:
        pass
