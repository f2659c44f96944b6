"""Managed networks on a real daemon through the API (the CLI has its own tests): bridge,
addresses, tag, dnsmasq as nobody answering DNS on the bridge address, validation that
creates nothing, updates that restart dnsmasq only when needed, reconcile at daemon restart
(kept, repaired, leftovers swept), delete refused while used, the default network of a first
start, and the NAT ruleset checked by nft without being loaded.

Names: bridges t6a0.., subnets 10.206.X.0/24, NAT always off; traffic only to 127.0.0.1 and
the bridges' own addresses. Every test deletes what it makes."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import random
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cli.errors import ApiError
from machined.network import model, nat
from machined.paths import Paths
from tests.conftest import Daemon, spawn_daemon

pytestmark = pytest.mark.system


def v4(subnet: int, **extra: str) -> dict[str, str]:
    return {"ipv4.address": f"10.206.{subnet}.1/24", "ipv4.nat": "false",
            "ipv6.address": "none", **extra}


def _delete_everything(d: Daemon, names: list[str]) -> None:
    for name in reversed(names):
        try:
            d.api("DELETE", f"/1.0/networks/{name}")
        except ApiError as e:
            assert "not found" in str(e), e


@pytest.fixture
def networks(daemon: Daemon) -> Iterator[Callable[..., str]]:
    """make(name, config) -> name: a network deleted at the end of the test."""
    made: list[str] = []

    def make(name: str, config: dict[str, str], **body: str) -> str:
        daemon.api("POST", "/1.0/networks", {"name": name, "config": config, **body})
        made.append(name)
        return name

    yield make
    _delete_everything(daemon, made)


def link(name: str) -> dict | None:
    out = subprocess.run(["ip", "-j", "-d", "addr", "show", "dev", name], capture_output=True,
                         text=True)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


def addresses(name: str) -> list[str]:
    info = link(name) or {}
    return [f"{a['local']}/{a['prefixlen']}" for a in info.get("addr_info", [])
            if a.get("scope") == "global"]


def dnsmasq_pid(d: Daemon, name: str) -> int:
    return int((d.root / "networks" / name / "dnsmasq.pid").read_text())


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")
    except OSError:
        return []


def alive(pid: int) -> bool:
    """Running (a zombie waiting for PID 1 to reap it counts as gone)."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def dns_query(server: str, name: str) -> tuple[int, list[str]]:
    """(rcode, A records) of one UDP query to server:53 (a bridge address of ours)."""
    qid = random.randrange(65536)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(packet, (server, 53))
        data = s.recv(4096)
    rid, flags, _qd, ancount = struct.unpack(">HHHH", data[:8])
    assert rid == qid
    pos = 12 + len(question) + 4
    found = []
    for _ in range(ancount):
        pos += 2 if data[pos] & 0xC0 == 0xC0 else data.index(b"\0", pos) + 1 - pos
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", data[pos:pos + 10])
        pos += 10
        if rtype == 1:
            found.append(socket.inet_ntoa(data[pos:pos + rdlen]))
        pos += rdlen
    return flags & 0xF, found


def test_create_makes_a_tagged_bridge_and_dnsmasq(daemon, networks):
    started = time.monotonic()
    name = networks("t6a0", v4(1, **{"ipv4.dhcp.ranges": "10.206.1.100-10.206.1.150"}),
                    description="first")
    elapsed = time.monotonic() - started
    print(f"\nnetwork create: {elapsed * 1000:.0f} ms")
    info = link(name)
    assert info is not None and info["linkinfo"]["info_kind"] == "bridge"
    assert info["ifalias"] == f"{Paths(daemon.root).link_tag} bridge {name}"
    assert addresses(name) == ["10.206.1.1/24"] and info["mtu"] == 1500
    assert "UP" in info["flags"]
    assert Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6").read_text().strip() == "1"
    pid = dnsmasq_pid(daemon, name)
    argv = cmdline(pid)
    status = Path(f"/proc/{pid}/status").read_text()
    assert "\nUid:\t65534\t65534\t65534\t65534\n" in status  # nobody, all four ids
    assert "--dhcp-range=10.206.1.100,10.206.1.150,1h" in argv
    assert "--listen-address=10.206.1.1" in argv and f"--interface={name}" in argv
    assert argv == json.loads((daemon.root / "networks" / name / "dnsmasq.cmd").read_text())
    # DNS on the bridge address: the gateway's name, and nothing else under the domain
    # (answered locally, never forwarded).
    assert dns_query("10.206.1.1", "_gateway.mc") == (0, ["10.206.1.1"])
    assert dns_query("10.206.1.1", "nothing-here.mc")[0] == 3  # NXDOMAIN
    # nobody reads the hosts file through 0711 directories
    assert os.stat(daemon.root).st_mode & 0o777 == 0o711
    assert os.stat(daemon.root / "networks" / name).st_mode & 0o777 == 0o711
    assert os.stat(daemon.root / "networks" / name / "dnsmasq.hosts").st_mode & 0o777 == 0o644
    # LXD shapes
    obj = daemon.api("GET", f"/1.0/networks/{name}")
    assert obj == {"name": name, "description": "first", "type": "bridge", "managed": True,
                   "status": "Created", "config": v4(1, **{
                       "ipv4.dhcp.ranges": "10.206.1.100-10.206.1.150"}),
                   "used_by": [], "locations": ["none"], "project": "default"}
    assert f"/1.0/networks/{name}" in daemon.api("GET", "/1.0/networks")
    listed = {n["name"]: n for n in daemon.api("GET", "/1.0/networks?recursion=1")}
    assert listed[name]["managed"] is True and listed["lo"]["managed"] is False
    assert listed["lo"]["type"] == "loopback"
    state = daemon.api("GET", f"/1.0/networks/{name}/state")
    assert state["addresses"] == [{"family": "inet", "address": "10.206.1.1", "netmask": "24",
                                   "scope": "global"}]
    assert state["bridge"]["upper_devices"] == [] and state["mtu"] == 1500
    assert set(state["counters"]) >= {"bytes_received", "bytes_sent", "packets_received",
                                      "packets_sent"}
    assert daemon.api("GET", f"/1.0/networks/{name}/leases") == []
    with pytest.raises(ApiError, match="Network 't6a0' already exists"):
        daemon.api("POST", "/1.0/networks", {"name": name, "config": v4(2)})


@pytest.fixture
def host_bridge() -> Iterator[str]:
    """A host interface that is not machined's (an untagged bridge with 10.206.3.1/24)."""
    name = "t6ah0"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.206.3.1/24", "dev", name], check=True)
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], check=True)


@pytest.mark.parametrize(("body", "message"), [
    ({"name": "t6a2", "config": {**v4(4), "ipv4.adress": "x"}},
     "Unknown network key 'ipv4.adress' (did you mean 'ipv4.address'?): accepted are "),
    ({"name": "t6a2", "config": {**v4(4), "bridge.mtu": "9"}},
     "Invalid value '9' for network key 'bridge.mtu': expected an integer from 68 to 65535"),
    ({"name": "t6a2", "config": {**v4(4), "ipv4.dhcp.ranges": "10.206.9.2-10.206.9.9"}},
     "is not inside the host addresses of 10.206.4.0/24"),
    ({"name": "t6a/2", "config": v4(4)}, "Invalid network name 't6a/2'"),
    ({"name": "t6a2-too-long-name", "config": v4(4)}, "Invalid network name"),
    ({"name": "t6a2", "type": "macvlan", "config": v4(4)},
     "Unsupported network type 'macvlan': accepted is bridge"),
    ({"name": "t6a2", "config": {**v4(4), "ipv4.address": "10.206.5.77/25"}},
     "Subnet 10.206.5.0/25 of ipv4.address overlaps 10.206.5.0/24 (network t6a1)"),
    ({"name": "t6a2", "config": {**v4(4), "ipv4.address": "10.206.3.9/24"}},
     "overlaps 10.206.3.0/24 (address 10.206.3.1 on t6ah0)"),
    ({"name": "t6ah0", "config": v4(4)},
     "Interface t6ah0 already exists on the host and is not a machined network"),
])
def test_bad_requests_create_nothing(daemon, networks, host_bridge, body, message):
    networks("t6a1", v4(5))
    before = sorted(os.listdir(daemon.root / "networks"))
    with pytest.raises(ApiError) as e:
        daemon.api("POST", "/1.0/networks", body)
    assert message in str(e.value)
    assert "\n" not in str(e.value)
    assert sorted(os.listdir(daemon.root / "networks")) == before == ["t6a1"]
    assert link("t6a2") is None
    names = [n.rsplit("/", 1)[1] for n in daemon.api("GET", "/1.0/networks")]
    assert "t6a2" not in names and names.count("t6ah0") <= 1
    assert "ifalias" not in link("t6ah0") and addresses("t6ah0") == ["10.206.3.1/24"]


def test_update_restarts_dnsmasq_only_when_its_argv_changes(daemon, networks):
    name = networks("t6a3", v4(6))
    pid = dnsmasq_pid(daemon, name)
    daemon.api("PATCH", f"/1.0/networks/{name}", {"config": {"user.note": "kept"}})
    assert dnsmasq_pid(daemon, name) == pid and alive(pid)
    daemon.api("PATCH", f"/1.0/networks/{name}",
               {"config": {"ipv4.dhcp.ranges": "10.206.6.50-10.206.6.60"}})
    new = dnsmasq_pid(daemon, name)
    assert new != pid and not alive(pid)
    assert "--dhcp-range=10.206.6.50,10.206.6.60,1h" in cmdline(new)
    assert not any("10.206.6.2," in a for a in cmdline(new))
    # bridge.mtu applies to the bridge and reaches DHCP clients
    daemon.api("PATCH", f"/1.0/networks/{name}", {"config": {"bridge.mtu": "1400"}})
    assert link(name)["mtu"] == 1400
    assert "--dhcp-option-force=26,1400" in cmdline(dnsmasq_pid(daemon, name))
    # a refused change stores and changes nothing
    with pytest.raises(ApiError, match="'bridge.mtu': expected an integer from 68 to 65535"):
        daemon.api("PUT", f"/1.0/networks/{name}", {"config": {**v4(6), "bridge.mtu": "1"}})
    cfg = daemon.api("GET", f"/1.0/networks/{name}")["config"]
    assert cfg["bridge.mtu"] == "1400" and cfg["user.note"] == "kept"
    # a new address moves the bridge and dnsmasq; unset ("") keys go
    daemon.api("PATCH", f"/1.0/networks/{name}",
               {"config": {"ipv4.address": "10.206.7.1/24", "ipv4.dhcp.ranges": "",
                           "user.note": ""}})
    assert addresses(name) == ["10.206.7.1/24"]
    argv = cmdline(dnsmasq_pid(daemon, name))
    assert "--listen-address=10.206.7.1" in argv
    assert "--dhcp-range=10.206.7.2,10.206.7.254,1h" in argv
    cfg = daemon.api("GET", f"/1.0/networks/{name}")["config"]
    assert "user.note" not in cfg and "ipv4.dhcp.ranges" not in cfg
    assert dns_query("10.206.7.1", "_gateway.mc") == (0, ["10.206.7.1"])


def test_delete_is_refused_while_a_profile_uses_it(daemon):
    name = "t6a4"
    daemon.api("POST", "/1.0/networks", {"name": name, "config": v4(8)})
    profile = "t6a-prof"
    try:
        daemon.api("POST", "/1.0/profiles", {"name": profile, "devices": {
            "eth0": {"type": "nic", "network": name, "name": "eth0"}}})
        try:
            assert daemon.api("GET", f"/1.0/networks/{name}")["used_by"] == [
                f"/1.0/profiles/{profile}"]
            with pytest.raises(ApiError, match=f"The network is currently in use by profile "
                                               f"{profile}"):
                daemon.api("DELETE", f"/1.0/networks/{name}")
            with pytest.raises(ApiError, match="cannot be renamed"):
                daemon.api("POST", f"/1.0/networks/{name}", {"name": "t6a4x"})
            assert link(name) is not None and alive(dnsmasq_pid(daemon, name))
        finally:
            daemon.api("DELETE", f"/1.0/profiles/{profile}")
        pid = dnsmasq_pid(daemon, name)
        daemon.api("DELETE", f"/1.0/networks/{name}")
    finally:
        _delete_everything(daemon, [name])
    assert link(name) is None and not alive(pid)
    assert not (daemon.root / "networks" / name).exists()
    with pytest.raises(ApiError, match="Network 't6a4' not found"):
        daemon.api("GET", f"/1.0/networks/{name}")


def test_rename_moves_bridge_and_dnsmasq(daemon):
    daemon.api("POST", "/1.0/networks", {"name": "t6a5", "config": v4(9)})
    try:
        old_pid = dnsmasq_pid(daemon, "t6a5")
        daemon.api("POST", "/1.0/networks/t6a5", {"name": "t6a6"})
        assert link("t6a5") is None and addresses("t6a6") == ["10.206.9.1/24"]
        assert link("t6a6")["ifalias"].endswith(" bridge t6a6")
        assert not alive(old_pid)
        assert "--interface=t6a6" in cmdline(dnsmasq_pid(daemon, "t6a6"))
        assert not (daemon.root / "networks" / "t6a5").exists()
    finally:
        _delete_everything(daemon, ["t6a5", "t6a6"])


def test_restart_keeps_running_parts_and_repairs_missing_ones():
    """A private daemon: killed and started again, it keeps bridges and dnsmasq as they
    are, makes again a bridge deleted and a dnsmasq killed behind its back, and sweeps a
    tagged bridge no network owns (an interrupted create)."""
    with spawn_daemon() as d:
        names = ["t6a7", "t6a8"]
        try:
            for i, name in enumerate(names):
                d.api("POST", "/1.0/networks", {"name": name, "config": v4(10 + i)})
            pids = [dnsmasq_pid(d, n) for n in names]
            indexes = [link(n)["ifindex"] for n in names]
            d.kill()
            assert all(alive(p) for p in pids)  # dnsmasq outlives the daemon
            started = time.monotonic()
            d.start()
            print(f"\ndaemon restart with 2 networks: {(time.monotonic() - started) * 1000:.0f}"
                  f" ms; {_reconcile_line(d)}")
            assert [dnsmasq_pid(d, n) for n in names] == pids
            assert [link(n)["ifindex"] for n in names] == indexes
            assert [len([p for p in _dnsmasqs(d) if f"--interface={n}" in cmdline(p)])
                    for n in names] == [1, 1]
            # behind its back: bridge t6a7 deleted (its dnsmasq dies with the address),
            # dnsmasq of t6a8 killed, a leftover tagged bridge appears
            d.kill()
            subprocess.run(["ip", "link", "del", "t6a7"], check=True)
            os.kill(pids[1], signal.SIGKILL)
            subprocess.run(["ip", "link", "add", "t6a9", "type", "bridge"], check=True)
            subprocess.run(["ip", "link", "set", "t6a9", "alias",
                            f"{Paths(d.root).link_tag} bridge t6a9"], check=True)
            _wait(lambda: not alive(pids[1]))
            d.start()
            assert addresses("t6a7") == ["10.206.10.1/24"]
            assert addresses("t6a8") == ["10.206.11.1/24"]
            for name in names:
                pid = dnsmasq_pid(d, name)
                assert alive(pid) and f"--interface={name}" in cmdline(pid)
                assert d.api("GET", f"/1.0/networks/{name}")["status"] == "Created"
            assert link("t6a9") is None
            assert dns_query("10.206.10.1", "_gateway.mc") == (0, ["10.206.10.1"])
            assert len(_dnsmasqs(d)) == 2
        finally:
            if d.proc is None:
                d.start()
            _delete_everything(d, names)
            if link("t6a9") is not None:
                subprocess.run(["ip", "link", "del", "t6a9"], check=False)


def _dnsmasqs(d: Daemon) -> list[int]:
    needle = f"{d.root}/networks/"
    return [int(p) for p in os.listdir("/proc") if p.isdigit()
            and any(needle in a for a in cmdline(int(p))) and alive(int(p))]


def _reconcile_line(d: Daemon) -> str:
    lines = [line for line in (d.root / "logs" / "machined.log").read_text().splitlines()
             if "Reconciled" in line]
    return lines[-1].split(": ", 1)[-1] if lines else "no reconcile line"


def _wait(cond: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_unmanaged_interfaces_are_shown_not_changed(daemon):
    lo = daemon.api("GET", "/1.0/networks/lo")
    assert lo["managed"] is False and lo["type"] == "loopback" and lo["config"] == {}
    assert daemon.api("GET", "/1.0/networks/lo/state")["type"] == "loopback"
    with pytest.raises(ApiError, match="Network 'lo' not found"):
        daemon.api("PATCH", "/1.0/networks/lo", {"config": {"bridge.mtu": "1400"}})
    with pytest.raises(ApiError, match="Network 'lo' not found"):
        daemon.api("DELETE", "/1.0/networks/lo")
    with pytest.raises(ApiError, match="Network 't6a-none' not found"):
        daemon.api("GET", "/1.0/networks/t6a-none")


def test_nat_ruleset_is_accepted_by_nft_without_being_loaded():
    """`nft -c` only: a masquerade rule is never loaded by tests."""
    p = model.plan({"ipv4.address": "10.206.20.1/24", "ipv4.nat": "true",
                    "ipv6.address": "fd42:206:20::1/64", "ipv6.nat": "true"})
    ruleset = model.nat_ruleset("t6a-n.1", p)
    assert ruleset is not None and "masquerade" in ruleset
    asyncio.run(nat.check(ruleset))
    asyncio.run(nat.check(model.nat_removal("t6a-n.1")))
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert "machined_t6a-n.1" not in tables
    with pytest.raises(Exception, match="nft refused the ruleset"):
        asyncio.run(nat.check(ruleset.replace("masquerade", "masquerad")))


def test_default_network_at_first_start():
    """MACHINED_INIT_NETWORK overrides mcbr0's keys; eth0 joins the default profile."""
    if Path("/sys/class/net/mcbr0").exists():
        pytest.skip("an interface mcbr0 exists on this host")
    env = {"MACHINED_INIT_NETWORK":
           "ipv4.address=10.206.250.1/24 ipv4.nat=false ipv6.address=none"}
    with spawn_daemon(env=env) as d:
        try:
            net = d.api("GET", "/1.0/networks/mcbr0")
            assert net["config"] == {"ipv4.address": "10.206.250.1/24", "ipv4.nat": "false",
                                     "ipv6.address": "none"}
            assert net["used_by"] == ["/1.0/profiles/default"]
            assert addresses("mcbr0") == ["10.206.250.1/24"]
            assert link("mcbr0")["ifalias"] == f"{Paths(d.root).link_tag} bridge mcbr0"
            profile = d.api("GET", "/1.0/profiles/default")
            assert profile["devices"]["eth0"] == {"type": "nic", "name": "eth0",
                                                  "network": "mcbr0"}
            assert alive(dnsmasq_pid(d, "mcbr0"))
        finally:
            profile = d.api("GET", "/1.0/profiles/default")
            if "eth0" in profile["devices"]:
                devices = {k: v for k, v in profile["devices"].items() if k != "eth0"}
                d.api("PUT", "/1.0/profiles/default", {"config": profile["config"],
                                                       "description": profile["description"],
                                                       "devices": devices})
            _delete_everything(d, ["mcbr0"])
        assert link("mcbr0") is None


def test_hosts_and_leases_follow_instances(daemon, networks, busybox_image):
    """A (stopped) instance with a nic on the network: used_by, the hosts file line with its
    MAC, name and reservation, and the static lease."""
    name = networks("t6a10", v4(12))
    inst = "t6a-c1"
    daemon.api("POST", "/1.0/instances", {
        "name": inst, "source": {"type": "image", "alias": busybox_image},
        "profiles": ["default"], "devices": {"eth0": {
            "type": "nic", "network": name, "name": "eth0", "hwaddr": "00:16:3e:06:0a:01",
            "ipv4.address": "10.206.12.10"}}})
    try:
        assert daemon.api("GET", f"/1.0/networks/{name}")["used_by"] == [
            f"/1.0/instances/{inst}"]
        daemon.api("PATCH", f"/1.0/networks/{name}", {"config": {"user.x": "1"}})
        hosts = (daemon.root / "networks" / name / "dnsmasq.hosts").read_text()
        assert hosts == f"00:16:3e:06:0a:01,10.206.12.10,{inst}\n"
        assert daemon.api("GET", f"/1.0/networks/{name}/leases") == [
            {"hostname": inst, "hwaddr": "00:16:3e:06:0a:01", "address": "10.206.12.10",
             "type": "static", "location": "none"}]
        with pytest.raises(ApiError, match="currently in use by instance t6a-c1"):
            daemon.api("DELETE", f"/1.0/networks/{name}")
    finally:
        daemon.mc("delete", "--force", inst)
    assert daemon.api("GET", f"/1.0/networks/{name}")["used_by"] == []


def test_auto_subnet_is_chosen_and_stored(daemon, networks):
    name = networks("t6a11", {"ipv4.address": "auto", "ipv4.nat": "false",
                              "ipv6.address": "none"})
    cfg = daemon.api("GET", f"/1.0/networks/{name}")["config"]
    iface = ipaddress.IPv4Interface(cfg["ipv4.address"])
    assert iface.network.prefixlen == 24 and str(iface.ip).startswith("10.")
    assert cfg["ipv4.nat"] == "false"  # given: auto does not turn it on
    assert addresses(name) == [cfg["ipv4.address"]]


FAKE_DNSMASQ = """#!/bin/bash
# dnsmasq, except that it refuses any command line naming 10.206.13.66 (as if its socket
# were taken); argv[0] is kept so the daemon recognises the real server it becomes.
for a in "$@"; do
  case "$a" in *10.206.13.66*)
    echo "dnsmasq: failed to create listening socket for 10.206.13.1: Address in use" >&2
    exit 2;;
  esac
done
exec -a "$0" /usr/sbin/dnsmasq "$@"
"""


def test_failures_undo_everything(tmp_path):
    """A create whose dnsmasq fails leaves no bridge, directory or row; an update whose
    dnsmasq fails is undone (old config stored and running again)."""
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    (fakebin / "dnsmasq").write_text(FAKE_DNSMASQ)
    (fakebin / "dnsmasq").chmod(0o755)
    env = {"PATH": f"{fakebin}:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}"}
    with spawn_daemon(env=env) as d:
        try:
            d.api("POST", "/1.0/networks", {"name": "t6a12", "config": v4(13)})
            pid = dnsmasq_pid(d, "t6a12")
            assert cmdline(pid)[0] == str(fakebin / "dnsmasq")
            with pytest.raises(ApiError, match="Network 't6a12' not changed: dnsmasq could not "
                                               "start for network t6a12: failed to create"):
                d.api("PATCH", "/1.0/networks/t6a12",
                      {"config": {"ipv4.dhcp.ranges": "10.206.13.66-10.206.13.70"}})
            assert "ipv4.dhcp.ranges" not in d.api("GET", "/1.0/networks/t6a12")["config"]
            again = dnsmasq_pid(d, "t6a12")
            assert alive(again) and "--dhcp-range=10.206.13.2,10.206.13.254,1h" in cmdline(again)
            assert d.api("GET", "/1.0/networks/t6a12")["status"] == "Created"

            with pytest.raises(ApiError, match="dnsmasq could not start for network t6a13"):
                d.api("POST", "/1.0/networks", {"name": "t6a13", "config": {
                    **v4(14), "ipv4.address": "10.206.14.1/24",
                    "ipv4.dhcp.gateway": "10.206.13.66"}})
            assert link("t6a13") is None
            assert not (d.root / "networks" / "t6a13").exists()
            assert "/1.0/networks/t6a13" not in d.api("GET", "/1.0/networks")
            assert len(_dnsmasqs(d)) == 1
        finally:
            _delete_everything(d, ["t6a12", "t6a13"])


def test_ipv6_only_network(daemon, networks):
    name = networks("t6a14", {"ipv4.address": "none", "ipv6.address": "fd42:206:14::1/64",
                              "ipv6.nat": "false"})
    assert addresses(name) == ["fd42:206:14::1/64"]
    assert Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6").read_text().strip() == "0"
    argv = cmdline(dnsmasq_pid(daemon, name))
    assert "--listen-address=fd42:206:14::1" in argv and "--enable-ra" in argv
    assert f"--dhcp-range=::,constructor:{name},ra-stateless,ra-names" in argv
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:  # DNS over TCP
        s.settimeout(3)
        s.connect(("fd42:206:14::1", 53))
    daemon.api("PATCH", f"/1.0/networks/{name}", {"config": {"ipv6.dhcp.stateful": "true"}})
    assert "--dhcp-range=fd42:206:14::2,fd42:206:14:0:ffff:ffff:ffff:ffff,64,1h" in cmdline(
        dnsmasq_pid(daemon, name))


def test_a_default_network_that_cannot_be_made_is_a_warning():
    env = {"MACHINED_INIT_NETWORK": "ipv4.address=10.206.251.1/24 ipv4.nat=false "
                                    "ipv6.address=none bridge.mtu=1"}
    with spawn_daemon(env=env) as d:
        # Another run on this host may have an mcbr0 (unmanaged here): only ours counts.
        assert not any(n["name"] == "mcbr0" and n["managed"]
                       for n in d.api("GET", "/1.0/networks?recursion=1"))
        assert "eth0" not in d.api("GET", "/1.0/profiles/default")["devices"]
        log = (d.root / "logs" / "machined.log").read_text()
        assert "Could not create the default network mcbr0: Invalid value '1' for network " \
               "key 'bridge.mtu'" in log
