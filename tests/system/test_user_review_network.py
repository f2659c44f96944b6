"""What a user review of the networking (issue 6) found, end to end on a real daemon: a proxy
device added to or removed from a running instance applies at once and mc says nothing about
a restart (nics do wait for the next start, and mc says so, for removals too); `mc list
ipv4=` / `ipv6=` filter by address or subnet as lxc's; the static address error names the
network cleanly.

Names: bridge t6ut0, subnet 10.212.31.0/24, NAT off, containers t6u-*, host ports
127.0.0.1:1853x; everything made here is deleted by the module fixture."""

from __future__ import annotations

import os
import socket
import time

import pytest

pytestmark = pytest.mark.system

NET = "t6ut0"
NET_KEYS = ("ipv4.address=10.212.31.1/24", "ipv4.nat=false", "ipv6.address=none")
C1 = "t6u-r1"
PORT = 18531


@pytest.fixture(scope="module")
def net(daemon, busybox_image):
    daemon.ok("network", "create", NET, *NET_KEYS)
    try:
        yield NET
    finally:
        for name in [i["name"] for i in daemon.instances()]:
            if name.startswith("t6u-"):
                daemon.mc("delete", "--force", name)
        daemon.ok("network", "delete", NET)
        assert not os.path.exists(f"/sys/class/net/{NET}")


@pytest.fixture(scope="module")
def c1(daemon, net, busybox_image) -> str:
    daemon.ok("launch", busybox_image, C1, "--network", net)
    return C1


def _address(daemon, name: str) -> str:
    """The instance's DHCP address (busybox's udhcpc gets it ~0.15 s after the launch)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        out = daemon.ok("list", name, "-c", "4", "-f", "csv").strip().strip('"')
        if out:
            return out.split()[0]
        time.sleep(0.1)
    raise AssertionError(f"{name} got no IPv4 address")


def _get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_proxy_on_a_running_instance_applies_at_once_without_a_restart_note(daemon, c1):
    daemon.ok("exec", c1, "--", "sh", "-c",
              "echo t6u-proxy-ok > /tmp/index.html; httpd -p 127.0.0.1:80 -h /tmp")
    res = daemon.mc("config", "device", "add", c1, "web", "proxy",
                    f"listen=tcp:127.0.0.1:{PORT}", "connect=tcp:127.0.0.1:80")
    assert res.code == 0, res.err
    assert res.out == f"Device web added to {c1}\n"
    assert "next start" not in res.err  # it is not: the proxy listens already
    assert b"t6u-proxy-ok" in _get(PORT)
    res = daemon.mc("config", "device", "remove", c1, "web")
    assert res.code == 0 and res.out == f"Device web removed from {c1}\n"
    assert res.err == ""
    assert _refused(PORT)


def test_nic_changes_on_a_running_instance_say_they_wait_for_the_next_start(daemon, c1, net):
    res = daemon.mc("network", "attach", net, c1, "eth1", "eth1")
    assert res.code == 0 and f"The device takes effect at the next start of {c1}" in res.err
    assert "eth1" not in daemon.ok("exec", c1, "--", "ls", "/sys/class/net").split()
    res = daemon.mc("network", "detach", net, c1, "eth1")
    assert res.code == 0 and f"The removal takes effect at the next start of {c1}" in res.err


def test_list_filters_by_address_and_subnet(daemon, c1):
    address = _address(daemon, c1)
    assert daemon.ok("list", f"ipv4={address}", "-c", "n", "-f", "csv") == f"{c1}\n"
    found = daemon.ok("list", "ipv4=10.212.31.0/24", "-c", "n", "-f", "csv").split()
    assert c1 in found
    assert daemon.ok("list", "t6u-", "ipv4=10.212.99.0/24", "-c", "n", "-f", "csv") == ""
    assert daemon.ok("list", "t6u-", "ipv6=fd42::/16", "-c", "n", "-f", "csv") == ""


def test_static_address_on_the_bridge_is_refused_in_one_clean_line(daemon, c1, net):
    res = daemon.mc("config", "device", "add", c1, "eth2", "nic", f"network={net}",
                    "ipv4.address=10.212.31.1")
    assert res.code == 1
    assert res.err == ("Error: Invalid ipv4.address '10.212.31.1' of device 'eth2': it is "
                       f"the bridge's own address on network '{net}'\n")
    assert "eth2" not in daemon.ok("config", "device", "list", c1).split()
