"""The push fan-out bound and the per-stream status values, without a network."""

from __future__ import annotations

import asyncio

from pilot.server.connection import Connection
from pilot.server.fanout import FanOut
from pilot.server.ledger import TypeLedger
from pilot.xds import types


async def test_slot_wait_gives_up_when_interrupted_and_never_leaks_a_slot() -> None:
    fanout = FanOut(1, send_timeout=1.0)
    interrupt = asyncio.Event()
    first = await fanout.acquire_unless(interrupt)
    assert first is not None and first.held

    waiting = asyncio.create_task(fanout.acquire_unless(interrupt))
    await asyncio.sleep(0)  # let it queue on the semaphore
    assert not waiting.done()
    interrupt.set()
    assert await asyncio.wait_for(waiting, 5) is None
    assert await fanout.acquire_unless(interrupt) is None  # already interrupted: no wait at all

    first.release()
    first.release()  # idempotent: the slot is not given back twice
    interrupt.clear()
    second = await asyncio.wait_for(fanout.acquire_unless(interrupt), 5)
    assert second is not None
    third = asyncio.create_task(fanout.acquire_unless(interrupt))
    await asyncio.sleep(0)
    assert not third.done()  # only one slot exists
    second.release()
    slot = await asyncio.wait_for(third, 5)
    assert slot is not None
    slot.release()


def test_status_is_a_frozen_copy() -> None:
    conn = Connection(7, "node-1", "ipv4:127.0.0.1:1", view=("a", 1), protocol="sotw")
    conn.types[types.ENDPOINT] = TypeLedger(types.ENDPOINT, wildcard=False, names=frozenset({"b", "a"}))
    status = conn.status()
    conn.types[types.ENDPOINT].nonce_sent = "9"
    assert status.view == "('a', 1)" and status.stream_id == 7
    assert status.types[types.ENDPOINT].names == ("a", "b")
    assert status.types[types.ENDPOINT].nonce_sent == ""
