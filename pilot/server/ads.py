"""AdsServer: the gRPC AggregatedDiscoveryService, and the registry of its open streams.

Wiring (app.py)::

    ads = AdsServer(cache, pusher, push_concurrency=s.push_concurrency, send_timeout=s.send_timeout)
    server = grpc.aio.server()
    ads.add_to(server)
    server.add_insecure_port(f"{s.xds_host}:{s.xds_port}")
    await server.start()

Both ADS methods are served: StreamAggregatedResources (state of the world, :mod:`.sotw`) and
DeltaAggregatedResources (incremental, :mod:`.delta`). They share the stream registry, the push
fan-out, the metrics and the cache watches; ``connections()`` tells them apart by ``protocol``.

Responses go out as bytes encoded by :mod:`pilot.server.wire` (the method's response serializer
passes them through), so no DiscoveryResponse message is ever built per proxy. Every stream lives
in its own handler call: an exception ends that stream only (logged), never the server.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import sys
from collections.abc import Hashable
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from pilot import metrics
from pilot.cache.cache import SnapshotCache
from pilot.errors import AuthenticationError, XdsProtocolError
from pilot.server import wire
from pilot.server.authentication import (
    AuthenticatedCaller,
    CallerAuthenticator,
    NodeIdentityError,
    auth_failures,
    pinned_node,
)
from pilot.server.callbacks import RejectionListener, StreamCallbacks
from pilot.server.connection import Connection
from pilot.server.delta import DeltaStream
from pilot.server.fanout import FanOut
from pilot.server.limits import UNLIMITED, StreamAdmission, StreamLimits
from pilot.server.node_id import InvalidNodeIdError, check_node_id
from pilot.server.responses import SharedResponses
from pilot.server.selections import DeltaResourceCache, NameSets, SelectionCache
from pilot.server.sotw import SotwStream
from pilot.server.status import Backlog, ConnectionStatus
from pilot.server.stream import EOF, AdsStream

__all__ = ["ADS_SERVICE", "AdsServer"]

log = logging.getLogger("pilot.server.ads")

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"


def _bytes_through(message: bytes) -> bytes:
    return message


class AdsServer:
    """Serves ADS from ``cache`` to every proxy that connects.

    ``callbacks`` maps a new stream's node to the cache key it reads (and is told when the stream
    ends). At most ``push_concurrency`` streams are written a push at the same time, and a write
    holds its slot at most ``send_timeout`` seconds, whichever protocol the streams speak.
    ``control_plane_id``, if set, is sent as the responses' ``control_plane.identifier``.
    ``limits`` bounds new streams per second, each stream's requests per second and its NACK log.

    Use from one event loop. ``connections``, ``backlog`` and ``find_view`` may be called at any time.
    """

    def __init__(
        self,
        cache: SnapshotCache,
        callbacks: StreamCallbacks,
        *,
        push_concurrency: int,
        send_timeout: float,
        control_plane_id: str = "",
        limits: StreamLimits = UNLIMITED,
    ) -> None:
        self._cache = cache
        self._limits = limits
        self._admission = StreamAdmission(limits.streams_per_second)
        self._callbacks = callbacks
        self._on_rejected = callbacks.on_rejected if isinstance(callbacks, RejectionListener) else None
        self._fanout = FanOut(push_concurrency, send_timeout)
        names = NameSets()  # subscriptions, shared by the streams of both protocols
        self._selections = SelectionCache(names=names)
        self._delta_resources = DeltaResourceCache(names=names)
        self._responses = SharedResponses()  # whole responses and nonces, for both protocols
        self._control_plane = wire.control_plane(control_plane_id)
        self._delta_control_plane = wire.control_plane(control_plane_id, delta=True)
        self._connections: dict[int, Connection] = {}
        self._running: dict[int, asyncio.Task[None]] = {}
        self._streams: dict[int, AdsStream[Any, Any]] = {}  # by stream id
        self._closing = False
        self._stream_ids = itertools.count(1)

    def add_to(self, server: grpc.aio.Server, authenticator: CallerAuthenticator | None = None) -> None:
        """Register the ADS methods on ``server`` (before it starts). With ``authenticator`` every
        stream must prove its caller and may only be a node of the caller's namespace and service
        account (:mod:`pilot.server.authentication`); one AdsServer may serve a plain and an
        authenticating server at once, with one registry of streams."""

        # Each handler is the one coroutine method that serves a stream (a partial of it): no
        # coroutine frame per stream between grpc and ``_serve``.
        handlers = {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                functools.partial(self._serve, protocol="sotw", authenticator=authenticator),
                request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                response_serializer=_bytes_through,
            ),
            "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#incremental-xds
                functools.partial(self._serve, protocol="delta", authenticator=authenticator),
                request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
                response_serializer=_bytes_through,
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(ADS_SERVICE, handlers),))

    async def close(self) -> None:
        """End every open stream with UNAVAILABLE and refuse new ones (shutdown).

        ADS streams never end by themselves, so without this ``grpc.aio.Server.stop(grace)`` always
        waits the full grace. Proxies reconnect (to another replica) as they do on any stream end.
        Idempotent.
        """
        self._closing = True
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def connections(self) -> list[ConnectionStatus]:
        """A frozen status of every open stream (for /debug/syncz), oldest first."""
        return [conn.status() for conn in self._connections.values()]

    def backlog(self, stream_id: int) -> Backlog | None:
        """What the open stream ``stream_id`` holds for its proxy beyond what it has written (at
        most one snapshot; see :class:`Backlog`), or None if no such stream is open."""
        stream = self._streams.get(stream_id)
        return stream.backlog() if stream is not None else None

    def move_stream(self, stream_id: int, view: Hashable) -> None:
        """Make the open stream ``stream_id`` read ``view`` from now on (its proxy's view changed
        with the config; the cache already holds a snapshot for ``view``). No-op if it is gone."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.move(view)

    def find_view(self, node_id: str) -> Hashable | None:
        """The cache key read by the newest stream of ``node_id``, or None if it is not connected."""
        for conn in reversed(self._connections.values()):
            if conn.node_id == node_id:
                return conn.view
        return None

    def held_resources(self, node_id: str) -> dict[str, dict[str, str]] | None:
        """Per type URL, name -> version the newest stream of ``node_id`` holds (None: not connected)."""
        for conn in reversed(self._connections.values()):
            if conn.node_id == node_id:
                return conn.held()
        return None

    def _make_stream(
        self, conn: Connection, context: grpc.aio.ServicerContext[Any, bytes]
    ) -> AdsStream[Any, Any]:
        if conn.protocol == "sotw":
            return SotwStream(
                conn,
                context,
                self._cache,
                self._fanout,
                self._selections,
                self._responses,
                self._control_plane,
                self._limits,
                on_rejected=self._on_rejected,
            )
        return DeltaStream(
            conn,
            context,
            self._cache,
            self._fanout,
            self._delta_resources,
            self._responses,
            self._delta_control_plane,
            self._limits,
            on_rejected=self._on_rejected,
        )

    async def _serve(
        self,
        request_iterator: object,
        context: grpc.aio.ServicerContext[Any, bytes],
        *,
        protocol: str,
        authenticator: CallerAuthenticator | None,
    ) -> None:
        """One ADS call of either protocol ("sotw" or "delta"), from its first request to its end.
        A coroutine handler uses grpc.aio's reader/writer API (context.read()/write()), so the
        request iterator stays unused. With ``authenticator``, the caller is authenticated before
        anything is read and the node checked against it before the stream opens (fail-closed:
        any error refuses the stream)."""
        stream_id = next(self._stream_ids)
        peer: str = context.peer()
        if self._closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "pilot is shutting down")
        if not await self._admission.admit():
            # istiod's WaitForRequestLimit: the proxy backs off and reconnects (elsewhere at best).
            metrics.xds_rate_limited.labels(scope="stream").inc()
            log.info(
                "ADS: %s stream %d from %s exceeds the stream rate; refusing it", protocol, stream_id, peer
            )
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "request rate limit exceeded")
        caller = None if authenticator is None else await _authenticate(context, authenticator, stream_id)
        first = await context.read()
        if first is EOF:
            return
        if not first.HasField("node") or not first.node.id:
            # Only the first request of a stream must identify the node; later ones may omit it.
            # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#basic-protocol-overview
            log.info("ADS: %s stream %d from %s sent no node id; refusing it", protocol, stream_id, peer)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first request must carry node.id")
        # Interned: the pusher's proxy (pilot.translate.proxy) shares this one string.
        node_id: str = sys.intern(first.node.id)
        try:
            check_node_id(node_id)
        except InvalidNodeIdError as exc:
            metrics.xds_invalid_node_ids.inc()
            log.info("ADS: refused %s stream %d from %s: %s", protocol, stream_id, peer, exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        node = first.node if caller is None else await _pinned(context, first.node, caller, stream_id)
        try:
            view = await self._callbacks.on_stream_open(stream_id, node)
        except ValueError as exc:
            log.info("ADS: refused %s from %s: %s", node_id, peer, exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception:
            log.exception("ADS: opening stream %d for %s failed", stream_id, node_id)
            await context.abort(grpc.StatusCode.INTERNAL, "could not open the stream")
        # The node message keeps the whole first request alive (protobuf's arena): this frame
        # lives as long as the stream, so let go of it here.
        del node

        identity = "" if caller is None else f"{caller.namespace}/{caller.name}"
        conn = Connection(stream_id, node_id, peer, view, protocol=protocol, identity=identity)
        self._connections[stream_id] = conn
        metrics.xds_clients.inc()
        log.info("ADS: %s stream %d open for %s from %s", protocol, stream_id, node_id, peer)
        failure: tuple[grpc.StatusCode, str] | None = None
        stream = self._make_stream(conn, context)
        # The stream reads in this task, the RPC's own (no task of its own: see AdsStream.run);
        # close() cancels it here.
        task = asyncio.current_task()
        assert task is not None
        running = stream.run(first)
        del first  # the stream owns it now; do not hold the node for the stream's life here
        self._running[stream_id] = task
        self._streams[stream_id] = stream
        try:
            await running
        except asyncio.CancelledError:
            if not self._closing:
                raise  # the RPC ended (client gone or server stopping)
            task.uncancel()
            failure = (grpc.StatusCode.UNAVAILABLE, "pilot is shutting down")
        except XdsProtocolError as exc:
            log.info("ADS: stream %d of %s broke the protocol: %s", stream_id, node_id, exc)
            failure = (grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception:
            log.exception("ADS: stream %d of %s failed", stream_id, node_id)
            failure = (grpc.StatusCode.INTERNAL, "internal error")
        finally:
            del self._running[stream_id]
            del self._streams[stream_id]
            del self._connections[stream_id]
            metrics.xds_clients.dec()
            try:
                self._callbacks.on_stream_closed(stream_id)
            except Exception:
                log.exception("ADS: on_stream_closed(%d) failed", stream_id)
            log.info("ADS: stream %d of %s closed", stream_id, node_id)
        if failure is not None:
            await context.abort(*failure)


async def _authenticate(
    context: grpc.aio.ServicerContext[Any, bytes], authenticator: CallerAuthenticator, stream_id: int
) -> AuthenticatedCaller:
    """The stream's caller, or the stream ends UNAUTHENTICATED (Istio answers the same)."""
    peer: str = context.peer()
    try:
        return await authenticator.authenticate_metadata(context.invocation_metadata())
    except AuthenticationError as exc:
        reason = str(exc)
    except Exception:
        # Fail-closed: an authenticator that breaks (the API server is down) lets nobody in.
        log.exception("ADS: authenticating stream %d from %s failed", stream_id, peer)
        reason = "the token could not be checked"
    auth_failures.labels(reason="unauthenticated").inc()
    log.info("ADS: refused stream %d from %s: authentication failed: %s", stream_id, peer, reason)
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"authentication failed: {reason}")
    raise AssertionError("unreachable: abort raises")


async def _pinned(
    context: grpc.aio.ServicerContext[Any, bytes],
    node: base_pb2.Node,
    caller: AuthenticatedCaller,
    stream_id: int,
) -> base_pb2.Node:
    """``node`` pinned to ``caller``, or the stream ends PERMISSION_DENIED."""
    try:
        return pinned_node(node, caller)
    except NodeIdentityError as exc:
        auth_failures.labels(reason="permission_denied").inc()
        log.warning("ADS: refused stream %d from %s: %s", stream_id, context.peer(), exc)
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
    raise AssertionError("unreachable: abort raises")
