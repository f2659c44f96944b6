"""The Debian 12 image (split format: metadata tarball + squashfs) boots systemd unprivileged
with eth0 on a managed network (ifupdown gets its DHCP lease during the boot), takes
interactive exec through a real pty, stops cleanly, and keeps running across daemon restarts.
One boot for the whole module: full-OS boots are the slow part."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import time

import pytest

pytestmark = pytest.mark.system


def wait_booted(daemon, name: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = daemon.mc("exec", name, "--", "systemctl", "is-system-running").out.strip()
        if state in ("running", "degraded"):
            return state
        time.sleep(0.25)
    failed = daemon.mc("exec", name, "--", "systemctl", "--failed", "--no-legend").out
    raise AssertionError(f"{name} did not boot: state {state!r}, failed units:\n{failed}")


@pytest.fixture(scope="module")
def deb(daemon, debian_image):
    """d1 with eth0 on managed network t6c9 (NAT off): ifupdown's DHCP is part of its boot."""
    daemon.ok("network", "create", "t6c9", "ipv4.address=10.208.9.1/24", "ipv4.nat=false",
              "ipv6.address=none")
    try:
        daemon.ok("init", debian_image, "d1")
        daemon.ok("config", "device", "add", "d1", "eth0", "nic", "network=t6c9", "name=eth0")
        daemon.ok("start", "d1")
        wait_booted(daemon, "d1")
        yield "d1"
    finally:
        daemon.mc("delete", "--force", "d1")
        daemon.mc("network", "delete", "t6c9")


def test_systemd_is_pid1_and_boots(daemon, deb):
    assert daemon.ok("exec", deb, "--", "cat", "/proc/1/comm").strip() == "systemd"
    failed = daemon.ok("exec", deb, "--", "systemctl", "--failed", "--no-legend",
                       "--plain").split("\n")
    failed_units = [line.split()[0] for line in failed if line.strip()]
    # networking.service included: ifupdown got eth0 its DHCP lease during the boot.
    assert not failed_units, f"units failed in the container: {failed_units}"
    assert daemon.ok("exec", deb, "--", "hostname").strip() == deb
    assert daemon.ok("exec", deb, "--", "cat", "/etc/hostname").strip() == deb
    env = daemon.ok("exec", deb, "--", "cat", "/proc/1/environ")
    assert "container=lxc" in env
    # /etc/hosts comes from the image's create template, rendered at the first start.
    hosts = daemon.ok("exec", deb, "--", "cat", "/etc/hosts")
    assert f"127.0.1.1   {deb}" in hosts, hosts
    assert "127.0.1.1" in daemon.ok("exec", deb, "--", "getent", "hosts", deb)


def test_dhcp_address_via_ifupdown(daemon, deb):
    addr = daemon.ok("exec", deb, "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0")
    assert " inet 10.208.9." in addr and "dynamic" in addr, addr  # dhclient's lease
    address = addr.split(" inet ")[1].split("/")[0]
    assert "nameserver 10.208.9.1" in daemon.ok("exec", deb, "--", "cat", "/etc/resolv.conf")
    assert "default via 10.208.9.1 dev eth0" in daemon.ok("exec", deb, "--", "ip", "route")
    # dnsmasq knows it by name (DHCP hostname and machined's hosts file).
    assert address in daemon.ok("exec", deb, "--", "getent", "hosts", f"{deb}.mc")
    leases = daemon.api("GET", "/1.0/networks/t6c9/leases")
    assert any(le["hostname"] == deb and le["address"] == address for le in leases), leases


def _read_until(fd: int, needle: bytes, timeout: float = 15) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"did not see {needle!r}; got {buf[-500:]!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def test_interactive_shell_through_a_real_pty(daemon, deb):
    master, slave = os.openpty()
    _set_size(slave, 40, 100)
    proc = subprocess.Popen([daemon.mc_path, "exec", deb, "--", "bash"],
                            stdin=slave, stdout=slave, stderr=slave, env=daemon.env,
                            start_new_session=True)
    os.close(slave)
    try:
        # Keys typed before the shell is up must not be lost (no TCSAFLUSH on raw mode).
        os.write(master, b"echo typed-ahead-$((6*7))\n")
        _read_until(master, b"typed-ahead-42")
        os.write(master, b"stty size; tty\n")
        out = _read_until(master, b"/dev/pts/")
        assert b"40 100" in out
        _set_size(master, 50, 132)
        os.kill(proc.pid, signal.SIGWINCH)
        time.sleep(0.3)
        os.write(master, b"stty size\n")
        assert b"50 132" in _read_until(master, b"50 132")
        os.write(master, b"sleep 100\n")
        time.sleep(0.5)
        os.write(master, b"\x03")  # Ctrl-C reaches the command in the container, not mc
        os.write(master, b"echo rc=$?\n")
        assert b"rc=130" in _read_until(master, b"rc=130")
        os.write(master, b"exit 7\n")
        assert proc.wait(timeout=20) == 7
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_daemon_restart_keeps_containers_running(daemon, deb):
    before = next(i for i in daemon.instances() if i["name"] == deb)["state"]["pid"]
    daemon.kill(signal.SIGKILL)  # abrupt, as in a crash
    assert os.path.exists(f"/proc/{before}"), "killing machined must not kill containers"
    daemon.start()
    after = next(i for i in daemon.instances() if i["name"] == deb)
    assert after["status"] == "Running" and after["state"]["pid"] == before
    assert daemon.ok("exec", deb, "--", "echo", "still here").strip() == "still here"
    daemon.kill(signal.SIGTERM)  # a clean daemon stop leaves containers running too
    assert os.path.exists(f"/proc/{before}")
    daemon.start()


def test_clean_stop_and_start(daemon, deb):
    pid = next(i for i in daemon.instances() if i["name"] == deb)["state"]["pid"]
    started = time.monotonic()
    daemon.ok("stop", deb, "--timeout", "60")
    took = time.monotonic() - started
    assert not os.path.exists(f"/proc/{pid}")
    log = daemon.ok("console", deb, "--show-log")
    assert "Reached target" in log and ("Power-Off" in log or "Halt" in log or
                                        "shutdown" in log.lower()), log[-2000:]
    assert took < 60
    daemon.ok("start", deb)
    wait_booted(daemon, deb)
