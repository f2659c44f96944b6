"""Hostile input to the networking code's pure parts: what a container sends (netlink messages
to the daemon's socket, DHCP host names) and what a careless admin types (values with a
trailing newline, non-ASCII digits). The system half is tests/system/test_network_security.py."""

from __future__ import annotations

import os
import pwd
import struct
from pathlib import Path

import pytest

from machined.config import devices
from machined.errors import BadRequest
from machined.network import dnsmasq, model
from machined.network import state as netstate
from machined.network.model import HostEntry, NetFiles

FILES = NetFiles(Path("/var/lib/machined/networks/t6s0"))
V4 = {"ipv4.address": "10.210.1.1/24", "ipv6.address": "none"}


def _message(kind: int, seq: int, payload: bytes) -> bytes:
    raw = netstate.NLMSGHDR.pack(16 + len(payload), kind, 2, seq, 0) + payload
    return raw + bytes(-len(raw) % 4)


def _link(index: int, name: bytes) -> bytes:
    attr = struct.pack("=HH", 4 + len(name), netstate.IFLA_IFNAME) + name
    return netstate.IFINFOMSG.pack(0, 1, index, 1, 0) + attr + bytes(-len(attr) % 4)


class FakeNetlink:
    """A netlink socket whose reads are scripted: (datagram, sender port id) pairs, then the
    last one again forever (a container that never stops sending)."""

    def __init__(self, reads: list[tuple[bytes, int]]) -> None:
        self.reads = reads
        self.count = 0

    def send(self, data: bytes) -> int:
        return len(data)

    def settimeout(self, value: float) -> None:
        assert value > 0

    def recvmsg(self, size: int) -> tuple[bytes, list, int, tuple[int, int]]:
        self.count += 1
        if self.count > 100_000:
            raise AssertionError("the dump never stopped reading")
        data, sender = self.reads[min(self.count, len(self.reads)) - 1]
        return data, [], 0, (sender, 0)


# ---------------------------------------------------------------- netlink (state.py)


def test_netlink_answers_from_other_senders_are_ignored() -> None:
    """Root in a container may unicast netlink messages to the daemon's socket in its
    namespace: only the kernel's (port id 0) count."""
    seq = netstate.RTM_GETLINK
    forged = _message(netstate.RTM_NEWLINK, seq, _link(99, b"forged\0"))
    forged_error = _message(netstate.NLMSG_ERROR, seq, struct.pack("=i", -1))
    real = _message(netstate.RTM_NEWLINK, seq, _link(1, b"lo\0"))
    done = _message(netstate.NLMSG_DONE, seq, bytes(4))
    sock = FakeNetlink([(forged, 4242), (forged_error, 4242), (real, 0), (forged, 4242),
                        (done, 0)])
    payloads, complete = netstate._dump(sock, seq, netstate.RTM_NEWLINK,
                                        netstate.IFINFOMSG.size, 10)
    assert complete
    assert [netstate.parse_link(p)["ifname"] for p in payloads] == ["lo"]


def test_netlink_dump_ends_when_the_kernel_never_finishes() -> None:
    """A stream that never ends the dump (forged datagrams, or the kernel's answer starved by
    them) stops the read: it runs on the daemon's event loop."""
    noise = _message(netstate.RTM_NEWLINK, 12345, _link(5, b"x\0"))
    for sender in (0, 4242):
        sock = FakeNetlink([(noise, sender)])
        with pytest.raises(OSError, match="did not finish"):
            netstate._dump(sock, netstate.RTM_GETLINK, netstate.RTM_NEWLINK,
                           netstate.IFINFOMSG.size, 10)
        assert sock.count <= netstate.MAX_DATAGRAMS


@pytest.mark.parametrize("code", [-2**31, 2**31 - 1, 0, 5000])
def test_netlink_error_codes_out_of_range_are_an_oserror(code: int) -> None:
    """errno INT_MIN made os.strerror() raise OverflowError, which no caller expects: one
    container failed `mc list` for every instance (HTTP 500)."""
    seq = netstate.RTM_GETADDR
    error = _message(netstate.NLMSG_ERROR, seq, struct.pack("=i", code))
    sock = FakeNetlink([(error, 0)])
    with pytest.raises(OSError) as raised:
        netstate._dump(sock, seq, netstate.RTM_NEWADDR, netstate.IFADDRMSG.size, 10)
    assert raised.value.errno == 71
    assert netstate.error_code(struct.pack("=i", -19)) == 19  # ENODEV stays itself


# ---------------------------------------------------------------- dnsmasq


def test_managed_dns_takes_names_from_the_hosts_file_only() -> None:
    """dns.mode=managed: a DHCP client's host name never reaches DNS (a container giving
    itself a new MAC could otherwise take the name of an instance holding no lease)."""
    argv = model.dnsmasq_argv("/usr/sbin/dnsmasq", "t6s0", model.plan(V4), FILES)
    assert argv is not None and "--dhcp-ignore-names" in argv
    assert f"--dhcp-hostsfile={FILES.hosts}" in argv
    dynamic = model.dnsmasq_argv("dnsmasq", "t6s0", model.plan({**V4, "dns.mode": "dynamic"}),
                                 FILES)
    assert dynamic is not None and "--dhcp-ignore-names" not in dynamic


def test_hosts_file_lines_cannot_carry_more_than_one_entry() -> None:
    hostile = [HostEntry("00:16:3e:00:00:01\n00:16:3e:00:00:02", "t6s-a"),
               HostEntry("00:16:3e:00:00:03", "t6s-b\n00:16:3e:00:00:04,t6s-c"),
               HostEntry("00:16:3e:00:00:05", "t6s-d,10.210.1.9"),
               HostEntry("00:16:3e:00:00:06", "t6s-e", "10.210.1.6\n"),
               HostEntry("00:16:3e:00:00:07", "t6s-f")]
    assert model.render_hosts(hostile, "managed") == "00:16:3e:00:00:07,t6s-f\n"


def test_a_lookalike_process_is_not_taken_for_the_networks_dnsmasq(monkeypatch) -> None:
    """Any local user can start a process whose command line is the stored argv (it is
    readable in /proc): the daemon kept it instead of starting dnsmasq (no DHCP or DNS on
    the network) and signalled it. Ours run as root, or as nobody once dnsmasq drops."""
    argv = ["/usr/sbin/dnsmasq", "--conf-file=/dev/null", f"--pid-file={FILES.pid}",
            "--user=nobody", "--group=nogroup"]
    me = os.getpid()
    monkeypatch.setattr(dnsmasq, "_cmdline", lambda pid: argv if pid == me else None)
    nobody = pwd.getpwnam("nobody").pw_uid
    for uids, ours in (({1000}, False), ({1000, 0}, False), ({-1}, False), ({0}, True),
                       ({nobody}, True), ({0, nobody}, True)):
        monkeypatch.setattr(dnsmasq, "_uids", lambda pid, uids=uids: uids)
        assert dnsmasq._is_ours(me, argv) is ours, uids
    monkeypatch.undo()
    assert dnsmasq._uids(me) == {os.getuid(), os.geteuid()}
    assert dnsmasq._uids(2**22 + 7) == {-1}  # above pid_max: no such process


# ---------------------------------------------------------------- admin input


@pytest.mark.parametrize("key,value", [
    ("name", "eth0\n"), ("host_name", "veth0\n"), ("hwaddr", "00:16:3e:00:00:01\n"),
    ("parent", "t6s0\n"), ("mtu", "1500\n")])
def test_nic_values_with_a_trailing_newline_are_refused(key: str, value: str) -> None:
    dev = {"type": "nic", "network": "t6s0"} if key != "parent" else {
        "type": "nic", "nictype": "bridged"}
    with pytest.raises(BadRequest, match=repr(key)):
        devices.validate_device("eth0", {**dev, key: value})


def test_device_and_network_names_with_a_trailing_newline_are_refused() -> None:
    with pytest.raises(BadRequest, match="Invalid device name"):
        devices.validate_device("eth0\n", {"type": "nic", "network": "t6s0"})
    with pytest.raises(BadRequest, match="'network'"):
        devices.validate_device("eth0", {"type": "nic", "network": "t6s0\n"})
    with pytest.raises(BadRequest):
        model.check_name("t6s0\n")


def test_lease_time_takes_ascii_digits_only() -> None:
    """dnsmasq would refuse '١h' and the network would not start."""
    with pytest.raises(BadRequest, match="ipv4.dhcp.expiry"):
        model.validate_keys({"ipv4.dhcp.expiry": "\u0661h"})
    assert model.validate_keys({"ipv4.dhcp.expiry": "2h"}) == {"ipv4.dhcp.expiry": "2h"}
