"""A hostile container on a managed network, in real busybox containers on a private daemon.

The attacker is root in its container: where busybox has no tool for an attack (raw ICMPv6,
netlink unicast, `ip link add ... index`), the test runs the host's python3 or ip inside the
container's user and network namespaces (nsenter -U -n): the same credentials and
capabilities as the container's root over its own network namespace, nothing more.

Names: containers t6s-*, bridge t6s0, subnet 10.210.1.0/24 and fd42:6:210:1::/64, NAT off;
traffic only to this bridge and these containers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, built_image, spawn_daemon

pytestmark = pytest.mark.system

NET = "t6s0"
GATEWAY = "10.210.1.1"


# ---------------------------------------------------------------- helpers


def sh(d: Daemon, name: str, script: str, timeout: float = 60) -> str:
    res = d.mc("exec", name, "--", "sh", "-c", script, timeout=timeout)
    assert res.code == 0, f"{script!r} in {name} failed ({res.code}): {res.err}{res.out}"
    return res.out


def init_pid(d: Daemon, name: str) -> int:
    state = d.api("GET", f"/1.0/instances/{name}/state")
    assert isinstance(state, dict)
    return int(state["pid"])


def as_container_root(d: Daemon, name: str, *argv: str, timeout: float = 60
                      ) -> subprocess.CompletedProcess[str]:
    """A host program in the container's user and network namespaces (its root's view)."""
    return subprocess.run(["nsenter", "-t", str(init_pid(d, name)), "-U", "-n", *argv],
                          capture_output=True, text=True, timeout=timeout)


def host_links() -> dict[str, dict]:
    from pyroute2 import IPRoute

    out = {}
    with IPRoute() as ipr:
        for link in ipr.get_links():
            info = link.get_attr("IFLA_LINKINFO")
            out[link.get_attr("IFLA_IFNAME")] = {
                "index": link["index"], "alias": link.get_attr("IFLA_IFALIAS") or "",
                "master": link.get_attr("IFLA_MASTER"),
                "kind": info.get_attr("IFLA_INFO_KIND") if info is not None else None}
    return out


def tag(d: Daemon) -> str:
    from machined.paths import Paths

    return Paths(d.root).link_tag


def volatile(d: Daemon, name: str, key: str) -> str:
    inst = d.api("GET", f"/1.0/instances/{name}")
    assert isinstance(inst, dict)
    return inst["config"][key]


def wait_for(what: str, check, timeout: float = 30):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def has_ipv4(d: Daemon, name: str) -> bool:
    out = d.mc("exec", name, "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0").out
    return "inet 10.210.1." in out


def reboot_inside(d: Daemon, name: str) -> None:
    before = init_pid(d, name)
    d.mc("exec", name, "--", "reboot", timeout=30)

    def back() -> bool:
        state = d.api("GET", f"/1.0/instances/{name}/state")
        return isinstance(state, dict) and state["status"] == "Running" \
            and state["pid"] not in (0, before)
    wait_for(f"{name} to boot again", back)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def d() -> Iterator[Daemon]:
    with spawn_daemon() as daemon:
        paths = built_image("busybox", "unified")
        daemon.ok("image", "import", *map(os.fspath, paths), "--alias", "busybox")
        daemon.ok("network", "create", NET, f"ipv4.address={GATEWAY}/24", "ipv4.nat=false",
                  "ipv6.address=fd42:6:210:1::1/64", "ipv6.nat=false")
        names = ["t6s-a", "t6s-b", "t6s-c"]
        try:
            for name in names:
                daemon.ok("launch", "busybox", name, "--network", NET)
            for name in names:
                wait_for(f"{name}'s DHCP address", lambda n=name: has_ipv4(daemon, n))
            yield daemon
        finally:
            for name in [*names, "t6s-v"]:
                daemon.mc("delete", "--force", name)
            daemon.mc("network", "delete", NET)


# ---------------------------------------------------------------- the host's routes


RA_SENDER = r"""
import socket, struct, sys
ifname, prefix = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
# router advertisement: router lifetime 0 (no default route), one prefix information option:
# on-link (L), not autonomous, valid/preferred 30 s
ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 0, 0, 0)
pio = struct.pack("!BBBBIII", 3, 4, 64, 0x80, 30, 30, 0) + socket.inet_pton(
    socket.AF_INET6, prefix)
for _ in range(3):
    s.sendto(ra + pio, ("ff02::1", 0, 0, socket.if_nametoindex(ifname)))
"""


def test_router_advertisements_from_containers_change_no_host_route(d):
    """An RA from a container reached the host's bridge, which accepted it (accept_ra=1):
    any on-link prefix (and, with a router lifetime, a default route) went into the host's
    own routing table. Only a test prefix is announced here, without a default route."""
    assert Path(f"/proc/sys/net/ipv6/conf/{NET}/accept_ra").read_text().strip() == "0"
    prefix = "fd42:6:210:ff::"

    def link_local_ready() -> bool:
        out = sh(d, "t6s-a", "ip -6 -o addr show dev eth0 scope link")
        return "fe80::" in out and "tentative" not in out
    wait_for("the container's link-local address", link_local_ready)
    res = as_container_root(d, "t6s-a", "python3", "-c", RA_SENDER, "eth0", prefix)
    assert res.returncode == 0, res.stderr
    time.sleep(1)
    routes = subprocess.run(["ip", "-6", "route", "show", "dev", NET], capture_output=True,
                            text=True, check=True).stdout
    assert prefix not in routes, routes


# ---------------------------------------------------------------- DNS names


def test_dhcp_host_name_cannot_take_another_instances_dns_name(d):
    """t6s-v exists but has not started (no lease yet): t6s-a gives itself a new MAC and asks
    for a lease as `t6s-v`. dnsmasq registered the client's name, and t6s-v.mc led to the
    attacker. Names now come from the daemon's hosts file only (dns.mode=managed)."""
    d.ok("init", "busybox", "t6s-v", "--network", NET)
    out = sh(d, "t6s-a", "ip link set eth0 down && ip link set eth0 address 02:00:0a:d2:01:99 "
                         "&& ip link set eth0 up && "
                         "udhcpc -i eth0 -n -q -t 5 -x hostname:t6s-v -s /bin/true 2>&1")
    assert "obtained" in out, out
    leases = d.api("GET", f"/1.0/networks/{NET}/leases")
    assert isinstance(leases, list)
    assert not [x for x in leases if x["hostname"] == "t6s-v"], leases
    lookup = d.mc("exec", "t6s-b", "--", "nslookup", "t6s-v.mc", GATEWAY)
    assert "Address: 10.210.1." not in lookup.out, lookup.out
    # The instances' own names still resolve (from the hosts file).
    lookup = sh(d, "t6s-a", f"nslookup t6s-b.mc {GATEWAY}")
    assert "Address: 10.210.1." in lookup, lookup


# ---------------------------------------------------------------- netlink state


FLOODER = r"""
import socket, struct, sys, time
portid, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.bind((0, 0))
error = struct.pack("=IHHII", 20, 2, 0, 18, 0) + struct.pack("=i", -2**31)  # seq of RTM_GETLINK
sent = refused = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    try:
        s.sendto(error, (portid, 0))
        sent += 1
    except OSError:
        refused += 1
print(sent, refused)
"""


def test_forged_netlink_messages_never_reach_the_daemon(d):
    """Root in t6s-a unicasts NLMSG_ERROR(errno INT_MIN) to the daemon's netlink socket in its
    namespace (its port id is the daemon's pid). With enough interfaces for the link dump to
    take several reads, the forged error was read as the dump's answer and os.strerror()
    overflowed: `mc list` failed for every instance while it lasted."""
    for i in range(40):
        res = as_container_root(d, "t6s-a", "ip", "link", "add", f"x{i}", "type", "veth",
                                "peer", "name", f"y{i}")
        assert res.returncode == 0, res.stderr
    assert d.proc is not None
    flood = subprocess.Popen(["nsenter", "-t", str(init_pid(d, "t6s-a")), "-U", "-n",
                              "python3", "-c", FLOODER, str(d.proc.pid), "6"],
                             stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        for _ in range(6):
            res = d.mc("list", "--format", "json", timeout=30)
            assert res.code == 0, res.err
            listed = {i["name"]: i for i in json.loads(res.out)}
            assert "eth0" in (listed["t6s-a"]["state"]["network"] or {})
    finally:
        out, _ = flood.communicate(timeout=30)
    sent, refused = map(int, out.split())
    assert refused > 0 and sent == 0, (sent, refused)


# ---------------------------------------------------------------- reboot from inside


def test_reboot_with_spoofed_tags_and_a_swapped_interface_leaves_the_host_alone(d):
    """Before rebooting, t6s-c deletes its eth0 and makes a veth pair in its place with the
    same ifindex (the monitor takes nics back by ifindex), named like the host's bridge, with
    the link tag of t6s-a's nic and of the bridge as aliases (the tag is a hash of the state
    directory: guessable). Nothing of the host or of t6s-a may be touched; after the reboot no
    host interface carries an alias the container chose."""
    t = tag(d)
    before = host_links()
    a_host = volatile(d, "t6s-a", "volatile.eth0.host_name")
    c_host = volatile(d, "t6s-c", "volatile.eth0.host_name")
    assert before[a_host]["master"] == before[NET]["index"]
    index = sh(d, "t6s-c", "cat /sys/class/net/eth0/ifindex").strip()
    spoof_a, spoof_bridge = f"{t} nic t6s-a/eth0", f"{t} bridge {NET}"
    for argv in (["ip", "link", "del", "eth0"],
                 ["ip", "link", "add", "name", NET, "index", index, "type", "veth", "peer",
                  "name", "eth9"],
                 ["ip", "link", "set", NET, "alias", spoof_a],
                 ["ip", "link", "set", "eth9", "alias", spoof_bridge]):
        res = as_container_root(d, "t6s-c", *argv)
        assert res.returncode == 0, (argv, res.stderr)
    wait_for(f"{c_host} to go with its peer", lambda: c_host not in host_links())
    d.mc("exec", "t6s-c", "--", "reboot", timeout=30)
    time.sleep(3)  # the reboot boots again or fails: either way the host must be as it was
    after = host_links()
    assert after[NET]["index"] == before[NET]["index"] and after[NET]["kind"] == "bridge"
    assert after[a_host]["index"] == before[a_host]["index"]
    assert after[a_host]["master"] == after[NET]["index"]
    aliases = {name: link["alias"] for name, link in after.items()
               if link["alias"] in (spoof_a, spoof_bridge)}
    assert aliases == {a_host: spoof_a, NET: spoof_bridge}, aliases
    # Its nic was the container's own veth, whose peer stayed in the old namespace: the
    # reboot usually fails (the nic went with that namespace), and the container is stopped.
    d.mc("stop", "--force", "t6s-c")
    after = host_links()
    assert a_host in after and after[NET]["index"] == before[NET]["index"]
    assert not [n for n, link in after.items() if link["alias"].startswith(f"{t} nic t6s-c/")]
    sh(d, "t6s-a", f"ping -c1 -W5 {GATEWAY}")  # t6s-a's nic still works
    d.ok("start", "t6s-c")


# ---------------------------------------------------------------- the state directory


def _others_can_read(root: Path, path: Path) -> bool:
    """Whether a user other than root can open `path`: every directory down to it
    searchable by others, and the file readable by them."""
    current = root
    for part in path.relative_to(root).parts[:-1]:
        if not os.stat(current).st_mode & stat.S_IXOTH:
            return False
        current = current / part
    if not os.stat(current).st_mode & stat.S_IXOTH:
        return False
    return bool(os.lstat(path).st_mode & stat.S_IROTH)


def test_state_directory_keeps_its_secrets_from_other_users(d):
    """$MACHINED_DIR is 0711 (dnsmasq, running as nobody, reads its hosts file there):
    nothing in it may be writable by others, and the database, keys, logs and the runtime's
    files of containers must stay unreadable by them."""
    res = d.mc("config", "set", "core.https_address", "127.0.0.1:18961")
    if res.code == 0:  # makes server.key; the port may be taken by another test run
        d.ok("config", "unset", "core.https_address")
    root = d.root
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o711
    listing, readable = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        rel = base.relative_to(root)
        if rel.parts[:1] == ("storage-pools",) and len(rel.parts) >= 3 or \
                rel.parts[:1] == ("run",) and "rootfs" in rel.parts:
            dirnames[:] = []  # instance volumes and mounted rootfs: the containers' own
        for name in [*dirnames, *filenames]:
            path = base / name
            mode = os.lstat(path).st_mode
            listing.append(f"{stat.filemode(mode)} {path.relative_to(root)}")
            assert not mode & stat.S_IWOTH or stat.S_ISLNK(mode), f"{path} is {oct(mode)}"
            if _others_can_read(root, path) and not stat.S_ISDIR(mode):
                readable.append(str(path.relative_to(root)))
    print("\n".join(listing))
    secret = [p for p in readable if p.split("/")[0] in ("database", "logs", "run", "images")
              or p in ("server.key", "machined.lock")]
    assert not secret, secret
    # What others can read: the public certificate and dnsmasq's files (nobody reads them).
    allowed = {"server.crt"} | {f"networks/{NET}/dnsmasq.{x}"
                                for x in ("hosts", "pid", "leases", "cmd")}
    assert set(readable) <= allowed, sorted(set(readable) - allowed)
