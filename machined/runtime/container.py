"""Daemon side of the runtime: start/find/stop/freeze/usage of containers.

Nothing here forks the daemon or enters a namespace: start() execs helper.py, which becomes the
container's monitor and outlives us; the rest reads run_dir/state.json and the cgroups.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from machined.errors import MachinedError
from machined.runtime import cgroups, linux
from machined.runtime.spec import LaunchSpec

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helper.py")
START_TIMEOUT = 90.0


class RuntimeFailure(MachinedError):
    status = 500


@dataclass(frozen=True)
class RunningContainer:
    name: str
    run_dir: str
    init_pid: int
    init_starttime: int
    monitor_pid: int
    monitor_starttime: int | None
    cgroups: cgroups.Paths
    privileged: bool
    stop_signal: int
    console_log: str


@dataclass(frozen=True)
class Usage:
    memory_bytes: int
    memory_peak: int
    cpu_ns: int
    processes: int
    swap_bytes: int = 0
    swap_peak: int = 0
    memory_limit: int = 0  # the cgroup's memory limit in bytes, 0 = none


def _read_state(run_dir: str) -> dict | None:
    try:
        with open(os.path.join(run_dir, "state.json")) as f:
            return dict(json.load(f))
    except (OSError, ValueError):
        return None


def find(run_dir: str) -> RunningContainer | None:
    """The running container described by run_dir/state.json, or None. A recorded PID only
    counts when its start time matches too (PIDs get reused)."""
    st = _read_state(run_dir)
    if not st or st.get("status") != "running" or not st.get("init_pid"):
        return None
    if linux.proc_starttime(st["init_pid"]) != st["init_starttime"]:
        return None
    return RunningContainer(
        name=st["name"], run_dir=run_dir, init_pid=st["init_pid"],
        init_starttime=st["init_starttime"], monitor_pid=st["monitor_pid"],
        monitor_starttime=st.get("monitor_starttime"), cgroups=st["cgroups"],
        privileged=st["privileged"], stop_signal=st["stop_signal"],
        console_log=st["console_log"])


def start(spec: LaunchSpec) -> RunningContainer:
    """Boot the container; returns once its init has been exec'd. On failure raises
    RuntimeFailure with the helper's reason, with no cgroup or process left behind."""
    if find(spec.run_dir):
        raise RuntimeFailure(f"Container {spec.name!r} is already running.")
    os.makedirs(spec.run_dir, mode=0o700, exist_ok=True)
    for stale in ("stopping", "state.json"):
        try:
            os.unlink(os.path.join(spec.run_dir, stale))
        except FileNotFoundError:
            pass
    spec_path = os.path.join(spec.run_dir, "spec.json")
    with open(spec_path, "w") as f:
        f.write(spec.to_json())
    rd, wr = os.pipe2(os.O_CLOEXEC)
    log = os.open(os.path.join(spec.run_dir, "monitor.log"),
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", HELPER, "start", spec_path, str(wr)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(wr,),
            close_fds=True, start_new_session=True)
    finally:
        os.close(wr)
        os.close(log)
    try:
        answer = _read_answer(rd, START_TIMEOUT)
    finally:
        os.close(rd)
        proc.wait()
    if not answer.startswith("ok "):
        reason = answer[6:] if answer.startswith("error ") else _tail(spec.run_dir)
        raise RuntimeFailure(f"Failed starting container {spec.name!r}: {reason}")
    found = find(spec.run_dir)
    if found is None:
        raise RuntimeFailure(f"Container {spec.name!r} exited right after starting.")
    return found


def _read_answer(fd: int, timeout: float) -> str:
    out = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in out:
        left = deadline - time.monotonic()
        if left <= 0 or not _wait_fd(fd, left):
            return "error The container monitor did not answer in time."
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        out += chunk
    return out.decode(errors="replace").strip()


def _tail(run_dir: str) -> str:
    try:
        with open(os.path.join(run_dir, "monitor.log"), errors="replace") as f:
            lines = f.read().strip().splitlines()
        return lines[-1] if lines else "the monitor exited without a reason"
    except OSError:
        return "the monitor exited without a reason"


def _pidfd(pid: int, starttime: int | None) -> int | None:
    """A pidfd for pid if it is still the process we recorded."""
    try:
        fd = linux.pidfd_open(pid)
    except OSError:
        return None
    if starttime is not None and linux.proc_starttime(pid) != starttime:
        os.close(fd)
        return None
    return fd


def _wait_fd(fd: int, timeout: float) -> bool:
    # poll, not select: the daemon's fds go past FD_SETSIZE (1024) with many proxied
    # connections (it raises its own RLIMIT_NOFILE: daemon.raise_fd_limit).
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(timeout, 0) * 1000))


def stop(c: RunningContainer, timeout: float = 30.0, force: bool = False) -> None:
    """Ask init to shut down with its stop signal, kill everything after timeout (or at once
    with force). Returns once the monitor has removed the cgroups and exited."""
    open(os.path.join(c.run_dir, "stopping"), "w").close()  # no reboot-restart now
    try:
        init = _pidfd(c.init_pid, c.init_starttime)
        if init is not None:
            try:
                if not force:
                    linux.pidfd_send_signal(init, c.stop_signal)
                if force or not _wait_fd(init, timeout):
                    # SIGKILL to PID 1 empties its PID namespace; the cgroup kill gets
                    # processes outside it (exec helpers).
                    linux.pidfd_send_signal(init, signal.SIGKILL)
                    cgroups.kill({k: v for k, v in c.cgroups.items()
                                  if os.path.isdir(v["mount"] + v["path"])})
                    _wait_fd(init, 10.0)
            finally:
                os.close(init)
        monitor = _pidfd(c.monitor_pid, c.monitor_starttime)
        if monitor is not None:
            try:
                _wait_fd(monitor, 15.0)
            finally:
                os.close(monitor)
        # The monitor normally did this; do it again in case it was killed.
        cgroups.remove(c.cgroups)
    finally:
        try:
            os.unlink(os.path.join(c.run_dir, "stopping"))
        except FileNotFoundError:
            pass


def freeze(c: RunningContainer) -> None:
    cgroups.set_frozen(c.cgroups, True)


def thaw(c: RunningContainer) -> None:
    cgroups.set_frozen(c.cgroups, False)


def is_frozen(c: RunningContainer) -> bool:
    return cgroups.is_frozen(c.cgroups)


def usage(c: RunningContainer) -> Usage:
    u = cgroups.usage(c.cgroups)
    return Usage(memory_bytes=u["memory"], memory_peak=u["memory_peak"], cpu_ns=u["cpu_ns"],
                 processes=u["processes"], swap_bytes=u["swap"], swap_peak=u["swap_peak"],
                 memory_limit=u["memory_limit"])


def apply_limits(c: RunningContainer, limits: dict[str, str]) -> list[str]:
    """Put the running container's cgroups in the state `limits` describes (absent limits back
    to unlimited/default). Returns warnings for limits this host cannot enforce; raises
    OSError when a limit cannot be applied (no controller, a CPU that does not exist, the
    kernel refusing a value, or the container stopped: errno in CGROUP_GONE)."""
    return cgroups.apply_limits(c.cgroups, limits, reset=True)
