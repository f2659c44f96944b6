"""The pure parts of instance nics: MACs, interface names, the plan of a start, volatile key
updates, link tags, and the start-time nic rules of config/devices.py."""

from __future__ import annotations

import itertools
import re

import pytest

from machined.config.devices import check_nic_start, validate_device
from machined.errors import BadRequest
from machined.network import nics


def counting() -> nics.Rand:
    """A deterministic stand-in for os.urandom: 00 01 02 ..."""
    counter = itertools.count()
    return lambda n: bytes(next(counter) % 256 for _ in range(n))


def test_random_mac_is_lxd_prefixed_lowercase_and_avoids_taken():
    mac = nics.random_mac()
    assert re.fullmatch(r"00:16:3e(:[0-9a-f]{2}){3}", mac)
    rand = counting()
    first = nics.random_mac((), rand)
    assert first == "00:16:3e:00:01:02"
    rand = counting()
    # The first draw is taken (in any case): the next one is used.
    assert nics.random_mac({"00:16:3E:00:01:02"}, rand) == "00:16:3e:03:04:05"


def test_random_ifnames_fit_ifnamsiz_and_avoid_taken():
    name = nics.random_ifname("veth")
    assert re.fullmatch(r"veth[0-9a-f]{8}", name) and len(name) <= 15
    rand = counting()
    assert nics.random_ifname("mcp", {"mcp00010203"}, rand) == "mcp04050607"


def nic(**keys: str) -> dict[str, str]:
    return {"type": "nic", **keys}


def test_nic_devices_in_name_order_without_other_types():
    devices = {"net1": nic(network="b"), "root": {"type": "disk", "path": "/"},
               "eth0": nic(network="b"), "hidden": {"type": "none"}}
    assert [n for n, _ in nics.nic_devices(devices)] == ["eth0", "net1"]


def test_managed_network_by_name_or_as_bridged_parent():
    assert nics.managed_network(nic(network="mcbr0"), set()) == "mcbr0"
    assert nics.managed_network(nic(nictype="bridged", parent="mcbr0"), {"mcbr0"}) == "mcbr0"
    assert nics.managed_network(nic(nictype="bridged", parent="br0"), {"mcbr0"}) is None
    assert nics.managed_network(nic(nictype="macvlan", parent="mcbr0"), {"mcbr0"}) is None
    assert nics.nictype(nic(network="x")) == "bridged"
    assert nics.nictype(nic(nictype="macvlan", parent="e")) == "macvlan"


def test_inside_names_explicit_then_remembered_then_first_free_eth():
    found = [("a", nic(network="b")), ("b", nic(network="b", name="eth0")),
             ("c", nic(network="b")), ("d", nic(network="b"))]
    # c got eth1 at an earlier start and keeps it; a and d take the first free ones.
    names = nics.inside_names(found, {"volatile.c.name": "eth1"})
    assert names == {"b": "eth0", "c": "eth1", "a": "eth2", "d": "eth3"}
    # A remembered name another nic now claims explicitly is given up.
    names = nics.inside_names(found, {"volatile.a.name": "eth0"})
    assert names == {"b": "eth0", "a": "eth1", "c": "eth2", "d": "eth3"}
    # A remembered value that is not an interface name is ignored.
    assert nics.inside_names([("a", nic())], {"volatile.a.name": "../x y"}) == {"a": "eth0"}


def test_plan_keeps_macs_and_makes_new_ones_for_new_nics():
    found = [("eth0", nic(network="n1")), ("eth1", nic(nictype="macvlan", parent="enp5s0",
                                                       mtu="1400")),
             ("eth2", nic(nictype="bridged", parent="br0", hwaddr="00:16:3E:AA:BB:CC",
                          host_name="myveth"))]
    volatile = {"volatile.eth0.hwaddr": "00:16:3e:11:22:33"}
    parents = {"eth0": ("n1", "n1"), "eth1": ("enp5s0", None), "eth2": ("br0", None)}
    plans = nics.plan_nics(found, volatile, parents, {"00:16:3e:00:01:02"}, counting())
    eth0, eth1, eth2 = plans
    assert (eth0.kind, eth0.parent, eth0.network, eth0.name) == ("bridged", "n1", "n1", "eth0")
    assert eth0.hwaddr == "00:16:3e:11:22:33"  # stable across starts
    assert eth0.host_name.startswith("veth") and eth0.peer.startswith("mcp")
    assert (eth1.kind, eth1.host_name, eth1.mtu, eth1.network) == ("macvlan", "", 1400, None)
    # A new MAC, not one another instance has (00:16:3e:00:01:02 was the first draw).
    assert eth1.hwaddr.startswith("00:16:3e:") and eth1.hwaddr != "00:16:3e:00:01:02"
    assert eth2.hwaddr == "00:16:3e:aa:bb:cc" and eth2.host_name == "myveth"
    assert len({p.peer for p in plans} | {eth0.host_name}) == 4  # all distinct
    # A stored MAC that is not one (edited database) is replaced.
    again = nics.plan_nics(found[:1], {"volatile.eth0.hwaddr": "junk"}, parents, ())
    assert again[0].hwaddr.startswith("00:16:3e:")


def test_two_new_nics_never_get_the_same_mac_or_name():
    """A generator that repeats itself: each nic of one start still gets its own MAC and
    host names."""
    macs = iter([b"\x01\x01\x01", b"\x01\x01\x01", b"\x02\x02\x02"])
    names = iter([b"\x01" * 4, b"\x01" * 4, b"\x01" * 4, b"\x02" * 4, b"\x01" * 4,
                  b"\x03" * 4])

    def rand(n: int) -> bytes:
        return next(macs) if n == 3 else next(names)

    found = [("a", nic(network="n")), ("b", nic(network="n"))]
    plans = nics.plan_nics(found, {}, {"a": ("n", "n"), "b": ("n", "n")}, (), rand)
    assert [p.hwaddr for p in plans] == ["00:16:3e:01:01:01", "00:16:3e:02:02:02"]
    assert [(p.host_name, p.peer) for p in plans] == [
        ("veth01010101", "mcp01010101"), ("veth02020202", "mcp03030303")]


def test_volatile_updates():
    devices = {"eth0": nic(network="n"), "eth1": nic(network="n", name="lan",
                                                     hwaddr="00:16:3e:aa:aa:aa"),
               "gone": {"type": "disk", "path": "/x", "source": "/y"}}
    found = nics.nic_devices(devices)
    volatile = {"volatile.eth0.hwaddr": "00:16:3e:11:22:33", "volatile.eth0.name": "eth0",
                "volatile.eth1.hwaddr": "00:16:3e:99:99:99",  # before hwaddr was set
                "volatile.old.hwaddr": "00:16:3e:55:55:55", "volatile.old.host_name": "vethx",
                "volatile.last_state.power": "STOPPED", "volatile.base_image": "abc",
                "volatile.my.dev.name": "eth9"}
    plans = nics.plan_nics(found, volatile, {"eth0": ("n", "n"), "eth1": ("n", "n")}, ())
    updates = nics.volatile_updates(plans, devices, volatile)
    assert updates == {
        "volatile.eth0.host_name": plans[0].host_name,  # unchanged keys are not rewritten
        "volatile.eth1.hwaddr": None, "volatile.eth1.host_name": plans[1].host_name,
        "volatile.old.hwaddr": None, "volatile.old.host_name": None,
        "volatile.my.dev.name": None,  # device names may contain dots
    }
    # macvlan: the temporary name is the host name LXD records.
    mac = nics.plan_nics([("m", nic(nictype="macvlan", parent="e"))], {}, {"m": ("e", None)},
                         ())
    assert nics.volatile_updates(mac, {"m": nic(nictype="macvlan", parent="e")}, {})[
        "volatile.m.host_name"] == mac[0].peer


def test_link_tags_and_spec_entries():
    plan = nics.plan_nics([("eth0", nic(network="n"))], {}, {"eth0": ("n", "n")}, ())[0]
    alias = plan.alias("machined:0123456789ab", "c1")
    assert alias == "machined:0123456789ab nic c1/eth0"
    assert nics.parse_alias(alias, "machined:0123456789ab") == ("c1", "eth0")
    assert nics.parse_alias(alias, "machined:ffffffffffff") is None  # another daemon's
    assert nics.parse_alias("machined:0123456789ab bridge n", "machined:0123456789ab") is None
    assert nics.parse_alias("", "machined:0123456789ab") is None
    assert nics.parse_alias("machined:0123456789ab nic c1", "machined:0123456789ab") is None
    assert plan.spec("machined:0123456789ab", "c1") == {
        "device": "eth0", "name": "eth0", "host_peer": plan.peer, "alias": alias,
        "hwaddr": plan.hwaddr}


@pytest.mark.parametrize("dev, message", [
    (nic(nictype="p2p"), "Device 'eth0': nictype 'p2p' is not supported yet: accepted are "
                         "bridged, macvlan"),
    (nic(nictype="routed"), "nictype 'routed' is not supported yet"),
    (nic(network="n", vlan="10"), "Device 'eth0': key 'vlan' is not supported yet for nictype "
                                  "bridged: supported are boot.priority, host_name, hwaddr, "
                                  "ipv4.address, mtu, name, network, nictype, parent"),
    (nic(nictype="macvlan", parent="e", host_name="x"), "key 'host_name' is not supported yet "
                                                        "for nictype macvlan"),
    (nic(network="n", **{"security.mac_filtering": "true"}), "key 'security.mac_filtering'"),
])
def test_start_refuses_what_is_not_implemented(dev, message):
    validate_device("eth0", dev)  # valid LXD configuration...
    with pytest.raises(BadRequest) as e:
        check_nic_start("eth0", dev)  # ...that a start refuses rather than ignores
    assert message in e.value.message


@pytest.mark.parametrize("dev", [
    nic(network="n"), nic(network="n", nictype="bridged", name="eth0", hwaddr="00:16:3e:00:00:01",
                          mtu="1400", host_name="v1", **{"ipv4.address": "10.0.0.2"}),
    nic(nictype="bridged", parent="br0"), nic(nictype="macvlan", parent="enp5s0", mtu="1500"),
])
def test_start_accepts_what_is_implemented(dev):
    validate_device("eth0", dev)
    check_nic_start("eth0", dev)


def test_network_with_nictype_bridged_is_fine_other_nictypes_are_not():
    validate_device("eth0", nic(network="n", nictype="bridged"))
    with pytest.raises(BadRequest, match="sets both 'network' and 'nictype'"):
        validate_device("eth0", nic(network="n", nictype="macvlan"))
    with pytest.raises(BadRequest, match="sets both 'network' and 'parent'"):
        validate_device("eth0", nic(network="n", nictype="bridged", parent="br0"))
