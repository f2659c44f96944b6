"""The autostart and host-shutdown plans (machined/instances/boot.py)."""

from __future__ import annotations

from machined.instances import boot
from machined.instances.boot import Batch, Step, Stop

RUN = {"volatile.last_state.power": "RUNNING"}
STOPPED = {"volatile.last_state.power": "STOPPED"}


def test_which_instances_autostart() -> None:
    assert boot.wants_autostart({"boot.autostart": "true"})
    assert boot.wants_autostart({"boot.autostart": "on", **STOPPED})
    assert boot.wants_autostart(RUN)  # unset: last state
    assert boot.wants_autostart({"boot.autostart": "last-state", **RUN})
    assert boot.wants_autostart({"boot.autostart": "Last-State", **RUN})
    assert not boot.wants_autostart({"boot.autostart": "last-state", **STOPPED})
    assert not boot.wants_autostart(STOPPED)
    assert not boot.wants_autostart({})  # never started
    assert not boot.wants_autostart({"volatile.last_state.power": "FROZEN"})
    # An explicit false wins over the last state.
    assert not boot.wants_autostart({"boot.autostart": "false", **RUN})
    assert not boot.wants_autostart({"boot.autostart": "0", **RUN})
    # As LXD: security.protection.start keeps it from starting.
    assert not boot.wants_autostart({"boot.autostart": "true",
                                     "security.protection.start": "true"})
    assert not boot.wants_autostart({**RUN, "security.protection.start": "yes"})
    assert boot.wants_autostart({**RUN, "security.protection.start": "false"})
    # Garbage (stored before validation) is not "true".
    assert not boot.wants_autostart({"boot.autostart": "maybe", **RUN})


def test_autostart_order_parallel_first_then_priority_and_name() -> None:
    plan = boot.autostart_plan({
        "web": {"boot.autostart": "true", "boot.autostart.priority": "10",
                "boot.autostart.delay": "5"},
        "db": {"boot.autostart": "true", "boot.autostart.priority": "20"},
        "cache": {"boot.autostart": "true", "boot.autostart.priority": "10"},
        "b-free": {"boot.autostart": "true"},
        "a-free": RUN,
        "delayed": {"boot.autostart": "true", "boot.autostart.delay": "2"},
        "neg": {"boot.autostart": "true", "boot.autostart.priority": "-3"},
        "off": {"boot.autostart": "false", **RUN},
        "stopped": STOPPED,
    })
    assert plan.parallel == ["a-free", "b-free"]
    assert plan.sequence == [Step("db"), Step("cache"), Step("web", 5), Step("delayed", 2),
                             Step("neg")]
    assert plan.names() == ["a-free", "b-free", "db", "cache", "web", "delayed", "neg"]


def test_autostart_garbage_numbers_count_as_zero() -> None:
    plan = boot.autostart_plan({
        "x": {"boot.autostart": "true", "boot.autostart.priority": "high"},
        "y": {"boot.autostart": "true", "boot.autostart.priority": "1",
              "boot.autostart.delay": "-4"},
    })
    # Set but unreadable still means "ordered" (as LXD: Atoi error -> 0).
    assert plan.parallel == []
    assert plan.sequence == [Step("y", 0), Step("x", 0)]


def test_nothing_to_start() -> None:
    assert boot.autostart_plan({}).names() == []
    assert boot.autostart_plan({"a": STOPPED}).names() == []


def test_shutdown_batches_by_stop_priority() -> None:
    plan = boot.shutdown_plan({
        "z": {},
        "a": {"boot.stop.priority": "5", "boot.host_shutdown_timeout": "3"},
        "m": {"boot.stop.priority": "5"},
        "first": {"boot.stop.priority": "100", "boot.host_shutdown_timeout": "0"},
        "last": {"boot.stop.priority": "-1", "boot.host_shutdown_timeout": "junk"},
    })
    assert plan == [
        Batch(100, [Stop("first", 0)]),
        Batch(5, [Stop("a", 3), Stop("m", 30)]),
        Batch(0, [Stop("z", 30)]),
        Batch(-1, [Stop("last", 30)]),
    ]
    assert boot.shutdown_plan({}) == []


def test_parallelism() -> None:
    assert boot.parallelism(None) == 4
    assert boot.parallelism(2) == 4
    assert boot.parallelism(16) == 16
