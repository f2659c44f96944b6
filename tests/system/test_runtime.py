"""The runtime against the real kernel: busybox and Debian 12 containers, privileged and not."""

from __future__ import annotations

import asyncio
import glob
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

import pytest

from machined import runtime
from machined.runtime import linux

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]

CACHE = "/var/cache/machined-dev"

INITTAB = """\
::sysinit:/etc/init.d/rcS
::respawn:/bin/sleep 1000000
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/sync
"""
RCS = """\
#!/bin/sh
mkdir -p /run /tmp
mount -t tmpfs tmpfs /run
echo "rcS done on $(hostname)"
"""


def build_busybox(root: str) -> str:
    """A busybox rootfs from Debian's busybox-static package (root-owned on disk)."""
    debs = sorted(glob.glob(f"{CACHE}/busybox-static_*.deb"))
    if not debs:
        pytest.skip(f"No busybox-static package in {CACHE}")
    os.makedirs(root)
    subprocess.run(["dpkg-deb", "-x", debs[-1], root], check=True)
    applets = subprocess.run([f"{root}/bin/busybox", "--list-full"], check=True,
                             capture_output=True, text=True).stdout.split()
    for applet in applets:
        path = os.path.join(root, applet)
        if not os.path.lexists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.symlink("/bin/busybox", path)
    for d in ("etc/init.d", "proc", "sys", "dev", "tmp", "root", "run", "home/user"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    files = {
        "etc/inittab": INITTAB, "etc/init.d/rcS": RCS, "etc/hostname": "image\n",
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
        "etc/group": "root:x:0:\ntty:x:5:\nuser:x:1000:\n",
    }
    for name, text in files.items():
        with open(os.path.join(root, name), "w") as f:
            f.write(text)
    os.chmod(os.path.join(root, "etc/init.d/rcS"), 0o755)
    os.chown(os.path.join(root, "home/user"), 1000, 1000)
    if not os.path.lexists(os.path.join(root, "sbin/init")):
        os.symlink("/bin/busybox", os.path.join(root, "sbin/init"))
    return root


@pytest.fixture(scope="session")
def busybox_tree() -> Iterator[str]:
    """A pristine busybox tree; copy it per container (containers write into it)."""
    tmp = tempfile.mkdtemp(prefix="machined-bb-")
    try:
        yield build_busybox(os.path.join(tmp, "rootfs"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_spec(base: str, name: str, rootfs: str, **kw: object) -> runtime.LaunchSpec:
    return runtime.build_spec(name, rootfs, os.path.join(base, "run"),
                              os.path.join(base, "console.log"), **kw)  # type: ignore[arg-type]


@pytest.fixture
def launcher() -> Iterator[Callable[[runtime.LaunchSpec], runtime.RunningContainer]]:
    """start() that force-stops whatever it started when the test ends."""
    started: list[runtime.LaunchSpec] = []

    def launch(spec: runtime.LaunchSpec) -> runtime.RunningContainer:
        started.append(spec)
        return runtime.start(spec)

    yield launch
    for spec in started:
        c = runtime.find(spec.run_dir)
        if c is not None:
            runtime.stop(c, 0, force=True)


@pytest.fixture
def busybox(tmp_path: str, busybox_tree: str) -> str:
    rootfs = os.path.join(tmp_path, "rootfs")
    subprocess.run(["cp", "-a", busybox_tree, rootfs], check=True)
    return rootfs


async def run(c: runtime.RunningContainer, argv: list[str], env: dict[str, str] | None = None,
              **kw: object) -> tuple[int, str, str]:
    p = await runtime.exec(c, argv, {"PATH": PATH} if env is None else env, **kw)  # type: ignore[arg-type]
    assert p.stdin is not None and p.stdout is not None and p.stderr is not None
    os.close(p.stdin)
    p.stdin = None
    out, err = await asyncio.gather(asyncio.to_thread(_read_all, p.stdout),
                                    asyncio.to_thread(_read_all, p.stderr))
    rc = await p.wait()
    p.close()
    return rc, out, err


def _read_all(fd: int) -> str:
    chunks = []
    while data := os.read(fd, 65536):
        chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def _read_pty(fd: int, until: str = "", timeout: float = 10.0) -> str:
    """Read a pty master until EIO (all slaves closed) or `until` shows up."""
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 0.1)[0]:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
        if until and until.encode() in out:
            break
    return out.decode(errors="replace")


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def host_uid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def assert_gone(c: runtime.RunningContainer, path: str) -> None:
    """No cgroup, process or mount of the container is left on the host."""
    for entry in c.cgroups.values():
        assert not os.path.exists(entry["mount"] + entry["path"]), entry
    assert linux.proc_starttime(c.init_pid) != c.init_starttime
    assert linux.proc_starttime(c.monitor_pid) != c.monitor_starttime
    with open("/proc/self/mountinfo") as f:
        assert path not in f.read()
    assert runtime.find(c.run_dir) is None


# ------------------------------------------------------------------ busybox


def test_unprivileged_busybox_boots_and_execs(tmp_path: str, busybox: str, launcher) -> None:
    spec = make_spec(str(tmp_path), "rt-bb-unpriv", busybox)
    c = launcher(spec)
    base = spec.uid_map[0][1]
    assert host_uid(c.init_pid) == base
    rc, out, err = asyncio.run(run(c, ["id", "-u"]))
    assert (rc, out.strip(), err) == (0, "0", "")
    rc, out, _ = asyncio.run(run(c, ["hostname"]))
    assert out.strip() == "rt-bb-unpriv"
    # Files stay root-owned on disk and look root-owned inside.
    rc, out, _ = asyncio.run(run(c, ["stat", "-c", "%u", "/etc/passwd"]))
    assert out.strip() == "0"
    assert os.stat(os.path.join(busybox, "etc/passwd")).st_uid == 0
    with open(os.path.join(busybox, "etc/hostname")) as f:
        assert f.read() == "rt-bb-unpriv\n"
    usage = runtime.usage(c)
    assert usage.processes >= 2 and usage.memory_bytes > 0 and usage.cpu_ns > 0
    runtime.stop(c, timeout=10, force=False)  # busybox halts on SIGUSR1
    assert_gone(c, str(tmp_path))


def test_privileged_busybox(tmp_path: str, busybox: str, launcher) -> None:
    c = launcher(make_spec(str(tmp_path), "rt-bb-priv", busybox, privileged=True,
                           limits={"memory": str(256 << 20), "processes": "50"}))
    assert host_uid(c.init_pid) == 0
    for key, entry in c.cgroups.items():
        d = entry["mount"] + entry["path"]
        if key == "memory":
            assert read(f"{d}/memory.limit_in_bytes") == str(256 << 20)
        if key == "pids":
            assert read(f"{d}/pids.max") == "50"
    rc, out, _ = asyncio.run(run(c, ["sh", "-c", "id -u; cat /proc/1/cmdline"]))
    assert rc == 0 and out.startswith("0\ninit")
    runtime.stop(c, timeout=0, force=True)
    assert_gone(c, str(tmp_path))


def test_start_failure_leaves_nothing(tmp_path: str, busybox: str) -> None:
    spec = make_spec(str(tmp_path), "rt-bb-fail", busybox, init=["/sbin/no-such-init"])
    with pytest.raises(runtime.RuntimeFailure, match="no-such-init|No such file"):
        runtime.start(spec)
    from machined.runtime import cgroups

    for entry in cgroups.container_paths(cgroups.detect(), spec.name).values():
        assert not os.path.exists(entry["mount"] + entry["path"])
    with open("/proc/self/mountinfo") as f:
        assert str(tmp_path) not in f.read()


def test_survives_its_starter_and_reboots(tmp_path: str, busybox: str) -> None:
    spec = make_spec(str(tmp_path), "rt-bb-orphan", busybox)
    spec_file = os.path.join(tmp_path, "spec.json")
    with open(spec_file, "w") as f:
        f.write(spec.to_json())
    script = ("import sys; from machined import runtime; "
              f"c = runtime.start(runtime.LaunchSpec.from_json(open({spec_file!r}).read())); "
              "print(c.init_pid)")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    init_pid = int(out.strip())
    try:
        c = runtime.find(spec.run_dir)
        assert c is not None and c.init_pid == init_pid
        # reboot inside: init is killed by SIGHUP in its PID namespace; the monitor boots again.
        asyncio.run(run(c, ["reboot"]))
        deadline = time.monotonic() + 10
        c2 = None
        while time.monotonic() < deadline:
            c2 = runtime.find(spec.run_dir)
            if c2 is not None and c2.init_pid != init_pid:
                break
            time.sleep(0.05)
        assert c2 is not None and c2.init_pid != init_pid
        assert c2.monitor_pid == c.monitor_pid
        rc, out, _ = asyncio.run(run(c2, ["hostname"]))
        assert (rc, out.strip()) == (0, "rt-bb-orphan")
        runtime.stop(c2, timeout=0, force=True)
        assert_gone(c2, str(tmp_path))
    finally:
        c3 = runtime.find(spec.run_dir)
        if c3 is not None:
            runtime.stop(c3, 0, force=True)


# ------------------------------------------------------------------ Debian 12 systemd


@pytest.fixture(scope="module")
def debian() -> Iterator[tuple[runtime.RunningContainer, str]]:
    src = f"{CACHE}/debian-rootfs"
    if not os.path.isdir(src):
        pytest.skip(f"No {src}")
    tmp = tempfile.mkdtemp(prefix="machined-deb-")
    rootfs = os.path.join(tmp, "rootfs")
    spec = make_spec(tmp, "rt-debian", rootfs, stop_signal=runtime.stop_signal_for("systemd"))
    try:
        subprocess.run(["cp", "-a", src, rootfs], check=True)
        yield runtime.start(spec), tmp
    finally:
        c = runtime.find(spec.run_dir)
        if c is not None:
            runtime.stop(c, 0, force=True)
        shutil.rmtree(tmp, ignore_errors=True)


def test_debian_boots(debian) -> None:
    c, _ = debian
    deadline = time.monotonic() + 20
    state = ""
    while time.monotonic() < deadline:
        _rc, out, _err = asyncio.run(run(c, ["systemctl", "is-system-running"]))
        state = out.strip()
        if state in ("running", "degraded"):
            break
        time.sleep(0.1)
    failed = asyncio.run(run(c, ["systemctl", "--failed", "--no-legend", "--plain"]))[1]
    assert state in ("running", "degraded"), f"state {state!r}, failed units:\n{failed}"
    assert host_uid(c.init_pid) != 0


def test_exec_exit_codes(debian) -> None:
    c, _ = debian

    async def codes() -> list[int]:
        results = await asyncio.gather(run(c, ["true"]), run(c, ["false"]),
                                       run(c, ["no-such-command"]), run(c, ["/etc/passwd"]))
        return [r[0] for r in results]

    assert asyncio.run(codes()) == [0, 1, 127, 126]


def test_exec_killed_by_signal(debian) -> None:
    c, _ = debian

    async def go() -> int:
        p = await runtime.exec(c, ["sleep", "100"], {"PATH": PATH})
        await asyncio.sleep(0.1)
        p.signal(signal.SIGKILL)
        rc = await p.wait()
        p.close()
        return rc

    assert asyncio.run(go()) == 128 + 9


def test_exec_env_uid_cwd(debian) -> None:
    c, _ = debian
    rc, out, err = asyncio.run(run(c, ["sh", "-c", 'echo "$FOO|$HOME"; id -u; id -g; pwd; env'],
                                   env={"FOO": "bar", "PATH": PATH}, uid=1000, gid=1001,
                                   cwd="/tmp"))
    lines = out.splitlines()
    assert rc == 0, err
    assert lines[:4] == ["bar|", "1000", "1001", "/tmp"]
    # Exactly the environment given (sh adds only its own PWD/SHLVL/_).
    assert {ln.split("=")[0] for ln in lines[4:]} <= {"FOO", "PATH", "PWD", "SHLVL", "_"}


def test_exec_interactive_pty(debian) -> None:
    c, _ = debian

    async def go() -> tuple[int, str, str]:
        p = await runtime.exec(c, ["sh", "-c", "stty size; tty; exit 3"], {"PATH": PATH},
                               interactive=True, width=100, height=40)
        assert p.master is not None
        out = await asyncio.to_thread(_read_pty, p.master)
        rc = await p.wait()
        p.close()
        # resize: a second command waits for a line, then reports the new size.
        p = await runtime.exec(c, ["sh", "-c", "read x; stty size"], {"PATH": PATH},
                               interactive=True, width=80, height=24)
        assert p.master is not None
        p.resize(120, 50)
        os.write(p.master, b"go\n")
        out2 = await asyncio.to_thread(_read_pty, p.master)
        await p.wait()
        p.close()
        return rc, out, out2

    rc, out, out2 = asyncio.run(go())
    assert rc == 3
    assert "40 100" in out and "/dev/pts/" in out
    assert "50 120" in out2


def test_freeze_thaw(debian) -> None:
    c, _ = debian
    runtime.freeze(c)
    try:
        assert runtime.is_frozen(c)
        with open(f"/proc/{c.init_pid}/wchan") as f:
            wchan = f.read()
        assert "refrigerator" in wchan or "freeze" in wchan or "do_signal_stop" in wchan
    finally:
        runtime.thaw(c)
    assert not runtime.is_frozen(c)
    assert asyncio.run(run(c, ["true"]))[0] == 0


def test_debian_stops_cleanly(debian) -> None:
    c, tmp = debian
    t = time.monotonic()
    runtime.stop(c, timeout=30, force=False)
    assert time.monotonic() - t < 25, "systemd did not halt on SIGRTMIN+3"
    with open(c.console_log, errors="replace") as f:
        assert "Halting system" in f.read() or "System Halt" in f.read()
    assert_gone(c, tmp)
