"""Leases follow instances: a deleted instance's lease (and so its DNS name) goes at once, a
static address another client holds is refused, and a network whose bridge still has a
running instance's interface cannot be deleted.

Names: containers t6l-*, bridge t6l0, subnet 10.213.0.0/24, NAT off; traffic only to them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Daemon
from tests.system.test_nics import sh, wait_ipv4

pytestmark = pytest.mark.system

NET = "t6l0"


@pytest.fixture(scope="module")
def net(daemon: Daemon, busybox_image: str) -> Iterator[str]:
    daemon.ok("network", "create", NET, "ipv4.address=10.213.0.1/24", "ipv4.nat=false",
              "ipv6.address=none")
    try:
        yield NET
    finally:
        for inst in daemon.instances():
            if inst["name"].startswith("t6l-"):
                daemon.mc("delete", "--force", inst["name"])
        daemon.mc("network", "delete", NET)


def leases(daemon: Daemon) -> list[dict]:
    found = daemon.api("GET", f"/1.0/networks/{NET}/leases")
    assert isinstance(found, list)
    return found


def test_a_deleted_instance_loses_its_lease_and_name(daemon, busybox_image, net):
    for name in ("t6l-a", "t6l-b"):
        daemon.ok("launch", busybox_image, name, "--network", net)
    wait_ipv4(daemon, "t6l-a")
    address = wait_ipv4(daemon, "t6l-b")
    assert sh(daemon, "t6l-a", "nslookup t6l-b.mc 10.213.0.1").count(address)
    assert any(x["hostname"] == "t6l-b" and x["type"] == "dynamic" for x in leases(daemon))
    dnsmasq_before = daemon.api("GET", f"/1.0/networks/{NET}/leases")

    daemon.ok("delete", "--force", "t6l-b")
    assert not any(x["hostname"] == "t6l-b" or x["address"] == address
                   for x in leases(daemon)), dnsmasq_before
    res = daemon.mc("exec", "t6l-a", "--", "nslookup", "t6l-b.mc", "10.213.0.1")
    assert address not in res.out
    # The other instance's lease and name are untouched (dnsmasq came back with them).
    assert any(x["hostname"] == "t6l-a" for x in leases(daemon))
    assert "10.213.0." in sh(daemon, "t6l-a", "nslookup t6l-a.mc 10.213.0.1")


def test_a_static_address_someone_holds_is_refused(daemon, busybox_image, net):
    daemon.ok("launch", busybox_image, "t6l-h", "--network", net)
    held = wait_ipv4(daemon, "t6l-h")
    daemon.ok("init", busybox_image, "t6l-s", "--network", net)
    res = daemon.mc("config", "device", "set", "t6l-s", "eth0", f"ipv4.address={held}")
    assert res.code != 0
    assert res.err.count("\n") == 1 and "leased to t6l-h" in res.err, res.err
    assert "ipv4.address" not in daemon.api("GET", "/1.0/instances/t6l-s")["devices"]["eth0"]
    # Its own lease is no obstacle: the holder may pin the address it has.
    daemon.ok("config", "device", "set", "t6l-h", "eth0", f"ipv4.address={held}")


def test_a_network_with_a_running_instances_interface_stays(daemon, busybox_image, net):
    daemon.ok("network", "create", "t6l1", "ipv4.address=10.213.1.1/24", "ipv4.nat=false",
              "ipv6.address=none")
    try:
        daemon.ok("launch", busybox_image, "t6l-p", "--network", "t6l1")
        daemon.ok("config", "device", "remove", "t6l-p", "eth0")  # applies at the next start
        res = daemon.mc("network", "delete", "t6l1")
        assert res.code != 0 and "running instances' interfaces" in res.err, res.err
        assert daemon.api("GET", "/1.0/networks/t6l1")["managed"]
        daemon.ok("stop", "--force", "t6l-p")
        daemon.ok("network", "delete", "t6l1")
    finally:
        daemon.mc("delete", "--force", "t6l-p")
        daemon.mc("network", "delete", "t6l1")
