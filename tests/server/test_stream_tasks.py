"""A stream's two tasks (pilot.server.stream): the RPC's task reads, one sender task writes; either
ending ends the stream, and no task outlives it."""

from __future__ import annotations

import asyncio

import pytest
from envoy.service.discovery.v3 import discovery_pb2

from pilot.cache.cache import SnapshotCache
from pilot.server.connection import Connection
from pilot.server.fanout import FanOut
from pilot.server.responses import SharedResponses
from pilot.server.selections import SelectionCache
from pilot.server.sotw import SotwStream
from pilot.server.stream import EOF
from pilot.xds import types
from tests.server.resources import VIEW, base_snapshot


class Context:
    """A grpc.aio context: requests from a queue; every write fails if ``broken``."""

    def __init__(self, broken: bool) -> None:
        self.requests: asyncio.Queue[object] = asyncio.Queue()
        self.broken = broken
        self.written: list[bytes] = []

    async def read(self) -> object:
        return await self.requests.get()

    async def write(self, message: bytes) -> None:
        if self.broken:
            raise RuntimeError("the wire broke")
        self.written.append(message)


def _stream(context: Context) -> SotwStream:
    cache = SnapshotCache()
    cache.set_snapshot(VIEW, base_snapshot())
    conn = Connection(1, "node", "peer", VIEW, protocol="sotw")
    return SotwStream(conn, context, cache, FanOut(10, 5.0), SelectionCache(), SharedResponses())  # type: ignore[arg-type]


def _first() -> discovery_pb2.DiscoveryRequest:
    return discovery_pb2.DiscoveryRequest(type_url=types.CLUSTER, node={"id": "node"})


async def test_a_failing_write_ends_the_reading_with_its_error_and_leaves_no_task() -> None:
    before = asyncio.all_tasks()
    with pytest.raises(RuntimeError, match="the wire broke"):
        await asyncio.wait_for(_stream(Context(broken=True)).run(_first()), 5)
    await asyncio.sleep(0)
    assert asyncio.all_tasks() <= before  # the sender is gone too


async def test_a_half_closed_stream_ends_its_sender() -> None:
    context = Context(broken=False)
    run = asyncio.create_task(_stream(context).run(_first()))
    while not context.written:
        await asyncio.sleep(0.01)
    context.requests.put_nowait(EOF)
    await asyncio.wait_for(run, 5)
    await asyncio.sleep(0)
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("ads-send-")]
