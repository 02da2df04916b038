"""What keeps a push to many proxies cheap: shared subscription sets, selections that go with their
snapshot, push slots and send timeouts without a task per stream (see docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import gc

from pilot.cache.snapshot import Resource, Snapshot, TypeResources
from pilot.server.fanout import FanOut, Interrupt, ResponseWriter
from pilot.server.selections import SelectionCache
from pilot.xds import types


def _snapshot(version: str) -> Snapshot:
    typed = TypeResources.build(types.ENDPOINT, [Resource("a", version, b"x"), Resource("b", version, b"y")])
    return Snapshot(version, {types.ENDPOINT: typed})


def test_equal_subscriptions_share_one_set() -> None:
    cache = SelectionCache()
    first = cache.intern(frozenset({"a", "b"}))
    again = cache.intern(frozenset(["b", "a"]))
    assert again is first


def test_selections_go_when_their_snapshot_goes() -> None:
    cache = SelectionCache()
    names = cache.intern(frozenset({"a"}))
    snapshot = _snapshot("1")
    assert cache.select(snapshot, types.ENDPOINT, names).payload
    assert len(cache) == 1 and cache.encoded_bytes > 0
    del snapshot
    gc.collect()
    assert len(cache) == 0 and cache.encoded_bytes == 0


async def test_an_interrupt_wakes_a_slot_waiter_and_slots_go_first_come_first_served() -> None:
    fanout = FanOut(1, send_timeout=1.0)
    held = await fanout.acquire_unless(Interrupt())
    assert held is not None
    one, two = Interrupt(), Interrupt()
    first = asyncio.create_task(fanout.acquire_unless(one))
    second = asyncio.create_task(fanout.acquire_unless(two))
    await asyncio.sleep(0)
    one.set()
    assert await asyncio.wait_for(first, 5) is None
    held.release()
    slot = await asyncio.wait_for(second, 5)
    assert slot is not None
    slot.release()
    assert await fanout.acquire_unless(Interrupt()) is not None


async def test_a_cancelled_waiter_gives_back_a_slot_it_was_handed() -> None:
    fanout = FanOut(1, send_timeout=1.0)
    held = await fanout.acquire_unless(Interrupt())
    assert held is not None
    waiter = asyncio.create_task(fanout.acquire_unless(Interrupt()))
    await asyncio.sleep(0)
    held.release()  # hands the slot to the waiter ...
    waiter.cancel()  # ... which is cancelled before it runs
    await asyncio.gather(waiter, return_exceptions=True)
    assert await asyncio.wait_for(fanout.acquire_unless(Interrupt()), 5) is not None


async def test_a_slow_send_gives_its_slot_back_after_the_timeout_and_still_completes() -> None:
    class Slow:
        def __init__(self) -> None:
            self.go = asyncio.Event()
            self.written: list[bytes] = []

        async def write(self, message: bytes) -> None:
            await self.go.wait()
            self.written.append(message)

    fanout = FanOut(1, send_timeout=0.05)
    stream = Slow()
    slot = await fanout.acquire_unless(Interrupt())
    assert slot is not None
    writing = asyncio.create_task(ResponseWriter(stream, fanout, "slow").write(b"data", slot))
    other = await asyncio.wait_for(fanout.acquire_unless(Interrupt()), 5)  # freed by the timeout
    assert other is not None and not slot.held
    stream.go.set()
    await asyncio.wait_for(writing, 5)
    assert stream.written == [b"data"]
