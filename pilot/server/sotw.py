"""StreamAggregatedResources: the state-of-the-world ADS rules for one stream.

Spec: https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol

The stream's tasks, cache watch and push slots are :class:`~pilot.server.connection.AdsStream`'s
(shared with delta). Here: the request rules (Istio's ``ShouldRespond``): NACK, unsubscribe, first
request, stale nonce, ACK, subscription change; and what a response holds: every subscribed
resource of a type whose content for this proxy changed. One deliberate resend: after new
clusters, the endpoints of clusters that were updated go out again even if unchanged, because
Envoy keeps an updated cluster warming until they do.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pilot.cache.cache import SnapshotCache
from pilot.cache.snapshot import Snapshot
from pilot.errors import XdsProtocolError
from pilot.server import wire
from pilot.server.connection import AdsStream, Connection, FanOut, PushSlot, StreamContext, TypeState
from pilot.xds import types

__all__ = ["SotwContext", "SotwStream"]

log = logging.getLogger("pilot.server.sotw")

_WILDCARD = "*"

# What the stream needs of a grpc.aio ServicerContext (requests in, encoded bytes out).
SotwContext = StreamContext


class SotwStream(AdsStream):
    """The state-of-the-world protocol on one ADS stream (see :class:`AdsStream` for its life)."""

    def __init__(
        self,
        conn: Connection,
        context: SotwContext,
        cache: SnapshotCache,
        fanout: FanOut,
        selections: wire.SelectionCache,
        control_plane: bytes = b"",
    ) -> None:
        super().__init__(conn, context, cache, fanout)
        self._selections = selections
        self._control_plane = control_plane

    # -- the reader ------------------------------------------------------------------------------

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
            # Not the latest nonce we sent for this type: the request is stale. Ignore it.
            self._record_stale(state, request.response_nonce)
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
        self._record_nack(
            state, request.type_url, request.response_nonce, request.version_info, request.error_detail
        )
        if state is None:
            return
        if request.response_nonce and request.response_nonce == state.nonce_sent:
            # Remember what was rejected so it is never sent again; only different content for
            # this type (a newer snapshot) goes out.
            state.rejected_nonce = state.nonce_sent
            state.rejected_content = state.content_sent
            state.push_started = None

    def _on_ack(self, state: TypeState, request: Any) -> None:
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#ack
        state.record_ack(request.response_nonce, request.version_info)

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

    # -- the sender ------------------------------------------------------------------------------

    def _changes_in(self, snapshot: Snapshot) -> bool:
        for state in self._conn.types.values():
            if state.nonce_sent:
                names = None if state.wildcard else state.names
                content = self._selections.select(snapshot, state.type_url, names).content
                if content not in (state.content_sent, state.rejected_content):
                    return True
        return False

    async def _send(self, snapshot: Snapshot, slot: PushSlot | None, push_started: float | None) -> None:
        """Write, in ADS order, every type that was asked for or whose content for this proxy
        differs from what it was last sent; never the content it last rejected.

        Order: CDS, EDS, LDS, RDS, so that nothing names a resource the proxy does not have yet.
        We do not wait for ACKs in between: on one ADS stream Envoy applies them in that order.
        https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#eventual-consistency-considerations
        """
        clusters_before: Snapshot | None = None  # set when this batch sends new clusters
        for type_url in self._ordered_types():
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
        await self._write(state, data, slot)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "ADS:%s sent %s version %s nonce %s: %d resources, %d bytes",
                types.short_name(state.type_url),
                self._conn.node_id,
                selection.version,
                nonce,
                len(selection.resource_names),
                len(data),
            )
