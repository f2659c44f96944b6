"""Proxy devices end to end through mc, with servers in real busybox containers: TCP forwards
from host loopback into a container (HTTP, byte-exact transfers both ways, half-close, many
connections, port ranges, IPv6 listeners, PROXY protocol headers), bind=instance the other
way, stop/start/reboot/poweroff of the container, a daemon restart, refused values and a taken
port.

No network device is needed: `connect=tcp:127.0.0.1:<port>` is the container's own loopback.
Names: containers t6d-*, host ports 127.0.0.1:18000-18999 (servers the tests start on the
host listen on 127.0.0.1 only)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Daemon, built_image, spawn_daemon

pytestmark = pytest.mark.system

# Servers inside the test containers, kept running by busybox init (so they come back
# after every start or reboot of the container): HTTP on 80, echo on 7, 200 MB of zeros on 19.
SERVERS = """\
::respawn:/bin/httpd -f -p 127.0.0.1:80 -h /www
::respawn:/bin/nc -ll -p 7 -e /bin/cat
::respawn:/bin/nc -ll -p 19 -e /bin/dd if=/dev/zero bs=65536 count=3200
"""
PAGE = "<h1>hello from t6d</h1>\n"


# ---------------------------------------------------------------- helpers


def make_container(d: Daemon, image: str, name: str, *devices: tuple[str, ...],
                   start: bool = True) -> str:
    """A busybox container running the SERVERS, with `devices` (name, type, key=value...)."""
    d.ok("init", image, name)
    inittab = d.ok("file", "pull", f"{name}/etc/inittab", "-")
    d.ok("file", "push", "-", f"{name}/etc/inittab", input=inittab + SERVERS)
    d.ok("file", "push", "-", f"{name}/www/index.html", "--create-dirs", input=PAGE)
    for dev in devices:
        d.ok("config", "device", "add", name, *dev)
    if start:
        d.ok("start", name)
        wait_inside(d, name, 80)
        wait_inside(d, name, 7)
    return name


def wait_inside(d: Daemon, name: str, port: int, timeout: float = 20) -> None:
    """Wait until a server inside `name` listens on `port` (its /proc/net/tcp shows it)."""
    hexport = f":{port:04X} "
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = d.mc("exec", name, "--", "cat", "/proc/net/tcp", "/proc/net/tcp6")
        if any(hexport in line and line.split()[3] == "0A" for line in res.out.splitlines()[1:]
               if len(line.split()) > 3):
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port} in {name}")


def proxy(listen: str, connect: str, *extra: str) -> tuple[str, ...]:
    return (f"listen={listen}", f"connect={connect}", *extra)


def connect(port: int, host: str = "127.0.0.1", timeout: float = 10) -> socket.socket:
    return socket.create_connection((host, port), timeout=timeout)


def wait_port(port: int, up: bool = True, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            connect(port, timeout=1).close()
            if up:
                return
        except OSError:
            if not up:
                return
        assert time.monotonic() < deadline, f"port {port} is {'not ' if up else ''}listening"
        time.sleep(0.05)


def exchange(port: int, payload: bytes, host: str = "127.0.0.1") -> bytes:
    """Send `payload`, half-close, read until EOF (sending and reading at the same time)."""
    with connect(port, host) as sock:
        received = bytearray()
        failed: list[OSError] = []

        def read() -> None:
            try:
                while chunk := sock.recv(1 << 20):
                    received.extend(chunk)
            except OSError as e:
                failed.append(e)

        reader = threading.Thread(target=read)
        reader.start()
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        finally:
            reader.join(60)
        assert not reader.is_alive(), "no EOF after the echo"
        if failed:
            raise failed[0]
        return bytes(received)


def refused(port: int) -> bool:
    """True if a connection to `port` fails or is closed without an answer at once."""
    try:
        with connect(port, timeout=5) as sock:
            sock.sendall(b"ping\n")
            return sock.recv(100) == b""
    except OSError:
        return True


@pytest.fixture(scope="module")
def made(daemon: Daemon) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        daemon.mc("delete", "--force", name)


@pytest.fixture(scope="module")
def web(daemon: Daemon, busybox_image: str, made: list[str]) -> str:
    """One running container with the servers and forwards to each: 18080 -> 80 (http),
    18007 -> 7 (echo), 18019 -> 19 (zeros)."""
    made.append("t6d-web")
    return make_container(
        daemon, busybox_image, "t6d-web",
        ("http", "proxy", *proxy("tcp:127.0.0.1:18080", "tcp:127.0.0.1:80")),
        ("echo", "proxy", *proxy("tcp:127.0.0.1:18007", "tcp:127.0.0.1:7")),
        ("zero", "proxy", *proxy("tcp:127.0.0.1:18019", "tcp:127.0.0.1:19")))


# ---------------------------------------------------------------- bind=host


def test_http_from_the_host_reaches_the_server_inside(web):
    out = subprocess.run(["curl", "-sS", "--max-time", "10", "http://127.0.0.1:18080/"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == PAGE


def test_large_transfer_both_ways_is_byte_exact(web):
    payload = os.urandom(48 << 20)
    back = exchange(18007, payload)
    assert len(back) == len(payload)
    assert hashlib.sha256(back).digest() == hashlib.sha256(payload).digest()


def test_half_close_keeps_the_other_direction_open(web):
    """The client stops sending; the echo still comes back in full, then EOF."""
    with connect(18007) as sock:
        sock.sendall(b"first line\n")
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := sock.recv(4096):
            got += chunk
    assert got == b"first line\n"


def test_zeros_from_inside(web):
    with connect(18019) as sock:
        total = 0
        buf = bytearray(1 << 20)
        while n := sock.recv_into(buf):
            assert buf[:n].count(0) == n
            total += n
    assert total == 200 << 20


def test_many_concurrent_connections(web):
    """100 relayed connections open at once. Each is opened only after the previous one is
    answered: busybox nc listens with a backlog of 2, and a burst of connections into it
    overflows it (syncookies, then resets) whoever connects; bursts are tested the other way
    (bind=instance) against a host server with a real backlog."""
    count = 100
    socks = []
    try:
        for i in range(count):
            sock = connect(18007)
            socks.append(sock)
            sock.sendall(f"client {i}\n".encode())
            assert sock.recv(100) == f"client {i}\n".encode()
        for i, sock in enumerate(socks):
            sock.sendall(f"again {i}\n".encode())
            sock.shutdown(socket.SHUT_WR)
        for i, sock in enumerate(socks):
            got = b""
            while chunk := sock.recv(4096):
                got += chunk
            assert got == f"again {i}\n".encode()
    finally:
        for sock in socks:
            sock.close()


def test_connections_per_device_are_capped(daemon, busybox_image, made):
    """256 open connections per device; the next one is reset at once, and a closed one
    makes room again."""
    name = "t6d-cap"
    made.append(name)
    make_container(daemon, busybox_image, name,
                   ("echo", "proxy", *proxy("tcp:127.0.0.1:18140", "tcp:127.0.0.1:7")))
    socks = []
    try:
        for i in range(256):
            sock = connect(18140)
            socks.append(sock)
            sock.sendall(b"x")
            assert sock.recv(1) == b"x", i
        assert refused(18140)
        socks.pop().close()
        deadline = time.monotonic() + 5
        while refused(18140):
            assert time.monotonic() < deadline, "no room after a connection closed"
            time.sleep(0.05)
    finally:
        for sock in socks:
            sock.close()


def test_port_range_and_ipv6_listener(daemon, busybox_image, made):
    made.append("t6d-range")
    make_container(
        daemon, busybox_image, "t6d-range",
        ("many", "proxy", *proxy("tcp:127.0.0.1:18100-18102", "tcp:127.0.0.1:7")),
        ("pair", "proxy", *proxy("tcp:127.0.0.1:18110,18111", "tcp:127.0.0.1:80,7")),
        ("six", "proxy", *proxy("tcp:[::1]:18120", "tcp:127.0.0.1:7")))
    for port in (18100, 18101, 18102, 18111):
        assert exchange(port, f"to {port}\n".encode()) == f"to {port}\n".encode()
    with connect(18110) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply.endswith(PAGE.encode())
    assert exchange(18120, b"over ipv6\n", host="::1") == b"over ipv6\n"


def test_proxy_protocol_header_precedes_the_data(daemon, busybox_image, made):
    made.append("t6d-pp")
    make_container(daemon, busybox_image, "t6d-pp",
                   ("pp", "proxy", *proxy("tcp:127.0.0.1:18130", "tcp:127.0.0.1:7",
                                          "proxy_protocol=true")))
    with connect(18130) as sock:
        client = sock.getsockname()
        sock.sendall(b"data")
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := sock.recv(4096):
            got += chunk
    header = (b"\r\n\r\n\x00\r\nQUIT\n" + b"\x21\x11\x00\x0c" + socket.inet_aton(client[0])
              + socket.inet_aton("127.0.0.1") + client[1].to_bytes(2, "big")
              + (18130).to_bytes(2, "big"))
    assert got == header + b"data"


# ---------------------------------------------------------------- lifecycle


def test_stop_closes_connections_and_start_brings_the_listener_back(daemon, busybox_image,
                                                                    made):
    name = "t6d-life"
    made.append(name)
    make_container(daemon, busybox_image, name,
                   ("echo", "proxy", *proxy("tcp:127.0.0.1:18200", "tcp:127.0.0.1:7")))
    sock = connect(18200)
    sock.sendall(b"before stop\n")
    assert sock.recv(100) == b"before stop\n"
    daemon.ok("stop", name, "--force")
    sock.settimeout(5)
    with contextlib.suppress(ConnectionResetError):
        assert sock.recv(100) == b""  # closed by the stop, not left hanging
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        connect(18200)
    daemon.ok("start", name)
    wait_inside(daemon, name, 7)
    assert exchange(18200, b"after start\n") == b"after start\n"
    daemon.ok("restart", name, "--force")
    wait_inside(daemon, name, 7)
    assert exchange(18200, b"after restart\n") == b"after restart\n"


def test_container_that_stops_or_reboots_by_itself(daemon, busybox_image, made):
    name = "t6d-self"
    made.append(name)
    make_container(daemon, busybox_image, name,
                   ("echo", "proxy", *proxy("tcp:127.0.0.1:18210", "tcp:127.0.0.1:7")))
    # A reboot from inside: a new init and network namespace; the forward follows it.
    daemon.mc("exec", name, "--", "reboot", "-f")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if exchange(18210, b"after reboot\n") == b"after reboot\n":
                break
        time.sleep(0.2)
    else:
        raise AssertionError("the forward did not work again after a reboot from inside")
    # Powered off from inside (the daemon did not stop it): connections are refused at once.
    daemon.mc("exec", name, "--", "poweroff", "-f")
    deadline = time.monotonic() + 20
    while daemon.ok("list", name, "--format", "csv", "-c", "s").strip() != "STOPPED":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    started = time.monotonic()
    assert refused(18210)
    assert time.monotonic() - started < 2
    daemon.ok("start", name)
    wait_inside(daemon, name, 7)
    assert exchange(18210, b"started again\n") == b"started again\n"


def test_taken_listen_address_fails_the_start_and_nothing_listens(daemon, busybox_image,
                                                                  made):
    name = "t6d-taken"
    made.append(name)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 18301))
    taken.listen(1)
    try:
        make_container(daemon, busybox_image, name,
                       ("a", "proxy", *proxy("tcp:127.0.0.1:18300", "tcp:127.0.0.1:7")),
                       ("b", "proxy", *proxy("tcp:127.0.0.1:18301", "tcp:127.0.0.1:7")),
                       start=False)
        res = daemon.mc("start", name)
        assert res.code != 0
        message = res.err.strip()
        assert message == ("Error: Proxy device 'b' cannot listen on tcp:127.0.0.1:18301 in "
                           "the host: the address is already in use"), res.err
        assert daemon.ok("list", name, "--format", "csv", "-c", "s").strip() == "STOPPED"
        with pytest.raises(ConnectionRefusedError):
            connect(18300)  # device a is not left listening
    finally:
        taken.close()
    daemon.ok("start", name)
    wait_inside(daemon, name, 7)
    assert exchange(18301, b"free now\n") == b"free now\n"


def test_devices_added_to_a_running_instance_listen_at_once(daemon, busybox_image, made):
    """Hot-plug as LXD: device add/remove (own or through a profile) acts on the running
    instance; other devices keep their connections; a refused listener stores nothing."""
    name = "t6d-hot"
    made.append(name)
    make_container(daemon, busybox_image, name,
                   ("a", "proxy", *proxy("tcp:127.0.0.1:18220", "tcp:127.0.0.1:7")))
    kept = connect(18220)
    try:
        kept.sendall(b"one\n")
        assert kept.recv(100) == b"one\n"
        daemon.ok("config", "device", "add", name, "b", "proxy",
                  *proxy("tcp:127.0.0.1:18221", "tcp:127.0.0.1:80"))
        with connect(18221) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert sock.makefile("rb").read().endswith(PAGE.encode())
        kept.sendall(b"two\n")
        assert kept.recv(100) == b"two\n"  # device a was not disturbed
        taken = socket.socket()
        taken.bind(("127.0.0.1", 18222))
        taken.listen(1)
        try:
            before = daemon.ok("config", "device", "show", name)
            res = daemon.mc("config", "device", "add", name, "c", "proxy",
                            *proxy("tcp:127.0.0.1:18222", "tcp:127.0.0.1:7"))
            assert res.code != 0
            assert res.err.strip() == ("Error: Proxy device 'c' cannot listen on "
                                       "tcp:127.0.0.1:18222 in the host: the address is "
                                       "already in use")
            assert daemon.ok("config", "device", "show", name) == before
        finally:
            taken.close()
        assert exchange(18221, b"GET / HTTP/1.0\r\n\r\n").endswith(PAGE.encode())
        daemon.ok("config", "device", "remove", name, "b")
        with pytest.raises(ConnectionRefusedError):
            connect(18221)
        # Through a profile.
        daemon.ok("profile", "create", "t6d-prof")
        try:
            daemon.ok("profile", "device", "add", "t6d-prof", "p", "proxy",
                      *proxy("tcp:127.0.0.1:18223", "tcp:127.0.0.1:7"))
            daemon.ok("profile", "add", name, "t6d-prof")
            assert exchange(18223, b"via profile\n") == b"via profile\n"
            daemon.ok("profile", "device", "set", "t6d-prof", "p",
                      "listen=tcp:127.0.0.1:18224")
            assert exchange(18224, b"moved\n") == b"moved\n"
            with pytest.raises(ConnectionRefusedError):
                connect(18223)
            daemon.ok("profile", "remove", name, "t6d-prof")
            with pytest.raises(ConnectionRefusedError):
                connect(18224)
        finally:
            daemon.mc("profile", "remove", name, "t6d-prof")
            daemon.mc("profile", "delete", "t6d-prof")
        kept.sendall(b"three\n")
        assert kept.recv(100) == b"three\n"
    finally:
        kept.close()


# ---------------------------------------------------------------- bind=instance


class HostServer:
    """A server on the host (127.0.0.1 only) answering `host says: <line>`."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(128)
        self.peers: list[tuple[str, int]] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.peers.append(peer)
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    @staticmethod
    def answer(conn: socket.socket) -> None:
        with conn:
            line = b""
            while not line.endswith(b"\n") and (chunk := conn.recv(100)):
                line += chunk
            conn.sendall(b"host says: " + line)

    def close(self) -> None:
        self.sock.close()


def test_bind_instance_reaches_a_host_server_from_inside(daemon, busybox_image, made):
    name = "t6d-inst"
    made.append(name)
    server = HostServer(18400)
    try:
        make_container(daemon, busybox_image, name,
                       ("back", "proxy", *proxy("tcp:127.0.0.1:5000", "tcp:127.0.0.1:18400",
                                                "bind=instance")))
        out = daemon.ok("exec", name, "--", "sh", "-c", "echo hello | nc 127.0.0.1 5000")
        assert out == "host says: hello\n"
        assert server.peers[-1][0] == "127.0.0.1"
        # The listener is inside the container, not on the host.
        with pytest.raises(ConnectionRefusedError):
            connect(5000)
        # A burst of 50 clients at once from inside.
        out = daemon.ok("exec", name, "--", "sh", "-c",
                        "for i in $(seq 50); do (echo $i | nc 127.0.0.1 5000 > /tmp/o.$i) & "
                        "done; wait; cat /tmp/o.*")
        assert sorted(out.splitlines()) == sorted(f"host says: {i}" for i in range(1, 51))
        # After a reboot from inside, the listener is made again in the new namespace.
        daemon.mc("exec", name, "--", "reboot", "-f")
        deadline = time.monotonic() + 30
        while True:
            res = daemon.mc("exec", name, "--", "sh", "-c", "echo again | nc 127.0.0.1 5000")
            if res.code == 0 and res.out == "host says: again\n":
                break
            assert time.monotonic() < deadline, f"no listener after reboot: {res}"
            time.sleep(0.3)
    finally:
        server.close()


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("args,message", [
    (("listen=udp:127.0.0.1:18500", "connect=tcp:127.0.0.1:7"),
     "Error: Invalid value 'udp:127.0.0.1:18500' for key 'listen' of device 'bad': expected "
     "tcp:<address>:<port>[-<port>][,<port>...] such as tcp:127.0.0.1:8080 or "
     "tcp:[::1]:8000-8009 (type 'udp' is not supported yet: accepted is tcp)"),
    (("listen=tcp:localhost:18500", "connect=tcp:127.0.0.1:7"),
     "Error: Invalid value 'tcp:localhost:18500' for key 'listen' of device 'bad': expected "
     "tcp:<address>:<port>[-<port>][,<port>...] such as tcp:127.0.0.1:8080 or "
     "tcp:[::1]:8000-8009 ('localhost' is not an IPv4 address: names are not resolved, use "
     "127.0.0.1 for localhost)"),
    (("listen=tcp:127.0.0.1:18500",),
     "Error: Proxy device 'bad' needs 'connect': tcp:<address>:<port>[-<port>][,<port>...] "
     "such as tcp:127.0.0.1:8080 or tcp:[::1]:8000-8009"),
    (("listen=tcp:127.0.0.1:18500", "connect=tcp:127.0.0.1:0"),
     "Error: Invalid value 'tcp:127.0.0.1:0' for key 'connect' of device 'bad': expected "
     "tcp:<address>:<port>[-<port>][,<port>...] such as tcp:127.0.0.1:8080 or "
     "tcp:[::1]:8000-8009 ('0' is not a port number from 1 to 65535)"),
    (("listen=tcp:127.0.0.1:18500", "connect=tcp:127.0.0.1:7", "nat=true"),
     "Error: Invalid value 'true' for key 'nat' of device 'bad': expected false (nat=true is "
     "not supported: connections are proxied)"),
    (("listen=tcp:127.0.0.1:18500", "connect=tcp:127.0.0.1:7", "bind=guest"),
     "Error: Invalid value 'guest' for key 'bind' of device 'bad': expected one of: host, "
     "instance"),
    (("listen=tcp:127.0.0.1:18080", "connect=tcp:127.0.0.1:7"),
     "Error: Proxy devices 'bad' and 'http' both listen on port 18080 (tcp:127.0.0.1:18080 "
     "and tcp:127.0.0.1:18080, bind=host)"),
])
def test_bad_values_are_refused_at_device_add(daemon, web, args, message):
    before = daemon.ok("config", "device", "show", web)
    res = daemon.mc("config", "device", "add", web, "bad", "proxy", *args)
    assert res.code != 0
    assert res.err.strip() == message
    assert daemon.ok("config", "device", "show", web) == before


def test_address_the_host_does_not_have_is_refused_live(daemon, web):
    before = daemon.ok("config", "device", "show", web)
    res = daemon.mc("config", "device", "add", web, "far", "proxy",
                    *proxy("tcp:192.0.2.1:18501", "tcp:127.0.0.1:7"))
    assert res.code != 0
    assert res.err.strip() == ("Error: Proxy device 'far' cannot listen on "
                               "tcp:192.0.2.1:18501: the host has no such address")
    assert daemon.ok("config", "device", "show", web) == before
    assert exchange(18007, b"still there\n") == b"still there\n"


# ---------------------------------------------------------------- daemon restart


def test_daemon_restart_brings_the_listener_back():
    with spawn_daemon() as d:
        paths = built_image("busybox", "unified")
        d.ok("image", "import", *map(os.fspath, paths), "--alias", "busybox")
        make_container(d, "busybox", "t6d-restart",
                       ("echo", "proxy", *proxy("tcp:127.0.0.1:18600", "tcp:127.0.0.1:7")))
        assert exchange(18600, b"first daemon\n") == b"first daemon\n"
        d.kill()
        wait_port(18600, up=False)
        d.start()
        wait_port(18600)
        assert exchange(18600, b"second daemon\n") == b"second daemon\n"
        d.ok("delete", "--force", "t6d-restart")
        with pytest.raises(ConnectionRefusedError):
            connect(18600)
