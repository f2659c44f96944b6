"""Managed networks, the pure part: names, the key table and its validation, the parsed plan
of a network, the choice of an `auto` subnet, what dnsmasq and nftables are given (argv,
hosts file, ruleset text), dnsmasq's leases file, and the LXD-shaped objects of the API.

Nothing here touches the host: bridge.py, dnsmasq.py and nat.py apply what this computes.
"""

from __future__ import annotations

import difflib
import ipaddress
import random
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from machined.config import validate as v
from machined.errors import BadRequest

IPv4Interface = ipaddress.IPv4Interface
IPv6Interface = ipaddress.IPv6Interface
AnyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

TYPES = ("bridge",)
RESERVED_NAMES = ("all", "default", "lo", "none")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
_MAC = re.compile(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}")
_INSTANCE = re.compile(r"[a-zA-Z][a-zA-Z0-9-]{0,62}")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}")
_EXPIRY = re.compile(r"([0-9]+)([smhdw]?)")  # ASCII digits only: dnsmasq reads them
_EXPIRY_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

DEFAULT_MTU = 1500
DEFAULT_DOMAIN = "mc"
DEFAULT_EXPIRY = "1h"
DEFAULT_NETWORK = "mcbr0"
# The default network's keys (as LXD's lxdbr0): MACHINED_INIT_NETWORK overrides them.
# `auto` addresses turn NAT on (create_defaults), so mcbr0 gets ipv4.nat=ipv6.nat=true.
DEFAULT_NETWORK_CONFIG = {"ipv4.address": "auto", "ipv6.address": "auto"}


def check_name(name: object) -> str:
    """A network name is its bridge's interface name (LXD)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise BadRequest(f"Invalid network name {name!r}: use 1 to 15 letters, digits, '_', "
                         "'.' and '-', starting with a letter or digit (it is the bridge's "
                         f"interface name), and not {', '.join(RESERVED_NAMES)}")
    return name


def check_type(kind: object) -> str:
    if kind in (None, ""):
        return "bridge"
    if kind not in TYPES:
        raise BadRequest(f"Unsupported network type {kind!r}: accepted is {', '.join(TYPES)}")
    return str(kind)


# ---------------------------------------------------------------- value validators


def _v4_host(value: str) -> IPv4Interface:
    accepts = ("a unicast IPv4 host address with its prefix length (8 to 30), e.g. "
               "10.1.2.1/24, not the subnet's network or broadcast address")
    if "/" not in value:
        raise ValueError(accepts)
    try:
        iface = ipaddress.IPv4Interface(value)
    except ValueError:
        raise ValueError(accepts) from None
    net = iface.network
    ip = iface.ip
    if not 8 <= net.prefixlen <= 30 or ip in (net.network_address, net.broadcast_address) \
            or ip.is_loopback or ip.is_multicast or ip.is_link_local or ip.is_unspecified \
            or ip.is_reserved:
        raise ValueError(accepts)
    return iface


def _v6_host(value: str) -> IPv6Interface:
    accepts = ("a unicast IPv6 host address with its prefix length (8 to 124), e.g. "
               "fd42:1:2:3::1/64")
    if "/" not in value:
        raise ValueError(accepts)
    try:
        iface = ipaddress.IPv6Interface(value)
    except ValueError:
        raise ValueError(accepts) from None
    ip = iface.ip
    if not 8 <= iface.network.prefixlen <= 124 or ip == iface.network.network_address \
            or ip.is_loopback or ip.is_multicast or ip.is_link_local or ip.is_unspecified \
            or ip.ipv4_mapped is not None:
        raise ValueError(accepts)
    return iface


def parse_ranges(value: str) -> list[tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]]:
    """'10.1.2.50-10.1.2.99,10.1.2.200-10.1.2.210' -> [(first, last), ...]."""
    accepts = ("a comma-separated list of IPv4 ranges first-last going upwards, e.g. "
               "10.1.2.50-10.1.2.99")
    out = []
    for part in value.split(","):
        first, sep, last = part.strip().partition("-")
        if not sep:
            raise ValueError(accepts)
        try:
            a, b = ipaddress.IPv4Address(first.strip()), ipaddress.IPv4Address(last.strip())
        except ValueError:
            raise ValueError(accepts) from None
        if b < a:
            raise ValueError(accepts)
        out.append((a, b))
    return out


def parse_expiry(value: str) -> int:
    """dnsmasq's lease time: seconds, or a number with s/m/h/d/w; `infinite` is -1."""
    accepts = "a lease time of at least 2 minutes like 1h, 45m, 2d or 3600 (seconds), or infinite"
    if value == "infinite":
        return -1
    match = _EXPIRY.fullmatch(value)
    if not match:
        raise ValueError(accepts)
    seconds = int(match.group(1)) * _EXPIRY_SECONDS[match.group(2)]
    if seconds < 120:  # dnsmasq's minimum
        raise ValueError(accepts)
    return seconds


def is_domain(text: str) -> bool:
    labels = text.split(".")
    return len(text) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def _search(value: str) -> bool:
    return all(is_domain(part.strip()) for part in value.split(","))


def _unicast_mac(value: str) -> bool:
    if not _MAC.fullmatch(value):
        return False
    return int(value[:2], 16) & 1 == 0 and value.replace(":", "").strip("0") != ""


def _parses(parser: Any) -> Any:
    def check(value: str) -> bool:
        parser(value)
        return True
    return check


is_v4_address = v.any_of(v.one_of("auto", "none"), v.Validator(
    "a unicast IPv4 host address with its prefix length (8 to 30), e.g. 10.1.2.1/24",
    _parses(_v4_host)))
is_v6_address = v.any_of(v.one_of("auto", "none"), v.Validator(
    "a unicast IPv6 host address with its prefix length, e.g. fd42:1:2:3::1/64",
    _parses(_v6_host)))
is_ranges = v.Validator("a comma-separated list of IPv4 ranges first-last, e.g. "
                        "10.1.2.50-10.1.2.99", _parses(parse_ranges))
is_expiry = v.Validator("a lease time of at least 2 minutes like 1h, 45m, 2d or 3600 "
                        "(seconds), or infinite", _parses(parse_expiry))
def _ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


is_ipv4 = v.Validator("an IPv4 address such as 10.1.2.1", _ipv4)
is_domain_name = v.Validator("a DNS domain name such as mc or lab.example",
                             lambda value: is_domain(value))
is_search = v.Validator("a comma-separated list of DNS domain names", _search)
is_mac = v.Validator("a unicast MAC address such as 00:16:3e:12:34:56", _unicast_mac)


# ---------------------------------------------------------------- the key table


@dataclass(frozen=True)
class NetworkKey:
    name: str
    type: str
    default: str
    validator: v.Validator
    doc: str


def _table(*rows: NetworkKey) -> dict[str, NetworkKey]:
    return {row.name: row for row in rows}


N = NetworkKey
NETWORK_KEYS: dict[str, NetworkKey] = _table(
    N("bridge.driver", "string", "native", v.one_of("native"),
      "Bridge implementation: the kernel's bridge (Open vSwitch is not supported)."),
    N("bridge.hwaddr", "string", "", is_mac,
      "MAC address of the bridge (the kernel's choice when unset)."),
    N("bridge.mtu", "integer", "1500", v.int_range(68, 65535),
      "MTU of the bridge; nics on it take it unless they set their own. At least 1280 "
      "with IPv6. Sent to DHCP clients when not 1500."),
    N("dns.domain", "string", DEFAULT_DOMAIN, is_domain_name,
      "Domain of the instances' names: `c01.mc` resolves on the network's DNS server."),
    N("dns.mode", "string", "managed", v.one_of("managed", "dynamic", "none"),
      "managed: instances are known by their names; dynamic: by the host names their DHCP "
      "clients send; none: no names (DNS still forwards)."),
    N("dns.search", "string", "", is_search,
      "Search domains sent to DHCP clients (default: the clients use dns.domain)."),
    N("ipv4.address", "string", "", is_v4_address,
      "The bridge's IPv4 address and subnet (gateway of the instances). auto: a free random "
      "10.x.y.1/24 chosen at create (not overlapping host routes, host addresses or other "
      "networks); none: no IPv4. Not given at create: auto; unset later: no IPv4."),
    N("ipv4.dhcp", "bool", "true", v.is_bool, "Hand out IPv4 addresses by DHCP."),
    N("ipv4.dhcp.expiry", "string", DEFAULT_EXPIRY, is_expiry, "DHCP lease time."),
    N("ipv4.dhcp.gateway", "string", "", is_ipv4,
      "Router sent to DHCP clients (default: the bridge's address)."),
    N("ipv4.dhcp.ranges", "string", "", is_ranges,
      "Address ranges DHCP hands out, inside the subnet (default: .2 to the last address "
      "but one of the subnet)."),
    N("ipv4.nat", "bool", "false", v.is_bool,
      "Masquerade traffic from the subnet to anything outside it (nftables table "
      "`inet machined_<network>`). `auto` addresses default it to true, as LXD."),
    N("ipv4.routing", "bool", "true", v.is_bool,
      "With ipv4.nat: enable IPv4 forwarding on the host (net.ipv4.ip_forward)."),
    N("ipv6.address", "string", "", is_v6_address,
      "The bridge's IPv6 address and subnet (a /64 unless ipv6.dhcp.stateful). auto: a "
      "random fd42:x:y:z::1/64 chosen at create; none: no IPv6 (disabled on the bridge). "
      "Not given at create: auto; unset later: no IPv6."),
    N("ipv6.dhcp", "bool", "true", v.is_bool,
      "Send router advertisements with DNS (stateless autoconfiguration); false: "
      "advertisements only."),
    N("ipv6.dhcp.stateful", "bool", "false", v.is_bool,
      "Hand out IPv6 addresses by DHCPv6 instead of autoconfiguration."),
    N("ipv6.nat", "bool", "false", v.is_bool,
      "Masquerade IPv6 traffic from the subnet to anything outside it. `auto` addresses "
      "default it to true, as LXD."),
)
NETWORK_NAMESPACES: dict[str, tuple[v.Validator, str]] = {
    "user.": (v.single_line, "Free-form user data."),
}


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key, list(NETWORK_KEYS), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate_keys(config: Any) -> dict[str, str]:
    """Each key and value on its own; returns the config without unset ("") keys. Raises
    BadRequest naming the key, the value and what is accepted."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise BadRequest("Network config must be an object of key -> value")
    out: dict[str, str] = {}
    for key, value in config.items():
        if not isinstance(key, str) or not key or not v.is_utf8(key) \
                or any(c in key for c in "\n\r\0"):
            raise BadRequest(f"Invalid network configuration key {key!r}: keys are non-empty "
                             "UTF-8 text without newlines or NUL")
        if not isinstance(value, str) or not v.is_utf8(value):
            raise BadRequest(f"Invalid value {value!r} for network key {key!r}: values must "
                             "be UTF-8 strings")
        validator = _validator(key)
        if value == "":
            continue
        try:
            validator(value)
        except ValueError as e:
            raise BadRequest(f"Invalid value {value!r} for network key {key!r}: expected {e}"
                             ) from None
        out[key] = value
    return out


def _validator(key: str) -> v.Validator:
    row = NETWORK_KEYS.get(key)
    if row is not None:
        return row.validator
    for ns, (validator, _doc) in NETWORK_NAMESPACES.items():
        if key.startswith(ns) and key != ns:
            return validator
    raise BadRequest(f"Unknown network key {key!r}{_did_you_mean(key)}: accepted are "
                     + ", ".join(sorted(NETWORK_KEYS)) + " and user.*")


def create_defaults(config: Mapping[str, str]) -> dict[str, str]:
    """What a create fills in, as LXD: unset addresses are `auto`, and an `auto` address
    turns NAT on unless the request set it."""
    out = dict(config)
    for family in ("ipv4", "ipv6"):
        out.setdefault(f"{family}.address", "auto")
        if out[f"{family}.address"] == "auto":
            out.setdefault(f"{family}.nat", "true")
    return out


def parse_init_network(text: str) -> dict[str, str]:
    """MACHINED_INIT_NETWORK: "key=value key=value" over the default network's keys."""
    config = dict(DEFAULT_NETWORK_CONFIG)
    for token in text.split():
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise BadRequest(f"Invalid MACHINED_INIT_NETWORK item {token!r}: expected "
                             "key=value items separated by spaces, or none")
        config[key] = value
    return config


# ---------------------------------------------------------------- the plan of a network


@dataclass(frozen=True)
class Plan:
    """A network's concrete configuration (no `auto` left), checked across keys."""

    mtu: int = DEFAULT_MTU
    hwaddr: str | None = None
    ipv4: IPv4Interface | None = None
    ipv6: IPv6Interface | None = None
    nat4: bool = False
    nat6: bool = False
    dhcp4: bool = True
    dhcp6: bool = True
    stateful6: bool = False
    ranges4: tuple[tuple[ipaddress.IPv4Address, ipaddress.IPv4Address], ...] = ()
    expiry: str = DEFAULT_EXPIRY
    gateway4: ipaddress.IPv4Address | None = None
    routing4: bool = True
    domain: str = DEFAULT_DOMAIN
    dns_mode: str = "managed"
    search: tuple[str, ...] = ()

    def subnets(self) -> list[AnyNetwork]:
        return [i.network for i in (self.ipv4, self.ipv6) if i is not None]

    def dhcp_ranges4(self) -> list[tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]]:
        """The configured ranges, or .2 to the last address but one (LXD) around the
        bridge's own address."""
        if self.ranges4 or self.ipv4 is None:
            return list(self.ranges4)
        net, own = self.ipv4.network, self.ipv4.ip
        first, last = net.network_address + 2, net.broadcast_address - 1
        if not first <= own <= last:
            return [(first, last)]
        return [(a, b) for a, b in ((first, own - 1), (own + 1, last)) if a <= b]


def _flag(config: Mapping[str, str], key: str) -> bool:
    return v.parse_bool(config.get(key) or NETWORK_KEYS[key].default)


def plan(config: Mapping[str, str]) -> Plan:
    """The plan of a validated config whose addresses are concrete; raises BadRequest for
    rules across keys."""
    for family in ("ipv4", "ipv6"):
        if config.get(f"{family}.address") == "auto":
            raise BadRequest(f"{family}.address is still 'auto'")  # resolved before planning
    a4, a6 = config.get("ipv4.address", "none"), config.get("ipv6.address", "none")
    ipv4 = _v4_host(a4) if a4 != "none" else None
    ipv6 = _v6_host(a6) if a6 != "none" else None
    p = Plan(
        mtu=int(config.get("bridge.mtu") or DEFAULT_MTU),
        hwaddr=(config.get("bridge.hwaddr") or "").lower() or None,
        ipv4=ipv4, ipv6=ipv6,
        nat4=_flag(config, "ipv4.nat"), nat6=_flag(config, "ipv6.nat"),
        dhcp4=_flag(config, "ipv4.dhcp"), dhcp6=_flag(config, "ipv6.dhcp"),
        stateful6=_flag(config, "ipv6.dhcp.stateful"),
        ranges4=tuple(parse_ranges(config["ipv4.dhcp.ranges"]))
        if config.get("ipv4.dhcp.ranges") else (),
        expiry=config.get("ipv4.dhcp.expiry") or DEFAULT_EXPIRY,
        gateway4=ipaddress.IPv4Address(config["ipv4.dhcp.gateway"])
        if config.get("ipv4.dhcp.gateway") else None,
        routing4=_flag(config, "ipv4.routing"),
        domain=config.get("dns.domain") or DEFAULT_DOMAIN,
        dns_mode=config.get("dns.mode") or "managed",
        search=tuple(s.strip() for s in config["dns.search"].split(","))
        if config.get("dns.search") else (),
    )
    _cross_checks(p, config)
    return p


def _cross_checks(p: Plan, config: Mapping[str, str]) -> None:
    if p.ipv6 is not None and p.mtu < 1280:
        raise BadRequest(f"Invalid value {str(p.mtu)!r} for network key 'bridge.mtu': "
                         "expected at least 1280 on a network with IPv6 (ipv6.address)")
    if p.ipv6 is not None and not p.stateful6 and p.ipv6.network.prefixlen != 64:
        raise BadRequest(f"Invalid value {config['ipv6.address']!r} for network key "
                         "'ipv6.address': expected a /64 subnet (stateless autoconfiguration "
                         "needs one), or set ipv6.dhcp.stateful=true")
    # Keys of a family whose address is none are kept but do nothing (as LXD): turning
    # IPv6 off must not need ipv6.nat unset first.
    if p.ipv4 is None:
        return
    net = p.ipv4.network
    for first, last in p.ranges4:
        if first not in net or last not in net or first == net.network_address \
                or last == net.broadcast_address:
            raise BadRequest(f"Invalid value {config['ipv4.dhcp.ranges']!r} for network key "
                             f"'ipv4.dhcp.ranges': range {first}-{last} is not inside the host "
                             f"addresses of {net}")
        if first <= p.ipv4.ip <= last:
            raise BadRequest(f"Invalid value {config['ipv4.dhcp.ranges']!r} for network key "
                             f"'ipv4.dhcp.ranges': range {first}-{last} holds the bridge's own "
                             f"address {p.ipv4.ip}")


# ---------------------------------------------------------------- subnets


def overlap(subnets: Iterable[AnyNetwork], used: Iterable[tuple[AnyNetwork, str]]
            ) -> tuple[AnyNetwork, AnyNetwork, str] | None:
    """The first (subnet, used subnet, what uses it) that overlap; default routes (/0)
    overlap everything and are not counted."""
    used = [(n, what) for n, what in used if n.prefixlen > 0]
    for subnet in subnets:
        for other, what in used:
            if subnet.version == other.version and subnet.overlaps(other):  # type: ignore[arg-type]
                return subnet, other, what
    return None


def check_overlap(p: Plan, used: Iterable[tuple[AnyNetwork, str]]) -> None:
    found = overlap(p.subnets(), used)
    if found is not None:
        subnet, other, what = found
        key = "ipv4.address" if subnet.version == 4 else "ipv6.address"
        raise BadRequest(f"Subnet {subnet} of {key} overlaps {other} ({what}): choose "
                         "another subnet, or auto")


def choose_ipv4(used: Iterable[tuple[AnyNetwork, str]], rng: random.Random,
                attempts: int = 1000) -> IPv4Interface:
    """A random free 10.x.y.1/24 (LXD's choice)."""
    used = list(used)
    for _ in range(attempts):
        iface = ipaddress.IPv4Interface(f"10.{rng.randrange(256)}.{rng.randrange(256)}.1/24")
        if overlap([iface.network], used) is None:
            return iface
    raise BadRequest("No free 10.x.y.0/24 subnet found for ipv4.address=auto: give an "
                     "address such as 10.1.2.1/24")


def choose_ipv6(used: Iterable[tuple[AnyNetwork, str]], rng: random.Random,
                attempts: int = 1000) -> IPv6Interface:
    """A random free fd42:x:y:z::1/64 (a unique local subnet, as LXD)."""
    used = list(used)
    for _ in range(attempts):
        words = ":".join(f"{rng.randrange(65536):x}" for _ in range(3))
        iface = ipaddress.IPv6Interface(f"fd42:{words}::1/64")
        if overlap([iface.network], used) is None:
            return iface
    raise BadRequest("No free fd42:x:y:z::/64 subnet found for ipv6.address=auto: give an "
                     "address such as fd42:1:2:3::1/64")


def resolve_auto(config: Mapping[str, str], used: Iterable[tuple[AnyNetwork, str]],
                 rng: random.Random) -> dict[str, str]:
    """`auto` addresses replaced by free random subnets (stored as such)."""
    out = dict(config)
    used = list(used)
    if out.get("ipv4.address") == "auto":
        out["ipv4.address"] = str(choose_ipv4(used, rng))
    if out.get("ipv6.address") == "auto":
        out["ipv6.address"] = str(choose_ipv6(used, rng))
    return out


# ---------------------------------------------------------------- what nics need


@dataclass(frozen=True)
class BridgeInfo:
    """What a nic on a managed network needs from it."""

    ifname: str
    mtu: int
    ipv4: IPv4Interface | None
    ipv6: IPv6Interface | None


def nic_on(dev: Mapping[str, Any], network: str) -> bool:
    """Whether a device is a nic attached to `network` (by name, or as the parent of a
    bridged nic, which LXD treats the same)."""
    if dev.get("type") != "nic":
        return False
    return dev.get("network") == network or (
        "network" not in dev and dev.get("nictype") == "bridged" and dev.get("parent") == network)


def nic_parent(dev: Mapping[str, Any]) -> str | None:
    """The host interface a nic uses: its managed network or its parent."""
    if dev.get("type") != "nic":
        return None
    return dev.get("network") or dev.get("parent")


# ---------------------------------------------------------------- dnsmasq


@dataclass(frozen=True)
class NetFiles:
    """A network's files under $MACHINED_DIR/networks/<name>/."""

    dir: Path

    @property
    def pid(self) -> Path:
        return self.dir / "dnsmasq.pid"

    @property
    def leases(self) -> Path:
        return self.dir / "dnsmasq.leases"

    @property
    def hosts(self) -> Path:
        return self.dir / "dnsmasq.hosts"

    @property
    def cmd(self) -> Path:
        """The argv dnsmasq was started with: a pid is ours only if its cmdline is this."""
        return self.dir / "dnsmasq.cmd"

    @property
    def nat(self) -> Path:
        """Present while a NAT table of this network may be loaded."""
        return self.dir / "nat"


def dnsmasq_argv(binary: str, name: str, p: Plan, files: NetFiles) -> list[str] | None:
    """dnsmasq's full command line for a network, or None when it needs none (no address).
    dnsmasq daemonises itself (config errors come back as its exit status), reads no
    configuration file of the host and drops to nobody after binding."""
    if p.ipv4 is None and p.ipv6 is None:
        return None
    argv = [binary, "--conf-file=/dev/null", "--strict-order", "--bind-interfaces",
            "--except-interface=lo", f"--interface={name}", f"--pid-file={files.pid}",
            "--no-ping", "--dhcp-rapid-commit", "--quiet-dhcp", "--quiet-dhcp6", "--quiet-ra"]
    listen = [str(i.ip) for i in (p.ipv4, p.ipv6) if i is not None]
    argv.append("--listen-address=" + ",".join(listen))
    ranges: list[str] = []
    if p.ipv4 is not None and p.dhcp4:
        ranges += [f"--dhcp-range={a},{b},{p.expiry}" for a, b in p.dhcp_ranges4()]
        if p.gateway4 is not None:
            ranges.append(f"--dhcp-option-force=3,{p.gateway4}")
        if p.mtu != DEFAULT_MTU:
            ranges.append(f"--dhcp-option-force=26,{p.mtu}")
        if p.search:
            ranges.append("--dhcp-option-force=119," + ",".join(p.search))
    if p.ipv6 is not None:
        argv.append("--enable-ra")
        net6 = p.ipv6.network
        if not p.dhcp6:
            ranges.append(f"--dhcp-range=::,constructor:{name},ra-only")
        elif p.stateful6:
            ranges.append(f"--dhcp-range={net6.network_address + 2},{net6.broadcast_address},"
                          f"{net6.prefixlen},{p.expiry}")
        else:
            ranges.append(f"--dhcp-range=::,constructor:{name},ra-stateless,ra-names")
    if any(r.startswith("--dhcp-range=") and "ra-only" not in r for r in ranges):
        argv += ["--dhcp-no-override", "--dhcp-authoritative", "--dhcp-ignore-clid",
                 f"--dhcp-leasefile={files.leases}", f"--dhcp-hostsfile={files.hosts}"]
        if p.dns_mode == "managed":
            # Names come from the hosts file only: a host name sent by a DHCP client (any
            # container, with any MAC it gives itself) would otherwise be registered in DNS
            # whenever its instance holds no lease (not started yet, stopped, static address).
            argv.append("--dhcp-ignore-names")
    argv += ranges
    if p.dns_mode != "none":
        argv += [f"--domain={p.domain}", f"--local=/{p.domain}/",
                 f"--interface-name=_gateway.{p.domain},{name}"]
    argv += ["--user=nobody", "--group=nogroup"]
    return argv


@dataclass(frozen=True)
class HostEntry:
    """One instance nic on a network whose MAC is known."""

    mac: str
    name: str
    ipv4: str = ""


def clean_entries(entries: Iterable[HostEntry]) -> list[HostEntry]:
    """Valid entries only, MACs lower-cased, one per MAC (the first by instance name):
    names and addresses come from the database, but a line must never be able to carry a
    second one."""
    out: dict[str, HostEntry] = {}
    for e in sorted(entries, key=lambda e: (e.name, e.mac)):
        if not _MAC.fullmatch(e.mac) or not _INSTANCE.fullmatch(e.name):
            continue
        if e.ipv4:
            try:
                ipaddress.IPv4Address(e.ipv4)
            except ValueError:
                continue
        out.setdefault(e.mac.lower(), HostEntry(e.mac.lower(), e.name, e.ipv4))
    return list(out.values())


# Words dnsmasq reads as keywords in a dhcp-host line, not as a host name.
_HOSTS_KEYWORDS = ("ignore", "infinite")


def render_hosts(entries: Iterable[HostEntry], dns_mode: str,
                 domain: str = DEFAULT_DOMAIN) -> str:
    """dnsmasq's --dhcp-hostsfile: `<mac>[,<ipv4>][,<name>]` per nic. Names only in the
    managed DNS mode (as LXD); an entry with nothing to say is left out. An instance named
    like a dnsmasq keyword is written with the domain, which dnsmasq takes as that name."""
    lines = []
    for e in clean_entries(entries):
        fields = [e.mac]
        if e.ipv4:
            fields.append(e.ipv4)
        if dns_mode == "managed":
            fields.append(f"{e.name}.{domain}" if e.name.lower() in _HOSTS_KEYWORDS
                          else e.name)
        if len(fields) > 1:
            lines.append(",".join(fields))
    return "".join(line + "\n" for line in lines)


@dataclass(frozen=True)
class Lease:
    expiry: int  # epoch seconds, 0 = never
    hwaddr: str
    address: str
    hostname: str


def _duid_mac(duid: str) -> str:
    """The MAC inside a DUID-LLT (type 1) or DUID-LL (type 3) of ethernet (hw type 1)."""
    parts = duid.lower().split(":")
    if len(parts) == 14 and parts[:4] == ["00", "01", "00", "01"]:
        return ":".join(parts[8:])
    if len(parts) == 10 and parts[:4] == ["00", "03", "00", "01"]:
        return ":".join(parts[4:])
    return ""


def parse_leases(text: str) -> list[Lease]:
    """dnsmasq's leases file: `<expiry> <mac> <ipv4> <hostname|*> <client-id|*>` lines, and
    for DHCPv6 a `duid` line then `<expiry> <iaid> <ipv6> <hostname|*> <duid>` lines.
    Anything else is skipped. Host names come from clients: kept only if they are one."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or not fields[0].isdigit():
            continue
        try:
            address = ipaddress.ip_address(fields[2])
        except ValueError:
            continue
        if address.version == 4:
            if not _MAC.fullmatch(fields[1]):
                continue
            mac = fields[1].lower()
        else:
            mac = _duid_mac(fields[4]) if len(fields) > 4 else ""
        host = fields[3] if _HOSTNAME.fullmatch(fields[3]) else ""
        out.append(Lease(int(fields[0]), mac, str(address), host))
    return out


def drop_leases(text: str, macs: Collection[str]) -> str:
    """dnsmasq's leases file without the leases of `macs` (IPv4 by MAC, IPv6 by the MAC in
    the client's DUID); every other line kept as it was."""
    gone = {m.lower() for m in macs}
    kept = []
    for line in text.splitlines(keepends=True):
        fields = line.split()
        if len(fields) >= 5 and fields[0].isdigit():
            mac = fields[1].lower() if _MAC.fullmatch(fields[1]) else _duid_mac(fields[4])
            if mac in gone:
                continue
        kept.append(line)
    return "".join(kept)


def lease_objects(leases: Iterable[Lease], statics: Iterable[HostEntry], now: float
                  ) -> list[dict[str, str]]:
    """LXD's /1.0/networks/<n>/leases: static reservations first, then live dynamic
    leases (an address that is also a reservation is listed once)."""
    out = []
    seen = set()
    for e in clean_entries(statics):
        if e.ipv4:
            out.append({"hostname": e.name, "hwaddr": e.mac, "address": e.ipv4,
                        "type": "static", "location": "none"})
            seen.add((e.mac, e.ipv4))
    for lease in leases:
        if lease.expiry and lease.expiry < now or (lease.hwaddr, lease.address) in seen:
            continue
        out.append({"hostname": lease.hostname, "hwaddr": lease.hwaddr,
                    "address": lease.address, "type": "dynamic", "location": "none"})
    return out


# ---------------------------------------------------------------- nftables


def nat_table(name: str) -> str:
    """Network names are valid nft identifiers after this prefix (letters, digits, _ . -)."""
    return f"machined_{check_name(name)}"


def nat_ruleset(name: str, p: Plan) -> str | None:
    """The whole NAT table of a network (replacing any previous one in one transaction),
    or None when neither ipv4.nat nor ipv6.nat is on."""
    masq = []
    if p.nat4 and p.ipv4 is not None:
        net = p.ipv4.network
        masq.append(f"\t\tip saddr {net} ip daddr != {net} masquerade")
    if p.nat6 and p.ipv6 is not None:
        net6 = p.ipv6.network
        masq.append(f"\t\tip6 saddr {net6} ip6 daddr != {net6} masquerade")
    if not masq:
        return None
    table = nat_table(name)
    return "\n".join([
        f"table inet {table}",
        f"delete table inet {table}",
        f"table inet {table} {{",
        "\tchain mc_postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
        *masq,
        "\t}",
        "\tchain mc_forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        f'\t\tiifname "{name}" accept',
        f'\t\toifname "{name}" accept',
        "\t}",
        "}",
    ]) + "\n"


def nat_removal(name: str) -> str:
    """Deletes the table whether or not it exists (declaring it first)."""
    table = nat_table(name)
    return f"table inet {table}\ndelete table inet {table}\n"


# ---------------------------------------------------------------- API objects


def network_object(name: str, description: str, config: Mapping[str, str], status: str,
                   used_by: list[str]) -> dict[str, Any]:
    return {"name": name, "description": description, "type": "bridge", "managed": True,
            "status": status, "config": dict(config), "used_by": used_by,
            "locations": ["none"], "project": "default"}


def unmanaged_object(name: str, kind: str, used_by: list[str]) -> dict[str, Any]:
    return {"name": name, "description": "", "type": kind, "managed": False, "status": "",
            "config": {}, "used_by": used_by, "locations": ["none"], "project": "default"}


def link_type(name: str, kind: str | None, link_layer_ether: bool) -> str:
    """LXD's type of a host interface."""
    if name == "lo":
        return "loopback"
    if kind in ("bridge", "bond", "vlan"):
        return kind
    if kind is None and link_layer_ether:
        return "physical"
    return "unknown"
