"""exec(): run a command in a container through nsexec.py (see its docstring for the protocol)."""

from __future__ import annotations

import asyncio
import fcntl
import marshal
import os
import socket
import struct
import subprocess
import sys
import termios

from machined.runtime import cgroups, linux
from machined.runtime.container import RunningContainer, RuntimeFailure

NSEXEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nsexec.py")


class ExecProcess:
    """A command running in a container. Non-interactive: stdin is a pipe we write, stdout and
    stderr pipes we read. Interactive: master is the pty master (stdin/stdout/stderr None)."""

    def __init__(self, proc: asyncio.subprocess.Process, pid: int, pidfd: int,
                 stdin: int | None, stdout: int | None, stderr: int | None,
                 master: int | None) -> None:
        self._proc = proc
        self.pid = pid
        self._pidfd = pidfd
        self.stdin, self.stdout, self.stderr, self.master = stdin, stdout, stderr, master

    async def wait(self) -> int:
        """Exit code of the command (128+N when killed by signal N)."""
        rc = await self._proc.wait()
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        return 128 - rc if rc < 0 else rc

    def resize(self, width: int, height: int) -> None:
        if self.master is not None:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def signal(self, signum: int) -> None:
        if self._pidfd >= 0:
            try:
                linux.pidfd_send_signal(self._pidfd, signum)
            except ProcessLookupError:
                pass

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
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    mine: list[int] = []  # our ends of the stdio pipes
    given: list[int] = []  # nsexec's ends, closed here once it has them
    try:
        if interactive:
            stdio: list[int] = [subprocess.DEVNULL] * 3
        else:
            r0, w0 = os.pipe2(os.O_CLOEXEC)
            r1, w1 = os.pipe2(os.O_CLOEXEC)
            r2, w2 = os.pipe2(os.O_CLOEXEC)
            mine, given = [w0, r1, r2], [r0, w1, w2]
            stdio = given
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", NSEXEC, str(theirs.fileno()),
            stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], pass_fds=(theirs.fileno(),),
            close_fds=True)
        for fd in given:
            os.close(fd)
        given = []
        theirs.close()
        ours.sendall(marshal.dumps({
            "init_pid": c.init_pid, "init_starttime": c.init_starttime,
            "userns": not c.privileged, "cgroup_procs": cgroups.procs_files(c.cgroups, c.init_pid),
            "argv": list(argv), "env": dict(env), "uid": uid, "gid": gid, "cwd": cwd,
            "interactive": interactive, "width": width, "height": height}))
        msg, fds = await _recv_fds(ours)
        if not msg.startswith(b"pid "):
            await proc.wait()
            text = msg[6:].decode(errors="replace") if msg.startswith(b"error ") else (
                "the exec helper died")
            raise RuntimeFailure(f"Failed running {argv[0]!r} in {c.name!r}: {text}")
        pid = int(msg[4:])
        pidfd = linux.pidfd_open(pid)
        ours.send(b"k")  # nsexec may reap the command now: we hold a pidfd
        master = fds[0] if fds else None
        if master is not None:
            os.set_inheritable(master, False)
        if interactive:
            return ExecProcess(proc, pid, pidfd, None, None, None, master)
        return ExecProcess(proc, pid, pidfd, mine[0], mine[1], mine[2], None)
    except BaseException:
        for fd in mine + given:
            os.close(fd)
        raise
    finally:
        ours.close()
        if theirs.fileno() >= 0:
            theirs.close()


async def _recv_fds(sock: socket.socket) -> tuple[bytes, list[int]]:
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    fut: asyncio.Future[None] = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        loop.remove_reader(sock.fileno())
    msg, fds, _flags, _addr = socket.recv_fds(sock, 65536, 1)
    return msg, list(fds)

