"""One dnsmasq per managed network: started, kept, reloaded and stopped by the daemon.

dnsmasq daemonises itself: its first process exits once the server is up, so a bad
configuration (an address in use, a missing interface) comes back as its exit status and
stderr, and the server outlives the daemon like containers do. The argv it was started with is
stored in `<network dir>/dnsmasq.cmd` *before* it starts; a process is taken for ours only when
/proc/<pid>/cmdline is exactly that argv and it runs as root or nobody (its pid file is
written by dnsmasq and owned by `nobody`, so it is a hint, never a proof), and it is
signalled through a pidfd opened before that check, so a recycled pid can never be hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import signal
from pathlib import Path

from machined.errors import InternalError
from machined.network.model import NetFiles
from machined.sys.run import run_async

log = logging.getLogger("machined.network")
STOP_TIMEOUT = 5.0


def read_cmd(files: NetFiles) -> list[str] | None:
    try:
        argv = json.loads(files.cmd.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        return None
    return argv


def _write_cmd(files: NetFiles, argv: list[str]) -> None:
    tmp = files.cmd.with_name(files.cmd.name + ".tmp")
    tmp.write_text(json.dumps(argv))
    os.replace(tmp, files.cmd)


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:  # a zombie, or a kernel thread
        return None
    return [os.fsdecode(a) for a in raw.rstrip(b"\0").split(b"\0")]


def _is_ours(pid: int, argv: list[str]) -> bool:
    """The command line is readable by every local user, and any process may carry one of
    its choosing: it must also run as root or as the user dnsmasq drops to, or another
    user's look-alike could pass for the network's server (kept instead of starting it,
    and signalled)."""
    return pid > 1 and _cmdline(pid) == argv and _uids(pid) <= _trusted_uids(argv)


def _uids(pid: int) -> set[int]:
    """Real, effective, saved and filesystem uids of a process (/proc/<pid>/status);
    {-1} when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return {int(x) for x in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return {-1}


def _trusted_uids(argv: list[str]) -> set[int]:
    user = next((a.removeprefix("--user=") for a in argv if a.startswith("--user=")), "")
    try:
        return {0, pwd.getpwnam(user).pw_uid} if user else {0}
    except KeyError:
        return {0}


def _pid_from_file(files: NetFiles) -> int | None:
    try:
        text = files.pid.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def running_pid(files: NetFiles, argv: list[str] | None = None) -> int | None:
    """The pid of this network's dnsmasq started with `argv` (the stored one by default),
    or None. The pid file is checked first; when it does not match (removed, stale), /proc
    is searched for the exact command line, so a server is never started twice."""
    argv = argv if argv is not None else read_cmd(files)
    if not argv:
        return None
    pid = _pid_from_file(files)
    if pid is not None and _is_ours(pid, argv):
        return pid
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _is_ours(int(entry.name), argv):
            return int(entry.name)
    return None


def _pidfd(pid: int, argv: list[str]) -> int | None:
    """A pidfd of `pid` if it is our dnsmasq: opened first, then checked, so the process
    checked is the one the fd refers to."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if not _is_ours(pid, argv):
        os.close(fd)
        return None
    return fd


async def _wait_exit(fd: int, timeout: float) -> bool:
    """A pidfd becomes readable when its process exits (it need not be our child)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(fd, lambda: done.done() or done.set_result(None))
    try:
        await asyncio.wait_for(done, timeout)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


async def stop(files: NetFiles) -> bool:
    """Stop this network's dnsmasq if it runs (SIGTERM, then SIGKILL); True if one did.
    The stored argv and pid file go with it."""
    argv = read_cmd(files)
    pid = running_pid(files, argv) if argv else None
    fd = _pidfd(pid, argv) if pid is not None and argv else None
    stopped = False
    if fd is not None:
        try:
            for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, sig)
                if await _wait_exit(fd, wait):
                    stopped = True
                    break
            else:
                raise InternalError(f"dnsmasq (pid {pid}) of {files.dir.name} did not exit")
        finally:
            os.close(fd)
    files.pid.unlink(missing_ok=True)
    files.cmd.unlink(missing_ok=True)
    return stopped


async def start(files: NetFiles, argv: list[str]) -> int:
    """Start dnsmasq with `argv`; returns its pid. Raises InternalError with dnsmasq's own
    message when it refuses to start."""
    files.pid.unlink(missing_ok=True)
    _write_cmd(files, argv)
    try:
        rc, _out, err = await run_async(argv, check=False)
    except FileNotFoundError:
        files.cmd.unlink(missing_ok=True)
        raise InternalError(f"dnsmasq is needed for managed networks and {argv[0]} was not "
                            "found (Debian: apt install dnsmasq-base)") from None
    except BaseException:
        files.cmd.unlink(missing_ok=True)
        raise
    if rc != 0:
        files.cmd.unlink(missing_ok=True)
        lines = [line.strip() for line in err.decode(errors="replace").splitlines()
                 if line.strip()]
        detail = lines[-1].removeprefix("dnsmasq: ") if lines else f"exit status {rc}"
        raise InternalError(f"dnsmasq could not start for network {files.dir.name}: {detail}")
    pid = None
    for _ in range(50):  # written before the first process exits; a short grace anyway
        pid = running_pid(files, argv)
        if pid is not None:
            break
        await asyncio.sleep(0.02)
    if pid is None:
        files.cmd.unlink(missing_ok=True)
        raise InternalError(f"dnsmasq for network {files.dir.name} exited right after it "
                            "started (see the system log)")
    # dnsmasq hands its pid file to `nobody`; it is only a hint, but keep it root's.
    with contextlib.suppress(OSError):
        os.chown(files.pid, 0, 0)
    return pid


async def ensure(files: NetFiles, argv: list[str] | None) -> str:
    """Make the network's dnsmasq run with exactly `argv` (None: not run at all). A server
    already running with the same argv is kept. Returns what was done: kept, started,
    restarted, stopped or none."""
    stored = read_cmd(files)
    pid = running_pid(files, stored) if stored else None
    if argv is None:
        if stored is None:
            return "none"
        await stop(files)
        return "stopped"
    if pid is not None and stored == argv:
        return "kept"
    if stored is not None:
        await stop(files)
    await start(files, argv)
    return "restarted" if pid is not None else "started"


def reload(files: NetFiles) -> bool:
    """SIGHUP: dnsmasq re-reads its hosts file. False when it does not run."""
    argv = read_cmd(files)
    pid = running_pid(files, argv) if argv else None
    fd = _pidfd(pid, argv) if pid is not None and argv else None
    if fd is None:
        return False
    try:
        signal.pidfd_send_signal(fd, signal.SIGHUP)
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)
    return True
