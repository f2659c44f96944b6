"""Configuration keys and resource limits on real busybox containers, driven by mc.

Limits are checked where they take effect: in the host's cgroup files of the container (found
through /proc/<init>/cgroup) and from inside (nproc, an allocation that gets OOM-killed, forks
that fail past pids.max).
"""

from __future__ import annotations

import os

import pytest
import yaml

pytestmark = pytest.mark.system

V1_UNLIMITED = 1 << 62  # v1 shows "no memory limit" as a number above this


def init_pid(daemon, name: str) -> int:
    inst = next(i for i in daemon.instances() if i["name"] == name)
    assert inst["status"] == "Running"
    return int(inst["state"]["pid"])


def cgroup_file(daemon, name: str, controller: str, fname: str) -> str:
    """The host's view of one of the container's cgroup files (v1 or v2)."""
    pid = init_pid(daemon, name)
    with open(f"/proc/{pid}/cgroup") as f:
        entries = [line.split(":", 2) for line in f.read().splitlines()]
    for _id, ctrls, path in entries:
        if controller in ctrls.split(","):
            return read(f"/sys/fs/cgroup/{ctrls}{path}/{fname}")
    unified = next(path for _id, ctrls, path in entries if ctrls == "")
    return read(f"/sys/fs/cgroup{unified}/{fname}")


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def config_of(daemon, name: str) -> dict[str, str]:
    return yaml.safe_load(daemon.ok("config", "show", name))["config"]


@pytest.fixture(scope="module")
def box(daemon, busybox_image):
    """A running container without limits, changed live by the tests."""
    daemon.ok("launch", busybox_image, "l-live")
    yield "l-live"
    daemon.mc("delete", "--force", "l-live")


@pytest.fixture(scope="module")
def mem(daemon, busybox_image):
    daemon.ok("launch", busybox_image, "l-mem", "-c", "limits.memory=64MiB")
    yield "l-mem"
    daemon.mc("delete", "--force", "l-mem")


def test_memory_limit_oom_kills_the_allocating_process_only(daemon, mem):
    assert int(cgroup_file(daemon, mem, "memory", "memory.limit_in_bytes")) == 64 << 20
    pid = init_pid(daemon, mem)
    # dd's 200 MiB buffer is filled from /dev/zero: far past the limit.
    res = daemon.mc("exec", mem, "--", "dd", "if=/dev/zero", "of=/dev/null", "bs=200M",
                    "count=1")
    assert res.code == 137  # SIGKILL from the OOM killer
    oom = dict(line.split() for line in
               cgroup_file(daemon, mem, "memory", "memory.oom_control").splitlines())
    assert int(oom["oom_kill"]) >= 1
    # init survived, the container still works, and the daemon is fine
    assert init_pid(daemon, mem) == pid
    assert daemon.ok("exec", mem, "--", "echo", "alive") == "alive\n"
    # a smaller allocation fits
    assert daemon.mc("exec", mem, "--", "dd", "if=/dev/zero", "of=/dev/null", "bs=16M",
                     "count=1").code == 0


def test_process_limit_bounds_forks(daemon, busybox_image):
    daemon.ok("launch", busybox_image, "l-pids", "-c", "limits.processes=20")
    try:
        assert cgroup_file(daemon, "l-pids", "pids", "pids.max") == "20"
        res = daemon.mc("exec", "l-pids", "--", "sh", "-c",
                        "for i in $(seq 1 40); do sleep 300 & done; echo all started")
        assert res.code != 0 and "can't fork" in res.err and "all started" not in res.out
        assert int(cgroup_file(daemon, "l-pids", "pids", "pids.current")) <= 20
        # At the cap, a new exec is refused with a sentence, not "[Errno 11] ...".
        current = cgroup_file(daemon, "l-pids", "pids", "pids.current")
        daemon.ok("config", "set", "l-pids", "limits.processes", current)  # no room left
        res = daemon.mc("exec", "l-pids", "--", "true")
        assert res.code == 1
        assert res.err.strip().endswith(
            "cannot start a process: the instance is at its process limit (limits.processes)")
        assert "Errno" not in res.err
        # raised live: now 40 sleeps fit
        daemon.ok("config", "set", "l-pids", "limits.processes", "60")
        assert cgroup_file(daemon, "l-pids", "pids", "pids.max") == "60"
        daemon.ok("exec", "l-pids", "--", "killall", "sleep")
        out = daemon.ok("exec", "l-pids", "--", "sh", "-c",
                        "for i in $(seq 1 40); do sleep 300 & done; echo all started")
        assert out == "all started\n"
    finally:
        daemon.mc("delete", "--force", "l-pids")


def test_cpu_pinning_is_visible_on_the_host_and_inside(daemon, box):
    cpus = sorted(os.sched_getaffinity(0))
    daemon.ok("config", "set", box, "limits.cpu", "1")
    assert cgroup_file(daemon, box, "cpuset", "cpuset.cpus") == str(cpus[0])
    assert daemon.ok("exec", box, "--", "nproc") == "1\n"
    if len(cpus) > 1:
        daemon.ok("config", "set", box, f"limits.cpu={cpus[1]}-{cpus[1]}")
        assert cgroup_file(daemon, box, "cpuset", "cpuset.cpus") == str(cpus[1])
        status = daemon.ok("exec", box, "--", "grep", "Cpus_allowed_list", "/proc/self/status")
        assert status.split()[-1] == str(cpus[1])
    daemon.ok("config", "unset", box, "limits.cpu")
    assert daemon.ok("exec", box, "--", "nproc") == f"{len(cpus)}\n"
    assert "limits.cpu" not in config_of(daemon, box)


def test_cpu_set_of_a_missing_cpu_is_refused_and_nothing_stored(daemon, box):
    res = daemon.mc("config", "set", box, "limits.cpu", "0-4095")
    assert res.code == 1
    assert "limits.cpu: CPU" in res.err and "is not available" in res.err
    assert "(nothing changed)" in res.err and len(res.err.splitlines()) == 1
    assert "limits.cpu" not in config_of(daemon, box)


def test_start_with_a_missing_cpu_fails_with_a_sentence(daemon, busybox_image):
    daemon.ok("init", busybox_image, "l-nocpu", "-c", "limits.cpu=0-4095")
    try:
        res = daemon.mc("start", "l-nocpu")
        assert res.code == 1 and "limits.cpu: CPU" in res.err and "is not available" in res.err
        assert "Errno" not in res.err
        assert daemon.ok("list", "l-nocpu", "--format", "csv", "-c", "s").strip() == "STOPPED"
    finally:
        daemon.mc("delete", "--force", "l-nocpu")


def test_live_set_then_unset(daemon, box):
    ncpu = len(os.sched_getaffinity(0))
    daemon.ok("config", "set", box, "limits.memory=128MiB", "limits.processes=50",
              "limits.cpu.allowance=50%", "limits.cpu.priority=5", "limits.memory.swap=false")

    def mem(fname: str) -> int:
        return int(cgroup_file(daemon, box, "memory", fname))

    assert mem("memory.limit_in_bytes") == 128 << 20
    assert mem("memory.memsw.limit_in_bytes") == 128 << 20  # no swap on top
    assert cgroup_file(daemon, box, "pids", "pids.max") == "50"
    assert cgroup_file(daemon, box, "cpu", "cpu.cfs_period_us") == "100000"
    assert cgroup_file(daemon, box, "cpu", "cpu.cfs_quota_us") == str(50_000 * ncpu)
    assert cgroup_file(daemon, box, "cpu", "cpu.shares") == "512"
    daemon.ok("config", "set", box, "limits.cpu.allowance", "25ms/100ms")
    assert cgroup_file(daemon, box, "cpu", "cpu.cfs_quota_us") == "25000"
    daemon.ok("config", "set", box, "limits.memory.enforce=soft")
    assert mem("memory.limit_in_bytes") > V1_UNLIMITED
    assert mem("memory.soft_limit_in_bytes") == 128 << 20
    for key in ("limits.memory", "limits.memory.enforce", "limits.memory.swap",
                "limits.processes", "limits.cpu.allowance", "limits.cpu.priority"):
        daemon.ok("config", "unset", box, key)
    assert mem("memory.limit_in_bytes") > V1_UNLIMITED
    assert mem("memory.soft_limit_in_bytes") > V1_UNLIMITED
    assert mem("memory.memsw.limit_in_bytes") > V1_UNLIMITED
    assert cgroup_file(daemon, box, "pids", "pids.max") == "max"
    assert cgroup_file(daemon, box, "cpu", "cpu.cfs_quota_us") == "-1"
    assert cgroup_file(daemon, box, "cpu", "cpu.shares") == "1024"


def test_disk_priority_uses_the_weight_file_this_kernel_has(daemon, box):
    pid = init_pid(daemon, box)
    with open(f"/proc/{pid}/cgroup") as f:
        blkio = next((line.split(":", 2) for line in f.read().splitlines()
                      if "blkio" in line.split(":")[1].split(",")), None)
    if blkio is None:
        pytest.skip("no v1 blkio controller on this host")
    files = os.listdir(f"/sys/fs/cgroup/{blkio[1]}{blkio[2]}")
    weight = next((f for f in ("blkio.weight", "blkio.bfq.weight") if f in files), None)
    daemon.ok("config", "set", box, "limits.disk.priority", "10")
    if weight is None:
        pytest.skip("no blkio weight file (I/O scheduler without weights): skipped by design")
    default = 500 if weight == "blkio.weight" else 100
    assert cgroup_file(daemon, box, "blkio", weight).split()[-1] == str(default * 2)
    daemon.ok("config", "unset", box, "limits.disk.priority")
    assert cgroup_file(daemon, box, "blkio", weight).split()[-1] == str(default)


def test_a_refused_live_change_changes_nothing(daemon, box):
    daemon.ok("config", "set", box, "limits.memory", "256MiB")
    # Below what the container already uses: the kernel refuses (EBUSY on v1).
    res = daemon.mc("config", "set", box, "limits.memory=4096", "limits.processes=30")
    assert res.code == 1 and len(res.err.splitlines()) == 1
    assert res.err.startswith("Error: Running instance 'l-live' cannot take the new limits "
                              "(nothing changed): Failed writing '4096' to ")
    assert config_of(daemon, box).get("limits.memory") == "256MiB"
    assert "limits.processes" not in config_of(daemon, box)
    assert int(cgroup_file(daemon, box, "memory", "memory.limit_in_bytes")) == 256 << 20
    assert cgroup_file(daemon, box, "pids", "pids.max") == "max"
    daemon.ok("config", "unset", box, "limits.memory")


def test_limits_set_while_stopped_apply_at_start(daemon, busybox_image):
    daemon.ok("init", busybox_image, "l-cold")
    try:
        daemon.ok("config", "set", "l-cold", "limits.cpu=1", "limits.processes=33",
                  "limits.cpu.allowance=10ms/100ms", "environment.GREETING=hello there")
        daemon.ok("start", "l-cold")
        assert cgroup_file(daemon, "l-cold", "pids", "pids.max") == "33"
        assert cgroup_file(daemon, "l-cold", "cpu", "cpu.cfs_quota_us") == "10000"
        assert daemon.ok("exec", "l-cold", "--", "nproc") == "1\n"
        assert daemon.ok("exec", "l-cold", "--", "sh", "-c", "echo $GREETING") == "hello there\n"
    finally:
        daemon.mc("delete", "--force", "l-cold")


def test_security_keys_take_effect_at_the_next_start(daemon, busybox_image):
    daemon.ok("launch", busybox_image, "l-sec")
    try:
        def host_uid() -> int:
            with open(f"/proc/{init_pid(daemon, 'l-sec')}/status") as f:
                return int(next(x for x in f if x.startswith("Uid:")).split()[1])

        assert host_uid() != 0
        daemon.ok("config", "set", "l-sec", "security.privileged", "true")
        assert host_uid() != 0  # not live
        daemon.ok("restart", "l-sec", "--force")
        assert host_uid() == 0
    finally:
        daemon.mc("delete", "--force", "l-sec")


# Exact refusals through mc, and nothing stored.
REFUSED = [
    (["limits.memory", "lots"],
     "Error: Invalid value 'lots' for instance key 'limits.memory': expected a non-zero size "
     "like 512MiB or 2GiB, or a percentage of host memory from 0% (excluded) to 100%"),
    (["limits.processes=200", "limits.cpu.priority=11"],
     "Error: Invalid value '11' for instance key 'limits.cpu.priority': expected an integer "
     "from 0 to 10"),
    (["limits.memroy=1GiB"],
     "Error: Unknown instance configuration key 'limits.memroy' (did you mean "
     "'limits.memory'?): accepted are the keys listed in docs/config.md and environment.*, "
     "image.*, user.*"),
    (["volatile.uuid", "x"],
     "Error: Key 'volatile.uuid' is read-only: volatile.* keys are set by machined"),
    (["environment.MOTD", "two\nlines"],
     "Error: Invalid value 'two\\nlines' for instance key 'environment.MOTD': expected a "
     "single line (no newline or NUL characters)"),
    (["snapshots.expiry", "1 week"],
     "Error: Invalid value '1 week' for instance key 'snapshots.expiry': expected an expiry "
     "like '1d 12H': numbers with a unit S (second), M (minute), H (hour), d, w, m (month) or "
     "y, separated by spaces"),
    (["snapshots.schedule", "0 25 * * *"],
     "Error: Invalid value '0 25 * * *' for instance key 'snapshots.schedule': expected a "
     "cron expression 'minute hour day-of-month month day-of-week' (e.g. '0 6 * * *') or one "
     "of @hourly, @daily, @midnight, @weekly, @monthly, @annually, @yearly, @startup, @never; "
     "several separated by ', ' (a field value '25' is out of range 0-23)"),
]


@pytest.mark.parametrize("args,message", REFUSED, ids=[a[0] for a, _ in REFUSED])
def test_refusals_through_mc_store_nothing(daemon, box, args, message):
    before = config_of(daemon, box)
    res = daemon.mc("config", "set", box, *args)
    assert (res.code, res.err, res.out) == (1, message + "\n", "")
    assert config_of(daemon, box) == before


def test_keys_with_equals_signs_are_refused(daemon, box):
    """`set k=v` splits at the first '=', so such a key can only come in through YAML or the
    API; it would break the NAME=value environment block."""
    before = config_of(daemon, box)
    res = daemon.mc("config", "edit", box, input="config:\n  environment.A=B: x\n")
    assert (res.code, res.err) == (1, "Error: Invalid environment variable name 'A=B' in key "
                                      "'environment.A=B': names may not contain '=', newlines "
                                      "or NUL\n")
    assert config_of(daemon, box) == before
    daemon.ok("config", "set", box, "environment.A=B=C")  # the value may hold '='
    assert daemon.ok("exec", box, "--", "sh", "-c", "echo $A") == "B=C\n"
    daemon.ok("config", "unset", box, "environment.A")


def test_get_set_unset_show_edit(daemon, box):
    daemon.ok("config", "set", box, "user.owner", "alice")
    daemon.ok("config", "set", box, "user.team=blue", "environment.APP_ENV=prod")
    assert daemon.ok("config", "get", box, "user.owner") == "alice\n"
    assert daemon.ok("config", "get", box, "user.nothing") == "\n"
    assert daemon.ok("exec", box, "--", "sh", "-c", "echo $APP_ENV") == "prod\n"
    res = daemon.mc("config", "unset", box, "user.nothing")
    assert (res.code, res.err) == (1, "Error: Can't unset key 'user.nothing', it's not "
                                      "currently set\n")
    daemon.ok("config", "unset", box, "user.owner", "user.team")
    shown = yaml.safe_load(daemon.ok("config", "show", box))
    assert list(shown) == ["architecture", "config", "devices", "ephemeral", "profiles",
                           "stateful", "description"]
    assert "user.owner" not in shown["config"] and shown["config"]["environment.APP_ENV"] == "prod"
    expanded = yaml.safe_load(daemon.ok("config", "show", box, "--expanded"))
    assert expanded["devices"]["root"]["path"] == "/"
    # edit: YAML on stdin (not a terminal); volatile keys shown may be sent back unchanged
    shown["config"]["limits.processes"] = "77"
    daemon.ok("config", "edit", box, input=yaml.safe_dump(shown))
    assert cgroup_file(daemon, box, "pids", "pids.max") == "77"  # applied live
    shown["config"]["volatile.uuid"] = "changed"
    res = daemon.mc("config", "edit", box, input=yaml.safe_dump(shown))
    assert res.code == 1 and "read-only" in res.err
    daemon.ok("config", "unset", box, "limits.processes")
    daemon.ok("config", "unset", box, "environment.APP_ENV")


def test_server_config(daemon):
    daemon.ok("config", "set", "images.auto_update_interval", "24")
    daemon.ok("config", "set", "images.remote_cache_expiry=5", "core.https_address=[::]:8443")
    assert daemon.ok("config", "get", "images.auto_update_interval") == "24\n"
    assert yaml.safe_load(daemon.ok("config", "show"))["config"] == {
        "images.auto_update_interval": "24", "images.remote_cache_expiry": "5",
        "core.https_address": "[::]:8443"}
    res = daemon.mc("config", "set", "images.auto_update_interval=12",
                    "images.compression_algorithm=rar")
    assert (res.code, res.err) == (1, "Error: Invalid value 'rar' for server key "
                                      "'images.compression_algorithm': expected one of: bzip2, "
                                      "gzip, lz4, lzma, xz, zstd, none\n")
    res = daemon.mc("config", "set", "core.https_address", "[::1")
    assert res.code == 1 and "expected a listen address like :8443" in res.err
    res = daemon.mc("config", "set", "core.nope", "1")
    assert res.code == 1 and res.err.startswith("Error: Unknown server configuration key "
                                                "'core.nope': accepted are ")
    assert daemon.ok("config", "get", "images.auto_update_interval") == "24\n"  # unchanged
    daemon.ok("config", "edit", input="config:\n  images.auto_update_interval: 48\n")
    assert yaml.safe_load(daemon.ok("config", "show"))["config"] == {
        "images.auto_update_interval": "48"}
    daemon.ok("config", "unset", "images.auto_update_interval")
    assert yaml.safe_load(daemon.ok("config", "show"))["config"] == {}


def test_server_config_show_is_sorted_and_an_empty_edit_changes_nothing(daemon):
    """`config show` listed server keys in the order they were set; `config edit < /dev/null`
    cleared every server key."""
    daemon.ok("config", "set", "images.remote_cache_expiry=5", "core.shutdown_timeout=3")
    try:
        assert daemon.ok("config", "show") == ("config:\n  core.shutdown_timeout: '3'\n"
                                               "  images.remote_cache_expiry: '5'\n")
        daemon.ok("config", "edit", input="")
        assert daemon.ok("config", "get", "core.shutdown_timeout") == "3\n"
        res = daemon.mc("config", "edit", input="config: {a: [\n")
        assert res.code == 1 and res.err.startswith("Error: Invalid YAML at line 2, column 1: ")
        assert res.err.count("\n") == 1
    finally:
        daemon.ok("config", "unset", "images.remote_cache_expiry", "core.shutdown_timeout")


def test_info_shows_usage_and_limits(daemon, mem):
    out = daemon.ok("info", mem)
    lines = out.splitlines()
    procs = next(line for line in lines if line.startswith("  Processes: "))
    assert int(procs.split()[-1]) >= 1
    assert any(line.startswith("    CPU usage (in seconds): ") for line in lines)
    current = next(line for line in lines if line.startswith("    Memory (current): "))
    assert current.endswith(("KiB", "MiB"))
    assert "    Memory (peak): " in out and "    Memory (limit): 64.00MiB" in out
    assert out.endswith("Limits:\n  limits.memory: 64MiB\n")
    server = yaml.safe_load(daemon.ok("info"))
    assert server["environment"]["server"] == "machined"


def test_profile_limits_apply_live(daemon, box):
    daemon.ok("profile", "create", "l-prof")
    try:
        daemon.ok("profile", "set", "l-prof", "limits.processes", "30")
        daemon.ok("profile", "add", box, "l-prof")
        assert cgroup_file(daemon, box, "pids", "pids.max") == "30"
        daemon.ok("profile", "set", "l-prof", "limits.processes", "40")
        assert cgroup_file(daemon, box, "pids", "pids.max") == "40"
        assert daemon.ok("config", "get", box, "limits.processes", "--expanded") == "40\n"
        daemon.ok("profile", "remove", box, "l-prof")
        assert cgroup_file(daemon, box, "pids", "pids.max") == "max"
    finally:
        daemon.mc("profile", "remove", box, "l-prof")
        daemon.mc("profile", "delete", "l-prof")
