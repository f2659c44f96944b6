"""An instance's network state as LXD shows it (`state.network`): interfaces, addresses and
counters, read by netlink inside the running container's network namespace.

The socket is made in the container's namespace by runtime.netns_socket(); the two dumps
(RTM_GETLINK, RTM_GETADDR) are parsed here with struct, not with pyroute2: pyroute2.IPRoute
drives its own asyncio loop, which cannot run on the daemon's loop thread ("This event loop
is already running"), and pyroute2's message decoding alone took ~0.75 ms of the 1.2 ms per
container (`mc list` reads the state of every running instance); only four link attributes
and two address attributes are needed. Everything read is controlled by the container: the
parser checks every length against the buffer, reading stops after MAX_LINKS interfaces and
MAX_ADDRESSES addresses (a container can make thousands of dummy interfaces), the socket
is connected to the kernel (root in the container may send netlink messages to it: they are
refused) and a whole dump has a deadline.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator, Mapping
from typing import Any

from machined import runtime

MAX_LINKS = 256
MAX_ADDRESSES = 1024
TIMEOUT = 2.0  # seconds; a netlink dump answers at once, this only bounds the unexpected
RECV_SIZE = 1 << 16  # larger than any dump skb the kernel sends (32 KiB at most)
MAX_DATAGRAMS = 4096  # reads of one dump (the kernel's answer to MAX_ADDRESSES is ~10)

# linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR = 16, 18, 20, 22
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_STATS64 = 1, 3, 4, 23
IFA_ADDRESS, IFA_LOCAL = 1, 2
NLMSGHDR = struct.Struct("=IHHII")
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTATTR = struct.Struct("=HH")
STATS64 = struct.Struct("=8Q")  # rx/tx packets, bytes, errors, dropped (the first 8 fields)

IFF_UP, IFF_BROADCAST, IFF_LOOPBACK, IFF_POINTOPOINT = 0x1, 0x2, 0x8, 0x10
SCOPES = {0: "global", 200: "global", 253: "link", 254: "local"}  # universe, site, link, host
COUNTERS = ("packets_received", "packets_sent", "bytes_received", "bytes_sent",
            "errors_received", "errors_sent", "packets_dropped_inbound",
            "packets_dropped_outbound")  # in rtnl_link_stats64 order
LXD_COUNTERS = ("bytes_received", "bytes_sent", "packets_received", "packets_sent",
                "errors_received", "errors_sent", "packets_dropped_outbound",
                "packets_dropped_inbound")  # as LXD's API lists them

Link = dict[str, Any]
Address = dict[str, Any]


def instance_network(container: runtime.RunningContainer, volatile: Mapping[str, str],
                     devices: Mapping[str, Mapping[str, str]] | None = None
                     ) -> dict[str, dict[str, Any]]:
    """`state.network` of a running container: {ifname: {addresses, counters, hwaddr,
    host_name, mtu, state, type}}. `volatile` holds the instance's `volatile.*` keys (its
    config may be passed whole) and `devices` its expanded devices (the host side of each
    nic). Raises runtime.NamespaceGone when the container stopped meanwhile."""
    sock = _netlink(container)
    try:
        payloads, complete = _dump(sock, RTM_GETLINK, RTM_NEWLINK, IFINFOMSG.size, MAX_LINKS)
        links = [parse_link(m) for m in payloads]
        if not complete:  # more interfaces than shown: the rest of that dump is not read
            sock.close()
            sock = _netlink(container)
        payloads, _ = _dump(sock, RTM_GETADDR, RTM_NEWADDR, IFADDRMSG.size, MAX_ADDRESSES)
        addresses = [parse_address(m) for m in payloads]
    finally:
        sock.close()
    return network_state([x for x in links if x], [x for x in addresses if x],
                         host_names(volatile, devices or {}))


def _netlink(container: runtime.RunningContainer) -> socket.socket:
    sock = runtime.netns_socket(container, socket.AF_NETLINK, socket.SOCK_DGRAM,
                                socket.NETLINK_ROUTE)
    try:
        kernel_only(sock)
    except OSError:
        sock.close()
        raise
    return sock


def kernel_only(sock: socket.socket) -> None:
    """Connect a netlink socket to the kernel (port 0): the kernel then refuses messages
    from any other sender. Root in the container has CAP_NET_ADMIN over its namespace and
    may otherwise unicast forged answers (and errors) to the daemon's socket, whose port id
    it can read in its /proc/net/netlink."""
    sock.connect((0, 0))
    sock.settimeout(TIMEOUT)


def _dump(sock: socket.socket, request: int, answer: int, body: int, limit: int
          ) -> tuple[list[bytes], bool]:
    """The payloads of the `answer` messages of a netlink dump, and whether that was all of
    them: reading stops at `limit` (the socket then still holds the rest of the dump)."""
    seq = request  # one dump of each kind per socket
    sock.send(NLMSGHDR.pack(NLMSGHDR.size + body, request, NLM_F_REQUEST | NLM_F_DUMP, seq,
                            0) + bytes(body))
    out: list[bytes] = []
    # The whole dump, not each read, is bounded in time and in datagrams: it runs on the
    # daemon's event loop, and nothing but the kernel's answer may keep it reading.
    deadline = time.monotonic() + TIMEOUT
    for _ in range(MAX_DATAGRAMS):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        data, _, flags, sender = sock.recvmsg(RECV_SIZE)
        if flags & socket.MSG_TRUNC:
            raise OSError(90, "Netlink message truncated")  # EMSGSIZE
        if not _from_kernel(sender):
            continue
        for mtype, mseq, payload in messages(data):
            if mseq != seq:
                continue
            if mtype == NLMSG_DONE:
                return out, True
            if mtype == NLMSG_ERROR:
                code = error_code(payload)
                raise OSError(code, f"Netlink dump failed: {os.strerror(code)}")
            if mtype == answer:
                out.append(payload)
                if len(out) >= limit:
                    return out, False
    raise OSError(62, "Netlink dump did not finish")  # ETIME


def _from_kernel(sender: object) -> bool:
    """recvmsg's source address of a netlink datagram is (port id, groups): the kernel's
    port id is 0."""
    return isinstance(sender, tuple) and len(sender) >= 1 and sender[0] == 0


# Pure part (unit-tested)

def error_code(payload: bytes) -> int:
    """The errno of an NLMSG_ERROR payload (a negative int), as a usable errno: EPROTO when
    it is missing, zero (an ACK, not an error) or out of range."""
    code = -struct.unpack_from("=i", payload)[0] if len(payload) >= 4 else 0
    return code if 0 < code < 4096 else 71  # EPROTO

def messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(type, sequence number, payload) of each netlink message in a datagram."""
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, mtype, _flags, seq, _pid = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > len(data):
            raise OSError(71, "Malformed netlink message")  # EPROTO
        yield mtype, seq, data[offset + NLMSGHDR.size:offset + length]
        offset += (length + 3) & ~3


def attributes(payload: bytes, offset: int) -> dict[int, bytes]:
    """The route attributes (type -> data) after a message's fixed header; nested and
    repeated ones are not needed here (the first of a type wins)."""
    out: dict[int, bytes] = {}
    while offset + RTATTR.size <= len(payload):
        length, kind = RTATTR.unpack_from(payload, offset)
        if length < RTATTR.size or offset + length > len(payload):
            break
        out.setdefault(kind & 0x3FFF, payload[offset + RTATTR.size:offset + length])
        offset += (length + 3) & ~3
    return out


def parse_link(payload: bytes) -> Link | None:
    """An RTM_NEWLINK payload -> {index, ifname, flags, mtu, hwaddr, counters}."""
    if len(payload) < IFINFOMSG.size:
        return None
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(payload)
    attrs = attributes(payload, IFINFOMSG.size)
    name = attrs.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode("utf-8", "replace")
    mtu = attrs.get(IFLA_MTU, b"")
    stats = attrs.get(IFLA_STATS64, b"")
    return {
        "index": index,
        "ifname": name,
        "flags": flags,
        "mtu": struct.unpack("=I", mtu)[0] if len(mtu) == 4 else 0,
        "hwaddr": ":".join(f"{b:02x}" for b in attrs.get(IFLA_ADDRESS, b"")),
        "counters": dict(zip(COUNTERS, STATS64.unpack_from(stats), strict=True))
        if len(stats) >= STATS64.size else dict.fromkeys(COUNTERS, 0),
    }


def parse_address(payload: bytes) -> Address | None:
    """An RTM_NEWADDR payload -> {index, family, address, prefixlen, scope}; None for
    families other than IPv4 and IPv6."""
    if len(payload) < IFADDRMSG.size:
        return None
    family, prefixlen, _flags, scope, index = IFADDRMSG.unpack_from(payload)
    size = {socket.AF_INET: 4, socket.AF_INET6: 16}.get(family)
    attrs = attributes(payload, IFADDRMSG.size)
    # IFA_LOCAL is the interface's own IPv4 address; IFA_ADDRESS is the peer's on a
    # point-to-point link (the same address otherwise; IPv6 has only IFA_ADDRESS).
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS) or b""
    if size is None or len(raw) != size:
        return None
    return {"index": index, "family": "inet" if family == socket.AF_INET else "inet6",
            "address": socket.inet_ntop(family, raw), "prefixlen": prefixlen,
            "scope": SCOPES.get(scope, "global")}


def host_names(volatile: Mapping[str, str], devices: Mapping[str, Mapping[str, str]]
               ) -> dict[str, str]:
    """{interface name inside: host interface} of the nics with a known host side: the name
    inside is the nic's `name`, else `volatile.<dev>.name` (machined's eth0, eth1...)."""
    out = {}
    for dev, conf in devices.items():
        if conf.get("type") != "nic":
            continue
        inside = conf.get("name") or volatile.get(f"volatile.{dev}.name", "")
        host = volatile.get(f"volatile.{dev}.host_name", "")
        if inside and host:
            out[inside] = host
    return out


def network_state(links: list[Link], addresses: list[Address],
                  hosts: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """LXD's `state.network` from the parsed links and addresses."""
    by_index: dict[int, dict[str, Any]] = {}
    out: dict[str, dict[str, Any]] = {}
    for link in links:
        name = link["ifname"]
        if not name or name in out:
            continue
        flags = link["flags"]
        hwaddr = link["hwaddr"]
        entry = {
            "addresses": [],
            "counters": {k: link["counters"].get(k, 0) for k in LXD_COUNTERS},
            "hwaddr": "" if flags & IFF_LOOPBACK or hwaddr == "00:00:00:00:00:00" else hwaddr,
            "host_name": hosts.get(name, ""),
            "mtu": link["mtu"],
            "state": "up" if flags & IFF_UP else "down",
            "type": _link_type(flags),
        }
        out[name] = entry
        by_index[link["index"]] = entry
    for addr in addresses:
        entry = by_index.get(addr["index"])
        if entry is not None:
            entry["addresses"].append({"family": addr["family"], "address": addr["address"],
                                       "netmask": str(addr["prefixlen"]),
                                       "scope": addr["scope"]})
    return out


def _link_type(flags: int) -> str:
    """As LXD names them (from Go's net.Interface flags)."""
    if flags & IFF_LOOPBACK:
        return "loopback"
    if flags & IFF_POINTOPOINT:
        return "point-to-point"
    if flags & IFF_BROADCAST:
        return "broadcast"
    return "unknown"
