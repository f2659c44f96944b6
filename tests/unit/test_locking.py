"""Per-instance locks: operations wait their turn, synchronous requests wait briefly and then
get a 409 naming what holds the instance; the holder is the operation's description."""

from __future__ import annotations

import asyncio

import pytest

from machined.api.operations import Operations
from machined.errors import Conflict
from machined.instances import model
from machined.locking import InstanceLock, current_activity, hold


def test_a_busy_instance_answers_409_naming_the_holder():
    async def main() -> str:
        lock = InstanceLock()
        ops = Operations()
        entered = asyncio.Event()

        async def snapshot(op):
            async with lock:
                entered.set()
                await asyncio.sleep(0.5)

        op = ops.start("task", "Snapshotting instance", {}, snapshot)
        await entered.wait()
        with pytest.raises(Conflict) as err:
            async with hold(lock, "c1", "Writing files", wait=0.05):
                pass
        await op.done.wait()
        return err.value.message

    message = asyncio.run(main())
    assert message.startswith("Instance 'c1' is busy (snapshotting instance for 0 s): ")
    assert message.endswith("try again once that has finished")


def test_hold_waits_for_a_short_holder_and_releases():
    async def main() -> list[str]:
        lock = InstanceLock()
        order: list[str] = []

        async def first():
            async with hold(lock, "c1", "Writing files", wait=1):
                order.append("first in")
                await asyncio.sleep(0.05)
                assert lock.holder == "Writing files"
                order.append("first out")

        async def second():
            await asyncio.sleep(0.01)
            async with hold(lock, "c1", "Changing its configuration", wait=1):
                order.append("second")

        await asyncio.gather(first(), second())
        assert not lock.locked() and lock.holder == ""
        assert current_activity.get() == ""  # the request's own activity does not leak
        return order

    assert asyncio.run(main()) == ["first in", "first out", "second"]


def test_a_timed_out_waiter_does_not_take_the_lock_later():
    async def main() -> bool:
        lock = InstanceLock()
        await lock.acquire()
        with pytest.raises(Conflict):
            async with hold(lock, "c1", "Writing files", wait=0.01):
                pass
        lock.release()
        await asyncio.sleep(0.01)
        return lock.locked()

    assert asyncio.run(main()) is False


def test_describe_change_names_keys_not_values():
    class Rec:
        def __init__(self, config, devices, profiles, description="", ephemeral=False):
            self.config, self.devices, self.profiles = config, devices, profiles
            self.description, self.ephemeral = description, ephemeral

    before = Rec({"limits.cpu": "1", "user.token": "secret"}, {"eth0": {"type": "nic"}},
                 ["default"])
    after = Rec({"limits.cpu": "2", "user.new": "hidden"}, {}, ["default", "big"], "d")
    text = model.describe_change(before, after)
    assert text == ("config limits.cpu, user.new, user.token (unset); devices eth0 "
                    "(removed); profiles default, big; description")
    assert "secret" not in text and "hidden" not in text
    assert model.describe_change(before, before) == "no change"
