"""Envoy's ADS, forwarded to pilot's secure port (Istio's pkg/istio-agent/xds_proxy.go).

Envoy speaks plain gRPC to the agent's Unix socket; for each stream it opens there, the agent opens
one to pilot over the TLS channel with ``authorization: Bearer <token>`` (the token as the file
holds it when the stream opens) and copies messages both ways as bytes, never decoding them. Both
ADS methods go through: ``StreamAggregatedResources`` and ``DeltaAggregatedResources``. When
pilot ends a stream, Envoy's stream ends with the same status (and Envoy reconnects, through the
agent, with its own backoff); when Envoy goes away, the stream to pilot is cancelled.

Why a proxy rather than Envoy dialling pilot with its SDS certificate: pilot's secure port cannot
ask for a client certificate only when one is offered (Python grpc has "require" or "never", not
Go's VerifyClientCertIfGiven), and the CSR callers have none yet; so callers prove who they are with
the token, which only the agent holds. Istio's agent proxies xDS too, for the same token and for
the traffic it answers itself (NDS, ECDS), none of which pilot needs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from pilot.agent.control_plane import bearer_metadata
from pilot.errors import AuthenticationError

log = logging.getLogger("pilot.agent.xds")

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
ADS_METHODS = ("StreamAggregatedResources", "DeltaAggregatedResources")


class XdsProxy:
    """Forwards both ADS methods to ``channel``; ``add_to(server)`` registers it."""

    def __init__(self, channel: grpc.aio.Channel, token_file: Path) -> None:
        self._channel = channel
        self._token_file = token_file
        self.streams_opened = 0

    def add_to(self, server: grpc.aio.Server) -> None:
        handlers = {
            method: grpc.stream_stream_rpc_method_handler(self._forwarder(f"/{ADS_SERVICE}/{method}"))
            for method in ADS_METHODS
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(ADS_SERVICE, handlers),))

    def _forwarder(self, path: str) -> Any:
        # No (de)serializers on either side: messages stay the bytes Envoy and pilot wrote.
        upstream = self._channel.stream_stream(path, request_serializer=None, response_deserializer=None)

        async def forward(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
        ) -> AsyncIterator[bytes]:
            try:
                metadata = bearer_metadata(self._token_file)
            except AuthenticationError as err:
                log.error("xDS stream refused before dialling pilot: %s", err)
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(err))
            self.streams_opened += 1
            call = upstream(requests, metadata=metadata)
            try:
                async for response in call:
                    yield response
                status = await call.code()
                if status is not grpc.StatusCode.OK:
                    await context.abort(status, await call.details() or "")
            except grpc.aio.AioRpcError as err:
                log.info("pilot ended the xDS stream: %s: %s", err.code().name, err.details())
                await context.abort(err.code(), err.details() or "")
            finally:
                call.cancel()

        return forward
