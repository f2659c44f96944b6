"""A busybox container through its whole life, driven by the mc binary as a user would."""

from __future__ import annotations

import csv
import io
import json
import os

import pytest
import yaml

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def box(daemon, busybox_image):
    daemon.ok("launch", busybox_image, "b1")
    yield "b1"
    daemon.mc("delete", "--force", "b1")


def _info(daemon, name):
    return next(i for i in daemon.instances() if i["name"] == name)


def test_launch_runs_busybox_init_unprivileged(daemon, box):
    inst = _info(daemon, box)
    assert inst["status"] == "Running"
    pid = inst["state"]["pid"]
    assert pid > 0
    # PID 1 in the container is busybox init, running as the mapped (non-root) host uid.
    assert daemon.ok("exec", box, "--", "cat", "/proc/1/comm").strip() == "init"
    with open(f"/proc/{pid}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    assert int(uids[0]) != 0
    assert daemon.ok("exec", box, "--", "id", "-u").strip() == "0"
    assert daemon.ok("exec", box, "--", "hostname").strip() == box


def test_list_table_and_formats(daemon, box):
    table = daemon.ok("list")
    header = next(line for line in table.splitlines() if "NAME" in line)
    for column in ("NAME", "STATE", "IPV4", "IPV6", "TYPE", "SNAPSHOTS"):
        assert column in header
    assert any(box in line and "RUNNING" in line and "CONTAINER" in line
               for line in table.splitlines())
    as_json = json.loads(daemon.ok("list", "--format", "json"))
    assert [i["name"] for i in as_json] == [box]
    as_yaml = yaml.safe_load(daemon.ok("list", "--format", "yaml"))
    assert as_yaml[0]["name"] == box
    rows = list(csv.reader(io.StringIO(daemon.ok("list", "--format", "csv"))))
    assert rows[0][0] == box and rows[0][1] == "RUNNING"


@pytest.mark.parametrize("argv,code", [
    (["true"], 0), (["false"], 1), (["no-such-command"], 127),
    (["sh", "-c", "exit 42"], 42), (["sh", "-c", "kill -9 $$"], 137),
    (["sh", "-c", "kill -TERM $$"], 143),
])
def test_exec_exit_codes_as_lxd(daemon, box, argv, code):
    assert daemon.mc("exec", box, "--", *argv).code == code


def test_exec_env_user_cwd_and_stdin(daemon, box):
    out = daemon.ok("exec", box, "--env", "A=1", "--user", "1000", "--cwd", "/tmp", "--",
                    "sh", "-c", "echo $A; id -u; pwd")
    assert out.split() == ["1", "1000", "/tmp"]
    env = daemon.ok("exec", box, "--", "env")
    assert "LANG=C.UTF-8" in env and "HOME=/root" in env and "USER=root" in env
    assert daemon.ok("exec", box, "--", "pwd").strip() == "/root"
    assert daemon.ok("exec", box, "--", "cat", input="piped\n") == "piped\n"
    err = daemon.mc("exec", box, "--", "sh", "-c", "echo oops >&2; exit 3")
    assert err.code == 3 and err.err == "oops\n"


def test_environment_config_keys_reach_exec(daemon, busybox_image):
    daemon.ok("launch", busybox_image, "e1", "-c", "environment.APP_ENV=prod")
    try:
        env = daemon.ok("exec", "e1", "--", "env")
        assert "APP_ENV=prod" in env
        assert "APP_ENV=cli" in daemon.ok("exec", "e1", "--env", "APP_ENV=cli", "--", "env")
    finally:
        daemon.ok("delete", "--force", "e1")


def test_info_shows_state_pid_and_resources(daemon, box):
    info = daemon.ok("info", box)
    for field in ("Name: b1", "Status: RUNNING", "PID:", "Processes:", "Memory usage",
                  "CPU usage", "Created:"):
        assert field in info, info


def test_pause_resume_stop_start_restart(daemon, box):
    daemon.ok("pause", box)
    assert _info(daemon, box)["status"] == "Frozen"
    res = daemon.mc("exec", box, "--", "true")
    assert res.code == 1 and "frozen" in res.err
    daemon.ok("resume", box)
    assert daemon.mc("exec", box, "--", "true").code == 0
    first_pid = _info(daemon, box)["state"]["pid"]
    daemon.ok("restart", box)
    second_pid = _info(daemon, box)["state"]["pid"]
    assert second_pid != first_pid and _info(daemon, box)["status"] == "Running"
    daemon.ok("stop", box)
    assert _info(daemon, box)["status"] == "Stopped"
    assert not os.path.exists(f"/proc/{second_pid}")
    assert daemon.mc("exec", box, "--", "true").code == 1
    daemon.ok("start", box)
    assert _info(daemon, box)["status"] == "Running"


def test_console_log_is_kept(daemon, box):
    log = daemon.ok("console", box, "--show-log")
    assert log.strip(), "the console log should hold what init printed"


def test_init_rename_delete(daemon, busybox_image):
    daemon.ok("init", busybox_image, "b2")
    assert _info(daemon, "b2")["status"] == "Stopped"
    volume = daemon.instance_dir("b2")
    daemon.ok("rename", "b2", "b3")
    assert daemon.instance_dir("b3") == volume and volume.is_dir()  # renames keep the volume
    names = [i["name"] for i in daemon.instances()]
    assert "b3" in names and "b2" not in names
    daemon.ok("start", "b3")
    res = daemon.mc("delete", "b3")
    assert res.code == 1 and "stop it first" in res.err
    daemon.ok("delete", "b3", "--force")
    assert "b3" not in [i["name"] for i in daemon.instances()]
    assert not volume.exists()


def test_privileged_container(daemon, busybox_image):
    daemon.ok("launch", busybox_image, "p1", "-c", "security.privileged=true")
    try:
        pid = _info(daemon, "p1")["state"]["pid"]
        with open(f"/proc/{pid}/status") as f:
            uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
        assert int(uids[0]) == 0
    finally:
        daemon.ok("delete", "--force", "p1")


def test_errors_are_one_clear_line(daemon, busybox_image):
    res = daemon.mc("start", "nope")
    assert res.code == 1 and res.err.strip() == "Error: Instance 'nope' not found"
    res = daemon.mc("launch", "no-such-image", "x1")
    assert res.code == 1 and "no-such-image" in res.err and len(res.err.splitlines()) == 1
    res = daemon.mc("launch", busybox_image, "bad_name")
    assert res.code == 1 and "Invalid instance name" in res.err
    res = daemon.mc("launch", busybox_image, "x2", "-c", "limits.memory=lots")
    assert res.code == 1 and "limits.memory" in res.err
    assert "x2" not in [i["name"] for i in daemon.instances()]
    assert daemon.mc("exec", "nope").code == 2  # usage: no command given


def test_concurrent_execs_keep_their_own_streams_and_codes(daemon, box):
    import subprocess

    procs = [subprocess.Popen([daemon.mc_path, "exec", box, "--", "sh", "-c",
                               f"sleep 0.{i % 3}; echo out-{i}; echo err-{i} >&2; exit {i}"],
                              env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(8)]
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=60)
        assert (proc.returncode, out, err) == (i, f"out-{i}\n", f"err-{i}\n")


def test_force_delete_of_a_frozen_container(daemon, busybox_image):
    daemon.ok("launch", busybox_image, "fz1")
    daemon.ok("exec", "fz1", "--", "true")  # its exec server sits in the cgroups too
    daemon.ok("pause", "fz1")
    res = daemon.mc("stop", "fz1")
    assert res.code == 1 and "frozen" in res.err
    daemon.ok("delete", "--force", "fz1", timeout=30)
    assert "fz1" not in [i["name"] for i in daemon.instances()]


def test_signals_to_mc_reach_the_command(daemon, box):
    """Non-interactive: SIGTERM/SIGINT/SIGHUP to mc travel over the control socket."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen([daemon.mc_path, "exec", box, "--", "sleep", "300"],
                            env=daemon.env, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while "sleep 300" not in daemon.ok("exec", box, "--", "ps"):
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    assert "sleep 300" not in daemon.ok("exec", box, "--", "ps")


def test_exec_runs_inside_the_containers_cgroups(daemon, box):
    """Limits and freezing must apply to exec'd commands too."""
    inside = daemon.ok("exec", box, "--", "cat", "/proc/self/cgroup")
    init_pid = next(i for i in daemon.instances() if i["name"] == box)["state"]["pid"]
    with open(f"/proc/{init_pid}/cgroup") as f:
        init_cgroups = {line.split(":")[1]: line.split(":")[2] for line in f.read().splitlines()}
    for line in inside.splitlines():
        _, controllers, path = line.split(":", 2)
        # Seen through the container's cgroup namespace: inside its own tree, never the host's.
        assert not path.startswith("/.."), line
    memory = next(line for line in inside.splitlines() if ":memory:" in line)
    assert "memory" in init_cgroups and memory.split(":", 2)[2].startswith("/")
