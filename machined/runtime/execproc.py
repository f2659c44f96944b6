"""exec(): run a command in a container through its exec server (execd.py; the protocol is in
its docstring). One server per running container, started on its first exec."""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import marshal
import os
import socket
import struct
import sys
import termios
from typing import Any

from machined.runtime import cgroups
from machined.runtime.container import RunningContainer, RuntimeFailure

EXECD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "execd.py")
_ids = itertools.count(1)


class ExecServer:
    """The daemon's end of one container's execd."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock
        self._pidfd = os.pidfd_open(pid)
        self.started: dict[int, asyncio.Future[tuple[int, list[int]]]] = {}
        self.exited: dict[int, asyncio.Future[int]] = {}
        self.alive = True
        self.loop = asyncio.get_running_loop()
        sock.setblocking(False)
        self.loop.add_reader(sock.fileno(), self._on_readable)
        self.loop.add_reader(self._pidfd, self._reap)

    def _reap(self) -> None:
        self.loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        os.waitpid(self.pid, 0)

    def _on_readable(self) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.sock, 1 << 16, 1)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        if not data:
            self._hang_up()
            return
        kind, exec_id, value = marshal.loads(data)
        if kind == "pid" and exec_id in self.started:
            self.started.pop(exec_id).set_result((value, list(fds)))
        elif kind == "error" and exec_id in self.started:
            self.started.pop(exec_id).set_exception(RuntimeFailure(str(value)))
            self.exited.pop(exec_id, None)
        elif kind == "exit" and exec_id in self.exited:
            self.exited.pop(exec_id).set_result(int(value))
        else:
            for fd in fds:
                os.close(fd)

    def _hang_up(self) -> None:
        """execd is gone (the container stopped): fail whatever still waits on it."""
        if not self.alive:
            return
        self.alive = False
        if not self.loop.is_closed():
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()  # execd exits once its commands are done; _reap collects it
        gone = RuntimeFailure("The container stopped while the command ran")
        for fut in list(self.started.values()):
            if not fut.done():
                fut.set_exception(gone)
        for code_fut in self.exited.values():
            if not code_fut.done():
                code_fut.set_result(137)  # killed with the container, as by SIGKILL
        self.started.clear()
        self.exited.clear()

    async def run(self, cfg: dict[str, Any], fds: list[int]
                  ) -> tuple[int, int, list[int], asyncio.Future[int]]:
        """(exec id, host pid, [pty master], future exit code) once the command runs."""
        if not self.alive:
            raise RuntimeFailure("The container stopped")
        exec_id = next(_ids)
        loop = asyncio.get_running_loop()
        started: asyncio.Future[tuple[int, list[int]]] = loop.create_future()
        exited: asyncio.Future[int] = loop.create_future()
        self.started[exec_id] = started
        self.exited[exec_id] = exited
        msg = marshal.dumps(("run", exec_id, cfg))
        # A few hundred bytes on a fresh SEQPACKET socket: the send does not block.
        if fds:
            socket.send_fds(self.sock, [msg], fds)
        else:
            self.sock.send(msg)
        pid, master = await started
        return exec_id, pid, master, exited

    def signal(self, exec_id: int, signum: int) -> None:
        if self.alive:
            self.sock.send(marshal.dumps(("signal", exec_id, int(signum))))


def _spawn(control_fd: int) -> int:
    """posix_spawn (no fork of the daemon): only control_fd is inherited, our fds are all
    close-on-exec; stdio is /dev/null; a session of its own so it outlives us if need be."""
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    os.set_inheritable(control_fd, True)
    try:
        return os.posix_spawn(
            sys.executable, [sys.executable, "-I", "-S", EXECD, str(control_fd)],
            {"LANG": "C.UTF-8"}, setsid=True,
            file_actions=[(os.POSIX_SPAWN_DUP2, devnull, n) for n in (0, 1, 2)])
    finally:
        os.close(devnull)


_servers: dict[tuple[int, int], ExecServer] = {}
_starting: dict[tuple[int, int], asyncio.Lock] = {}


async def _server(c: RunningContainer) -> ExecServer:
    key = (c.init_pid, c.init_starttime)
    async with _starting.setdefault(key, asyncio.Lock()):
        server = _servers.get(key)
        if server is not None and server.alive and server.loop is asyncio.get_running_loop():
            return server
        if server is not None and server.alive:
            server._hang_up()  # made under an event loop that is gone (tests use several)
        for stale in [k for k, s in _servers.items() if not s.alive]:
            del _servers[stale]
            _starting.pop(stale, None)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = _spawn(theirs.fileno())
        finally:
            theirs.close()
        ours.sendall(marshal.dumps({
            "init_pid": c.init_pid, "init_starttime": c.init_starttime,
            "userns": not c.privileged,
            "cgroup_procs": cgroups.procs_files(c.cgroups, c.init_pid)}))
        reply = marshal.loads(await asyncio.get_running_loop().sock_recv(ours, 1 << 16)
                              or marshal.dumps(("error", "the exec server died")))
        if reply[0] != "ready":
            ours.close()
            os.waitpid(pid, 0)
            raise RuntimeFailure(f"Failed entering container {c.name!r}: {reply[1]}")
        server = ExecServer(pid, ours)
        _servers[key] = server
        return server


class ExecProcess:
    """A command running in a container. Non-interactive: stdin is a pipe we write, stdout and
    stderr pipes we read. Interactive: master is the pty master (stdin/stdout/stderr None)."""

    def __init__(self, server: ExecServer, exec_id: int, exited: asyncio.Future[int], pid: int,
                 stdin: int | None, stdout: int | None, stderr: int | None,
                 master: int | None) -> None:
        self._server = server
        self._id = exec_id
        self._exited = exited
        self.pid = pid
        self.stdin, self.stdout, self.stderr, self.master = stdin, stdout, stderr, master

    async def wait(self) -> int:
        return await self._exited

    def resize(self, width: int, height: int) -> None:
        if self.master is not None and width > 0 and height > 0:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def signal(self, signum: int) -> None:
        self._server.signal(self._id, signum)

    def close(self) -> None:
        """Close our ends of the pipes / the master (the caller may have taken them)."""
        for name in ("stdin", "stdout", "stderr", "master"):
            fd = getattr(self, name)
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, None)


async def exec(c: RunningContainer, argv: list[str], env: dict[str, str], uid: int = 0,
               gid: int = 0, cwd: str | None = None, interactive: bool = False,
               width: int = 80, height: int = 24) -> ExecProcess:
    """Start argv in the container with exactly env; returns once it is running."""
    server = await _server(c)
    cfg = {"argv": list(argv), "env": dict(env), "uid": uid, "gid": gid, "cwd": cwd,
           "interactive": interactive, "width": width, "height": height}
    if interactive:
        exec_id, pid, fds, exited = await server.run(cfg, [])
        if not fds:
            raise RuntimeFailure(f"Failed running {argv[0]!r} in {c.name!r}: no pty")
        os.set_inheritable(fds[0], False)
        return ExecProcess(server, exec_id, exited, pid, None, None, None, fds[0])
    r0, w0 = os.pipe2(os.O_CLOEXEC)
    r1, w1 = os.pipe2(os.O_CLOEXEC)
    r2, w2 = os.pipe2(os.O_CLOEXEC)
    try:
        exec_id, pid, _, exited = await server.run(cfg, [r0, w1, w2])
    except BaseException:
        for fd in (w0, r1, r2):
            os.close(fd)
        raise
    finally:
        for fd in (r0, w1, w2):
            os.close(fd)
    return ExecProcess(server, exec_id, exited, pid, w0, r1, r2, None)
