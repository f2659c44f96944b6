"""What a user review of the networking (issue 6) found on the client side: lxc's ipv4=/ipv6=
list filters, the "takes effect at the next start" note (not for proxies, which apply at once;
also when a running instance's nic is removed), `device remove c1 x x`, and the documented
defaults of the network address keys. A recording fake stands in for the API client."""

from __future__ import annotations

from typing import Any

import pytest

from cli.commands.list import matches
from machined.network.model import NETWORK_KEYS
from tests.unit.test_cli_snapshots import FakeClient, install_fake, run

NOTE = "takes effect at the next start of c1"
REMOVAL = "The removal takes effect at the next start of c1"


def _inst(name: str, *addresses: tuple[str, str]) -> dict[str, Any]:
    return {"name": name, "status": "Running", "state": {"network": {
        "eth0": {"addresses": [{"family": f, "address": a, "netmask": "24", "scope": "global"}
                               for f, a in addresses]},
        "lo": {"addresses": [{"family": "inet", "address": "127.0.0.1", "netmask": "8",
                              "scope": "local"}]}}}}


C1 = _inst("c1", ("inet", "10.212.5.83"), ("inet6", "fd42:212:5::83"))
C2 = _inst("c2", ("inet", "10.212.0.50"))
STOPPED = {"name": "c3", "status": "Stopped", "state": {"network": None}}


@pytest.mark.parametrize("flt,shown", [
    ("ipv4=10.212.5.83", ["c1"]),
    ("ipv4=10.212.5.8", []),                        # an address matches whole, not as a prefix
    ("ipv4=10.212.0.0/16", ["c1", "c2"]),
    ("ipv4=10.212.0.0/24", ["c2"]),
    ("ipv4=10.212.0.7/24", ["c2"]),                 # host bits in a subnet are ignored
    ("ipv4=10.9.9.9,10.212.0.50", ["c2"]),          # comma-separated: any of them
    ("ipv6=fd42:212:5::/64", ["c1"]),
    ("ipv6=fd42:212:5::83", ["c1"]),
    ("ipv4=fd42:212:5::83", []),                    # the family counts
    ("ipv4=127.0.0.1", ["c1", "c2"]),               # lxc looks at every interface, lo too
    ("ipv4=junk", []),
    ("ipv4=10.0.0.0/99", []),
])
def test_list_ipv4_ipv6_filters_as_lxc(flt: str, shown: list[str]) -> None:
    assert [i["name"] for i in (C1, C2, STOPPED) if matches(i, [flt])] == shown


def test_list_filters_combine_with_name() -> None:
    assert matches(C1, ["c", "ipv4=10.212.5.0/24"])
    assert not matches(C1, ["c2", "ipv4=10.212.5.0/24"])


def _answers(fake: FakeClient, status: str) -> None:
    fake.answers.update({
        "/1.0/instances/c1": {
            "name": "c1", "status": status, "config": {}, "profiles": ["default"],
            "ephemeral": False, "description": "",
            "devices": {"web": {"type": "proxy", "listen": "tcp:127.0.0.1:18500",
                                "connect": "tcp:127.0.0.1:80"},
                        "eth1": {"type": "nic", "network": "t6u1"}},
            "expanded_devices": {}},
        "/1.0/networks/t6u1": {"name": "t6u1", "type": "bridge", "managed": True,
                               "config": {}, "used_by": []},
    })


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    return install_fake(monkeypatch)


def test_proxy_changes_on_a_running_instance_say_nothing_about_a_restart(
        fake: FakeClient) -> None:
    _answers(fake, "Running")
    res = run("config", "device", "add", "c1", "web2", "proxy",
              "listen=tcp:127.0.0.1:18501", "connect=tcp:127.0.0.1:80")
    assert res.exit_code == 0 and "Device web2 added to c1" in res.output
    assert NOTE not in res.output
    res = run("config", "device", "remove", "c1", "web")
    assert res.exit_code == 0 and "Device web removed from c1" in res.output
    assert REMOVAL not in res.output and NOTE not in res.output


def test_nic_changes_on_a_running_instance_say_when_they_apply(fake: FakeClient) -> None:
    _answers(fake, "Running")
    res = run("config", "device", "add", "c1", "eth2", "nic", "network=t6u1")
    assert res.exit_code == 0 and NOTE in res.output
    res = run("config", "device", "remove", "c1", "eth1")
    assert res.exit_code == 0 and REMOVAL in res.output
    res = run("network", "detach", "t6u1", "c1")
    assert res.exit_code == 0 and REMOVAL in res.output
    # removing a proxy and a nic at once: the nic waits, so the note is there
    res = run("config", "device", "remove", "c1", "web", "eth1")
    assert res.exit_code == 0 and REMOVAL in res.output


def test_device_set_unset_override_say_when_they_apply(fake: FakeClient) -> None:
    _answers(fake, "Running")
    change = "The change takes effect at the next start of c1"
    inst = fake.answers["/1.0/instances/c1"]
    inst["expanded_devices"] = {"eth0": {"type": "nic", "network": "mcbr0"}}
    for argv, noted in [
        (("config", "device", "set", "c1", "eth1", "mtu=1400"), True),
        (("config", "device", "unset", "c1", "eth1", "network"), True),
        (("config", "device", "override", "c1", "eth0", "mtu=1400"), True),
        (("config", "device", "set", "c1", "web", "listen=tcp:127.0.0.1:18502"), False),
    ]:
        res = run(*argv)
        assert res.exit_code == 0, res.output
        assert (change in res.output) is noted, argv


def test_stopped_instances_get_no_note(fake: FakeClient) -> None:
    _answers(fake, "Stopped")
    for argv in (("config", "device", "add", "c1", "eth2", "nic", "network=t6u1"),
                 ("config", "device", "remove", "c1", "eth1"),
                 ("network", "detach", "t6u1", "c1")):
        res = run(*argv)
        assert res.exit_code == 0 and NOTE not in res.output and REMOVAL not in res.output


def test_removing_the_same_device_twice_in_one_command(fake: FakeClient) -> None:
    _answers(fake, "Stopped")
    res = run("config", "device", "remove", "c1", "eth1", "eth1")
    assert res.exit_code == 0, res.output
    assert res.output.count("Device eth1 removed from c1") == 1
    assert "KeyError" not in res.output
    put = fake.writes()[-1]
    assert put[0] == "PUT" and set(put[2]["devices"]) == {"web"}


def test_address_keys_document_what_unset_means() -> None:
    """`mc network unset n ipv4.address` leaves no IPv4 (as LXD): the table must not claim
    `auto` as the default that comes back."""
    for family in ("ipv4", "ipv6"):
        key = NETWORK_KEYS[f"{family}.address"]
        assert key.default == ""
        assert "Not given at create: auto" in key.doc and "unset later: no" in key.doc


@pytest.mark.parametrize("kind,config,bad,meant", [
    ("nic", {"netwrok": "t6u1"}, "netwrok", "network"),
    ("nic", {"network": "t6u1", "ipv4.adress": "10.212.1.10"}, "ipv4.adress", "ipv4.address"),
    ("proxy", {"lisen": "tcp:127.0.0.1:1", "connect": "tcp:127.0.0.1:1"}, "lisen", "listen"),
])
def test_device_key_typos_get_a_suggestion(kind: str, config: dict[str, str], bad: str,
                                           meant: str) -> None:
    """As instance and network keys do: the one line names the key meant."""
    from machined.config.devices import validate_device
    from machined.errors import BadRequest

    with pytest.raises(BadRequest) as e:
        validate_device("d", {"type": kind, **config})
    message = str(e.value)
    assert message.startswith(f"Unknown key '{bad}' for {kind} device 'd' (did you mean "
                              f"'{meant}'?): accepted are ")
    assert "\n" not in message


def test_config_doc_says_which_nic_keys_start_and_that_proxies_apply_at_once() -> None:
    """The nic table is LXD's whole list; the doc must not promise what a start refuses."""
    from machined.config.devices import NIC_STARTABLE
    from machined.config.docs import render

    text = render()
    for kind, keys in NIC_STARTABLE.items():
        line = f"- `{kind}`: " + ", ".join(f"`{k}`" for k in sorted(keys - {"type"}))
        assert line in text
    assert "except proxy devices: a running instance's are changed at once" in text


def test_set_and_unset_on_a_host_interface_say_it_is_not_managed(fake: FakeClient) -> None:
    fake.answers["/1.0/networks/eth0"] = {"name": "eth0", "type": "physical",
                                          "managed": False, "config": {}}
    for argv in (("network", "set", "eth0", "ipv4.nat=false"),
                 ("network", "unset", "eth0", "ipv4.nat")):
        res = run(*argv)
        assert res.exit_code == 1
        assert res.output == ("Error: Only managed networks can be modified: eth0 is a host "
                              "interface (physical)\n")
    assert fake.writes() == []
