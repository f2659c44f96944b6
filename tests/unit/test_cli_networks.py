"""mc network, `launch --network`, and the network parts of `mc info` on the client side: the
requests they make, what they print, the errors they give before asking the server. A
recording fake stands in for the API client. Also the pure half of machined/network/state.py
(netlink messages -> LXD's `state.network`)."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

import pytest

from cli.commands.create import create_request
from cli.commands.info import format_info
from cli.commands.network import (
    create_request as network_create_request,
)
from cli.commands.network import (
    device_to_detach,
    format_network_state,
    instance_nic,
    lease_row,
    network_row,
    network_yaml,
)
from cli.errors import CliError
from machined.network import state as netstate
from tests.unit.test_cli_snapshots import FakeClient, install_fake, run

NET: dict[str, Any] = {
    "name": "t6b0", "description": "lab", "type": "bridge", "managed": True,
    "status": "Created", "locations": ["none"],
    "config": {"ipv4.nat": "false", "ipv4.address": "10.207.1.1/24", "ipv6.address": "none"},
    "used_by": ["/1.0/instances/c1", "/1.0/profiles/web"],
}
HOST_IF: dict[str, Any] = {"name": "eth0", "type": "physical", "managed": False, "config": {},
                           "description": "", "used_by": [], "status": ""}
LEASES = [
    {"hostname": "c1", "hwaddr": "00:16:3e:00:00:01", "address": "10.207.1.20",
     "type": "dynamic", "location": "none"},
    {"hostname": "c2", "hwaddr": "00:16:3e:00:00:02", "address": "10.207.1.5",
     "type": "static", "location": "none"},
]
INST: dict[str, Any] = {
    "name": "c1", "status": "Stopped", "config": {"limits.cpu": "1"}, "profiles": ["default"],
    "ephemeral": False, "description": "",
    "devices": {"data": {"type": "disk", "source": "/srv", "path": "/srv"}},
    "expanded_devices": {"eth0": {"type": "nic", "network": "mcbr0", "name": "eth0"}},
}
NET_STATE = {
    "addresses": [{"family": "inet", "address": "10.207.1.1", "netmask": "24",
                   "scope": "global"},
                  {"family": "inet6", "address": "fe80::1", "netmask": "64", "scope": "link"}],
    "counters": {"bytes_received": 2048, "bytes_sent": 100, "packets_received": 4,
                 "packets_sent": 1},
    "hwaddr": "00:16:3e:12:34:56", "mtu": 1500, "state": "up", "type": "broadcast",
    "bridge": {"id": "8000.00163e123456", "stp": False, "forward_delay": 1500,
               "vlan_default": 1, "vlan_filtering": True, "upper_devices": ["veth1a2b3c4d"]},
}


# -- pure helpers ----------------------------------------------------------------------------
def test_list_rows_as_lxc() -> None:
    assert network_row(NET) == ["t6b0", "bridge", "YES", "10.207.1.1/24", "none", "lab", "2",
                                "CREATED"]
    assert network_row(HOST_IF) == ["eth0", "physical", "NO", "", "", "", "0", ""]
    assert lease_row(LEASES[1]) == ["c2", "00:16:3e:00:00:02", "10.207.1.5", "STATIC"]


def test_create_request_merges_document_arguments_and_description() -> None:
    assert network_create_request("n1", ("ipv4.address=auto",), "bridge", None) == {
        "name": "n1", "type": "bridge", "config": {"ipv4.address": "auto"}}
    doc = {"config": {"ipv4.nat": "false", "ipv6.address": "none"}, "description": "from yaml"}
    body = network_create_request("n1", ("ipv6.address=auto",), "bridge", None, doc)
    assert body["config"] == {"ipv4.nat": "false", "ipv6.address": "auto"}
    assert body["description"] == "from yaml"
    assert network_create_request("n1", (), "bridge", "flag", doc)["description"] == "flag"
    with pytest.raises(CliError, match='Bad key=value pair: "ipv4.nat"'):
        network_create_request("n1", ("ipv4.nat",), "bridge", None)


def test_show_yaml_has_lxd_fields_with_sorted_config() -> None:
    text = network_yaml(NET)
    assert text.startswith("name: t6b0\ndescription: lab\ntype: bridge\nmanaged: true\n"
                           "status: Created\nconfig:\n  ipv4.address: 10.207.1.1/24\n"
                           "  ipv4.nat: 'false'\n  ipv6.address: none\n")
    assert "used_by:\n- /1.0/instances/c1\n- /1.0/profiles/web\nlocations:\n- none\n" in text


def test_nic_for_managed_unmanaged_bridge_and_other_interfaces() -> None:
    assert instance_nic(NET) == {"type": "nic", "network": "t6b0"}
    assert instance_nic(NET, "eth1") == {"type": "nic", "network": "t6b0", "name": "eth1"}
    assert instance_nic({"name": "br9", "type": "bridge", "managed": False}) == {
        "type": "nic", "nictype": "bridged", "parent": "br9"}
    assert instance_nic(HOST_IF) == {"type": "nic", "nictype": "macvlan", "parent": "eth0"}


def test_detach_finds_the_one_nic_on_the_network() -> None:
    obj = {"devices": {"a": {"type": "nic", "network": "t6b0"},
                       "b": {"type": "nic", "nictype": "bridged", "parent": "t6b0"},
                       "c": {"type": "nic", "network": "other"},
                       "d": {"type": "disk", "path": "/d", "source": "/d"}}}
    assert device_to_detach(obj, "t6b0", "b", "c1") == "b"
    assert device_to_detach(obj, "other", None, "c1") == "c"
    with pytest.raises(CliError, match=r"c1 has several nics on network t6b0 \(a, b\): name"):
        device_to_detach(obj, "t6b0", None, "c1")
    with pytest.raises(CliError, match="Device 'c' of c1 is not a nic on network t6b0"):
        device_to_detach(obj, "t6b0", "c", "c1")
    with pytest.raises(CliError, match="Device 'zz' doesn't exist on c1"):
        device_to_detach(obj, "t6b0", "zz", "c1")
    with pytest.raises(CliError, match="c1 has no nic on network nope"):
        device_to_detach(obj, "nope", None, "c1")
    with pytest.raises(CliError, match="comes from a profile: detach it from the profile"):
        device_to_detach(INST, "mcbr0", None, "c1")


def test_network_info_layout() -> None:
    text = format_network_state("t6b0", NET_STATE)
    assert text == (
        "Name: t6b0\nMAC address: 00:16:3e:12:34:56\nMTU: 1500\nState: up\nType: broadcast\n"
        "\nIP addresses:\n  inet:  10.207.1.1/24 (global)\n  inet6: fe80::1/64 (link)\n"
        "\nNetwork usage:\n  Bytes received: 2.00KiB\n  Bytes sent: 100B\n"
        "  Packets received: 4\n  Packets sent: 1\n"
        "\nBridge:\n  ID: 8000.00163e123456\n  STP: false\n  Forward delay: 1500\n"
        "  Default VLAN ID: 1\n  VLAN filtering: true\n  Upper devices: veth1a2b3c4d\n")
    assert format_network_state("lo", {"mtu": 65536}) == "Name: lo\nMTU: 65536\n"


def test_instance_info_network_usage_lists_every_interface_like_lxc() -> None:
    state = {"status": "Running", "pid": 7, "processes": 2, "network": {
        "lo": {"type": "loopback", "state": "up", "mtu": 65536, "hwaddr": "",
               "counters": {"bytes_received": 0, "bytes_sent": 0, "packets_received": 0,
                            "packets_sent": 0},
               "addresses": [{"family": "inet", "address": "127.0.0.1", "netmask": "8",
                              "scope": "local"}]},
        "eth0": {"type": "broadcast", "state": "up", "host_name": "veth0a1b2c3d",
                 "hwaddr": "00:16:3e:aa:bb:cc", "mtu": 1500,
                 "counters": {"bytes_received": 5000, "bytes_sent": 10, "packets_received": 9,
                              "packets_sent": 1},
                 "addresses": [{"family": "inet", "address": "10.207.1.20", "netmask": "24",
                                "scope": "global"}]},
        "\x1b[2Jx": {"type": "broadcast", "state": "down", "counters": {}, "addresses": []},
    }}
    text = format_info({"name": "c1", "architecture": "x86_64"}, state)
    usage = text[text.index("    eth0:\n"):]
    assert "  Network usage:\n    \\x1b[2Jx:\n      Type: broadcast\n      State: DOWN\n" in text
    assert usage.startswith(
        "    eth0:\n      Type: broadcast\n      State: UP\n"
        "      Host interface: veth0a1b2c3d\n      MAC address: 00:16:3e:aa:bb:cc\n"
        "      MTU: 1500\n      Bytes received: 4.88KiB\n      Bytes sent: 10B\n"
        "      Packets received: 9\n      Packets sent: 1\n      IP addresses:\n"
        "        inet:  10.207.1.20/24 (global)\n    lo:\n      Type: loopback\n")
    assert "        inet:  127.0.0.1/8 (local)\n" in usage
    # An interface name is the container's choice: no escape sequence reaches the terminal.
    assert "\x1b" not in text and "    \\x1b[2Jx:\n" in text


def test_launch_network_makes_the_instance_eth0() -> None:
    body = create_request("busybox", "c1", storage="fast",
                          nic={"type": "nic", "network": "t6b0"})
    assert body["devices"] == {
        "root": {"type": "disk", "path": "/", "pool": "fast"},
        "eth0": {"type": "nic", "network": "t6b0", "name": "eth0"}}
    assert "devices" not in create_request("busybox", "c1")


# -- commands through a fake client ----------------------------------------------------------
@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    return install_fake(monkeypatch)


def _answers(fake: FakeClient) -> None:
    fake.answers.update({
        "/1.0/networks?recursion=1": [NET, HOST_IF],
        "/1.0/networks/t6b0": NET,
        "/1.0/networks/eth0": HOST_IF,
        "/1.0/networks/t6b0/leases": LEASES,
        "/1.0/networks/t6b0/state": NET_STATE,
        "/1.0/instances/c1": INST,
        "/1.0/profiles/web": {"name": "web", "config": {}, "description": "",
                              "devices": {"t6b0": {"type": "nic", "network": "t6b0"}}},
    })


def test_mc_network_list_in_every_format(fake: FakeClient) -> None:
    _answers(fake)
    table = run("network", "list").output.splitlines()
    assert table[1] == ("| NAME |   TYPE   | MANAGED |     IPV4      | IPV6 | DESCRIPTION "
                        "| USED BY |  STATE  |")
    assert table[3] == ("| eth0 | physical | NO      |               |      |             "
                        "| 0       |         |")
    assert table[5].startswith("| t6b0 | bridge   | YES     | 10.207.1.1/24 | none | lab ")
    assert run("network", "ls", "-f", "csv").output == (
        "eth0,physical,NO,,,,0,\nt6b0,bridge,YES,10.207.1.1/24,none,lab,2,CREATED\n")
    assert [n["name"] for n in json.loads(run("network", "list", "-f", "json").output)] == [
        "eth0", "t6b0"]
    assert "- name: eth0\n" in run("network", "list", "--format", "yaml").output
    assert run("network", "list", "-f", "csv,header").output.startswith(
        "NAME,TYPE,MANAGED,IPV4,IPV6,DESCRIPTION,USED BY,STATE\n")
    assert fake.writes() == []


def test_mc_network_leases_show_get_info(fake: FakeClient) -> None:
    _answers(fake)
    assert run("network", "list-leases", "t6b0", "-f", "csv").output == (
        "c1,00:16:3e:00:00:01,10.207.1.20,DYNAMIC\nc2,00:16:3e:00:00:02,10.207.1.5,STATIC\n")
    assert "| HOSTNAME |    MAC ADDRESS    | IP ADDRESS  |  TYPE   |" in run(
        "network", "list-leases", "t6b0").output
    assert json.loads(run("network", "list-leases", "t6b0", "-f", "json").output) == LEASES
    assert run("network", "show", "t6b0").output == network_yaml(NET)
    assert run("network", "get", "t6b0", "ipv4.address").output == "10.207.1.1/24\n"
    assert run("network", "get", "t6b0", "bridge.mtu").output == "\n"
    assert run("network", "get", "t6b0", "-p", "managed").output == "true\n"
    assert run("network", "get", "t6b0", "--property", "description").output == "lab\n"
    assert run("network", "info", "t6b0").output == format_network_state("t6b0", NET_STATE)
    assert fake.writes() == []


def test_mc_network_writes(fake: FakeClient) -> None:
    _answers(fake)
    for argv in (
        ("network", "create", "t6b1", "ipv4.address=10.207.2.1/24", "ipv4.nat=false",
         "--description", "second"),
        ("network", "set", "t6b0", "ipv4.dhcp.ranges", "10.207.1.50-10.207.1.99"),
        ("network", "set", "t6b0", "bridge.mtu=1400", "ipv4.dhcp=false"),
        ("network", "set", "t6b0", "-p", "description=new"),
        ("network", "unset", "t6b0", "ipv4.nat"),
        ("network", "unset", "t6b0", "-p", "description"),
        ("network", "rename", "t6b0", "t6b9"),
        ("network", "delete", "t6b0", "local:t6b1"),
    ):
        result = run("-q", *argv, stdin="")
        assert result.exit_code == 0, (argv, result.output)
        assert result.output == ""
    base = {"config": NET["config"], "description": "lab"}
    assert fake.writes() == [
        ("POST", "/1.0/networks", {"name": "t6b1", "type": "bridge", "description": "second",
                                   "config": {"ipv4.address": "10.207.2.1/24",
                                              "ipv4.nat": "false"}}),
        ("PUT", "/1.0/networks/t6b0", {**base, "config": {
            **NET["config"], "ipv4.dhcp.ranges": "10.207.1.50-10.207.1.99"}}),
        ("PUT", "/1.0/networks/t6b0", {**base, "config": {
            **NET["config"], "bridge.mtu": "1400", "ipv4.dhcp": "false"}}),
        ("PUT", "/1.0/networks/t6b0", {**base, "description": "new"}),
        ("PUT", "/1.0/networks/t6b0", {**base, "config": {
            "ipv4.address": "10.207.1.1/24", "ipv6.address": "none"}}),
        ("PUT", "/1.0/networks/t6b0", {**base, "description": ""}),
        ("POST", "/1.0/networks/t6b0", {"name": "t6b9"}),
        ("DELETE", "/1.0/networks/t6b0", None),
        ("DELETE", "/1.0/networks/t6b1", None),
    ]
    assert run("network", "create", "t6b2").output == "Network t6b2 created\n"


def test_mc_network_create_and_edit_read_yaml_from_stdin(fake: FakeClient) -> None:
    _answers(fake)
    doc = "description: d\nconfig:\n  ipv4.nat: false\n  bridge.mtu: 1400\n"
    assert run("-q", "network", "create", "t6b3", "--type", "bridge", stdin=doc).exit_code == 0
    assert run("network", "edit", "t6b0", stdin=doc).exit_code == 0
    assert run("network", "edit", "t6b0", stdin="# nothing\n").exit_code == 0  # no change
    assert fake.writes() == [
        ("POST", "/1.0/networks", {"name": "t6b3", "type": "bridge", "description": "d",
                                   "config": {"ipv4.nat": "false", "bridge.mtu": "1400"}}),
        ("PUT", "/1.0/networks/t6b0", {"description": "d", "config": {
            "ipv4.nat": "false", "bridge.mtu": "1400"}}),
    ]


@pytest.mark.parametrize(("argv", "stdin", "message"), [
    (("network", "unset", "t6b0", "nope"), "", 'The key "nope" is not set on the network'),
    (("network", "get", "t6b0", "-p", "mtu"), "",
     'The property "mtu" does not exist on the network (accepted: description, name, type, '
     "managed, status)"),
    (("network", "set", "t6b0", "-p", "name=x"), "",
     'The property "name" does not exist on the network (accepted: description)'),
    (("network", "set", "t6b0", "ipv4.nat"), "", 'Bad key=value pair: "ipv4.nat"'),
    (("network", "edit", "t6b0"), "config: [1", "Invalid YAML at line 1"),
    (("network", "edit", "t6b0"), "config: 3\n", "config must be a mapping of key: value"),
    (("network", "create", "t6b4"), "- a list\n", "The YAML document must be a mapping"),
    (("network", "create", "t6b4", "mtu"), "", 'Bad key=value pair: "mtu"'),
    (("network", "attach", "t6b0", "other:c1"), "",
     'The network and the instance must be on the same remote ("local" and "other")'),
    (("network", "detach", "t6b0", "c1"), "", "c1 has no nic on network t6b0"),
])
def test_mc_network_bad_input_is_one_line_and_writes_nothing(
        fake: FakeClient, argv: tuple[str, ...], stdin: str, message: str) -> None:
    _answers(fake)
    result = run(*argv, stdin=stdin)
    assert result.exit_code != 0
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert fake.writes() == []


def test_mc_network_list_format_errors_before_any_request(fake: FakeClient) -> None:
    for argv in (("network", "list", "-f", "xml"), ("network", "list-leases", "t6b0", "-f", "x")):
        result = run(*argv)
        assert result.exit_code == 2 and "is not one of table, compact, csv, json, yaml" in (
            result.output)
    assert fake.calls == []


def test_mc_network_attach_detach_instance_and_profile(fake: FakeClient) -> None:
    _answers(fake)
    assert run("-q", "network", "attach", "t6b0", "c1").exit_code == 0
    assert run("-q", "network", "attach", "t6b0", "c1", "net1", "eth1").exit_code == 0
    assert run("-q", "network", "attach", "eth0", "c1", "mv0").exit_code == 0
    assert run("-q", "network", "attach-profile", "t6b0", "web", "eth0", "eth0").exit_code == 0
    assert run("-q", "network", "detach-profile", "t6b0", "web").exit_code == 0
    writes = fake.writes()
    own = INST["devices"]
    inst = {"config": INST["config"], "description": "", "profiles": ["default"],
            "ephemeral": False}
    assert writes[0] == ("PUT", "/1.0/instances/c1", {**inst, "devices": {
        **own, "t6b0": {"type": "nic", "network": "t6b0"}}})
    assert writes[1][2]["devices"]["net1"] == {"type": "nic", "network": "t6b0", "name": "eth1"}
    assert writes[2][2]["devices"]["mv0"] == {"type": "nic", "nictype": "macvlan",
                                              "parent": "eth0"}
    assert writes[3] == ("PUT", "/1.0/profiles/web", {"config": {}, "description": "", "devices": {
        "t6b0": {"type": "nic", "network": "t6b0"},
        "eth0": {"type": "nic", "network": "t6b0", "name": "eth0"}}})
    assert writes[4] == ("PUT", "/1.0/profiles/web", {"config": {}, "description": "",
                                                      "devices": {}})
    result = run("network", "attach-profile", "t6b0", "web")
    assert result.exit_code == 1 and "Device 't6b0' already exists on web" in result.output
    fake.answers["/1.0/instances/c1"] = {
        **INST, "status": "Running",
        "devices": {**own, "t6b0": {"type": "nic", "network": "t6b0"}}}
    result = run("network", "detach", "t6b0", "c1")
    assert result.exit_code == 0 and "Device t6b0 removed from c1\n" in result.output
    assert fake.writes()[-1][2]["devices"] == own
    result = run("network", "attach", "t6b0", "c1", "n2")
    assert "Device n2 added to c1" in result.output
    assert "The device takes effect at the next start of c1" in result.output


def test_mc_launch_network_asks_for_the_network_first(fake: FakeClient) -> None:
    _answers(fake)
    result = run("-q", "launch", "busybox", "c2", "--network", "t6b0", "--no-profiles")
    assert result.exit_code == 0, result.output
    assert fake.calls[0] == ("GET", "/1.0/networks/t6b0", None)
    post = fake.writes()[0]
    assert post[1] == "/1.0/instances" and post[2]["profiles"] == []
    assert post[2]["devices"] == {"eth0": {"type": "nic", "network": "t6b0", "name": "eth0"}}
    fake.calls.clear()
    result = run("init", "busybox", "c3", "-n", "nope")
    assert result.exit_code == 1 and "not found: /1.0/networks/nope" in result.output
    assert fake.writes() == []


def test_network_help_lists_lxc_commands() -> None:
    text = run("network", "--help").output
    for name in ("attach", "attach-profile", "create", "delete", "detach", "detach-profile",
                 "edit", "get", "info", "list", "list-leases", "rename", "set", "show",
                 "unset"):
        assert f"  {name} " in text
    assert "--network" in run("launch", "--help").output


# -- machined/network/state.py: netlink payloads -> state.network ----------------------------
def _rtattr(kind: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + bytes(-len(raw) % 4)


def _link(index: int, name: str, flags: int, mtu: int, mac: bytes, stats: tuple[int, ...]
          ) -> bytes:
    return (netstate.IFINFOMSG.pack(0, 1, index, flags, 0)
            + _rtattr(netstate.IFLA_IFNAME, name.encode() + b"\0")
            + _rtattr(netstate.IFLA_MTU, struct.pack("=I", mtu))
            + _rtattr(netstate.IFLA_ADDRESS, mac)
            + _rtattr(26, b"\x05\x00\x00\x00")  # an attribute we do not read (AF_SPEC)
            + _rtattr(netstate.IFLA_STATS64, struct.pack("=24Q", *stats, *[0] * 16)))


def _addr(index: int, family: int, address: str, prefix: int, scope: int) -> bytes:
    raw = socket.inet_pton(family, address)
    attrs = _rtattr(netstate.IFA_ADDRESS, raw)
    if family == socket.AF_INET:
        attrs += _rtattr(netstate.IFA_LOCAL, raw)
    return netstate.IFADDRMSG.pack(family, prefix, 0, scope, index) + attrs


def _message(kind: int, seq: int, payload: bytes) -> bytes:
    raw = netstate.NLMSGHDR.pack(16 + len(payload), kind, 2, seq, 0) + payload
    return raw + bytes(-len(raw) % 4)


def test_netlink_messages_to_lxd_state() -> None:
    datagram = (_message(16, 1, _link(1, "lo", 0x49, 65536, bytes(6), (1, 1, 50, 50, 0, 0, 0, 0)))
                + _message(16, 1, _link(7, "eth0", 0x1003, 1500, bytes.fromhex("00163eaabbcc"),
                                        (10, 5, 4000, 300, 1, 2, 3, 4)))
                + _message(16, 1, _link(8, "eth1", 0x1002, 1400, bytes.fromhex("00163e000001"),
                                        (0,) * 8))
                + _message(3, 1, b"\0\0\0\0"))
    parsed = list(netstate.messages(datagram))
    assert [(t, s) for t, s, _ in parsed] == [(16, 1), (16, 1), (16, 1), (3, 1)]
    links = [netstate.parse_link(p) for _, _, p in parsed[:3]]
    addresses = [netstate.parse_address(p) for p in (
        _addr(1, socket.AF_INET, "127.0.0.1", 8, 254),
        _addr(7, socket.AF_INET, "10.207.1.20", 24, 0),
        _addr(7, socket.AF_INET6, "fe80::216:3eff:feaa:bbcc", 64, 253),
        _addr(9, socket.AF_INET, "10.9.9.9", 24, 0),  # no such link: dropped
    )]
    hosts = netstate.host_names(
        {"volatile.eth0.host_name": "veth1", "volatile.nic2.name": "eth1",
         "volatile.nic2.host_name": "veth2", "volatile.gone.host_name": "veth3"},
        {"eth0": {"type": "nic", "network": "t6b0", "name": "eth0"},
         "nic2": {"type": "nic", "network": "t6b0"},
         "root": {"type": "disk", "path": "/"}})
    assert hosts == {"eth0": "veth1", "eth1": "veth2"}
    state = netstate.network_state([x for x in links if x], [x for x in addresses if x], hosts)
    assert list(state) == ["lo", "eth0", "eth1"]
    assert state["lo"] == {
        "addresses": [{"family": "inet", "address": "127.0.0.1", "netmask": "8",
                       "scope": "local"}],
        "counters": {"bytes_received": 50, "bytes_sent": 50, "packets_received": 1,
                     "packets_sent": 1, "errors_received": 0, "errors_sent": 0,
                     "packets_dropped_outbound": 0, "packets_dropped_inbound": 0},
        "hwaddr": "", "host_name": "", "mtu": 65536, "state": "up", "type": "loopback"}
    eth0 = state["eth0"]
    assert eth0["addresses"] == [
        {"family": "inet", "address": "10.207.1.20", "netmask": "24", "scope": "global"},
        {"family": "inet6", "address": "fe80::216:3eff:feaa:bbcc", "netmask": "64",
         "scope": "link"}]
    assert eth0["counters"]["bytes_received"] == 4000 and eth0["counters"]["bytes_sent"] == 300
    assert eth0["counters"]["packets_dropped_outbound"] == 4
    assert (eth0["hwaddr"], eth0["host_name"], eth0["mtu"], eth0["state"], eth0["type"]) == (
        "00:16:3e:aa:bb:cc", "veth1", 1500, "up", "broadcast")
    assert (state["eth1"]["state"], state["eth1"]["host_name"]) == ("down", "veth2")


def test_hostile_netlink_payloads_are_bounded() -> None:
    """Lengths are the kernel's, but nothing is trusted: short payloads and attributes
    running past the end stop the parse without reading out of bounds."""
    assert netstate.parse_link(b"\0" * 8) is None
    assert netstate.parse_address(b"\0" * 4) is None
    truncated = netstate.IFINFOMSG.pack(0, 1, 3, 1, 0) + struct.pack("=HH", 200, 3) + b"ab"
    assert netstate.parse_link(truncated)["ifname"] == ""
    bad_ipv4 = netstate.IFADDRMSG.pack(socket.AF_INET, 24, 0, 0, 1) + _rtattr(1, b"\1\2\3")
    assert netstate.parse_address(bad_ipv4) is None
    other_family = netstate.IFADDRMSG.pack(socket.AF_PACKET, 0, 0, 0, 1)
    assert netstate.parse_address(other_family) is None
    with pytest.raises(OSError, match="Malformed netlink message"):
        list(netstate.messages(netstate.NLMSGHDR.pack(400, 16, 0, 1, 0) + b"\0" * 8))
    weird = netstate.parse_link(netstate.IFINFOMSG.pack(0, 1, 4, 0x11, 0)
                                + _rtattr(3, b"\xff\x1bname\0"))
    assert weird["ifname"] == "\ufffd\x1bname"
    assert netstate.network_state([weird], [], {})["\ufffd\x1bname"]["type"] == (
        "point-to-point")
