"""Proxy devices, pure part: LXD's `listen`/`connect` address syntax, the device's keys and
rules, and the plan of forwards (one per listening port) an instance's devices make.

An address is `tcp:<ip>:<ports>` with IPv6 in brackets (`tcp:[::1]:80`); `<ports>` on `listen`
may be a list of ports and ranges (`8000-8009,8080`), `connect` names one port (every listening
port goes there) or as many as `listen` (mapped in order), as LXD. Addresses are IP literals
(no names: resolving them would make a start depend on DNS). Only `tcp` is implemented; `udp`
and `unix` are refused with a clear error.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from machined.errors import BadRequest

TYPES = ("tcp",)
NOT_YET = ("udp", "unix")
BINDS = ("host", "instance")
MAX_PORTS = 100  # listening sockets one device may ask for (each is a listener and an fd)
SYNTAX = ("tcp:<address>:<port>[-<port>][,<port>...] such as tcp:127.0.0.1:8080 or "
          "tcp:[::1]:8000-8009")


@dataclass(frozen=True)
class Address:
    """A parsed `listen` or `connect` value."""

    kind: str  # tcp
    host: str  # the IP address, normalised (no brackets)
    ports: tuple[int, ...]

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    @property
    def wildcard(self) -> bool:
        return ipaddress.ip_address(self.host).is_unspecified


@dataclass(frozen=True)
class Endpoint:
    """One socket address of a forward."""

    kind: str
    host: str
    port: int

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    def sockaddr(self) -> tuple[str, int]:
        return (self.host, self.port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.kind}:{host}:{self.port}"


@dataclass(frozen=True)
class Forward:
    """Connections accepted at `listen` are relayed to `connect`. bind=host: `listen` is on
    the host and `connect` inside the instance; bind=instance: the other way round."""

    device: str
    bind: str
    listen: Endpoint
    connect: Endpoint
    proxy_protocol: bool = False


# ---------------------------------------------------------------- addresses


class AddressError(ValueError):
    """What is wrong with an address, followed by the syntax accepted."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"{SYNTAX} ({problem})")
        self.problem = problem


def parse_address(value: str) -> Address:
    """Parse `tcp:<ip>:<ports>`; raises AddressError (a ValueError) saying what is wrong."""
    kind, sep, rest = value.partition(":")
    if not sep:
        raise AddressError("the type is missing")
    if kind in NOT_YET:
        raise AddressError(f"type {kind!r} is not supported yet: accepted is tcp")
    if kind not in TYPES:
        raise AddressError(f"unknown type {kind!r}: accepted is tcp")
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket or not tail.startswith(":"):
            raise AddressError("an IPv6 address in brackets is followed by :<port>")
        ports_text = tail[1:]
        host = _ip(host, 6)
    else:
        host, sep, ports_text = rest.rpartition(":")
        if not sep:
            raise AddressError("the port is missing")
        if ":" in host:
            raise AddressError("an IPv6 address goes in brackets, e.g. tcp:[::1]:80")
        host = _ip(host, 4)
    return Address(kind, host, parse_ports(ports_text))


def _ip(text: str, version: int) -> str:
    if not text:
        raise AddressError("the address is missing")
    if "%" in text:
        raise AddressError(f"{text!r}: scoped IPv6 addresses are not supported")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        hint = ": names are not resolved, use 127.0.0.1 for localhost" if version == 4 else ""
        raise AddressError(f"{text!r} is not an IPv{version} address{hint}") from None
    if ip.version != version:
        raise AddressError(f"{text!r} is not an IPv{version} address")
    return ip.compressed


def parse_ports(text: str) -> tuple[int, ...]:
    """`80` or `8000-8009,8080` -> the ports in order (each once, at most MAX_PORTS)."""
    if not text:
        raise AddressError("the port is missing")
    ports: list[int] = []
    for part in text.split(","):
        low_text, dash, high_text = part.partition("-")
        low = _port(low_text)
        high = _port(high_text) if dash else low
        if high < low:
            raise AddressError(f"port range {part!r} ends before it starts")
        if high - low + 1 + len(ports) > MAX_PORTS:
            raise AddressError(f"at most {MAX_PORTS} ports per device")
        ports.extend(range(low, high + 1))
    if len(set(ports)) != len(ports):
        twice = next(p for p in ports if ports.count(p) > 1)
        raise AddressError(f"port {twice} is listed twice")
    return tuple(ports)


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise AddressError(f"{text!r} is not a port number from 1 to 65535")
    return int(text)


# ---------------------------------------------------------------- devices


def check_device(name: str, config: Mapping[str, str]) -> None:
    """The rules between a proxy device's keys (each key's value is checked by the key table
    in config/devices.py); raises BadRequest naming the device."""
    for key in ("listen", "connect"):
        if key not in config:
            raise BadRequest(f"Proxy device {name!r} needs {key!r}: {SYNTAX}")
    forwards(name, config)


def forwards(name: str, config: Mapping[str, str]) -> list[Forward]:
    """The forwards of one (validated) proxy device, one per listening port."""
    try:
        listen = parse_address(config["listen"])
        connect = parse_address(config["connect"])
    except AddressError as e:
        raise BadRequest(f"Invalid address in proxy device {name!r}: {e.problem}") from None
    if len(connect.ports) not in (1, len(listen.ports)):
        raise BadRequest(f"Proxy device {name!r} connects to {len(connect.ports)} ports but "
                         f"listens on {len(listen.ports)}: connect names one port or as "
                         "many as listen")
    if connect.wildcard:
        raise BadRequest(f"Proxy device {name!r} cannot connect to {config['connect']}: "
                         "name a specific address, e.g. 127.0.0.1")
    bind = config.get("bind", "host")
    proxy_protocol = config.get("proxy_protocol", "false").strip().lower() in (
        "true", "1", "yes", "on")
    connect_ports = connect.ports
    if len(connect_ports) == 1:
        connect_ports = connect_ports * len(listen.ports)
    out = []
    for lport, cport in zip(listen.ports, connect_ports, strict=True):
        out.append(Forward(name, bind, Endpoint(listen.kind, listen.host, lport),
                           Endpoint(connect.kind, connect.host, cport), proxy_protocol))
    return out


def plan(devices: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[Forward, ...]]:
    """Device name -> its forwards, for every proxy device of an instance's (validated,
    expanded) devices, in device-name order."""
    return {name: tuple(forwards(name, dev)) for name, dev in sorted(devices.items())
            if dev.get("type") == "proxy"}


def check_expanded(devices: Mapping[str, Mapping[str, Any]]) -> None:
    """No two proxy devices of an instance listen on the same port on the same side (a
    wildcard address overlaps its family; `::` is dual-stack, so it overlaps both)."""
    seen: dict[tuple[str, int], list[Forward]] = {}
    for forwards_ in plan(devices).values():
        for fw in forwards_:
            for other in seen.get((fw.bind, fw.listen.port), []):
                if other.device != fw.device and _overlap(other.listen, fw.listen):
                    raise BadRequest(f"Proxy devices {other.device!r} and {fw.device!r} both "
                                     f"listen on port {fw.listen.port} ({other.listen} and "
                                     f"{fw.listen}, bind={fw.bind})")
            seen.setdefault((fw.bind, fw.listen.port), []).append(fw)


def _overlap(a: Endpoint, b: Endpoint) -> bool:
    if a.host == b.host:
        return True
    if "::" in (a.host, b.host):
        return True
    wild_a = ipaddress.ip_address(a.host).is_unspecified
    wild_b = ipaddress.ip_address(b.host).is_unspecified
    return (wild_a or wild_b) and a.family == b.family


# ---------------------------------------------------------------- PROXY protocol

PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_header(source: tuple[Any, ...] | None, destination: tuple[Any, ...] | None) -> bytes:
    """The HAProxy PROXY protocol v2 header sent first on the `connect` side when
    proxy_protocol=true: the client's address and the address it connected to. Addresses
    as socket.getpeername()/getsockname() give them; anything else is sent as LOCAL (no
    address), which receivers accept."""
    if source and destination:
        src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
        if src.version == dst.version:
            family = 0x11 if src.version == 4 else 0x21  # TCP over IPv4 / IPv6
            body = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
            return PROXY_V2_SIGNATURE + struct.pack("!BBH", 0x21, family, len(body)) + body
    return PROXY_V2_SIGNATURE + struct.pack("!BBH", 0x20, 0x00, 0)
