"""What happens to instances when the daemon starts and when the host shuts down (pure).

Autostart (LXD/Incus, see LXD-BEHAVIOUR.md §3.3): an instance starts with the daemon when
`boot.autostart` is true, or when it is unset or `last-state` and `volatile.last_state.power`
was RUNNING; never with `security.protection.start`. Those with neither
`boot.autostart.delay` nor `boot.autostart.priority` set start first, in parallel (Incus);
the others follow one at a time, priority descending then name, each followed by its delay.

Host shutdown: running instances stop in batches of equal `boot.stop.priority`, highest
first; the members of a batch stop together, each with `boot.host_shutdown_timeout` seconds
(default 30) to stop cleanly before it is killed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from machined.config.validate import parse_bool

DEFAULT_SHUTDOWN_TIMEOUT = 30
RUNNING = "RUNNING"


@dataclass(frozen=True)
class Step:
    name: str
    delay: int = 0  # seconds to wait after it started (sequential steps only)


@dataclass(frozen=True)
class AutostartPlan:
    parallel: list[str] = field(default_factory=list)  # started first, together
    sequence: list[Step] = field(default_factory=list)  # then one after another

    def names(self) -> list[str]:
        return [*self.parallel, *(s.name for s in self.sequence)]


@dataclass(frozen=True)
class Stop:
    name: str
    timeout: int  # seconds of clean shutdown before the kill (0: kill at once)


@dataclass(frozen=True)
class Batch:
    priority: int
    stops: list[Stop]


def _bool(value: str | None, default: bool) -> bool:
    try:
        return parse_bool(value) if value else default
    except ValueError:  # stored before validation, or edited by hand: the default
        return default


def _int(value: str | None, default: int = 0) -> int:
    """LXD reads these with Atoi and takes 0 for garbage; so do we (config validation
    normally keeps garbage out)."""
    try:
        return int((value or "").strip())
    except ValueError:
        return default


def wants_autostart(config: Mapping[str, str]) -> bool:
    """Whether an instance with this expanded config starts with the daemon."""
    if _bool(config.get("security.protection.start"), False):
        return False
    setting = (config.get("boot.autostart") or "").strip()
    if setting and setting.lower() != "last-state":
        return _bool(setting, False)
    return config.get("volatile.last_state.power") == RUNNING


def autostart_plan(instances: Mapping[str, Mapping[str, str]]) -> AutostartPlan:
    """The order in which to start `instances` (name -> expanded config) that are not
    running now; those that do not autostart are left out."""
    chosen = {name: cfg for name, cfg in instances.items() if wants_autostart(cfg)}
    parallel = sorted(name for name, cfg in chosen.items() if not _ordered(cfg))
    ordered = [(name, cfg) for name, cfg in chosen.items() if _ordered(cfg)]
    ordered.sort(key=lambda item: (-_int(item[1].get("boot.autostart.priority")), item[0]))
    sequence = [Step(name, max(0, _int(cfg.get("boot.autostart.delay"))))
                for name, cfg in ordered]
    return AutostartPlan(parallel, sequence)


def _ordered(config: Mapping[str, str]) -> bool:
    """An instance with a delay or a priority takes part in the sequential order."""
    return bool(config.get("boot.autostart.delay") or config.get("boot.autostart.priority"))


def shutdown_plan(running: Mapping[str, Mapping[str, str]]) -> list[Batch]:
    """Batches of the running instances (name -> expanded config), highest
    boot.stop.priority first, names sorted within a batch."""
    batches: dict[int, list[Stop]] = {}
    for name in sorted(running):
        cfg = running[name]
        timeout = _int(cfg.get("boot.host_shutdown_timeout"), DEFAULT_SHUTDOWN_TIMEOUT)
        priority = _int(cfg.get("boot.stop.priority"))
        batches.setdefault(priority, []).append(Stop(name, max(0, timeout)))
    return [Batch(p, batches[p]) for p in sorted(batches, reverse=True)]


def parallelism(cpus: int | None) -> int:
    """How many instances of the parallel group start at once. Incus takes max(cpus/4, 1);
    a start here mostly waits (helper exec, mounts, the monitor's handshake): on this
    2-CPU VM 12 busybox autostarts took a median 5.7 s one at a time, 4.1 s two, 2.8 s
    four and 3.7 s six at a time (noisy: a loaded host), hence max(4, cpus)."""
    return max(4, cpus or 1)
