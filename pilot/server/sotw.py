"""StreamAggregatedResources: the state-of-the-world ADS rules for one stream.

Spec: https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol

One stream runs two tasks. The *reader* applies the request rules (Istio's ``ShouldRespond``):
NACK, unsubscribe, first request, stale nonce, ACK, subscription change; it never writes. The
*sender* writes every response: answers to requests and pushes of new snapshots. They meet in the
stream's :class:`~pilot.server.connection.TypeState` values and two events, all on one event loop.

Snapshots reach the stream through a cache watch that only remembers the latest one and wakes the
sender, so a slow proxy holds at most one pending snapshot and never builds a queue. The sender
*adopts* a new snapshot only while it holds a push slot (:class:`~pilot.server.connection.FanOut`),
and then writes, in make-before-break order, each type whose content for this proxy changed.
Requests that arrive meanwhile are answered from the snapshot already adopted, without a slot, so
they never wait behind other proxies' pushes and never overtake a push half-way through its order.
One deliberate resend: after new clusters, the endpoints of clusters that were updated go out
again even if unchanged, because Envoy keeps an updated cluster warming until they do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

import grpc

from pilot import metrics
from pilot.cache.cache import SnapshotCache
from pilot.cache.snapshot import Snapshot
from pilot.errors import XdsProtocolError
from pilot.server import wire
from pilot.server.connection import Connection, FanOut, NackStatus, PushSlot, ResponseWriter, TypeState
from pilot.xds import types

__all__ = ["SotwContext", "SotwStream"]

log = logging.getLogger("pilot.server.sotw")

# grpc.aio returns this sentinel from read() once the client has half-closed the stream.
_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]
_WILDCARD = "*"
_PUSH_ORDER = frozenset(types.PUSH_ORDER)


class SotwContext(Protocol):
    """What the stream needs of a grpc.aio ServicerContext (requests in, encoded bytes out)."""

    async def read(self) -> Any: ...

    async def write(self, message: bytes) -> None: ...


class SotwStream:
    """The state-of-the-world loop of one ADS stream, from its first request to its end.

    ``run`` returns when the client half-closes the stream, raises ``XdsProtocolError`` when the
    client breaks the protocol, and is cancelled when the RPC ends. Not reusable.
    """

    def __init__(
        self,
        conn: Connection,
        context: SotwContext,
        cache: SnapshotCache,
        fanout: FanOut,
        selections: wire.SelectionCache,
        control_plane: bytes = b"",
    ) -> None:
        self._conn = conn
        self._context = context
        self._cache = cache
        self._fanout = fanout
        self._selections = selections
        self._control_plane = control_plane
        self._writer = ResponseWriter(context, fanout, f"{conn.node_id} (stream {conn.stream_id})")
        self._latest: Snapshot | None = None  # newest snapshot from the cache
        self._pending_since: float | None = None  # monotonic time the first unadopted one arrived
        self._adopted: Snapshot | None = None  # the snapshot responses are cut from
        self._wake = asyncio.Event()  # anything for the sender to do
        self._requested = asyncio.Event()  # a request wants an answer (a TypeState.respond is set)

    async def run(self, first: Any) -> None:
        cancel_watch = self._cache.watch(self._conn.view, self._on_snapshot)
        try:
            # Read the current snapshot only after the watch exists, so no update falls between.
            if self._latest is None:
                self._latest = self._cache.get_snapshot(self._conn.view)
            self._wake.set()
            reader = asyncio.create_task(self._read_loop(first), name=f"ads-read-{self._conn.stream_id}")
            sender = asyncio.create_task(self._send_loop(), name=f"ads-send-{self._conn.stream_id}")
            try:
                done, _ = await asyncio.wait((reader, sender), return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # re-raise what ended the stream
            finally:
                for task in (reader, sender):
                    task.cancel()
                await asyncio.gather(reader, sender, return_exceptions=True)
        finally:
            cancel_watch()

    # -- the cache side --------------------------------------------------------------------------

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        # Called synchronously by SnapshotCache.set_snapshot: remember, wake, never block.
        self._latest = snapshot
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        self._wake.set()

    # -- the reader ------------------------------------------------------------------------------

    async def _read_loop(self, first: Any) -> None:
        request = first
        while True:
            self._on_request(request)
            request = await self._context.read()
            if request is _EOF:
                log.debug("ADS: %s closed its side of stream %d", self._conn.node_id, self._conn.stream_id)
                return

    def _on_request(self, request: Any) -> None:
        type_url: str = request.type_url
        if not type_url:
            # On ADS every request must name its type, since one stream carries all of them.
            # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#aggregated-discovery-service
            raise XdsProtocolError("DiscoveryRequest on ADS must set type_url")
        state = self._conn.types.get(type_url)

        if request.HasField("error_detail"):
            self._on_nack(state, request)
            return

        names = frozenset(request.resource_names)
        wildcard_type = type_url in types.WILDCARD_TYPES
        if not wildcard_type and not names:
            # An empty list for a named type unsubscribes from every resource of it; nothing to send.
            # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#unsubscribing-from-resources
            if self._conn.types.pop(type_url, None) is not None:
                log.debug("ADS:%s %s unsubscribed", types.short_name(type_url), self._conn.node_id)
            return

        if state is None or not request.response_nonce:
            # First request for this type on this stream (a new proxy, or one reconnecting with a
            # nonce from another server): always answer with the current state.
            # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#ack-and-nack-semantics-summary
            wildcard = wildcard_type and (not names or _WILDCARD in names)
            if state is None:
                state = self._conn.types[type_url] = TypeState(type_url, wildcard, names - {_WILDCARD})
            else:
                state.wildcard, state.names = wildcard, names - {_WILDCARD}
            self._ask_answer(state)
            return

        if request.response_nonce != state.nonce_sent:
            # Not the latest nonce we sent for this type: the request is stale (a newer response is
            # on its way to the proxy and will be ACKed or NACKed itself). Ignore it.
            # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#resource-updates
            metrics.xds_expired_nonce.labels(type=types.short_name(type_url)).inc()
            log.debug(
                "ADS:%s %s stale nonce %s (sent %s)",
                types.short_name(type_url),
                self._conn.node_id,
                request.response_nonce,
                state.nonce_sent,
            )
            return

        if request.response_nonce != state.rejected_nonce:
            self._on_ack(state, request)
        # else: the proxy rejected this nonce and asks again (say, for more names) with the same
        # nonce and its old version; that is no ACK, and the NACK stays recorded.

        # Envoy sends a request with the same nonce when what it wants changes.
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#how-the-client-specifies-what-resources-to-return
        wildcard = wildcard_type and (_WILDCARD in names or (not names and state.wildcard))
        names -= {_WILDCARD}
        if wildcard == state.wildcard and names == state.names:
            return
        added = names - state.names
        self._narrow(state, names)
        state.wildcard, state.names = wildcard, names
        # For named types only new names need a response: Envoy keeps what it has for the others
        # and drops what it no longer asks for (Istio's ShouldRespond does the same).
        if wildcard_type or added:
            self._ask_answer(state)

    def _on_nack(self, state: TypeState | None, request: Any) -> None:
        # error_detail set: the proxy rejected our last response and keeps running its previous
        # version. Do not answer (answering would send the same rejected config again).
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#nack
        short = types.short_name(request.type_url)
        message: str = request.error_detail.message
        metrics.xds_rejects.labels(type=short).inc()
        log.warning(
            "ADS:%s NACK from %s (stream %d) nonce %s, keeps version %r: %s",
            short,
            self._conn.node_id,
            self._conn.stream_id,
            request.response_nonce,
            request.version_info,
            message,
        )
        if state is None:
            return
        state.last_nack = NackStatus(
            message=message,
            code=request.error_detail.code,
            nonce=request.response_nonce,
            version=request.version_info,
            at=time.time(),
        )
        if request.response_nonce and request.response_nonce == state.nonce_sent:
            # Remember what was rejected so it is never sent again; only different content for
            # this type (a newer snapshot) goes out.
            state.rejected_nonce = state.nonce_sent
            state.rejected_content = state.content_sent
            state.push_started = None

    def _on_ack(self, state: TypeState, request: Any) -> None:
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#ack
        if state.nonce_acked != request.response_nonce:
            state.nonce_acked = request.response_nonce
            state.version_acked = request.version_info
            if state.push_started is not None:
                metrics.proxy_convergence_time.observe(time.monotonic() - state.push_started)
                state.push_started = None
        state.last_nack = None

    def _narrow(self, state: TypeState, names: frozenset[str]) -> None:
        """The proxy dropped some names: re-derive what it holds for the names it keeps from the
        snapshot of the last response, so the next snapshot is compared with that (and an
        unchanged resource is not resent)."""
        if state.wildcard or state.sent_from is None or not names <= state.names:
            return
        narrowed = self._selections.select(state.sent_from, state.type_url, names).content
        if state.rejected_nonce == state.nonce_sent:
            state.rejected_content = narrowed
        state.content_sent = narrowed

    def _ask_answer(self, state: TypeState) -> None:
        state.respond = True
        self._requested.set()
        self._wake.set()

    # -- the sender ------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._send_pending()

    async def _send_pending(self) -> None:
        latest = self._latest
        if latest is None:
            return  # requests wait until the view has a snapshot
        if self._adopted is None:
            # The first responses of a stream answer its requests: no push slot needed.
            self._requested.clear()
            started = self._pending_since
            self._adopt(latest)
            await self._send(latest, None, started)
            return
        if latest is self._adopted:
            self._pending_since = None  # the same snapshot set again: nothing is pending
            if self._requested.is_set():
                self._requested.clear()
                await self._send(self._adopted, None, None)
            return
        if not self._changes_in(latest):
            # Nothing this proxy receives differs (the change was to names it does not watch):
            # take the snapshot without a push slot.
            self._adopt(latest)
            if self._requested.is_set():
                self._requested.clear()
                await self._send(latest, None, None)
            return
        slot = await self._fanout.acquire_unless(self._requested)
        if slot is None:
            # A request came in while we waited for a slot: answer it from the snapshot the proxy
            # already has, then come back for the push.
            self._requested.clear()
            await self._send(self._adopted, None, None)
            self._wake.set()
            return
        try:
            latest = self._latest or latest  # the newest one, which may have come while we waited
            started = self._pending_since
            self._adopt(latest)
            self._requested.clear()
            await self._send(latest, slot, started)
        finally:
            slot.release()

    def _changes_in(self, snapshot: Snapshot) -> bool:
        for state in self._conn.types.values():
            if state.nonce_sent:
                names = None if state.wildcard else state.names
                content = self._selections.select(snapshot, state.type_url, names).content
                if content not in (state.content_sent, state.rejected_content):
                    return True
        return False

    def _adopt(self, snapshot: Snapshot) -> None:
        self._adopted = snapshot
        self._pending_since = None

    async def _send(self, snapshot: Snapshot, slot: PushSlot | None, push_started: float | None) -> None:
        """Write, in ADS order, every type that was asked for or whose content for this proxy
        differs from what it was last sent; never the content it last rejected.

        Order: CDS, EDS, LDS, RDS, so that nothing names a resource the proxy does not have yet.
        We do not wait for ACKs in between: on one ADS stream Envoy applies them in that order.
        https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#eventual-consistency-considerations
        """
        in_order = [t for t in types.PUSH_ORDER if t in self._conn.types]
        in_order += sorted(t for t in self._conn.types if t not in _PUSH_ORDER)
        clusters_before: Snapshot | None = None  # set when this batch sends new clusters
        for type_url in in_order:
            state = self._conn.types.get(type_url)  # the reader may have dropped it meanwhile
            if state is None:
                continue
            selection = self._selections.select(snapshot, type_url, None if state.wildcard else state.names)
            if state.respond:
                state.respond = False
            elif not state.nonce_sent or selection.content in (state.content_sent, state.rejected_content):
                # Unchanged for this proxy, or exactly what it rejected: nothing to send.
                # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#when-to-send-an-update
                if type_url == types.ENDPOINT and clusters_before is not None:
                    await self._rewarm_endpoints(state, clusters_before, snapshot, slot, push_started)
                continue
            if type_url == types.CLUSTER:
                clusters_before = state.sent_from
            changed = selection.content != state.content_sent
            await self._respond(state, snapshot, selection, slot, push_started if changed else None)

    async def _rewarm_endpoints(
        self,
        state: TypeState,
        before: Snapshot,
        snapshot: Snapshot,
        slot: PushSlot | None,
        push_started: float | None,
    ) -> None:
        """Resend the unchanged endpoints of clusters that were just updated.

        Envoy builds an updated cluster anew and keeps it warming until that cluster's own EDS
        subscription gets a ClusterLoadAssignment. Its re-request carries the same names and
        nonce, so it looks like an ACK and would get no answer; the cluster would then wait for
        initial_fetch_timeout (15 s). Istio avoids this by pushing EDS with every full push; we send
        only the updated clusters' assignments (a SotW response for EDS may hold a subset).
        EDS names are cluster names here, as in Istio.
        https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#resource-warming
        """
        old, new = before.resources(types.CLUSTER), snapshot.resources(types.CLUSTER)
        updated = frozenset(
            name
            for name in state.names
            if name in old and name in new and old[name].version != new[name].version
        )
        if not updated or state.wildcard:
            return
        subset = self._selections.select(snapshot, types.ENDPOINT, updated)
        # The proxy keeps what it has for the other names, so what it holds is unchanged.
        await self._respond(state, snapshot, subset, slot, push_started, content=state.content_sent)

    async def _respond(
        self,
        state: TypeState,
        snapshot: Snapshot,
        selection: wire.Selection,
        slot: PushSlot | None,
        push_started: float | None,
        *,
        content: str | None = None,
    ) -> None:
        """Send ``selection`` as one response. ``content`` is what the proxy holds afterwards, if
        that is not the selection itself (a partial EDS response)."""
        nonce = self._conn.next_nonce()
        data = wire.discovery_response(
            version_info=selection.version,
            resources=selection.payload,
            type_url=state.type_url,
            nonce=nonce,
            control_plane=self._control_plane,
        )
        # Record before writing: the proxy's ACK may be read before this task resumes after the
        # write, and an ACK of a nonce not yet recorded would look stale.
        state.nonce_sent = nonce
        state.version_sent = selection.version
        state.content_sent = selection.content if content is None else content
        state.sent_from = snapshot
        state.sent_at = time.time()
        state.push_started = push_started
        short = types.short_name(state.type_url)
        try:
            await self._writer.write(data, slot)
        except asyncio.CancelledError:
            raise
        except Exception:
            metrics.xds_pushes.labels(type=f"{short}_senderr").inc()
            raise
        metrics.xds_pushes.labels(type=short).inc()
        metrics.xds_push_bytes.labels(type=short).inc(len(data))
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "ADS:%s sent %s version %s nonce %s: %d resources, %d bytes",
                short,
                self._conn.node_id,
                selection.version,
                nonce,
                len(selection.resource_names),
                len(data),
            )
