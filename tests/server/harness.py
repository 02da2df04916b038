"""The server under test: AdsServer on a real grpc.aio server (127.0.0.1, port 0) over a real
SnapshotCache, with a fake StreamCallbacks (our own seam) and real ADS clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping

import grpc
from envoy.config.core.v3 import base_pb2

from pilot.cache.cache import SnapshotCache
from pilot.server.ads import AdsServer
from pilot.server.limits import UNLIMITED, StreamLimits
from pilot.server.status import ConnectionStatus
from tests.server.ads_client import (
    DEADLINE,
    DEFAULT_NODE,
    AdsClient,
    DeltaClient,
    DeltaXds,
    SotwXds,
    XdsClient,
)
from tests.server.resources import VIEW

# -- the seam -------------------------------------------------------------------------------------


class FakeCallbacks:
    """StreamCallbacks: maps node ids to views (``views``, default VIEW), records every call,
    and refuses node ids listed in ``refuse`` with ValueError."""

    def __init__(self) -> None:
        self.views: dict[str, Hashable] = {}
        self.refuse: set[str] = set()
        self.opened: list[tuple[int, str]] = []
        self.closed: list[int] = []

    async def on_stream_open(self, stream_id: int, node: base_pb2.Node) -> Hashable:
        if node.id in self.refuse:
            raise ValueError(f"node {node.id} is not welcome")
        self.opened.append((stream_id, node.id))
        return self.views.get(node.id, VIEW)

    def on_stream_closed(self, stream_id: int) -> None:
        self.closed.append(stream_id)


# -- the harness ----------------------------------------------------------------------------------


class AdsHarness:
    def __init__(
        self,
        *,
        push_concurrency: int,
        send_timeout: float,
        port: int = 0,
        limits: StreamLimits = UNLIMITED,
    ) -> None:
        self.cache = SnapshotCache()
        self.callbacks = FakeCallbacks()
        self.ads = AdsServer(
            self.cache,
            self.callbacks,
            push_concurrency=push_concurrency,
            send_timeout=send_timeout,
            limits=limits,
        )
        self.server = grpc.aio.server()
        self.ads.add_to(self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.address = f"127.0.0.1:{self.port}"
        self._channels: list[grpc.aio.Channel] = []
        self._clients: list[AdsClient | DeltaClient] = []

    async def start(self) -> None:
        await self.server.start()

    def channel(self, options: Mapping[str, int] | None = None) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(self.address, options=list((options or {}).items()))
        self._channels.append(channel)
        return channel

    def client(self, node_id: str = DEFAULT_NODE, *, options: Mapping[str, int] | None = None) -> AdsClient:
        client = AdsClient(self.channel(options), node_id)
        self._clients.append(client)
        return client

    def delta_client(
        self, node_id: str = DEFAULT_NODE, *, options: Mapping[str, int] | None = None
    ) -> DeltaClient:
        client = DeltaClient(self.channel(options), node_id)
        self._clients.append(client)
        return client

    def xds_client(
        self, protocol: str, node_id: str = DEFAULT_NODE, *, options: Mapping[str, int] | None = None
    ) -> XdsClient:
        """A protocol-neutral client speaking ``protocol`` ("sotw" or "delta")."""
        if protocol == "sotw":
            return SotwXds(self.client(node_id, options=options))
        assert protocol == "delta", protocol
        return DeltaXds(self.delta_client(node_id, options=options))

    def connection(self, node_id: str = DEFAULT_NODE) -> ConnectionStatus:
        matches = [c for c in self.ads.connections() if c.node_id == node_id]
        assert len(matches) == 1, f"{len(matches)} connections for {node_id}"
        return matches[0]

    async def stop(self) -> None:
        """Stop clients and server, and wait until every stream has been cleaned up (so that the
        next test starts with no streams and the client gauge back where it was)."""
        try:
            for client in self._clients:
                client.close()
            for channel in self._channels:
                await channel.close(None)
        finally:
            await self.server.stop(None)
        end = time.monotonic() + DEADLINE
        while self.ads.connections():
            assert time.monotonic() < end, "streams still open after the server stopped"
            await asyncio.sleep(0.01)


# make_harness(push_concurrency=..., send_timeout=..., port=..., limits=...): a started AdsHarness
# (conftest.py).
HarnessFactory = Callable[..., Awaitable[AdsHarness]]
