"""Managed networks, the pure part (machined/network/model.py): names, keys, plans, subnet
choice, dnsmasq's argv and hosts file, leases, the NAT ruleset."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import pytest

from machined.errors import BadRequest
from machined.network import model
from machined.network.model import HostEntry, NetFiles

FILES = NetFiles(Path("/var/lib/machined/networks/t6a0"))


def plan(**config: str) -> model.Plan:
    return model.plan({k.replace("_", "."): v for k, v in config.items()})


def v4only(**extra: str) -> model.Plan:
    return model.plan({"ipv4.address": "10.206.1.1/24", "ipv6.address": "none", **extra})


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["mcbr0", "t6a0", "a", "br-lan.2", "x_y", "A" * 15])
def test_good_names(name):
    assert model.check_name(name) == name


@pytest.mark.parametrize("name", ["", "A" * 16, "-br", ".br", "br/0", "br 0", "br:0", "lo",
                                  "all", "default", "none", "br\n0", "é", None, 7])
def test_bad_names(name):
    with pytest.raises(BadRequest, match="Invalid network name") as e:
        model.check_name(name)
    assert "\n" not in e.value.message


def test_type_is_bridge_only():
    assert model.check_type(None) == "bridge"
    assert model.check_type("bridge") == "bridge"
    with pytest.raises(BadRequest, match="Unsupported network type 'macvlan': accepted is bridge"):
        model.check_type("macvlan")


# ---------------------------------------------------------------- keys


@pytest.mark.parametrize(("key", "value", "accepted"), [
    ("bridge.mtu", "67", "an integer from 68 to 65535"),
    ("bridge.mtu", "big", "an integer from 68 to 65535"),
    ("bridge.hwaddr", "01:16:3e:00:00:01", "a unicast MAC address"),
    ("bridge.hwaddr", "00:00:00:00:00:00", "a unicast MAC address"),
    ("bridge.driver", "openvswitch", "one of: native"),
    ("ipv4.address", "10.1.2.1", "prefix length (8 to 30)"),
    ("ipv4.address", "10.1.2.0/24", "auto, none or a unicast IPv4 host address"),
    ("ipv4.address", "10.1.2.255/24", "auto, none"),
    ("ipv4.address", "10.1.2.1/31", "prefix length (8 to 30)"),
    ("ipv4.address", "127.0.0.1/8", "unicast IPv4"),
    ("ipv4.address", "224.0.0.1/24", "unicast IPv4"),
    ("ipv4.address", "fd42::1/64", "IPv4"),
    ("ipv6.address", "fd42::1", "with its prefix length"),
    ("ipv6.address", "fe80::1/64", "unicast IPv6"),
    ("ipv6.address", "10.1.2.1/24", "IPv6"),
    ("ipv4.nat", "maybe", "a boolean"),
    ("ipv4.dhcp", "2", "a boolean"),
    ("ipv4.dhcp.ranges", "10.1.2.9-10.1.2.3", "IPv4 ranges first-last"),
    ("ipv4.dhcp.ranges", "10.1.2.3", "IPv4 ranges first-last"),
    ("ipv4.dhcp.expiry", "60s", "at least 2 minutes"),
    ("ipv4.dhcp.expiry", "1y", "lease time"),
    ("ipv4.dhcp.gateway", "10.1.2", "an IPv4 address"),
    ("dns.domain", "bad_domain", "a DNS domain name"),
    ("dns.domain", "a/b", "a DNS domain name"),
    ("dns.domain", "x,y", "a DNS domain name"),
    ("dns.mode", "static", "one of: managed, dynamic, none"),
    ("dns.search", "a.b, c d", "DNS domain names"),
    ("user.note", "two\nlines", "a single line"),
])
def test_bad_values_name_key_value_and_accepted(key, value, accepted):
    with pytest.raises(BadRequest) as e:
        model.validate_keys({key: value})
    msg = e.value.message
    assert msg.startswith(f"Invalid value {value!r} for network key {key!r}: expected "), msg
    assert accepted in msg
    assert "\n" not in msg


def test_unknown_key_says_what_is_accepted_and_suggests():
    with pytest.raises(BadRequest) as e:
        model.validate_keys({"ipv4.adress": "10.1.2.1/24"})
    msg = e.value.message
    assert msg.startswith("Unknown network key 'ipv4.adress' (did you mean 'ipv4.address'?): "
                          "accepted are ")
    assert "bridge.mtu" in msg and "user.*" in msg
    with pytest.raises(BadRequest, match="Unknown network key 'raw.dnsmasq': accepted"):
        model.validate_keys({"raw.dnsmasq": "x"})
    with pytest.raises(BadRequest, match="Unknown network key 'user.'"):
        model.validate_keys({"user.": "x"})


def test_values_must_be_strings_and_empty_means_unset():
    with pytest.raises(BadRequest, match="values must be UTF-8 strings"):
        model.validate_keys({"bridge.mtu": 1400})
    with pytest.raises(BadRequest, match="must be an object"):
        model.validate_keys(["bridge.mtu"])
    assert model.validate_keys({"bridge.mtu": "", "user.x": "y", "ipv4.nat": "true"}) == {
        "user.x": "y", "ipv4.nat": "true"}
    assert model.validate_keys(None) == {}


def test_create_defaults_as_lxd():
    assert model.create_defaults({}) == {"ipv4.address": "auto", "ipv4.nat": "true",
                                         "ipv6.address": "auto", "ipv6.nat": "true"}
    given = {"ipv4.address": "10.206.1.1/24", "ipv6.address": "none"}
    assert model.create_defaults(given) == given
    assert model.create_defaults({"ipv4.address": "auto", "ipv4.nat": "false"})["ipv4.nat"] \
        == "false"


def test_init_network_overrides_the_default_keys():
    assert model.parse_init_network("") == {"ipv4.address": "auto", "ipv6.address": "auto"}
    assert model.parse_init_network(
        "ipv4.address=10.206.250.1/24 ipv4.nat=false ipv6.address=none") == {
        "ipv4.address": "10.206.250.1/24", "ipv4.nat": "false", "ipv6.address": "none"}
    with pytest.raises(BadRequest, match="MACHINED_INIT_NETWORK item 'ipv4.nat'"):
        model.parse_init_network("ipv4.nat")


# ---------------------------------------------------------------- plans


def test_plan_of_a_v4_only_network():
    p = v4only(**{"ipv4.dhcp.ranges": "10.206.1.50-10.206.1.99", "bridge.mtu": "1400"})
    assert p.ipv4 == ipaddress.IPv4Interface("10.206.1.1/24") and p.ipv6 is None
    assert p.mtu == 1400 and not p.nat4 and p.dhcp4 and p.domain == "mc"
    assert p.dhcp_ranges4() == [(ipaddress.IPv4Address("10.206.1.50"),
                                 ipaddress.IPv4Address("10.206.1.99"))]


def test_default_range_skips_the_bridge_address():
    assert v4only().dhcp_ranges4() == [(ipaddress.IPv4Address("10.206.1.2"),
                                        ipaddress.IPv4Address("10.206.1.254"))]
    p = model.plan({"ipv4.address": "10.206.1.100/24"})
    assert [(str(a), str(b)) for a, b in p.dhcp_ranges4()] == [
        ("10.206.1.2", "10.206.1.99"), ("10.206.1.101", "10.206.1.254")]


@pytest.mark.parametrize(("config", "message"), [
    ({"ipv4.address": "10.206.1.1/24", "ipv4.dhcp.ranges": "10.206.2.5-10.206.2.9"},
     "range 10.206.2.5-10.206.2.9 is not inside the host addresses of 10.206.1.0/24"),
    ({"ipv4.address": "10.206.1.1/24", "ipv4.dhcp.ranges": "10.206.1.0-10.206.1.9"},
     "is not inside the host addresses"),
    ({"ipv4.address": "10.206.1.1/24", "ipv4.dhcp.ranges": "10.206.1.1-10.206.1.9"},
     "holds the bridge's own address 10.206.1.1"),
    ({"ipv6.address": "fd42:1:2:3::1/64", "bridge.mtu": "1200"},
     "'bridge.mtu': expected at least 1280 on a network with IPv6"),
    ({"ipv6.address": "fd42:1:2::1/48"}, "expected a /64 subnet"),
])
def test_cross_key_rules(config, message):
    with pytest.raises(BadRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        model.plan(config)


def test_keys_of_a_family_without_address_are_inert():
    p = model.plan({"ipv4.address": "none", "ipv4.nat": "true", "ipv6.address": "none",
                    "ipv6.nat": "true", "ipv4.dhcp.ranges": "10.1.1.2-10.1.1.3"})
    assert p.ipv4 is None and p.subnets() == []
    assert model.nat_ruleset("t6a0", p) is None
    assert model.dnsmasq_argv("/usr/sbin/dnsmasq", "t6a0", p, FILES) is None
    stateful = model.plan({"ipv6.address": "fd42:1:2::1/48", "ipv6.dhcp.stateful": "true"})
    assert stateful.ipv6 is not None


# ---------------------------------------------------------------- subnets


HOST = [(ipaddress.ip_network("0.0.0.0/0"), "route on eth0"),
        (ipaddress.ip_network("192.0.2.0/24"), "route on eth0"),
        (ipaddress.ip_network("10.0.0.0/9"), "route on vpn0"),
        (ipaddress.ip_network("fd00::/64"), "route on eth0")]


def test_auto_subnet_avoids_used_ones():
    rng = random.Random(6)
    chosen = set()
    for _ in range(200):
        iface = model.choose_ipv4(HOST, rng)
        assert iface.network.prefixlen == 24 and str(iface.ip).endswith(".1")
        assert not iface.network.overlaps(ipaddress.ip_network("10.0.0.0/9"))
        chosen.add(iface.network)
    assert len(chosen) > 150  # random, not one fixed choice
    six = model.choose_ipv6(HOST, rng)
    assert six.network.prefixlen == 64 and str(six.ip).startswith("fd42:")


def test_auto_subnet_is_refused_when_everything_is_used():
    used = [(ipaddress.ip_network("10.0.0.0/8"), "route on eth0")]
    with pytest.raises(BadRequest, match="No free 10.x.y.0/24 subnet"):
        model.choose_ipv4(used, random.Random(1), attempts=50)


def test_resolve_auto_keeps_given_addresses():
    rng = random.Random(3)
    out = model.resolve_auto({"ipv4.address": "auto", "ipv6.address": "none"}, HOST, rng)
    assert out["ipv6.address"] == "none"
    assert ipaddress.IPv4Interface(out["ipv4.address"]).network.subnet_of(
        ipaddress.ip_network("10.0.0.0/8"))
    assert model.resolve_auto({"ipv4.address": "10.206.1.1/24"}, HOST, rng) == {
        "ipv4.address": "10.206.1.1/24"}


def test_overlap_names_what_is_in_the_way():
    p = model.plan({"ipv4.address": "10.64.3.1/24"})
    with pytest.raises(BadRequest, match=r"Subnet 10.64.3.0/24 of ipv4.address overlaps "
                                         r"10.0.0.0/9 \(route on vpn0\)"):
        model.check_overlap(p, HOST)
    p6 = model.plan({"ipv6.address": "fd00::1:1/64"})
    with pytest.raises(BadRequest, match="of ipv6.address overlaps fd00::/64"):
        model.check_overlap(p6, [*HOST, (ipaddress.ip_network("10.206.9.0/24"), "network a")])
    model.check_overlap(v4only(), HOST)  # the default route overlaps nothing


# ---------------------------------------------------------------- dnsmasq


def test_dnsmasq_argv_v4_only():
    argv = model.dnsmasq_argv("/usr/sbin/dnsmasq", "t6a0", v4only(), FILES)
    d = "/var/lib/machined/networks/t6a0"
    assert argv is not None and argv[0] == "/usr/sbin/dnsmasq"
    for arg in ["--conf-file=/dev/null", "--strict-order", "--bind-interfaces",
                "--except-interface=lo", "--interface=t6a0", f"--pid-file={d}/dnsmasq.pid",
                "--no-ping", "--dhcp-rapid-commit", "--listen-address=10.206.1.1",
                "--dhcp-no-override", "--dhcp-authoritative",
                f"--dhcp-leasefile={d}/dnsmasq.leases", f"--dhcp-hostsfile={d}/dnsmasq.hosts",
                "--dhcp-range=10.206.1.2,10.206.1.254,1h", "--domain=mc", "--local=/mc/",
                "--user=nobody", "--group=nogroup"]:
        assert arg in argv, arg
    assert not any(a.startswith("--enable-ra") or "constructor" in a for a in argv)
    assert not any(a.startswith("--dhcp-option") for a in argv)  # MTU 1500, no options


def test_dnsmasq_argv_v4_and_v6_with_options():
    p = model.plan({"ipv4.address": "10.206.1.1/24", "ipv6.address": "fd42:1:2:3::1/64",
                    "ipv4.dhcp.ranges": "10.206.1.50-10.206.1.60,10.206.1.70-10.206.1.80",
                    "ipv4.dhcp.expiry": "2d", "ipv4.dhcp.gateway": "10.206.1.254",
                    "bridge.mtu": "1400", "dns.domain": "lab.example",
                    "dns.search": "lab.example, example"})
    argv = model.dnsmasq_argv("dnsmasq", "t6a0", p, FILES)
    assert argv is not None
    assert "--listen-address=10.206.1.1,fd42:1:2:3::1" in argv
    assert [a for a in argv if a.startswith("--dhcp-range=")] == [
        "--dhcp-range=10.206.1.50,10.206.1.60,2d", "--dhcp-range=10.206.1.70,10.206.1.80,2d",
        "--dhcp-range=::,constructor:t6a0,ra-stateless,ra-names"]
    assert "--enable-ra" in argv
    assert {"--dhcp-option-force=3,10.206.1.254", "--dhcp-option-force=26,1400",
            "--dhcp-option-force=119,lab.example,example"} <= set(argv)
    assert "--domain=lab.example" in argv and "--local=/lab.example/" in argv
    stateful = model.plan({"ipv6.address": "fd42:1:2:3::1/64", "ipv6.dhcp.stateful": "true"})
    argv6 = model.dnsmasq_argv("dnsmasq", "t6a0", stateful, FILES)
    assert argv6 is not None
    assert "--dhcp-range=fd42:1:2:3::2,fd42:1:2:3:ffff:ffff:ffff:ffff,64,1h" in argv6


def test_dnsmasq_argv_without_dhcp_or_dns():
    p = v4only(**{"ipv4.dhcp": "false", "dns.mode": "none"})
    argv = model.dnsmasq_argv("dnsmasq", "t6a0", p, FILES)
    assert argv is not None and "--listen-address=10.206.1.1" in argv
    assert not any(a.startswith(("--dhcp-range", "--dhcp-leasefile", "--dhcp-hostsfile",
                                 "--domain", "--local")) for a in argv)
    ra_only = model.plan({"ipv4.address": "none", "ipv6.address": "fd42:1:2:3::1/64",
                          "ipv6.dhcp": "false"})
    argv = model.dnsmasq_argv("dnsmasq", "t6a0", ra_only, FILES)
    assert argv is not None and "--dhcp-range=::,constructor:t6a0,ra-only" in argv
    assert not any(a.startswith("--dhcp-leasefile") for a in argv)


def test_hosts_file_lines():
    entries = [HostEntry("00:16:3E:AA:BB:CC", "c01"),
               HostEntry("00:16:3e:aa:bb:dd", "c02", "10.206.1.20")]
    assert model.render_hosts(entries, "managed") == (
        "00:16:3e:aa:bb:cc,c01\n00:16:3e:aa:bb:dd,10.206.1.20,c02\n")
    # dynamic/none: no names (the client's own host name counts); a bare MAC says nothing
    assert model.render_hosts(entries, "dynamic") == "00:16:3e:aa:bb:dd,10.206.1.20\n"
    assert model.render_hosts([], "managed") == ""


@pytest.mark.parametrize("entry", [
    HostEntry("00:16:3e:aa:bb:cc", "c01\n00:16:3e:00:00:01,10.206.1.9,evil"),
    HostEntry("00:16:3e:aa:bb:cc", "c01,10.206.1.9"),
    HostEntry("00:16:3e:aa:bb:cc\n11:22:33:44:55:66", "c01"),
    HostEntry("00:16:3e:aa:bb:cc", "c01", "10.206.1.9,ignore"),
    HostEntry("00:16:3e:aa:bb:cc", "-c01"),
    HostEntry("00:16:3e:aa:bb:cc", ""),
])
def test_hostile_entries_cannot_inject_lines(entry):
    text = model.render_hosts([entry, HostEntry("00:16:3e:00:00:02", "ok")], "managed")
    assert text == "00:16:3e:00:00:02,ok\n"


def test_one_line_per_mac():
    text = model.render_hosts([HostEntry("00:16:3e:00:00:01", "b"),
                               HostEntry("00:16:3e:00:00:01", "a", "10.206.1.5")], "managed")
    assert text == "00:16:3e:00:00:01,10.206.1.5,a\n"


# ---------------------------------------------------------------- leases


LEASES = """\
1700003600 00:16:3e:aa:bb:cc 10.206.1.23 c01 01:00:16:3e:aa:bb:cc
1700003600 00:16:3e:aa:bb:dd 10.206.1.24 * *
0 00:16:3e:aa:bb:ee 10.206.1.25 forever *
garbage line
1700003600 not-a-mac 10.206.1.26 x *
1700003600 00:16:3e:aa:bb:ff 10.206.1.999 x *
x 00:16:3e:aa:bb:ff 10.206.1.27 x *
1700003600 00:16:3e:aa:bb:99 10.206.1.28 \x1b[31mred *
duid 00:01:00:01:2c:aa:bb:cc:00:16:3e:11:22:33
1700003600 1234 fd42:1:2:3::55 c03 00:01:00:01:2c:aa:bb:cc:00:16:3e:44:55:66

"""


def test_leases_parse_and_skip_garbage():
    leases = model.parse_leases(LEASES)
    assert [(x.hwaddr, x.address, x.hostname) for x in leases] == [
        ("00:16:3e:aa:bb:cc", "10.206.1.23", "c01"),
        ("00:16:3e:aa:bb:dd", "10.206.1.24", ""),
        ("00:16:3e:aa:bb:ee", "10.206.1.25", "forever"),
        ("00:16:3e:aa:bb:99", "10.206.1.28", ""),
        ("00:16:3e:44:55:66", "fd42:1:2:3::55", "c03"),
    ]


def test_lease_objects_static_first_and_expired_dropped():
    leases = model.parse_leases(LEASES)
    statics = [HostEntry("00:16:3e:aa:bb:cc", "c01", "10.206.1.23"),
               HostEntry("00:16:3e:00:00:07", "c07")]
    out = model.lease_objects(leases, statics, now=1700000000)
    assert out[0] == {"hostname": "c01", "hwaddr": "00:16:3e:aa:bb:cc",
                      "address": "10.206.1.23", "type": "static", "location": "none"}
    assert [o["address"] for o in out] == ["10.206.1.23", "10.206.1.24", "10.206.1.25",
                                           "10.206.1.28", "fd42:1:2:3::55"]
    assert all(o["type"] == "dynamic" for o in out[1:])
    later = model.lease_objects(leases, [], now=1800000000)
    assert [o["address"] for o in later] == ["10.206.1.25"]  # expiry 0 = never


# ---------------------------------------------------------------- nftables


def test_nat_ruleset_text():
    p = model.plan({"ipv4.address": "10.206.1.1/24", "ipv4.nat": "true",
                    "ipv6.address": "fd42:1:2:3::1/64", "ipv6.nat": "true"})
    text = model.nat_ruleset("t6a-0.x", p)
    assert text is not None
    lines = text.splitlines()
    assert lines[:3] == ["table inet machined_t6a-0.x", "delete table inet machined_t6a-0.x",
                         "table inet machined_t6a-0.x {"]
    assert "\t\tip saddr 10.206.1.0/24 ip daddr != 10.206.1.0/24 masquerade" in lines
    assert "\t\tip6 saddr fd42:1:2:3::/64 ip6 daddr != fd42:1:2:3::/64 masquerade" in lines
    assert "\t\ttype nat hook postrouting priority srcnat; policy accept;" in lines
    assert '\t\tiifname "t6a-0.x" accept' in lines and '\t\toifname "t6a-0.x" accept' in lines
    v4 = model.nat_ruleset("t6a0", v4only(**{"ipv4.nat": "true"}))
    assert v4 is not None and "ip6 saddr" not in v4


def test_no_nat_no_ruleset_and_removal_is_idempotent():
    assert model.nat_ruleset("t6a0", v4only()) is None
    assert model.nat_removal("t6a0") == ("table inet machined_t6a0\n"
                                         "delete table inet machined_t6a0\n")
    with pytest.raises(BadRequest):
        model.nat_table("bad name")


# ---------------------------------------------------------------- objects


def test_nic_on_a_network():
    assert model.nic_on({"type": "nic", "network": "t6a0"}, "t6a0")
    assert model.nic_on({"type": "nic", "nictype": "bridged", "parent": "t6a0"}, "t6a0")
    assert not model.nic_on({"type": "nic", "nictype": "macvlan", "parent": "t6a0"}, "t6a0")
    assert not model.nic_on({"type": "disk", "network": "t6a0"}, "t6a0")
    assert not model.nic_on({"type": "none"}, "t6a0")


def test_network_objects():
    obj = model.network_object("t6a0", "d", {"ipv4.address": "10.206.1.1/24"}, "Created",
                               ["/1.0/profiles/p"])
    assert obj["managed"] is True and obj["type"] == "bridge" and obj["locations"] == ["none"]
    assert model.unmanaged_object("eth0", "physical", [])["managed"] is False
    assert model.link_type("lo", None, False) == "loopback"
    assert model.link_type("eth0", None, True) == "physical"
    assert model.link_type("br0", "bridge", True) == "bridge"
    assert model.link_type("veth1", "veth", True) == "unknown"


def test_drop_leases_removes_only_the_given_macs():
    text = ("1700000000 00:16:3e:aa:aa:aa 10.1.0.5 a *\n"
            "1700000000 00:16:3e:bb:bb:bb 10.1.0.6 b *\n"
            "duid 00:01:00:01:2c:00:00:00:52:54:00:00:00:01\n"
            "1700000000 1234 fd42::5 a 00:01:00:01:2c:00:00:00:00:16:3e:aa:aa:aa\n"
            "garbage line\n")
    out = model.drop_leases(text, {"00:16:3E:AA:AA:AA"})
    assert out == ("1700000000 00:16:3e:bb:bb:bb 10.1.0.6 b *\n"
                   "duid 00:01:00:01:2c:00:00:00:52:54:00:00:00:01\n"
                   "garbage line\n")
    assert model.drop_leases(text, set()) == text


def test_instances_named_like_dnsmasq_keywords_keep_their_name():
    entries = [HostEntry("00:16:3e:00:00:01", "ignore"), HostEntry("00:16:3e:00:00:02", "web")]
    assert model.render_hosts(entries, "managed", "lab") == (
        "00:16:3e:00:00:01,ignore.lab\n00:16:3e:00:00:02,web\n")
