"""Managed bridges on the host through netlink (pyroute2): create, fix up, rename and delete
bridges carrying this daemon's tag, their addresses, MTU and MAC; read host links, routes
and addresses (for `mc network list` and to keep subnets apart).

Every function blocks, and pyroute2's IPRoute runs an event loop of its own, which cannot run
on the daemon's loop thread: the service calls these with asyncio.to_thread, or, from its
synchronous readers (which also read the database, bound to the loop thread), through
call() which runs them on a worker thread and waits. A bridge is
touched only when its IFLA_IFALIAS carries our tag ("<tag> bridge <network>"): the machine is
shared with other daemons, other test runs and the host's own interfaces.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import ipaddress
import os
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from machined.errors import Conflict, InternalError
from machined.network.model import AnyNetwork, IPv4Interface, IPv6Interface

T = TypeVar("T")
IFA_F_NODAD = 0x02
ARPHRD_ETHER = 1


@contextmanager
def _ipr() -> Iterator[Any]:
    # Imported on first use: pyroute2 costs ~0.25 s to import, which a daemon with no
    # managed network never pays.
    from pyroute2 import IPRoute

    ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def call(func: Callable[..., T], *args: Any) -> T:
    """func(*args) on a worker thread when the caller's thread runs an event loop (the
    loop waits: a netlink dump takes milliseconds), else right here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return func(*args)
    with ThreadPoolExecutor(1, thread_name_prefix="netlink") as pool:
        return pool.submit(func, *args).result()


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str | None  # IFLA_INFO_KIND: bridge, veth, dummy, ... (None for hardware)
    alias: str
    master: int
    mtu: int
    mac: str
    up: bool
    ether: bool

    def tagged(self, tag: str, kind: str = "bridge") -> bool:
        parts = self.alias.split(" ")
        return len(parts) >= 2 and parts[0] == tag and parts[1] == kind


def _link(msg: Any) -> Link:
    info = msg.get_attr("IFLA_LINKINFO")
    return Link(index=msg["index"], name=msg.get_attr("IFLA_IFNAME"),
                kind=info.get_attr("IFLA_INFO_KIND") if info is not None else None,
                alias=msg.get_attr("IFLA_IFALIAS") or "", master=msg.get_attr("IFLA_MASTER") or 0,
                mtu=msg.get_attr("IFLA_MTU") or 0, mac=msg.get_attr("IFLA_ADDRESS") or "",
                up=bool(msg["flags"] & 1), ether=msg["ifi_type"] == ARPHRD_ETHER)


def links() -> list[Link]:
    with _ipr() as ipr:
        return [_link(m) for m in ipr.get_links()]


def _find(ipr: Any, name: str) -> Link | None:
    found = ipr.link_lookup(ifname=name)
    if not found:
        return None
    return _link(ipr.get_links(found[0])[0])


def alias_for(tag: str, network: str) -> str:
    return f"{tag} bridge {network}"


def host_subnets(exclude: set[str]) -> list[tuple[AnyNetwork, str]]:
    """Subnets in use on the host: main-table routes and interface addresses, each with
    what uses it ("route on eth0"), leaving out interfaces named in `exclude` (the
    network's own bridge when it is being changed)."""
    out: list[tuple[AnyNetwork, str]] = []
    with _ipr() as ipr:
        names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in ipr.get_links()}
        for route in ipr.get_routes(table=254):
            dev = names.get(route.get_attr("RTA_OIF"), "?")
            dst = route.get_attr("RTA_DST")
            if dst is None or route["dst_len"] == 0 or dev in exclude:
                continue
            out.append((ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False),
                        f"route on {dev}"))
        for addr in ipr.get_addr():
            dev = names.get(addr["index"], "?")
            ip = addr.get_attr("IFA_LOCAL") or addr.get_attr("IFA_ADDRESS")
            if ip is None or dev in exclude:
                continue
            out.append((ipaddress.ip_network(f"{ip}/{addr['prefixlen']}", strict=False),
                        f"address {ip} on {dev}"))
    return out


def check_name_free(name: str, tag: str) -> None:
    """Conflict when `name` is a host interface that is not one of our bridges."""
    with _ipr() as ipr:
        link = _find(ipr, name)
    if link is not None and not link.tagged(tag):
        raise Conflict(f"Interface {name} already exists on the host and is not a machined "
                       "network")


def _sysctl(path: str, value: str) -> None:
    with suppress(FileNotFoundError), open(path, "w") as f:
        f.write(value)


def _ipv6_sysctls(name: str, enabled: bool) -> None:
    """Without ipv6.address the bridge gets no IPv6 at all (no link-local address the
    instances could reach the host by); with it, no autoconfiguration or DAD of its own,
    and no router advertisements or redirects accepted: the bridge's other end is the
    instances, and an RA from a container would otherwise add routes (a default route, any
    on-link prefix) to the host's own routing table."""
    base = f"/proc/sys/net/ipv6/conf/{name}"
    if not os.path.isdir(base):
        return
    if enabled:
        # accept_ra first: the moment IPv6 comes up on the bridge it must already be 0.
        _sysctl(f"{base}/accept_ra", "0")
        _sysctl(f"{base}/accept_redirects", "0")
        _sysctl(f"{base}/disable_ipv6", "0")
        _sysctl(f"{base}/autoconf", "0")
        _sysctl(f"{base}/accept_dad", "0")
    else:
        _sysctl(f"{base}/disable_ipv6", "1")


def ensure(name: str, tag: str, mtu: int, hwaddr: str | None,
           ipv4: IPv4Interface | None, ipv6: IPv6Interface | None) -> bool:
    """Make the bridge exist as configured: created when missing (True), else MTU, MAC,
    addresses and state fixed in place (its ports stay). Raises Conflict when the name
    belongs to an interface that is not ours."""
    alias = alias_for(tag, name)
    # A bridge without a MAC of its own takes the lowest of its ports': the gateway's MAC
    # would change whenever a container starts or stops, and containers' ARP caches go stale.
    hwaddr = (hwaddr or stable_mac(tag, name)).lower()
    with _ipr() as ipr:
        link = _find(ipr, name)
        created = link is None
        if link is None:
            link = _create(ipr, name, alias, mtu, hwaddr)
        elif not link.tagged(tag) or link.kind != "bridge":
            raise Conflict(f"Interface {name} already exists on the host and is not a machined "
                           "network")
        try:
            changes: dict[str, Any] = {}
            if link.mtu != mtu:
                changes["mtu"] = mtu
            if hwaddr and link.mac.lower() != hwaddr:
                changes["address"] = hwaddr
            if link.alias != alias:
                changes["ifalias"] = alias
            if changes:
                ipr.link("set", index=link.index, **changes)
            _ipv6_sysctls(name, ipv6 is not None)
            _sync_addresses(ipr, link.index, ipv4, ipv6)
            if not link.up or created:
                ipr.link("set", index=link.index, state="up")
        except Exception:
            if created:
                with suppress(Exception):
                    ipr.link("del", index=link.index)
            raise
    return created


def stable_mac(tag: str, name: str) -> str:
    """The bridge's MAC when bridge.hwaddr is unset: the same for a network on every start."""
    digest = hashlib.sha256(f"{tag} {name}".encode()).digest()
    return "00:16:3e:" + ":".join(f"{b:02x}" for b in digest[:3])


def _create(ipr: Any, name: str, alias: str, mtu: int, hwaddr: str | None) -> Link:
    """A new bridge is made under a temporary name, tagged and configured, then renamed:
    an interface with the network's name is ours from the moment it appears (a crash in
    between leaves a tagged leftover that reconcile removes, never an untagged bridge that
    would block the name)."""
    tmp = "mct" + secrets.token_hex(4)
    ipr.link("add", ifname=tmp, kind="bridge")
    index = ipr.link_lookup(ifname=tmp)[0]
    try:
        settings: dict[str, Any] = {"ifalias": alias, "mtu": mtu}
        if hwaddr:
            settings["address"] = hwaddr
        ipr.link("set", index=index, **settings)
        ipr.link("set", index=index, ifname=name)
    except Exception as e:
        with suppress(Exception):
            ipr.link("del", index=index)
        if getattr(e, "code", None) == errno.EEXIST:
            raise Conflict(f"Interface {name} already exists on the host and is not a "
                           "machined network") from None
        raise InternalError(f"Failed creating bridge {name}: {e}") from e
    return _link(ipr.get_links(index)[0])


def _sync_addresses(ipr: Any, index: int, ipv4: IPv4Interface | None,
                    ipv6: IPv6Interface | None) -> None:
    """The bridge holds exactly the configured addresses (IPv6 link-local ones aside)."""
    wanted = {str(i) for i in (ipv4, ipv6) if i is not None}
    for addr in ipr.get_addr(index=index):
        ip = addr.get_attr("IFA_LOCAL") or addr.get_attr("IFA_ADDRESS")
        iface = ipaddress.ip_interface(f"{ip}/{addr['prefixlen']}")
        if iface.version == 6 and iface.ip.is_link_local:
            continue
        if str(iface) in wanted:
            wanted.discard(str(iface))
            continue
        ipr.addr("del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
    for text in sorted(wanted):
        iface = ipaddress.ip_interface(text)
        extra = {"flags": IFA_F_NODAD} if iface.version == 6 else {}
        ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen,
                 **extra)


def delete(name: str, tag: str) -> bool:
    """Delete our bridge `name` (False when there is none; an interface of that name that
    is not ours is left alone)."""
    with _ipr() as ipr:
        link = _find(ipr, name)
        if link is None or not link.tagged(tag):
            return False
        ipr.link("del", index=link.index)
    return True


def rename(old: str, new: str, tag: str) -> None:
    """Renaming needs the link down; its ports stay enslaved."""
    with _ipr() as ipr:
        link = _find(ipr, old)
        if link is None or not link.tagged(tag):
            return
        if _find(ipr, new) is not None:
            raise Conflict(f"Interface {new} already exists on the host")
        ipr.link("set", index=link.index, state="down")
        ipr.link("set", index=link.index, ifname=new, ifalias=alias_for(tag, new))
        ipr.link("set", index=link.index, state="up")


def exists(name: str, tag: str) -> bool:
    with _ipr() as ipr:
        link = _find(ipr, name)
    return link is not None and link.tagged(tag)


def ports(name: str) -> list[str]:
    with _ipr() as ipr:
        link = _find(ipr, name)
        if link is None:
            return []
        return sorted(m.get_attr("IFLA_IFNAME") for m in ipr.get_links()
                      if m.get_attr("IFLA_MASTER") == link.index)


def sweep(tag: str, keep: set[str]) -> list[str]:
    """Delete our tagged bridges that no network owns any more and that have no ports (an
    interrupted create or rename); returns their names."""
    removed = []
    with _ipr() as ipr:
        all_links = [_link(m) for m in ipr.get_links()]
        masters = {link.master for link in all_links}
        for link in all_links:
            if link.tagged(tag) and link.name not in keep and link.index not in masters:
                with suppress(Exception):
                    ipr.link("del", index=link.index)
                    removed.append(link.name)
    return removed


_SCOPES = {0: "global", 200: "global", 253: "link", 254: "local"}


def state(name: str) -> dict[str, Any] | None:
    """LXD's /1.0/networks/<n>/state of a host interface, or None when it does not exist."""
    with _ipr() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return None
        msg = ipr.get_links(found[0])[0]
        link = _link(msg)
        addrs = ipr.get_addr(index=link.index)
        uppers = sorted(m.get_attr("IFLA_IFNAME") for m in ipr.get_links()
                        if m.get_attr("IFLA_MASTER") == link.index)
    stats = msg.get_attr("IFLA_STATS64") or {}
    addresses = []
    for a in addrs:
        ip = a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS")
        addresses.append({"family": "inet" if a["family"] == 2 else "inet6", "address": ip,
                          "netmask": str(a["prefixlen"]),
                          "scope": _SCOPES.get(a["scope"], "global")})
    out: dict[str, Any] = {
        "addresses": addresses,
        "counters": {
            "bytes_received": stats.get("rx_bytes", 0), "bytes_sent": stats.get("tx_bytes", 0),
            "packets_received": stats.get("rx_packets", 0),
            "packets_sent": stats.get("tx_packets", 0),
            "errors_received": stats.get("rx_errors", 0),
            "errors_sent": stats.get("tx_errors", 0),
            "packets_dropped_outbound": stats.get("tx_dropped", 0),
            "packets_dropped_inbound": stats.get("rx_dropped", 0)},
        "hwaddr": link.mac, "mtu": link.mtu, "state": "up" if link.up else "down",
        "type": "loopback" if name == "lo" else "broadcast",
        "bond": None, "bridge": None, "vlan": None}
    if link.kind == "bridge":
        out["bridge"] = _bridge_state(msg, uppers)
    return out


def _bridge_state(msg: Any, uppers: list[str]) -> dict[str, Any]:
    info = msg.get_attr("IFLA_LINKINFO")
    data = info.get_attr("IFLA_INFO_DATA") if info is not None else None

    def attr(name: str, default: Any) -> Any:
        value = data.get_attr(name) if data is not None else None
        return default if value is None else value

    # LXD's bridge id: priority (hex, as sysfs shows it) "." MAC without colons
    bid = attr("IFLA_BR_BRIDGE_ID", {})
    prio = (bid.get("prio", 128) if isinstance(bid, dict) else 128) << 8
    mac = str(bid.get("addr", "") if isinstance(bid, dict) else "").replace(":", "")
    return {"id": f"{prio:04x}.{mac}", "stp": bool(attr("IFLA_BR_STP_STATE", 0)),
            "forward_delay": attr("IFLA_BR_FORWARD_DELAY", 0),
            "vlan_default": attr("IFLA_BR_VLAN_DEFAULT_PVID", 1),
            "vlan_filtering": bool(attr("IFLA_BR_VLAN_FILTERING", 0)),
            "upper_devices": uppers}
