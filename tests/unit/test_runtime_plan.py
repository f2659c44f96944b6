"""Pure parts of the runtime: id maps, mount plan, cgroup layout and limits."""

from __future__ import annotations

import signal

from machined.runtime import cgroups
from machined.runtime.spec import (
    LaunchSpec,
    build_spec,
    parse_subid,
    pick_idmap,
    plan_mounts,
    stop_signal_for,
)

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
"""
HYBRID_CGROUP = "9:name=systemd:/user.slice\n4:memory:/sandbox/x\n2:cpu,cpuacct:/\n0::/\n"


def test_parse_subid_and_pick() -> None:
    text = "root:100000:65536\nbob:200000:65536\n0:300000:10\n# junk\n"
    assert parse_subid(text) == [(100000, 65536), (300000, 10)]
    assert pick_idmap([(300000, 10), (100000, 65536)], []) == (
        [(0, 100000, 65536)], [(0, 1000000, 1000000000)])


def test_spec_json_roundtrip() -> None:
    spec = build_spec("c1", "/r", "/run/c1", "/log", idmap=([(0, 5, 10)], [(0, 6, 10)]),
                      limits={"memory": "1000"})
    back = LaunchSpec.from_json(spec.to_json())
    assert back == spec
    assert back.root_ids() == (5, 6)
    assert build_spec("c1", "/r", "/x", "/l", privileged=True).uid_map == []


def test_stop_signals() -> None:
    assert stop_signal_for("/lib/systemd/systemd") == signal.SIGRTMIN + 3
    assert stop_signal_for("/bin/busybox") == signal.SIGUSR1


def test_plan_mounts_shapes() -> None:
    hybrid = {(op.kind, op.target) for op in plan_mounts("hybrid", True)}
    assert ("mount", "/sys/fs/cgroup/unified") in hybrid
    assert ("mount", "/sys/fs/cgroup/systemd") in hybrid
    assert ("bind", "/dev/console") in hybrid
    v2 = [op for op in plan_mounts("v2", False) if op.target.startswith("/sys/fs/cgroup")]
    assert [(op.kind, op.fstype) for op in v2] == [("mount", "cgroup2")]
    # every mount target is created before it is mounted on
    made: set[str] = set()
    for op in plan_mounts("hybrid", True):
        if op.kind in ("dir", "file"):
            made.add(op.target)
        elif op.kind in ("bind",) or (op.kind == "mount" and op.target.startswith("/dev/")):
            assert op.target in made, op


def test_layout_hybrid_nests_under_own_cgroup() -> None:
    layout = cgroups.plan_layout(cgroups.parse_mountinfo(HYBRID_MOUNTINFO),
                                 cgroups.parse_proc_cgroup(HYBRID_CGROUP))
    assert layout.mode == "hybrid" and layout.named_systemd
    paths = cgroups.container_paths(layout, "c1")
    assert paths["memory"] == {"mount": "/sys/fs/cgroup/memory", "path": "/sandbox/x/machined/c1"}
    assert paths["cpu,cpuacct"]["path"] == "/machined/c1"
    assert paths["name=systemd"]["path"] == "/user.slice/machined/c1"
    assert paths["unified"]["mount"] == "/sys/fs/cgroup/unified"


def test_layout_pure_v2_uses_top_level_subtree() -> None:
    mi = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"
    layout = cgroups.plan_layout(cgroups.parse_mountinfo(mi),
                                 cgroups.parse_proc_cgroup("0::/system.slice/machined.service\n"))
    assert layout.mode == "v2" and not layout.named_systemd
    assert cgroups.container_paths(layout, "c1") == {
        "unified": {"mount": "/sys/fs/cgroup", "path": "/machined/c1"}}


# Limit planning (runtime/cglimits.py) is tested in test_config_limits.py.
