"""limits.* keys -> runtime limits -> the cgroup writes planned for v1 and v2 (pure)."""

from __future__ import annotations

import pytest

from machined.instances.model import runtime_limits
from machined.runtime import cglimits
from machined.runtime.cglimits import LimitError, plan_limits

GIB = 2**30
V1_FILES = {"memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes",
            "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.shares", "cpuset.cpus", "pids.max",
            "blkio.bfq.weight"}
V2_FILES = {"memory.max", "memory.high", "memory.swap.max", "cpu.max", "cpu.weight",
            "cpuset.cpus", "pids.max", "io.weight"}


def test_runtime_limits_from_keys():
    config = {"limits.memory": "512MiB", "limits.memory.enforce": "soft",
              "limits.memory.swap": "false", "limits.cpu": "2",
              "limits.cpu.allowance": "25ms/100ms", "limits.cpu.priority": "5",
              "limits.processes": "200", "limits.disk.priority": "07", "user.x": "y"}
    assert runtime_limits(config, GIB) == {
        "memory": str(512 * 2**20), "memory_enforce": "soft", "memory_swap": "false",
        "cpu_count": "2", "cpu_allowance": "25000/100000", "cpu_priority": "5",
        "processes": "200", "disk_priority": "7"}
    assert runtime_limits({"limits.memory": "50%"}, GIB) == {"memory": str(GIB // 2)}
    assert runtime_limits({"limits.cpu": "0,1", "limits.cpu.allowance": "50%",
                           "limits.memory.swap": "1GiB"}, GIB) == {
        "cpuset": "0,1", "cpu_allowance": "50%", "memory_swap": str(GIB)}
    # swap allowed (the default) and an enforce without a limit change nothing
    assert runtime_limits({"limits.memory.swap": "true", "limits.memory.enforce": "soft"},
                          GIB) == {}
    assert runtime_limits({}, GIB) == {}


def test_create_plan_writes_only_what_is_set():
    assert plan_limits({}, False, [0, 1]).writes == []
    assert plan_limits({}, True, [0, 1]).writes == []
    assert plan_limits({"memory": "1000", "processes": "50"}, False, [0, 1]).writes == [
        ("memory", "memory.limit_in_bytes", "1000"), ("pids", "pids.max", "50")]
    assert plan_limits({"memory": "1000", "processes": "50"}, True, [0, 1]).writes == [
        ("memory", "memory.max", "1000"), ("pids", "pids.max", "50")]


def test_memory_v1_hard_soft_and_swap():
    # memsw is lifted first, so memory.limit_in_bytes never exceeds it, then set after.
    plan = plan_limits({"memory": "1000", "memory_swap": "false"}, False, files=V1_FILES)
    assert plan.writes == [("memory", "memory.memsw.limit_in_bytes", "-1"),
                           ("memory", "memory.limit_in_bytes", "1000"),
                           ("memory", "memory.memsw.limit_in_bytes", "1000")]
    plan = plan_limits({"memory": "1000", "memory_swap": "500"}, False, files=V1_FILES)
    assert plan.writes[-1] == ("memory", "memory.memsw.limit_in_bytes", "1500")
    plan = plan_limits({"memory": "1000", "memory_enforce": "soft"}, False, files=V1_FILES)
    assert plan.writes == [("memory", "memory.soft_limit_in_bytes", "1000")]
    # v1 cannot bound swap without a hard limit, nor without swap accounting
    plan = plan_limits({"memory": "1000", "memory_enforce": "soft", "memory_swap": "false"},
                       False, files=V1_FILES)
    assert plan.skipped == [("memory", "limits.memory.swap: cgroup v1 enforces it only "
                                       "together with a hard limits.memory")]
    plan = plan_limits({"memory": "1000", "memory_swap": "false"}, False,
                       files=V1_FILES - {"memory.memsw.limit_in_bytes"})
    assert plan.writes == [("memory", "memory.limit_in_bytes", "1000")]
    assert "swapaccount=1" in plan.skipped[0][1]


def test_memory_v2():
    plan = plan_limits({"memory": "1000", "memory_swap": "false"}, True, files=V2_FILES)
    assert plan.writes == [("memory", "memory.max", "1000"), ("memory", "memory.swap.max", "0")]
    plan = plan_limits({"memory": "1000", "memory_enforce": "soft", "memory_swap": "4096"},
                       True, files=V2_FILES)
    assert plan.writes == [("memory", "memory.high", "1000"),
                           ("memory", "memory.swap.max", "4096")]
    plan = plan_limits({"memory_swap": "false"}, True, files=V2_FILES - {"memory.swap.max"})
    assert plan.writes == [] and "no swap accounting" in plan.skipped[0][1]


def test_cpu_count_pins_the_first_cpus_and_sizes_percentages():
    plan = plan_limits({"cpu_count": "2", "cpu_allowance": "50%"}, False, [0, 1, 2, 3])
    assert plan.writes == [("cpuset", "cpuset.cpus", "0-1"),
                           ("cpu", "cpu.cfs_period_us", "100000"),
                           ("cpu", "cpu.cfs_quota_us", "100000")]  # 50% of 2 CPUs
    plan = plan_limits({"cpu_count": "8"}, True, [0, 2, 3])  # more than there are: all
    assert plan.writes == [("cpuset", "cpuset.cpus", "0,2-3")]
    plan = plan_limits({"cpu_allowance": "25%"}, True, [0, 1, 2, 3])  # no limits.cpu: all
    assert plan.writes == [("cpu", "cpu.max", "100000 100000")]
    plan = plan_limits({"cpuset": "1,3", "cpu_allowance": "10%"}, True, [0, 1, 2, 3])
    assert plan.writes == [("cpuset", "cpuset.cpus", "1,3"), ("cpu", "cpu.max", "20000 100000")]
    plan = plan_limits({"cpu_allowance": "1%"}, False, [0])  # never below the kernel's 1ms
    assert plan.writes[-1] == ("cpu", "cpu.cfs_quota_us", "1000")


def test_cpu_time_allowance_and_priority():
    assert plan_limits({"cpu_allowance": "25000/50000"}, False, [0, 1]).writes == [
        ("cpu", "cpu.cfs_period_us", "50000"), ("cpu", "cpu.cfs_quota_us", "25000")]
    assert plan_limits({"cpu_allowance": "25000/50000"}, True, [0, 1]).writes == [
        ("cpu", "cpu.max", "25000 50000")]
    for prio, shares, weight in (("10", "1024", "100"), ("5", "512", "50"), ("0", "2", "1")):
        assert plan_limits({"cpu_priority": prio}, False).writes == [
            ("cpu", "cpu.shares", shares)]
        assert plan_limits({"cpu_priority": prio}, True).writes == [
            ("cpu", "cpu.weight", weight)]


def test_a_cpu_set_outside_the_available_cpus_is_refused():
    with pytest.raises(LimitError, match=r"limits.cpu: CPU 4-5 is not available "
                                         r"\(available: 0-3\)"):
        plan_limits({"cpuset": "2-5"}, False, [0, 1, 2, 3])


def test_disk_priority_picks_the_weight_file_that_exists():
    assert plan_limits({"disk_priority": "5"}, False, files=V1_FILES).writes == [
        ("blkio", "blkio.bfq.weight", "100")]
    assert plan_limits({"disk_priority": "10"}, False, files=V1_FILES | {"blkio.weight"}
                       ).writes == [("blkio", "blkio.weight", "1000")]
    assert plan_limits({"disk_priority": "0"}, False, files={"blkio.weight"}).writes == [
        ("blkio", "blkio.weight", "10")]  # clamped to the file's minimum
    assert plan_limits({"disk_priority": "10"}, True, files=V2_FILES).writes == [
        ("io", "io.weight", "200")]
    assert plan_limits({"disk_priority": "1"}, True, files={"io.bfq.weight"}).writes == [
        ("io", "io.bfq.weight", "20")]
    plan = plan_limits({"disk_priority": "3"}, False, files={"pids.max"})
    assert plan.writes == [] and "use bfq" in plan.skipped[0][1]
    assert plan_limits({}, False, files={"pids.max"}, reset=True).skipped == []


def test_reset_plans_put_everything_back_v1():
    plan = plan_limits({}, False, [0, 1], V1_FILES, reset=True)
    assert plan.writes == [
        ("memory", "memory.memsw.limit_in_bytes", "-1"),
        ("memory", "memory.limit_in_bytes", "-1"),
        ("memory", "memory.soft_limit_in_bytes", "-1"),
        ("cpuset", "cpuset.cpus", "0-1"),
        ("cpu", "cpu.cfs_period_us", "100000"), ("cpu", "cpu.cfs_quota_us", "-1"),
        ("cpu", "cpu.shares", "1024"),
        ("pids", "pids.max", "max"),
        ("blkio", "blkio.bfq.weight", "100"),
    ]
    assert plan.skipped == []


def test_reset_plans_put_everything_back_v2():
    plan = plan_limits({"processes": "20"}, True, [0, 1], V2_FILES, reset=True)
    assert plan.writes == [
        ("memory", "memory.max", "max"), ("memory", "memory.high", "max"),
        ("memory", "memory.swap.max", "max"),
        ("cpuset", "cpuset.cpus", ""),  # empty: the parent's CPUs
        ("cpu", "cpu.max", "max 100000"), ("cpu", "cpu.weight", "100"),
        ("pids", "pids.max", "20"),
        ("io", "io.weight", "100"),
    ]


def test_cpu_lists():
    assert cglimits.parse_cpus("0-2,7\n") == [0, 1, 2, 7]
    assert cglimits.parse_cpus("\n") == []
    assert cglimits.format_cpus([7, 0, 1, 2, 4]) == "0-2,4,7"
    assert cglimits.format_cpus([3]) == "3"


def test_missing_controllers():
    limits = {"memory": "1", "disk_priority": "3", "processes": "4"}
    assert cglimits.missing_controllers(limits, {"memory", "pids"}, set()) == (
        [], ["limits.disk.priority (blkio or io)"])
    assert cglimits.missing_controllers(limits, set(), {"memory", "io"}) == (
        ["limits.processes (pids)"], [])


# The executor on a fake cgroup2 tree (plain files in tmp_path): the v2 path cannot run on
# this hybrid VM, so its file handling is checked here.

V2_CONTROLLERS = "cpuset cpu io memory pids"


def _v2_tree(tmp_path, name: str = "c1") -> dict[str, dict[str, str]]:
    root = tmp_path / "cg"
    parent = root / "machined"
    d = parent / name
    d.mkdir(parents=True)
    for node in (root, parent):
        (node / "cgroup.controllers").write_text(V2_CONTROLLERS + "\n")
        (node / "cgroup.subtree_control").write_text("")
    (parent / "cpuset.cpus.effective").write_text("0-3\n")
    (d / "cgroup.controllers").write_text(V2_CONTROLLERS + "\n")
    for fname in ("memory.max", "memory.high", "memory.swap.max", "pids.max"):
        (d / fname).write_text("max\n")
    (d / "cpu.max").write_text("max 100000\n")
    (d / "cpu.weight").write_text("100\n")
    (d / "cpuset.cpus").write_text("\n")
    (d / "io.weight").write_text("default 100\n")
    return {"unified": {"mount": str(root), "path": f"/machined/{name}"}}


def test_apply_limits_on_a_v2_tree(tmp_path):
    from machined.runtime import cgroups

    paths = _v2_tree(tmp_path)
    d = tmp_path / "cg/machined/c1"
    limits = {"memory": "1000", "memory_swap": "false", "cpu_count": "2",
              "cpu_allowance": "50%", "cpu_priority": "5", "processes": "9",
              "disk_priority": "10"}
    assert cgroups.apply_limits(paths, limits, reset=True) == []
    got = {f: (d / f).read_text() for f in ("memory.max", "memory.high", "memory.swap.max",
                                            "cpuset.cpus", "cpu.max", "cpu.weight", "pids.max",
                                            "io.weight")}
    assert got == {"memory.max": "1000", "memory.high": "max", "memory.swap.max": "0",
                   "cpuset.cpus": "0-1", "cpu.max": "100000 100000", "cpu.weight": "50",
                   "pids.max": "9", "io.weight": "200"}
    cgroups.apply_limits(paths, {}, reset=True)  # unset everything
    assert (d / "memory.max").read_text() == "max" and (d / "pids.max").read_text() == "max"
    assert (d / "cpuset.cpus").read_text() == "\n"  # empty: the parent's CPUs
    assert (d / "cpu.max").read_text() == "max 100000"


def test_apply_limits_is_all_or_nothing(tmp_path, monkeypatch):
    import errno

    from machined.runtime import cgroups

    paths = _v2_tree(tmp_path)
    d = tmp_path / "cg/machined/c1"
    real_write = cgroups._write

    def m_write(path: str, value: str) -> None:
        if path.endswith("pids.max"):  # the kernel refusing a value, as with EBUSY
            raise OSError(errno.EBUSY, f"Failed writing {value!r} to {path}: busy")
        real_write(path, value)

    monkeypatch.setattr(cgroups, "_write", m_write)
    with pytest.raises(OSError, match="Failed writing '9' to .*pids.max"):
        cgroups.apply_limits(paths, {"memory": "1000", "processes": "9"}, reset=True)
    assert (d / "memory.max").read_text() == "max"  # put back
    assert (d / "cpu.max").read_text() == "max 100000"


def test_apply_limits_refuses_what_no_controller_can_do(tmp_path):
    import errno

    from machined.runtime import cgroups

    paths = _v2_tree(tmp_path)
    (tmp_path / "cg/machined/c1/cgroup.controllers").write_text("memory\n")
    with pytest.raises(OSError) as e:
        cgroups.apply_limits(paths, {"processes": "5", "disk_priority": "3"})
    assert e.value.errno == errno.ENOTSUP
    assert str(e.value.strerror) == "No cgroup controller for limits: limits.processes (pids)"
    assert cgroups.apply_limits(paths, {"memory": "5", "disk_priority": "3"}) == [
        "limits.disk.priority (blkio or io): no cgroup controller for it"]


def test_v2_controllers_are_enabled_down_to_machined(tmp_path):
    from machined.runtime import cgroups

    _v2_tree(tmp_path)
    root = tmp_path / "cg"
    cgroups._enable_controllers(str(root), "/machined")
    # each '+ctrl' is its own write; the fake file keeps the last one
    assert (root / "cgroup.subtree_control").read_text() == "+pids"
    assert (root / "machined/cgroup.subtree_control").read_text() == "+pids"
