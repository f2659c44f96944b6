"""Proxy devices: TCP forwards between the host and an instance, relayed by the daemon.

bind=host: the daemon listens on the host; each accepted connection gets a socket made inside
the container's network namespace (runtime.netns_socket: the daemon never setns()es its own
threads) and connected to `connect`, then bytes are relayed both ways. bind=instance: the
listening socket is made inside the container and connections go to `connect` on the host.

Relaying is asyncio protocols on the daemon's loop: a side reads into the service's one read
buffer and writes it to the other side's transport at once (an idle connection holds no
buffer); when a side's write buffer passes HIGH_WATER the other side stops reading (a slow or
hostile peer costs at most HIGH_WATER + BUFFER per direction), and an EOF from one side
becomes a shutdown(SHUT_WR) on the other (half-close): a connection ends when both sides have
sent EOF, or at once when either fails.

Connections per device are capped (MAX_CONNECTIONS), and in total (MAX_TOTAL): each costs two
file descriptors of the daemon (which raises its soft RLIMIT_NOFILE to 65536 at start).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import select
import socket
from dataclasses import dataclass, field
from typing import Any

from machined import runtime
from machined.errors import BadRequest, Conflict, MachinedError
from machined.network import proxy_model
from machined.network.proxy_model import Forward
from machined.state import State

log = logging.getLogger("machined.network.proxy")

MAX_CONNECTIONS = 256  # open connections per proxy device; more are reset at once
MAX_TOTAL = 16384  # open connections of all proxy devices together (2 fds each)
CONNECT_TIMEOUT = 10.0  # seconds to reach `connect` before the accepted connection is reset
BUFFER = 256 * 1024  # bytes read at once from one side (asyncio's own read size)
HIGH_WATER = 256 * 1024  # bytes queued towards one side before the other stops reading
BACKLOG = 128
SPARES = 4  # sockets kept ready in a container's namespace (bind=host forwards)
SPARE_DELAY = 0.05  # seconds after a spare was taken before another is made
# After init exits: how long to look for the container booting again (a reboot from inside).
REBOOT_POLL_FIRST, REBOOT_POLL_MAX, REBOOT_WAIT = 0.1, 2.0, 600.0


class ProxyService:
    """The proxy devices of running instances. start() is called after an instance starts
    (and for running instances at daemon start), stop() after it stops, close() at daemon
    stop; all of them are serialised per instance."""

    def __init__(self, state: State) -> None:
        self.state = state
        self._instances: dict[str, _Instance] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.total = 0  # open connections, all devices
        # Every read goes here and is handed on before the next read (one event loop).
        self.buffer = bytearray(BUFFER)

    async def start(self, name: str, container: runtime.RunningContainer,
                    devices: dict[str, dict[str, str]]) -> None:
        """Make the listeners of `devices` (an instance's expanded devices: only `proxy` ones
        count) the instance's listeners. Devices that did not change keep their listeners and
        connections (a device added to a running instance goes live without disturbing the
        others). All or nothing: if one address cannot be listened on, raises Conflict or
        BadRequest naming the device and address, and the instance's listeners are as before
        (for a new start of the instance: none)."""
        plan = proxy_model.plan(devices)
        async with self._lock(name):
            inst = self._instances.get(name)
            if inst is None:
                if not plan:
                    return
                inst = self._instances[name] = _Instance(self, name, container)
            try:
                await inst.apply(container, plan)
            finally:
                if not inst.devices:
                    inst.close()
                    del self._instances[name]
            if plan:
                log.info("Proxy devices of %s listen on %s", name,
                         ", ".join(self.listening(name)))

    async def stop(self, name: str) -> None:
        """Close the instance's listeners and every connection through them."""
        async with self._lock(name):
            inst = self._instances.pop(name, None)
            if inst is not None:
                inst.close()

    async def close(self) -> None:
        """At daemon stop: every listener and connection closed (containers keep running;
        the next daemon listens again)."""
        for name in list(self._instances):
            await self.stop(name)

    def listening(self, name: str) -> list[str]:
        """The instance's listening addresses (`<address> (<device>)`), for the log."""
        inst = self._instances.get(name)
        if inst is None:
            return []
        return [f"{fw.listen} ({dev})" for dev, device in sorted(inst.devices.items())
                if not device.closed for fw in device.forwards]

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def follow_reboot(self, inst: _Instance) -> None:
        """`inst`'s init exited. A container that reboots from inside comes back with a new
        init and network namespace: its bind=instance listeners are made again in the new
        one. One that stopped stays as it is until stop() or the next start()."""
        gone = inst.container
        deadline = asyncio.get_running_loop().time() + REBOOT_WAIT
        delay = REBOOT_POLL_FIRST
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, REBOOT_POLL_MAX)
            fresh = runtime.find(gone.run_dir)
            if fresh is None or _same(fresh, gone):
                continue
            async with self._lock(inst.name):
                if self._instances.get(inst.name) is not inst or not _same(inst.container, gone):
                    return  # stopped or started again meanwhile
                try:
                    await inst.apply(fresh, inst.plan)
                except MachinedError as e:
                    log.warning("Proxy devices of %s do not listen after its reboot: %s",
                                inst.name, e.message)
                if not inst.devices:
                    inst.close()
                    del self._instances[inst.name]
            return


def _same(a: runtime.RunningContainer, b: runtime.RunningContainer) -> bool:
    return (a.init_pid, a.init_starttime) == (b.init_pid, b.init_starttime)


class _Instance:
    """One running instance's proxy devices, and what it knows of the container: its init
    is watched through a pidfd, so a container that stops or reboots by itself is noticed
    at once (new connections are refused instead of reaching a dead namespace)."""

    def __init__(self, service: ProxyService, name: str,
                 container: runtime.RunningContainer) -> None:
        self.service = service
        self.name = name
        self.container = container
        self.alive = False
        self.plan: dict[str, tuple[Forward, ...]] = {}
        self.devices: dict[str, _Device] = {}
        self.spares: dict[int, list[socket.socket]] = {}
        self._pidfd: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def apply(self, container: runtime.RunningContainer,
                    plan: dict[str, tuple[Forward, ...]]) -> None:
        same = self.alive and _same(container, self.container)
        if not same:
            self._unwatch()
            self.container = container
            self._watch()
        keep = {dev for dev, fws in plan.items() if dev in self.devices
                and not self.devices[dev].closed and self.devices[dev].forwards == fws
                and (same or all(fw.bind == "host" for fw in fws))}
        dropped = {dev: d for dev, d in self.devices.items() if dev not in keep}
        for device in dropped.values():
            device.close()
        added: dict[str, _Device] = {}
        try:
            for dev, fws in plan.items():
                if dev not in keep:
                    added[dev] = await _Device.open(self, fws)
        except BaseException:
            for device in added.values():
                device.close()
            if same:  # a live change refused: the devices it replaced listen again
                self.devices = {dev: self.devices[dev] for dev in keep}
                await self._reopen(dropped)
            else:  # a new start refused: nothing of the instance listens
                for dev in keep:
                    self.devices[dev].close()
                self.devices, self.plan = {}, {}
            raise
        self.devices = {**{dev: self.devices[dev] for dev in keep}, **added}
        self.plan = dict(plan)
        for family in {fw.connect.family for fws in plan.values() for fw in fws
                       if fw.bind == "host"}:
            for _ in range(SPARES - len(self.spares.get(family, []))):
                self._spawn(self._add_spare(family, 0))

    async def _reopen(self, dropped: dict[str, _Device]) -> None:
        for dev, device in dropped.items():
            try:
                self.devices[dev] = await _Device.open(self, device.forwards)
            except MachinedError as e:
                log.warning("Proxy device %s of %s stays closed: %s", dev, self.name,
                            e.message)
                self.plan.pop(dev, None)

    def close(self) -> None:
        self._unwatch()
        for device in self.devices.values():
            device.close()
        self.devices = {}
        for task in self._tasks:
            task.cancel()

    # The container's init

    def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._pidfd = os.pidfd_open(self.container.init_pid)
        except OSError:
            return  # already gone: alive stays False, connections are refused
        # The pidfd pins a process; it is this container's init only if its start time
        # still matches what the container's state records.
        fresh = runtime.find(self.container.run_dir)
        if fresh is None or not _same(fresh, self.container):
            self._unwatch()
            return
        self.alive = True
        loop.add_reader(self._pidfd, self._init_exited)

    def _unwatch(self) -> None:
        self.alive = False
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        for pool in self.spares.values():
            for sock in pool:
                sock.close()
        self.spares = {}

    def _init_exited(self) -> None:
        self._unwatch()
        for device in self.devices.values():
            if any(fw.bind == "instance" for fw in device.forwards):
                device.close()  # its listeners are in the namespace that just died
        self._spawn(self.service.follow_reboot(self))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Sockets inside the container

    def socket_inside(self, family: int, *, spares: bool) -> socket.socket:
        """A TCP socket in the container's network namespace. Making one costs a thread
        (~0.4 ms here, on the event loop), so with spares=True (connections) a few are made
        ahead of time in a worker thread. Raises NamespaceGone once the container stopped."""
        if not self.alive:
            raise runtime.NamespaceGone(3, f"Instance {self.name!r} is not running")
        if not spares:
            return runtime.netns_socket(self.container, family, socket.SOCK_STREAM)
        pool = self.spares.setdefault(family, [])
        sock = pool.pop() if pool else None
        if len(pool) < SPARES and len(self._tasks) < 2 * SPARES:
            self._spawn(self._add_spare(family))
        if sock is None:
            sock = runtime.netns_socket(self.container, family, socket.SOCK_STREAM)
        return sock

    async def _add_spare(self, family: int, delay: float = SPARE_DELAY) -> None:
        # Later, not now: the worker thread would compete for the GIL with the connection
        # being set up (a spare made at once cost that connection ~1 ms).
        await asyncio.sleep(delay)
        container = self.container
        loop = asyncio.get_running_loop()
        made = loop.run_in_executor(None, runtime.netns_socket, container, family,
                                    socket.SOCK_STREAM)
        try:
            sock = await asyncio.shield(made)
        except asyncio.CancelledError:
            made.add_done_callback(_close_result)
            raise
        except OSError:
            return
        pool = self.spares.setdefault(family, [])
        if not self.alive or not _same(container, self.container) \
                or len(pool) >= SPARES:
            sock.close()
            return
        pool.append(sock)


def _close_result(future: asyncio.Future[socket.socket]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


@dataclass(eq=False)
class _Device:
    """The listeners of one proxy device and the connections they accepted."""

    inst: _Instance
    forwards: tuple[Forward, ...]
    servers: list[asyncio.Server] = field(default_factory=list)
    links: set[_Link] = field(default_factory=set)
    closed: bool = False

    @classmethod
    async def open(cls, inst: _Instance, forwards: tuple[Forward, ...]) -> _Device:
        device = cls(inst, forwards)
        loop = asyncio.get_running_loop()
        try:
            for fw in forwards:
                sock = device._listener(fw)
                server = await loop.create_server(
                    lambda fw=fw: _Link(device, fw).accepted_side, sock=sock, backlog=BACKLOG)
                device.servers.append(server)
        except BaseException:
            device.close()
            raise
        return device

    def _listener(self, fw: Forward) -> socket.socket:
        where = "the host" if fw.bind == "host" else f"instance {self.inst.name!r}"
        try:
            if fw.bind == "host":
                sock = socket.socket(fw.listen.family, socket.SOCK_STREAM)
            else:
                sock = self.inst.socket_inside(fw.listen.family, spares=False)
        except runtime.NamespaceGone:
            raise BadRequest(f"Proxy device {fw.device!r} cannot listen on {fw.listen}: "
                             f"instance {self.inst.name!r} is not running") from None
        try:
            # SO_REUSEADDR: a restarted daemon may listen again while old connections are in
            # TIME_WAIT; never SO_REUSEPORT, which would let two listeners share the port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(fw.listen.sockaddr())
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE:
                raise Conflict(f"Proxy device {fw.device!r} cannot listen on {fw.listen} in "
                               f"{where}: the address is already in use") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise BadRequest(f"Proxy device {fw.device!r} cannot listen on {fw.listen}: "
                                 f"{where} has no such address") from None
            raise BadRequest(f"Proxy device {fw.device!r} cannot listen on {fw.listen} in "
                             f"{where}: {e.strerror}") from None
        return sock

    def connect_socket(self, fw: Forward) -> socket.socket:
        """A socket on the `connect` side of `fw` (inside the container for bind=host)."""
        if fw.bind == "host":
            return self.inst.socket_inside(fw.connect.family, spares=True)
        return socket.socket(fw.connect.family, socket.SOCK_STREAM)

    def admit(self, link: _Link) -> bool:
        service = self.inst.service
        if self.closed or len(self.links) >= MAX_CONNECTIONS or service.total >= MAX_TOTAL:
            if not self.closed:
                log.warning("Proxy device %s of %s refused a connection: %d open on the "
                            "device, %d in all", link.fw.device, self.inst.name,
                            len(self.links), service.total)
            return False
        self.links.add(link)
        service.total += 1
        return True

    def forget(self, link: _Link) -> None:
        if link in self.links:
            self.links.discard(link)
            self.inst.service.total -= 1

    def close(self) -> None:
        self.closed = True
        for server in self.servers:
            server.close()
        for link in list(self.links):
            link.abort()


async def _connect(sock: socket.socket, address: tuple[str, int]) -> None:
    """Connect non-blocking `sock`. On loopback the handshake is over when connect()
    returns, so a zero-timeout poll usually ends it there: loop.sock_connect() would take
    two more turns of the event loop (~0.3 ms here)."""
    err = sock.connect_ex(address)
    if err == errno.EINPROGRESS:
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        if not poller.poll(0):
            loop = asyncio.get_running_loop()
            ready = loop.create_future()
            loop.add_writer(sock, lambda: ready.done() or ready.set_result(None))
            try:
                await asyncio.wait_for(ready, CONNECT_TIMEOUT)
            finally:
                loop.remove_writer(sock)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))


class _Side(asyncio.BufferedProtocol):
    """One end of a relayed connection."""

    def __init__(self, link: _Link) -> None:
        self.link = link
        self.peer: _Side | None = None
        self.transport: asyncio.Transport | None = None
        self.service = link.device.inst.service
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)
        self.link.side_made(self)

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.service.buffer

    def buffer_updated(self, nbytes: int) -> None:
        peer = self.peer.transport if self.peer else None
        if peer is None or peer.is_closing():
            return
        peer.write(memoryview(self.service.buffer)[:nbytes])
        if peer.get_write_buffer_size():
            # What the kernel did not take is queued: Python 3.11 copies it, later versions
            # may keep a view of the buffer, so the next read goes into a new one.
            self.service.buffer = bytearray(BUFFER)

    def eof_received(self) -> bool:
        self.eof = True
        self.link.half_closed(self)
        return True  # keep writing to this side until the other one ends too

    def pause_writing(self) -> None:
        if self.peer and self.peer.transport:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer and self.peer.transport:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.link.side_lost(self)


class _Link:
    """One relayed connection: the accepted side, then the side it connected."""

    def __init__(self, device: _Device, fw: Forward) -> None:
        self.device = device
        self.fw = fw
        self.accepted_side = _Side(self)
        self.connected_side = _Side(self)
        self.accepted_side.peer = self.connected_side
        self.connected_side.peer = self.accepted_side
        self.task: asyncio.Task[None] | None = None
        self.done = False

    def side_made(self, side: _Side) -> None:
        if side is not self.accepted_side:
            return
        transport = side.transport
        assert transport is not None
        if not self.device.admit(self):
            self.done = True
            transport.abort()
            return
        transport.pause_reading()  # until the other side is connected
        self.task = asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        sock: socket.socket | None = None
        try:
            sock = self.device.connect_socket(self.fw)
            sock.setblocking(False)
            await _connect(sock, self.fw.connect.sockaddr())
            if self.done:
                raise ConnectionAbortedError(errno.ECONNABORTED, "closed meanwhile")
            await loop.connect_accepted_socket(lambda: self.connected_side, sock)
            sock = None  # the transport owns it now
        except (OSError, TimeoutError, asyncio.CancelledError) as e:
            if sock is not None:
                sock.close()
            if not isinstance(e, asyncio.CancelledError):
                log.debug("Proxy device %s of %s could not reach %s: %s", self.fw.device,
                          self.device.inst.name, self.fw.connect, e)
            self.abort()
            return
        accepted, connected = self.accepted_side.transport, self.connected_side.transport
        if accepted is None or connected is None:  # the client left meanwhile
            self.abort()
            return
        if self.fw.proxy_protocol:
            connected.write(proxy_model.proxy_header(
                accepted.get_extra_info("peername"), accepted.get_extra_info("sockname")))
        accepted.resume_reading()

    def half_closed(self, side: _Side) -> None:
        peer = side.peer
        assert peer is not None
        if self.accepted_side.eof and self.connected_side.eof:
            self.close()
        elif peer.transport is not None and peer.transport.can_write_eof():
            peer.transport.write_eof()  # after what is queued: shutdown(SHUT_WR)

    def side_lost(self, side: _Side) -> None:
        if side is self.accepted_side and self.connected_side.transport is None:
            self.abort()  # the client left before the other side was connected
            return
        peer = side.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            peer.transport.close()  # what is queued is still sent
        if self.accepted_side.transport is None and self.connected_side.transport is None \
                and (self.task is None or self.task.done()):
            self.finish()  # otherwise _open() is still running and ends with abort()

    def close(self) -> None:
        for side in (self.accepted_side, self.connected_side):
            if side.transport is not None:
                side.transport.close()

    def abort(self) -> None:
        self.done = True
        if self.task is not None and not self.task.done() and \
                self.task is not asyncio.current_task():
            self.task.cancel()
        for side in (self.accepted_side, self.connected_side):
            if side.transport is not None:
                side.transport.abort()
        self.finish()

    def finish(self) -> None:
        self.done = True
        self.device.forget(self)

