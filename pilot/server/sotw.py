"""StreamAggregatedResources: the state-of-the-world ADS rules for one stream.

Spec: https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol

The stream's tasks, cache watch, push slots and ADS order are
:class:`~pilot.server.stream.AdsStream`'s and the bookkeeping of each type is its
:class:`~pilot.server.ledger.TypeLedger` (both shared with delta). Here: the request rules (Istio's
``ShouldRespond``): NACK, unsubscribe, first request, stale nonce, ACK, subscription change; and
what a response holds, which depends on the type
(https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#grouping-resources-into-responses):

- Listener and Cluster (LDS, CDS): the complete state of the world. A response holds every
  subscribed resource, and goes out when that set or any version in it changes for this proxy.
  Such a response is rejected as a whole: the proxy is not sent the same content again.
- every other type (RDS, EDS, ...): grouped as in incremental xDS. A push holds only the subscribed
  resources whose version differs from the one this proxy was last sent; a subscription change is
  answered with only the newly added names (those that exist). Only the first request of a type
  on a stream gets every subscribed resource, and is answered even when none exists. A response
  the proxy NACKed still counts as sent (Envoy's SotW mux applies a response watch by watch and
  the error does not say which one failed), and its versions are not sent again.

One deliberate resend: after new clusters, the endpoints of clusters that were updated go out
again even if unchanged, because Envoy keeps an updated cluster warming until they do.
"""

from __future__ import annotations

import logging
import sys

from pilot.cache.snapshot import Snapshot, TypeResources
from pilot.errors import XdsProtocolError
from pilot.server import ledger as rules
from pilot.server import wire
from pilot.server.ledger import TypeLedger
from pilot.server.requests import SotwRequest
from pilot.server.selections import Selection, SelectionCache
from pilot.server.stream import AdsStream, Cut, StreamContext
from pilot.xds import types

__all__ = ["SotwContext", "SotwRequest", "SotwStream"]

log = logging.getLogger("pilot.server.sotw")

_WILDCARD = "*"


# What the stream needs of a grpc.aio ServicerContext (requests in, encoded bytes out).
SotwContext = StreamContext[SotwRequest]


class SotwStream(AdsStream[SotwRequest, SelectionCache]):
    """The state-of-the-world protocol on one ADS stream (see :class:`AdsStream` for its life)."""

    __slots__ = ()

    _log = log

    # -- the reader ------------------------------------------------------------------------------

    def _on_request(self, request: SotwRequest) -> None:
        type_url = sys.intern(request.type_url)  # one string per type, not one per stream
        if not type_url:
            # On ADS every request must name its type, since one stream carries all of them.
            # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#aggregated-discovery-service
            raise XdsProtocolError("DiscoveryRequest on ADS must set type_url")
        ledger = self._conn.types.get(type_url)

        if request.HasField("error_detail"):
            # The proxy rejected our last response and keeps running its previous version. Do not
            # answer (answering would send the same rejected config again); remember what was
            # rejected so it is never sent again: only different content (a newer snapshot) goes out.
            # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#nack
            nonce = request.response_nonce
            self._rejections.nack(ledger, type_url, nonce, request.version_info, request.error_detail)
            sent = rules.in_flight(ledger, nonce) if ledger is not None and nonce else None
            if ledger is not None and sent is not None:
                self._rejections.reject(ledger, sent, request.error_detail.message)
            return

        names = frozenset(request.resource_names)
        wildcard_type = type_url in types.WILDCARD_TYPES
        if not wildcard_type and not names:
            # An empty list for a named type unsubscribes from every resource of it; nothing to send.
            # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#unsubscribing-from-resources
            if self._conn.types.pop(type_url, None) is not None:
                log.debug("ADS:%s %s unsubscribed", types.short_name(type_url), self._conn.node_id)
            return

        if ledger is None or not request.response_nonce:
            # First request for this type on this stream (a new proxy, or one reconnecting with a
            # nonce from another server): always answer, with every subscribed resource.
            # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#ack-and-nack-semantics-summary
            wildcard = wildcard_type and (not names or _WILDCARD in names)
            interned = self._shared.intern(_without_wildcard(names))
            if ledger is None:
                ledger = self._conn.types[type_url] = TypeLedger(type_url, wildcard, interned)
            else:
                ledger.wildcard, ledger.names = wildcard, interned
            # Whatever this stream sent before, the proxy gets the whole subscription again.
            ledger.base = None
            ledger.overrides = rules.NO_OVERRIDES
            ledger.synced_with = None
            ledger.first = True
            self._ask_answer(ledger)
            return

        if request.response_nonce != ledger.nonce_sent:
            # Not the latest nonce we sent for this type: the request is stale. Ignore it.
            self._record_stale(ledger, request.response_nonce)
            return

        if request.response_nonce != ledger.rejected_nonce:
            # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#ack
            rules.acknowledge(ledger, request.response_nonce, request.version_info)
            # Applied: no longer in flight (the ledger lets go of it until the next response).
            sent = rules.settle(ledger, request.response_nonce)
            if sent is not None:
                rules.accept(ledger, sent)
        # else: the proxy rejected this nonce and asks again (say, for more names) with the same
        # nonce and its old version; that is no ACK, and the NACK stays recorded.

        # Envoy sends a request with the same nonce when what it wants changes.
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#how-the-client-specifies-what-resources-to-return
        wildcard = wildcard_type and (_WILDCARD in names or (not names and ledger.wildcard))
        names = _without_wildcard(names)
        if wildcard == ledger.wildcard and names == ledger.names:
            return
        added = names - ledger.names
        names = self._shared.intern(names)
        self._narrow(ledger, names)
        for name in added:
            rules.forget(ledger, name)  # the proxy has forgotten it: sent even if unchanged
        ledger.wildcard, ledger.names = wildcard, names
        ledger.synced_with = None
        # LDS and CDS answer with the new complete state. For named types only new names need a
        # response (and only those are sent): Envoy keeps what it has for the others and drops
        # what it no longer asks for (Istio's ShouldRespond answers the same requests).
        if wildcard_type or added:
            self._ask_answer(ledger)

    def _narrow(self, ledger: TypeLedger, names: frozenset[str]) -> None:
        """The proxy dropped some names: forget what it held of them (a later subscription gets
        them anew). For LDS/CDS subscribed by name, re-derive the content of the last response for
        the names it keeps, so the next snapshot is compared with that (and an unchanged resource
        is not resent)."""
        for name in ledger.names - names:
            rules.drop_override(ledger, name)
        if ledger.content_sent is None or ledger.wildcard or not names <= ledger.names:
            return
        narrowed = self._shared.cut(ledger.sent_from, ledger.type_url, names).content
        if ledger.rejected_nonce == ledger.nonce_sent:
            ledger.rejected_content = narrowed
        ledger.content_sent = narrowed

    # -- the sender ------------------------------------------------------------------------------

    def _select(self, ledger: TypeLedger, snapshot: Snapshot) -> Selection:
        return self._shared.select(snapshot, ledger.type_url, None if ledger.wildcard else ledger.names)

    def _has_changes(self, ledger: TypeLedger, snapshot: Snapshot) -> bool:
        if ledger.type_url in types.WILDCARD_TYPES:
            content = self._select(ledger, snapshot).content
            return content not in (ledger.content_sent, ledger.rejected_content)
        return bool(rules.changes(ledger, snapshot.by_type.get(ledger.type_url))[0])

    def _cut(self, ledger: TypeLedger, snapshot: Snapshot, rewarm: frozenset[str]) -> Cut | None:
        typed = snapshot.by_type.get(ledger.type_url)
        if ledger.type_url in types.WILDCARD_TYPES:
            # LDS or CDS: the complete subscribed set, if asked for or if it differs from what
            # the proxy was last sent (and from what it rejected).
            # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#when-to-send-an-update
            selection = self._select(ledger, snapshot)
            if ledger.respond:
                ledger.respond = False
            elif not ledger.nonce_sent or selection.content in (ledger.content_sent, ledger.rejected_content):
                return None
            changes = selection.content != ledger.content_sent
            return self._response(ledger, selection, typed, changes, selection.content)
        # RDS, EDS and other named types: only the subscribed resources the proxy does not hold at
        # their current version. The proxy keeps the others; a resource is never deleted by
        # leaving it out (the parent resource stops naming it, and the proxy unsubscribes).
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#deleting-resources
        if not ledger.nonce_sent and not ledger.respond:
            return None  # its first request has not been answered yet: that answer sends everything
        # A proxy that holds nothing is sent all it subscribes to: its (shared) subscription names
        # that selection, as for every other proxy of the view that connects.
        everything = rules.holds_nothing(ledger)
        changed, _ = rules.changes(ledger, typed)
        changes = bool(changed)
        changed = rules.rewarm(ledger, typed, changed, rewarm)
        answer = ledger.respond and ledger.first
        ledger.respond = False
        if not changed and not answer:
            return None
        names = ledger.names if everything else frozenset(r.name for r in changed)
        selection = self._shared.select(snapshot, ledger.type_url, names)
        return self._response(ledger, selection, typed, changes, None)

    def _response(
        self,
        ledger: TypeLedger,
        selection: Selection,
        typed: TypeResources | None,
        changes: bool,
        content: str | None,
    ) -> Cut:
        def encode(nonce: str) -> bytes:
            return wire.discovery_response(
                version_info=selection.version,
                resources=selection.payload,
                type_url=ledger.type_url,
                nonce=nonce,
                control_plane=self._control_plane,
            )

        return Cut(
            version=selection.version,
            typed=typed,
            names=selection.names,
            changes=changes,
            encode=encode,
            summary=lambda: f"{len(selection.resource_names)} resources",
            content=content,
            # The selection's names within ``typed`` make the bytes (its version is typed's).
            key=None if typed is None else ("sotw", selection.names),
        )


def _without_wildcard(names: frozenset[str]) -> frozenset[str]:
    # No copy of thousands of names (an EDS request or ACK names every cluster) unless needed.
    return names - {_WILDCARD} if _WILDCARD in names else names
