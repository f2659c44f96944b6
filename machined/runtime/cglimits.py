"""Resource limits -> cgroup file writes, for cgroup v1 and v2 (pure, stdlib only).

helper.py loads the runtime by path, so this imports nothing from the package. The daemon turns
limits.* keys into the runtime's limits (instances/model.py runtime_limits), all strings:

  memory          bytes                   memory_enforce  "soft" (absent: hard)
  memory_swap     "false" or bytes        (absent: swap as the kernel allows)
  cpu_count       N (the first N CPUs)    cpuset          "0-1,3"
  cpu_allowance   "50%" (of the CPUs allowed) or "25000/100000" (quota/period, microseconds)
  cpu_priority    0-10 (10 = default)     disk_priority   0-10 (5 = default)
  processes       N

plan_limits() turns them into (controller, file, value) writes for one cgroup version. With
reset=True (a live update) keys that are absent are written back to unlimited/default, so the
plan describes the whole state; at creation reset=False writes only what is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Write = tuple[str, str, str]  # (controller, file, value)

CFS_PERIOD_US = 100_000
V1_SHARES_DEFAULT = 1024
V2_CPU_WEIGHT_DEFAULT = 100
# Weight files by preference, with (kernel default, min, max). blkio.weight/io.weight belong to
# CFQ/iocost; bfq has its own files (the only weights honoured with the bfq scheduler).
DISK_WEIGHT_FILES = {
    False: (("blkio.weight", 500, 10, 1000), ("blkio.bfq.weight", 100, 1, 1000)),
    True: (("io.weight", 100, 1, 10000), ("io.bfq.weight", 100, 1, 1000)),
}
# Which controller each limit needs: (v1, v2).
CONTROLLERS = {
    "memory": ("memory", "memory"), "memory_enforce": ("memory", "memory"),
    "memory_swap": ("memory", "memory"), "cpu_count": ("cpuset", "cpuset"),
    "cpuset": ("cpuset", "cpuset"), "cpu_allowance": ("cpu", "cpu"),
    "cpu_priority": ("cpu", "cpu"), "processes": ("pids", "pids"),
    "disk_priority": ("blkio", "io"),
}
CONFIG_KEYS = {
    "memory": "limits.memory", "memory_enforce": "limits.memory.enforce",
    "memory_swap": "limits.memory.swap", "cpu_count": "limits.cpu", "cpuset": "limits.cpu",
    "cpu_allowance": "limits.cpu.allowance", "cpu_priority": "limits.cpu.priority",
    "processes": "limits.processes", "disk_priority": "limits.disk.priority",
}
# Limits that are only preferences: missing kernel support is a warning, not an error.
SOFT_LIMITS = ("disk_priority",)
V1_UNLIMITED = "-1"


class LimitError(ValueError):
    """A limit that cannot be applied on this host (e.g. a CPU that does not exist)."""


@dataclass
class LimitPlan:
    writes: list[Write] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (controller, why not)


def parse_cpus(text: str) -> list[int]:
    """Kernel CPU list '0-2,7\\n' -> [0, 1, 2, 7]."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return sorted(cpus)


def format_cpus(cpus: list[int]) -> str:
    """[0, 1, 2, 7] -> '0-2,7'."""
    spans: list[list[int]] = []
    for cpu in sorted(set(cpus)):
        if spans and spans[-1][1] == cpu - 1:
            spans[-1][1] = cpu
        else:
            spans.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def plan_limits(limits: dict[str, str], v2: bool, cpus: list[int] | None = None,
                files: set[str] | None = None, reset: bool = False) -> LimitPlan:
    """The writes that put a container's cgroups in the state `limits` describes.

    cpus: the CPUs the container's parent cgroup may use (to pick N of them for a count, to
    reset a v1 cpuset, and to size a percentage allowance). files: names of the files present
    in the container's cgroup directories (None: assume the usual ones exist)."""
    plan = LimitPlan()
    _memory(plan, limits, v2, files, reset)
    allowed = _cpuset(plan, limits, v2, cpus or [], reset)
    _cpu(plan, limits, v2, allowed, reset)
    if limits.get("processes") or reset:
        plan.writes.append(("pids", "pids.max", limits.get("processes") or "max"))
    _disk(plan, limits, v2, files, reset)
    return plan


def _memory(plan: LimitPlan, limits: dict[str, str], v2: bool, files: set[str] | None,
            reset: bool) -> None:
    memory = limits.get("memory", "")
    soft = limits.get("memory_enforce") == "soft"
    hard_v, soft_v = ("", memory) if soft else (memory, "")
    swap = limits.get("memory_swap", "")
    w = plan.writes
    if v2:
        if hard_v or reset:
            w.append(("memory", "memory.max", hard_v or "max"))
        if soft_v or reset:
            w.append(("memory", "memory.high", soft_v or "max"))
        if swap or reset:
            if files is None or "memory.swap.max" in files:
                w.append(("memory", "memory.swap.max", "0" if swap == "false" else swap or "max"))
            elif swap:
                plan.skipped.append(("memory", "limits.memory.swap: the kernel has no swap "
                                     "accounting (memory.swap.max is missing)"))
        return
    # v1: memory.limit_in_bytes may never exceed memory.memsw.limit_in_bytes, so lift memsw
    # first, then set the limit, then memsw (memory + allowed swap).
    memsw = V1_UNLIMITED
    if swap and hard_v:
        memsw = str(int(hard_v) + (0 if swap == "false" else int(swap)))
    elif swap:
        plan.skipped.append(("memory", "limits.memory.swap: cgroup v1 enforces it only "
                             "together with a hard limits.memory"))
    has_memsw = files is None or "memory.memsw.limit_in_bytes" in files
    if memsw != V1_UNLIMITED and not has_memsw:
        plan.skipped.append(("memory", "limits.memory.swap: the kernel has no swap "
                             "accounting (memory.memsw.limit_in_bytes is missing; boot with "
                             "swapaccount=1)"))
    use_memsw = has_memsw and (reset or memsw != V1_UNLIMITED)
    if use_memsw:
        w.append(("memory", "memory.memsw.limit_in_bytes", V1_UNLIMITED))
    if hard_v or reset:
        w.append(("memory", "memory.limit_in_bytes", hard_v or V1_UNLIMITED))
    if use_memsw and memsw != V1_UNLIMITED:
        w.append(("memory", "memory.memsw.limit_in_bytes", memsw))
    if soft_v or reset:
        w.append(("memory", "memory.soft_limit_in_bytes", soft_v or V1_UNLIMITED))


def _cpuset(plan: LimitPlan, limits: dict[str, str], v2: bool, cpus: list[int],
            reset: bool) -> int:
    """Pin with cpuset.cpus; returns how many CPUs the container may use."""
    available = cpus or []
    if limits.get("cpu_count"):
        count = int(limits["cpu_count"])
        chosen = available[:count] if available else list(range(count))
        plan.writes.append(("cpuset", "cpuset.cpus", format_cpus(chosen)))
        return len(chosen)
    if limits.get("cpuset"):
        chosen = parse_cpus(limits["cpuset"])
        missing = [c for c in chosen if available and c not in available]
        if missing:
            raise LimitError(f"limits.cpu: CPU {format_cpus(missing)} is not available "
                             f"(available: {format_cpus(available)})")
        plan.writes.append(("cpuset", "cpuset.cpus", limits["cpuset"]))
        return len(chosen)
    if reset:
        # v2: an empty cpuset.cpus means "the parent's"; v1 needs the list written out.
        if v2:
            plan.writes.append(("cpuset", "cpuset.cpus", ""))
        elif available:
            plan.writes.append(("cpuset", "cpuset.cpus", format_cpus(available)))
    return len(available) or 1


def _cpu(plan: LimitPlan, limits: dict[str, str], v2: bool, allowed: int, reset: bool) -> None:
    allowance = limits.get("cpu_allowance", "")
    quota, period = 0, CFS_PERIOD_US
    if allowance.endswith("%"):
        # A share of the CPUs the container may use, per 100ms period.
        quota = max(1000, int(allowance[:-1]) * allowed * CFS_PERIOD_US // 100)
    elif allowance:
        q, _, p = allowance.partition("/")
        quota, period = int(q), int(p)
    if allowance or reset:
        if v2:
            plan.writes.append(("cpu", "cpu.max", f"{quota or 'max'} {period}"))
        else:
            plan.writes += [("cpu", "cpu.cfs_period_us", str(period)),
                            ("cpu", "cpu.cfs_quota_us", str(quota or V1_UNLIMITED))]
    priority = limits.get("cpu_priority", "")
    if priority or reset:
        p = int(priority) if priority else 10
        if v2:
            plan.writes.append(("cpu", "cpu.weight", str(max(1, V2_CPU_WEIGHT_DEFAULT * p // 10))))
        else:
            plan.writes.append(("cpu", "cpu.shares", str(max(2, V1_SHARES_DEFAULT * p // 10))))


def _disk(plan: LimitPlan, limits: dict[str, str], v2: bool, files: set[str] | None,
          reset: bool) -> None:
    priority = limits.get("disk_priority", "")
    if not priority and not reset:
        return
    p = int(priority) if priority else 5
    ctrl = "io" if v2 else "blkio"
    for name, default, low, high in DISK_WEIGHT_FILES[v2]:
        if files is None or name in files:
            weight = min(high, max(low, default * p // 5))
            plan.writes.append((ctrl, name, str(weight)))
            return
    if priority:
        names = " or ".join(n for n, *_ in DISK_WEIGHT_FILES[v2])
        plan.skipped.append((ctrl, f"limits.disk.priority: no I/O weight file ({names}); the "
                                   "block I/O scheduler has no weights (use bfq)"))


def missing_controllers(limits: dict[str, str], v1_ctrls: set[str], v2_ctrls: set[str]
                        ) -> tuple[list[str], list[str]]:
    """(required, optional) limits that no mounted controller can apply, as
    "limits.processes (pids)"."""
    required, optional = [], []
    for key, value in sorted(limits.items()):
        if not value or key not in CONTROLLERS:
            continue
        c1, c2 = CONTROLLERS[key]
        if c1 not in v1_ctrls and c2 not in v2_ctrls:
            ctrls = c1 if c1 == c2 else f"{c1} or {c2}"
            (optional if key in SOFT_LIMITS else required).append(
                f"{CONFIG_KEYS[key]} ({ctrls})")
    return required, optional
