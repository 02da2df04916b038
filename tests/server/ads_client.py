"""A small real ADS client for protocol tests: a grpc.aio stream to the server over 127.0.0.1.

It speaks state of the world (DiscoveryRequest/DiscoveryResponse). The delta tests will add a
sibling with the same verbs (request, recv, ack, nack, expect_silence, close) so protocol tests can
be parametrized over both.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

# Generous: the machine is shared and slow at times; a healthy answer takes milliseconds.
DEADLINE = 10.0

# A type the test snapshots never hold, used as a barrier: its requests (always with an empty
# nonce) are answered in order after anything the server meant to send before it.
PROBE_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

DEFAULT_NODE = "sidecar~10.0.0.1~app-1.default~default.svc.cluster.local"


class AdsClient:
    """One StreamAggregatedResources call. Sends ``node`` on the first request only (later
    requests may omit it, as Envoy's do), and remembers the last ACKed version per type so that a
    NACK reports it the way Envoy does."""

    def __init__(self, channel: grpc.aio.Channel, node_id: str = DEFAULT_NODE) -> None:
        self.node = base_pb2.Node(id=node_id, cluster="test")
        self.call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        self.acked_versions: dict[str, str] = {}
        self._sent_first = False
        self._probes = itertools.count(1)

    async def send(self, request: discovery_pb2.DiscoveryRequest) -> None:
        await self.call.write(request)

    async def request(
        self,
        type_url: str,
        names: Iterable[str] = (),
        *,
        nonce: str = "",
        version: str | None = None,
        error: str | None = None,
        node: bool | None = None,
    ) -> None:
        """Send a DiscoveryRequest. ``version`` defaults to the last version ACKed for the type."""
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            resource_names=list(names),
            response_nonce=nonce,
            version_info=self.acked_versions.get(type_url, "") if version is None else version,
        )
        if node or (node is None and not self._sent_first):
            request.node.CopyFrom(self.node)
        if error is not None:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        self._sent_first = True
        await self.send(request)

    async def recv(self, timeout: float = DEADLINE) -> discovery_pb2.DiscoveryResponse:
        message = await asyncio.wait_for(self.call.read(), timeout)
        if message is grpc.aio.EOF:  # type: ignore[attr-defined]
            raise AssertionError("the server ended the stream")
        assert isinstance(message, discovery_pb2.DiscoveryResponse)
        return message

    async def ack(self, response: discovery_pb2.DiscoveryResponse, names: Iterable[str] = ()) -> None:
        self.acked_versions[response.type_url] = response.version_info
        await self.request(response.type_url, names, nonce=response.nonce)

    async def nack(
        self, response: discovery_pb2.DiscoveryResponse, message: str, names: Iterable[str] = ()
    ) -> None:
        # A NACK carries the rejected nonce and the version the client still runs.
        await self.request(response.type_url, names, nonce=response.nonce, error=message)

    async def expect_silence(self) -> None:
        """Assert the server sent nothing since the last ``recv``: ask for a probe resource and
        check that its (empty) answer is the very next message. No sleeping, no guessing."""
        name = f"probe-{next(self._probes)}"
        await self.request(PROBE_TYPE, [name])
        response = await self.recv()
        assert response.type_url == PROBE_TYPE, (
            f"expected no response, got {response.type_url} version {response.version_info} "
            f"with {len(response.resources)} resources"
        )

    async def status(self) -> grpc.StatusCode:
        """Wait for the server to end the stream; return its status code."""
        return await asyncio.wait_for(self.call.code(), DEADLINE)

    def close(self) -> None:
        self.call.cancel()
