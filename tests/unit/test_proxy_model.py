"""Proxy devices, pure part (machined/network/proxy_model.py) and their device rules."""

from __future__ import annotations

import socket
import struct

import pytest

from machined.config.devices import validate_device, validate_expanded
from machined.errors import BadRequest
from machined.network import proxy_model as pm


@pytest.mark.parametrize("value,host,ports,family", [
    ("tcp:127.0.0.1:80", "127.0.0.1", (80,), socket.AF_INET),
    ("tcp:0.0.0.0:65535", "0.0.0.0", (65535,), socket.AF_INET),
    ("tcp:[::1]:8080", "::1", (8080,), socket.AF_INET6),
    ("tcp:[0:0::0001]:1", "::1", (1,), socket.AF_INET6),  # normalised
    ("tcp:[::]:8000-8002,9000", "::", (8000, 8001, 8002, 9000), socket.AF_INET6),
    ("tcp:10.0.0.1:5-5", "10.0.0.1", (5,), socket.AF_INET),
])
def test_parses_addresses(value, host, ports, family):
    addr = pm.parse_address(value)
    assert (addr.kind, addr.host, addr.ports, addr.family) == ("tcp", host, ports, family)


@pytest.mark.parametrize("value,problem", [
    ("127.0.0.1:80", "unknown type '127.0.0.1': accepted is tcp"),
    ("tcp", "the type is missing"),
    ("udp:127.0.0.1:53", "type 'udp' is not supported yet: accepted is tcp"),
    ("unix:/run/x.sock", "type 'unix' is not supported yet: accepted is tcp"),
    ("sctp:127.0.0.1:1", "unknown type 'sctp': accepted is tcp"),
    ("tcp:127.0.0.1", "the port is missing"),
    ("tcp:127.0.0.1:", "the port is missing"),
    ("tcp::80", "the address is missing"),
    ("tcp:localhost:80", "'localhost' is not an IPv4 address: names are not resolved, use "
                         "127.0.0.1 for localhost"),
    ("tcp:::1:80", "an IPv6 address goes in brackets, e.g. tcp:[::1]:80"),
    ("tcp:[::1]80", "an IPv6 address in brackets is followed by :<port>"),
    ("tcp:[::1:80", "an IPv6 address in brackets is followed by :<port>"),
    ("tcp:[127.0.0.1]:80", "'127.0.0.1' is not an IPv6 address"),
    ("tcp:[fe80::1%eth0]:80", "'fe80::1%eth0': scoped IPv6 addresses are not supported"),
    ("tcp:256.0.0.1:80", "'256.0.0.1' is not an IPv4 address: names are not resolved, use "
                         "127.0.0.1 for localhost"),
    ("tcp:127.0.0.1:0", "'0' is not a port number from 1 to 65535"),
    ("tcp:127.0.0.1:65536", "'65536' is not a port number from 1 to 65535"),
    ("tcp:127.0.0.1:http", "'http' is not a port number from 1 to 65535"),
    ("tcp:127.0.0.1:+80", "'+80' is not a port number from 1 to 65535"),
    ("tcp:127.0.0.1:\u0668\u0660", "'\u0668\u0660' is not a port number from 1 to 65535"),
    ("tcp:127.0.0.1:80,", "'' is not a port number from 1 to 65535"),
    ("tcp:127.0.0.1:90-80", "port range '90-80' ends before it starts"),
    ("tcp:127.0.0.1:1-100,200", "at most 100 ports per device"),
    ("tcp:127.0.0.1:1-65535", "at most 100 ports per device"),
    ("tcp:127.0.0.1:80,79-81", "port 80 is listed twice"),
])
def test_refuses_bad_addresses_saying_why(value, problem):
    with pytest.raises(pm.AddressError) as e:
        pm.parse_address(value)
    assert e.value.problem == problem
    assert str(e.value) == f"{pm.SYNTAX} ({problem})"


def test_endpoint_text_puts_ipv6_in_brackets():
    assert str(pm.Endpoint("tcp", "::1", 80)) == "tcp:[::1]:80"
    assert str(pm.Endpoint("tcp", "127.0.0.1", 80)) == "tcp:127.0.0.1:80"
    assert pm.Endpoint("tcp", "::1", 80).sockaddr() == ("::1", 80)


@pytest.mark.parametrize("config", [
    {"type": "proxy", "listen": "tcp:127.0.0.1:8080", "connect": "tcp:127.0.0.1:80"},
    {"type": "proxy", "listen": "tcp:[::]:80", "connect": "tcp:[::1]:80", "bind": "host",
     "nat": "false", "proxy_protocol": "true"},
    {"type": "proxy", "listen": "tcp:127.0.0.1:9000", "connect": "tcp:127.0.0.1:9000",
     "bind": "instance"},
    {"type": "proxy", "listen": "tcp:127.0.0.1:8000-8001", "connect": "tcp:127.0.0.1:80-81"},
])
def test_accepts_proxy_devices(config):
    validate_device("web", config)


SYNTAX = pm.SYNTAX


@pytest.mark.parametrize("config,message", [
    ({"type": "proxy", "connect": "tcp:127.0.0.1:80"},
     f"Proxy device 'web' needs 'listen': {SYNTAX}"),
    ({"type": "proxy", "listen": "tcp:127.0.0.1:80"},
     f"Proxy device 'web' needs 'connect': {SYNTAX}"),
    ({"type": "proxy", "listen": "tcp:127.0.0.1:8080", "connect": "udp:127.0.0.1:80"},
     f"Invalid value 'udp:127.0.0.1:80' for key 'connect' of device 'web': expected {SYNTAX} "
     "(type 'udp' is not supported yet: accepted is tcp)"),
    ({"type": "proxy", "listen": "tcp:127.0.0.1:99999", "connect": "tcp:127.0.0.1:80"},
     f"Invalid value 'tcp:127.0.0.1:99999' for key 'listen' of device 'web': expected {SYNTAX} "
     "('99999' is not a port number from 1 to 65535)"),
    ({"type": "proxy", "listen": "tcp:127.0.0.1:80", "connect": "tcp:127.0.0.1:80",
      "bind": "container"},
     "Invalid value 'container' for key 'bind' of device 'web': expected one of: host, "
     "instance"),
    ({"type": "proxy", "listen": "tcp:127.0.0.1:80", "connect": "tcp:127.0.0.1:80",
      "nat": "true"},
     "Invalid value 'true' for key 'nat' of device 'web': expected false (nat=true is not "
     "supported: connections are proxied)"),
    ({"type": "proxy", "listen": "tcp:127.0.0.1:80", "connect": "tcp:127.0.0.1:80",
      "proxy_protocol": "v2"},
     "Invalid value 'v2' for key 'proxy_protocol' of device 'web': expected a boolean "
     "(true/false, yes/no, on/off, 1/0)"),
    ({"type": "proxy", "listen": "tcp:127.0.0.1:80", "connect": "tcp:127.0.0.1:80",
      "security.uid": "1000"},
     "Unknown key 'security.uid' for proxy device 'web': accepted are bind, connect, listen, "
     "nat, proxy_protocol"),
    ({"type": "proxy", "listen": "tcp:127.0.0.1:80-82", "connect": "tcp:127.0.0.1:80-81"},
     "Proxy device 'web' connects to 2 ports but listens on 3: connect names one port or as "
     "many as listen"),
    ({"type": "proxy", "listen": "tcp:127.0.0.1:80", "connect": "tcp:0.0.0.0:80"},
     "Proxy device 'web' cannot connect to tcp:0.0.0.0:80: name a specific address, e.g. "
     "127.0.0.1"),
    ({"type": "proxy", "listen": "tcp:127.0.0.1:80", "connect": "tcp:[::]:80"},
     "Proxy device 'web' cannot connect to tcp:[::]:80: name a specific address, e.g. "
     "127.0.0.1"),
])
def test_refuses_bad_proxy_devices_in_one_line(config, message):
    with pytest.raises(BadRequest) as e:
        validate_device("web", config)
    assert str(e.value) == message
    assert "\n" not in message


def test_forwards_map_listening_ports_in_order():
    fws = pm.forwards("web", {"type": "proxy", "listen": "tcp:0.0.0.0:8000-8002",
                              "connect": "tcp:127.0.0.1:80-82"})
    assert [(str(f.listen), str(f.connect)) for f in fws] == [
        ("tcp:0.0.0.0:8000", "tcp:127.0.0.1:80"), ("tcp:0.0.0.0:8001", "tcp:127.0.0.1:81"),
        ("tcp:0.0.0.0:8002", "tcp:127.0.0.1:82")]
    one = pm.forwards("web", {"listen": "tcp:[::1]:8000,8005", "connect": "tcp:10.0.0.2:80"})
    assert [(f.listen.port, f.connect.port, f.bind, f.proxy_protocol) for f in one] == [
        (8000, 80, "host", False), (8005, 80, "host", False)]


def test_plan_takes_proxy_devices_in_name_order_and_their_options():
    devices = {
        "web": {"type": "proxy", "listen": "tcp:127.0.0.1:8080", "connect": "tcp:127.0.0.1:80",
                "proxy_protocol": "yes"},
        "eth0": {"type": "nic", "network": "mcbr0"},
        "back": {"type": "proxy", "listen": "tcp:127.0.0.1:3306",
                 "connect": "tcp:127.0.0.1:3306", "bind": "instance"},
        "root": {"type": "disk", "path": "/", "pool": "default"},
    }
    plan = pm.plan(devices)
    assert list(plan) == ["back", "web"]
    assert plan["back"] == (pm.Forward("back", "instance", pm.Endpoint("tcp", "127.0.0.1", 3306),
                                       pm.Endpoint("tcp", "127.0.0.1", 3306), False),)
    assert plan["web"][0].proxy_protocol is True
    assert pm.plan({"root": devices["root"]}) == {}


def _proxy(listen: str, bind: str = "host") -> dict[str, str]:
    return {"type": "proxy", "listen": listen, "connect": "tcp:127.0.0.1:80", "bind": bind}


@pytest.mark.parametrize("a,b", [
    (_proxy("tcp:127.0.0.1:8080"), _proxy("tcp:127.0.0.1:8080")),
    (_proxy("tcp:0.0.0.0:8080"), _proxy("tcp:127.0.0.1:8080")),
    (_proxy("tcp:127.0.0.1:8000-8010"), _proxy("tcp:127.0.0.1:8010")),
    (_proxy("tcp:[::]:8080"), _proxy("tcp:10.1.1.1:8080")),  # :: is dual-stack
    (_proxy("tcp:[::1]:8080"), _proxy("tcp:[::]:8080")),
    (_proxy("tcp:127.0.0.1:9", "instance"), _proxy("tcp:127.0.0.1:9", "instance")),
])
def test_two_devices_cannot_listen_on_the_same_port(a, b):
    with pytest.raises(BadRequest) as e:
        validate_expanded({"a": a, "b": b})
    assert str(e.value).startswith("Proxy devices 'a' and 'b' both listen on port ")


@pytest.mark.parametrize("a,b", [
    (_proxy("tcp:127.0.0.1:8080"), _proxy("tcp:127.0.0.2:8080")),
    (_proxy("tcp:127.0.0.1:8080"), _proxy("tcp:127.0.0.1:8081")),
    (_proxy("tcp:0.0.0.0:8080"), _proxy("tcp:[::1]:8080")),  # v4 wildcard, v6 address
    (_proxy("tcp:127.0.0.1:8080"), _proxy("tcp:127.0.0.1:8080", "instance")),  # two sides
])
def test_devices_on_distinct_addresses_or_sides_coexist(a, b):
    validate_expanded({"a": a, "b": b})


def test_conflict_message_names_both_devices_and_addresses():
    with pytest.raises(BadRequest) as e:
        validate_expanded({"a": _proxy("tcp:0.0.0.0:8080"), "b": _proxy("tcp:127.0.0.1:8080")})
    assert str(e.value) == ("Proxy devices 'a' and 'b' both listen on port 8080 "
                            "(tcp:0.0.0.0:8080 and tcp:127.0.0.1:8080, bind=host)")


def test_proxy_protocol_v2_header_carries_client_and_listen_addresses():
    header = pm.proxy_header(("192.0.2.1", 40000), ("127.0.0.1", 8080))
    assert header[:12] == b"\r\n\r\n\x00\r\nQUIT\n"
    assert header[12:16] == b"\x21\x11\x00\x0c"  # v2 PROXY, TCP/IPv4, 12 bytes
    assert header[16:] == (bytes([192, 0, 2, 1]) + bytes([127, 0, 0, 1])
                           + struct.pack("!HH", 40000, 8080))
    v6 = pm.proxy_header(("::1", 1, 0, 0), ("::1", 2, 0, 0))
    assert v6[12:16] == b"\x21\x21\x00\x24" and len(v6) == 16 + 36
    assert v6[-4:] == struct.pack("!HH", 1, 2)


def test_proxy_protocol_header_is_local_without_comparable_addresses():
    local = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
    assert pm.proxy_header(None, ("127.0.0.1", 80)) == local
    assert pm.proxy_header(("127.0.0.1", 1), ("::1", 80, 0, 0)) == local
