"""`mc network` end to end on a real daemon: create/list/show/get/set/unset/edit/rename/delete
with every output format, bad input (one line, non-zero, nothing changed), leases,
attach/detach to instances and profiles, `mc launch --network`, and the network state of
running containers in `mc list` and `mc info`.

Names: bridges t6b0.., subnets 10.207.X.0/24, NAT always off, containers t6b-*, profiles
t6b-*; everything made here is deleted by the module fixture."""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import os
import re
import time

import pytest
import yaml

pytestmark = pytest.mark.system

NET = "t6b0"  # the module's network: 10.207.1.0/24
NET_KEYS = ("ipv4.address=10.207.1.1/24", "ipv4.nat=false", "ipv6.address=none")


def _names(daemon, what: str) -> list[str]:
    """Our own (t6b*) profiles or networks (other test runs' interfaces come and go)."""
    return [x["name"] for x in json.loads(daemon.ok(what, "list", "-f", "json"))
            if x["name"].startswith("t6b")]


@pytest.fixture(scope="module")
def net(daemon, busybox_image):
    """Network t6b0; at the end every t6b-* instance and profile and t6b* network goes."""
    daemon.ok("network", "create", NET, *NET_KEYS)
    try:
        yield NET
    finally:
        for name in [i["name"] for i in daemon.instances()]:
            if name.startswith("t6b-"):
                daemon.mc("delete", "--force", name)
        for name in _names(daemon, "profile"):
            daemon.mc("profile", "delete", name)
        for name in _names(daemon, "network"):
            daemon.ok("network", "delete", name)
        assert not [n for n in os.listdir("/sys/class/net") if n.startswith("t6b")]


def _mtu(ifname: str) -> str:
    with open(f"/sys/class/net/{ifname}/mtu") as f:
        return f.read().strip()


def _show(daemon, name: str) -> dict:
    return yaml.safe_load(daemon.ok("network", "show", name))


def _fails(daemon, *argv: str, input: str | None = None) -> str:
    """The one-line error of a command that must fail."""
    res = daemon.mc(*argv, input=input)
    assert res.code != 0, f"mc {' '.join(argv)} succeeded: {res.out}"
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.err
    return lines[0]


def test_network_lifecycle_through_mc(daemon, net):
    out = daemon.ok("network", "create", "t6b1", "ipv4.address=10.207.2.1/24",
                    "ipv4.nat=false", "ipv6.address=none", "--description", "cli test")
    assert out == "Network t6b1 created\n"
    assert os.path.isdir("/sys/class/net/t6b1/bridge")

    table = daemon.ok("network", "list")
    row = next(line for line in table.splitlines() if line.startswith("| t6b1 "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["t6b1", "bridge", "YES", "10.207.2.1/24", "none", "cli test", "0",
                     "CREATED"]
    assert re.search(r"\n\|\s+NAME\s+\|\s+TYPE\s+\|\s+MANAGED\s+\|\s+IPV4\s+\|\s+IPV6\s+\|"
                     r"\s+DESCRIPTION\s+\|\s+USED BY\s+\|\s+STATE\s+\|\n", table)
    # Column widths depend on the host's other interfaces: match the row, not the spacing.
    assert re.search(r"^t6b1\s+bridge\s+YES\s", daemon.ok("network", "list", "-f", "compact"),
                     re.M)
    rows = {r[0]: r for r in csv.reader(io.StringIO(daemon.ok("network", "ls", "-f", "csv")))}
    assert rows["t6b1"] == cells
    assert rows["lo"][1:3] == ["loopback", "NO"]  # the host's interfaces are listed too
    listed = {n["name"]: n for n in json.loads(daemon.ok("network", "list", "--format", "json"))}
    assert listed["t6b1"]["managed"] is True and listed["t6b1"]["config"]["ipv4.nat"] == "false"
    # (other test runs make and delete host interfaces meanwhile: compare our own only)
    assert {n["name"] for n in yaml.safe_load(daemon.ok("network", "list", "-f", "yaml"))
            if n["name"].startswith("t6b")} == {"t6b0", "t6b1"}

    shown = _show(daemon, "t6b1")
    assert _show(daemon, "local:t6b1") == shown  # [<remote>:] as everywhere
    assert "\nt6b1,bridge,YES," in daemon.ok("network", "list", "local:", "-f", "csv")
    assert (shown["name"], shown["type"], shown["managed"], shown["description"]) == (
        "t6b1", "bridge", True, "cli test")
    assert shown["config"]["ipv4.address"] == "10.207.2.1/24" and shown["used_by"] == []
    assert daemon.ok("network", "get", "t6b1", "ipv4.address") == "10.207.2.1/24\n"
    assert daemon.ok("network", "get", "t6b1", "-p", "description") == "cli test\n"

    daemon.ok("network", "set", "t6b1", "ipv4.dhcp.ranges", "10.207.2.50-10.207.2.99")
    daemon.ok("network", "set", "t6b1", "bridge.mtu=1400", "ipv4.dhcp.expiry=2h")
    config = _show(daemon, "t6b1")["config"]
    assert (config["ipv4.dhcp.ranges"], config["bridge.mtu"], config["ipv4.dhcp.expiry"]) == (
        "10.207.2.50-10.207.2.99", "1400", "2h")
    assert _mtu("t6b1") == "1400"
    daemon.ok("network", "unset", "t6b1", "bridge.mtu")
    assert "bridge.mtu" not in _show(daemon, "t6b1")["config"]
    assert _mtu("t6b1") == "1500"
    daemon.ok("network", "set", "t6b1", "-p", "description=changed")
    assert daemon.ok("network", "get", "t6b1", "-p", "description") == "changed\n"

    edited = dict(_show(daemon, "t6b1"))
    edited["description"] = "edited"
    edited["config"] = {**edited["config"], "ipv4.dhcp.expiry": "30m"}
    daemon.ok("network", "edit", "t6b1", input=yaml.safe_dump(edited))
    shown = _show(daemon, "t6b1")
    assert shown["description"] == "edited" and shown["config"]["ipv4.dhcp.expiry"] == "30m"

    info = daemon.ok("network", "info", "t6b1")
    assert info.startswith("Name: t6b1\n")
    assert "  inet:  10.207.2.1/24 (global)\n" in info and "\nBridge:\n" in info

    assert daemon.ok("network", "rename", "t6b1", "t6b2") == "Network t6b1 renamed to t6b2\n"
    assert "not found" in _fails(daemon, "network", "show", "t6b1")
    assert _show(daemon, "t6b2")["config"]["ipv4.address"] == "10.207.2.1/24"
    assert os.path.isdir("/sys/class/net/t6b2") and not os.path.exists("/sys/class/net/t6b1")

    assert daemon.ok("network", "delete", "t6b2") == "Network t6b2 deleted\n"
    assert "t6b2" not in _names(daemon, "network")
    assert not os.path.exists("/sys/class/net/t6b2")


def test_bad_input_is_one_line_and_changes_nothing(daemon, net):
    before = daemon.ok("network", "show", NET)
    networks = _names(daemon, "network")
    cases = [
        (("network", "create", "t6b3", "ipv4.adress=10.207.3.1/24"), "ipv4.address"),
        (("network", "create", "t6b3", "--type", "macvlan"), "bridge"),
        (("network", "create", NET, *NET_KEYS), "already exists"),
        (("network", "create", "t6b3", "ipv4.nat"), 'Bad key=value pair: "ipv4.nat"'),
        (("network", "set", NET, "bridge.mtu=10"), "bridge.mtu"),
        (("network", "set", NET, "bogus.key", "1"), "bogus.key"),
        (("network", "set", NET, "-p", "name=x"), 'property "name" does not exist'),
        (("network", "unset", NET, "ipv4.dhcp.ranges"), "is not set on the network"),
        (("network", "get", NET, "-p", "bogus"), 'property "bogus" does not exist'),
        (("network", "rename", NET, "lo"), "lo"),
        (("network", "delete", "t6b9"), "not found"),
        (("network", "show", "nowhere:" + NET), 'The remote "nowhere" doesn\'t exist'),
        (("network", "list-leases", "t6b9"), "not found"),
        (("network", "attach", "t6b9", "t6b-none"), "not found"),
    ]
    for argv, part in cases:
        assert part in _fails(daemon, *argv), argv
    assert "Invalid YAML at line 1" in _fails(daemon, "network", "edit", NET, input="config: [")
    assert "ipv4.address" in _fails(daemon, "network", "edit", NET,
                                    input="config:\n  ipv4.address: 10.207.1.1/40\n")
    res = daemon.mc("network", "list", "-f", "xml")
    assert res.code == 2 and "is not one of table, compact, csv, json, yaml" in res.err
    assert daemon.ok("network", "show", NET) == before
    assert _names(daemon, "network") == networks


def test_running_container_without_nic_shows_only_lo(daemon, net, busybox_image):
    daemon.ok("launch", busybox_image, "t6b-lo")
    inst = next(i for i in daemon.instances() if i["name"] == "t6b-lo")
    assert not [d for d in inst["expanded_devices"].values() if d["type"] == "nic"]
    network = inst["state"]["network"]
    assert list(network) == ["lo"]
    lo = network["lo"]
    assert (lo["type"], lo["state"], lo["mtu"], lo["hwaddr"], lo["host_name"]) == (
        "loopback", "up", 65536, "", "")
    assert {"family": "inet", "address": "127.0.0.1", "netmask": "8",
            "scope": "local"} in lo["addresses"]
    assert set(lo["counters"]) >= {"bytes_received", "bytes_sent", "packets_received",
                                   "packets_sent"}
    info = daemon.ok("info", "t6b-lo")
    assert "  Network usage:\n    lo:\n      Type: loopback\n      State: UP\n" in info
    assert "        inet:  127.0.0.1/8 (local)\n" in info
    daemon.ok("stop", "t6b-lo", "--force")
    stopped = daemon.api("GET", "/1.0/instances/t6b-lo/state")
    assert stopped["network"] is None
    assert "Network usage" not in daemon.ok("info", "t6b-lo")
    daemon.ok("delete", "t6b-lo")


def test_attach_and_detach_instances_and_profiles(daemon, net, busybox_image):
    daemon.ok("init", busybox_image, "t6b-att")
    out = daemon.ok("network", "attach", NET, "t6b-att")
    assert out == "Device t6b0 added to t6b-att\n"
    daemon.ok("network", "attach", f"local:{NET}", "t6b-att", "nic2", "eth5")
    devices = yaml.safe_load(daemon.ok("config", "device", "show", "t6b-att"))
    assert devices["t6b0"] == {"type": "nic", "network": NET}
    assert devices["nic2"] == {"type": "nic", "network": NET, "name": "eth5"}
    assert "/1.0/instances/t6b-att" in _show(daemon, NET)["used_by"]
    assert "in use" in _fails(daemon, "network", "delete", NET)
    assert "already exists" in _fails(daemon, "network", "attach", NET, "t6b-att")
    assert "several nics on network t6b0" in _fails(daemon, "network", "detach", NET,
                                                    "t6b-att")
    assert daemon.ok("network", "detach", NET, "t6b-att", "nic2") == (
        "Device nic2 removed from t6b-att\n")
    daemon.ok("network", "detach", NET, "t6b-att")
    assert yaml.safe_load(daemon.ok("config", "device", "show", "t6b-att")) == {}
    assert "has no nic on network t6b0" in _fails(daemon, "network", "detach", NET, "t6b-att")

    daemon.ok("profile", "create", "t6b-prof")
    daemon.ok("network", "attach-profile", NET, "t6b-prof", "eth0", "eth0")
    profile = yaml.safe_load(daemon.ok("profile", "show", "t6b-prof"))
    assert profile["devices"] == {"eth0": {"type": "nic", "network": NET, "name": "eth0"}}
    daemon.ok("profile", "add", "t6b-att", "t6b-prof")
    assert "comes from a profile" in _fails(daemon, "network", "detach", NET, "t6b-att")
    daemon.ok("profile", "remove", "t6b-att", "t6b-prof")
    daemon.ok("network", "detach-profile", NET, "t6b-prof")
    assert yaml.safe_load(daemon.ok("profile", "show", "t6b-prof"))["devices"] == {}
    daemon.ok("profile", "delete", "t6b-prof")
    daemon.ok("delete", "t6b-att")


def _eth0_ipv4(daemon, name: str, timeout: float = 30) -> str:
    """The global IPv4 address of eth0 in `mc list --format json` (waits for DHCP)."""
    deadline = time.monotonic() + timeout
    while True:
        inst = next(i for i in daemon.instances() if i["name"] == name)
        eth0 = (inst["state"]["network"] or {}).get("eth0") or {}
        found = [a["address"] for a in eth0.get("addresses") or []
                 if a["family"] == "inet" and a["scope"] == "global"]
        if found or time.monotonic() > deadline:
            return found[0] if found else ""
        time.sleep(0.2)


def test_launch_network_gives_eth0_and_its_address_shows(daemon, net, busybox_image):
    """--network makes the instance's own eth0 on the network; once up, its DHCP address is
    in `mc list` (IPV4 column and JSON), `mc info` and the network's leases."""
    daemon.ok("launch", busybox_image, "t6b-x", "--network", NET)
    devices = yaml.safe_load(daemon.ok("config", "device", "show", "t6b-x"))
    assert devices["eth0"] == {"type": "nic", "network": NET, "name": "eth0"}
    inst = next(i for i in daemon.instances() if i["name"] == "t6b-x")
    network = inst["state"]["network"]
    assert "eth0" in network, f"no eth0 in the container: {sorted(network)}"
    eth0 = network["eth0"]
    config = inst["config"]
    assert eth0["hwaddr"] == config["volatile.eth0.hwaddr"]
    assert eth0["host_name"] == config["volatile.eth0.host_name"]
    assert (eth0["type"], eth0["state"], eth0["mtu"]) == ("broadcast", "up", 1500)

    address = _eth0_ipv4(daemon, "t6b-x")
    assert ipaddress.ip_address(address) in ipaddress.ip_network("10.207.1.0/24")
    assert f"{address} (eth0)" in daemon.ok("list", "t6b-x", "-c", "n4")
    info = daemon.ok("info", "t6b-x")
    assert f"        inet:  {address}/24 (global)\n" in info
    assert f"      Host interface: {eth0['host_name']}\n" in info
    assert f"      MAC address: {eth0['hwaddr']}\n" in info

    deadline = time.monotonic() + 30
    while True:
        leases = json.loads(daemon.ok("network", "list-leases", NET, "-f", "json"))
        if any(x["address"] == address for x in leases) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    lease = next(x for x in leases if x["address"] == address)
    assert (lease["hostname"], lease["hwaddr"], lease["type"]) == (
        "t6b-x", eth0["hwaddr"], "dynamic")
    rows = list(csv.reader(io.StringIO(daemon.ok("network", "list-leases", NET, "-f", "csv"))))
    assert ["t6b-x", eth0["hwaddr"], address, "DYNAMIC"] in rows
    assert "| HOSTNAME |" in daemon.ok("network", "list-leases", NET)
    assert "- hostname: t6b-x\n" in daemon.ok("network", "list-leases", NET, "-f", "yaml")

    # A static reservation is listed as such (it applies from the next DHCP request).
    daemon.ok("config", "device", "set", "t6b-x", "eth0", "ipv4.address=10.207.1.77")
    leases = json.loads(daemon.ok("network", "list-leases", NET, "-f", "json"))
    assert {"hostname": "t6b-x", "hwaddr": eth0["hwaddr"], "address": "10.207.1.77",
            "type": "static", "location": "none"} in leases
    daemon.ok("delete", "--force", "t6b-x")
    assert not os.path.exists(f"/sys/class/net/{eth0['host_name']}")


def test_interfaces_a_container_makes_are_capped_and_escaped(daemon, net, busybox_image):
    """A container controls its own interfaces: thousands of them must not make every
    `mc list` slow (MAX_LINKS are shown), and their names must not reach the terminal raw."""
    import socket

    from pyroute2 import IPRoute

    from machined import runtime
    from machined.network.state import MAX_LINKS

    daemon.ok("launch", busybox_image, "t6b-many")
    container = runtime.find(daemon.root / "run" / "t6b-many")
    sock = runtime.netns_socket(container, socket.AF_NETLINK, socket.SOCK_DGRAM,
                                socket.NETLINK_ROUTE)
    with IPRoute(use_socket=sock) as ipr:  # what root in the container may do
        ipr.link("add", ifname="e\x1b[2J", kind="veth", peer="f\x07")
        for i in range(MAX_LINKS // 2 + 10):
            ipr.link("add", ifname=f"v{i}a", kind="veth", peer=f"v{i}b")
    start = time.monotonic()
    state = daemon.api("GET", "/1.0/instances/t6b-many/state")
    took = time.monotonic() - start
    network = state["network"]
    assert len(network) == MAX_LINKS and "lo" in network and "e\x1b[2J" in network
    assert took < 2, f"reading {MAX_LINKS} interfaces took {took:.2f} s"
    info = daemon.ok("info", "t6b-many")
    assert "\x1b" not in info and "\x07" not in info
    assert "    e\\x1b[2J:\n" in info and "    f\\x07:\n" in info
    table = daemon.ok("list", "t6b-many")
    assert "\x1b" not in table
    daemon.ok("delete", "--force", "t6b-many")
