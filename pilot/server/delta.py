"""DeltaAggregatedResources: incremental xDS on one ADS stream.

Spec: https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#incremental-xds

The stream's tasks, cache watch, push slots and ADS order are
:class:`~pilot.server.stream.AdsStream`'s and the bookkeeping of each type is its
:class:`~pilot.server.ledger.TypeLedger` (both shared with state of the world). Here: the request
rules and what a response holds:

- the subscription: wildcard (``*``) and explicit names, changed by ``resource_names_subscribe``
  and ``resource_names_unsubscribe``;
- what the proxy holds is seeded from ``initial_resource_versions`` on a (re)connect and brought
  in line with the snapshot by every response. A response holds only the resources whose version
  differs from that, and ``removed_resources`` for names the proxy holds that are gone;
- the versions the proxy rejected, per name: never sent again; a newer version is.

A NACKed response still counts as applied (as go-control-plane does): Envoy applies the valid
resources of a delta CDS or LDS response and rejects the others, and the error does not say which
were which; so nothing of it is resent, and its versions are marked rejected until the proxy ACKs
another version of the same name.

Resources go out as ``Resource`` messages encoded once per (type, name, version) by a
:class:`~pilot.server.selections.DeltaResourceCache` shared by every stream.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Sequence

from pilot.cache.snapshot import Snapshot, TypeResources
from pilot.errors import XdsProtocolError
from pilot.server import ledger as rules
from pilot.server import wire
from pilot.server.ledger import TypeLedger
from pilot.server.requests import DeltaRequest
from pilot.server.resource_diff import wanted_names
from pilot.server.selections import DeltaResourceCache
from pilot.server.stream import AdsStream, Cut
from pilot.xds import types

__all__ = ["DeltaRequest", "DeltaStream"]

log = logging.getLogger("pilot.server.delta")

_WILDCARD = "*"


class DeltaStream(AdsStream[DeltaRequest, DeltaResourceCache]):
    """The incremental protocol on one ADS stream (see :class:`AdsStream` for its life)."""

    __slots__ = ()

    # A delta response also removes what the snapshot lost, and every response in flight is
    # ACKed or NACKed on its own.
    _drops_removed = True
    _keeps_pending = True
    _log = log
    _label = "Delta ADS"

    # -- the reader ------------------------------------------------------------------------------

    def _on_request(self, request: DeltaRequest) -> None:
        type_url = sys.intern(request.type_url)  # one string per type, not one per stream
        if not type_url:
            # On ADS every request must name its type, since one stream carries all of them.
            # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#aggregated-discovery-service
            raise XdsProtocolError("DeltaDiscoveryRequest on ADS must set type_url")
        ledger = self._conn.types.get(type_url)
        if ledger is None:
            self._open(type_url, request)
            return
        if request.response_nonce:
            self._on_reply(ledger, request)
        # Subscription changes ride on ACKs and NACKs too, and they are deltas: apply every one,
        # whatever the nonce (a stale request's changes are still changes).
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#incremental-xds
        self._resubscribe(ledger, request.resource_names_subscribe, request.resource_names_unsubscribe)

    def _open(self, type_url: str, request: DeltaRequest) -> None:
        """The first request for ``type_url`` on this stream (a new proxy, or one reconnecting)."""
        if request.HasField("error_detail"):
            self._rejections.nack(None, type_url, request.response_nonce, "", request.error_detail)
        subscribe = frozenset(request.resource_names_subscribe)
        # Wildcard: an explicit "*", or, for LDS and CDS only, a first request that names nothing
        # (the legacy form Envoy still sends). Explicit names may sit beside the wildcard.
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#how-the-client-specifies-what-resources-to-return
        wildcard = _WILDCARD in subscribe or (not subscribe and type_url in types.WILDCARD_TYPES)
        names = subscribe - {_WILDCARD}
        if type_url in types.NAMESPACED_TYPES:
            names |= self._route_configurations()
        ledger = TypeLedger(type_url, wildcard, self._shared.intern(names))
        # On a reconnect the proxy lists what it already has: only resources it has at another
        # version (or not at all) are sent, and names it has that no longer exist are removed.
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#incremental-xds
        initial = request.initial_resource_versions
        ledger.overrides = {
            name: version for name, version in initial.items() if ledger.wants(name)
        } or rules.NO_OVERRIDES
        # Names it asks for but has no version of are sent even if it seems to hold them (without
        # a reconnect's versions, the shared subscription itself: no copy of thousands of names).
        ledger.announce = ledger.names - ledger.overrides.keys() if ledger.overrides else ledger.names
        self._conn.types[type_url] = ledger
        # The first request of a type is always answered, even with nothing, so that the proxy's
        # initial fetch completes.
        self._ask_answer(ledger)
        if type_url == types.ROUTE:
            self._follow_routes(names, ())  # VHDS asked first (a reconnect may order them so)

    def _route_configurations(self) -> frozenset[str]:
        """The route configurations the proxy subscribes to over RDS: its VHDS namespaces.

        Envoy's VHDS subscribes to its route configuration's name as a namespace, but its delta
        mux never sends namespaces (NewGrpcMuxImpl::updateWatch: "to prevent sending out of
        requests that contain prefixes instead of resource names"): its VirtualHost requests name
        nothing. So a proxy wants the virtual hosts ``R/...`` of every route configuration R it
        subscribes to, and those follow its RDS subscription.
        https://github.com/envoyproxy/envoy/blob/main/source/extensions/config_subscription/grpc/new_grpc_mux_impl.cc
        """
        routes = self._conn.types.get(types.ROUTE)
        return routes.names if routes is not None else frozenset()

    def _on_reply(self, ledger: TypeLedger, request: DeltaRequest) -> None:
        """A request carrying ``response_nonce``: the ACK or NACK of one of our responses."""
        nonce = request.response_nonce
        sent = rules.settle(ledger, nonce)
        if request.HasField("error_detail"):
            # NACK: never answered (that would resend what was just rejected).
            self._rejections.nack(ledger, ledger.type_url, nonce, ledger.version_acked, request.error_detail)
            if sent is not None:
                self._rejections.reject(ledger, sent, request.error_detail.message)
            return
        if sent is not None:
            rules.accept(ledger, sent)
        if nonce != ledger.nonce_sent:
            # An ACK of an older response (or of a nonce we never sent) while a newer one is on
            # its way: stale, it changes no status.
            # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#resource-updates
            self._record_stale(ledger, nonce)
            return
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#ack
        rules.acknowledge(ledger, nonce, sent.version if sent is not None else ledger.version_sent)

    def _resubscribe(self, ledger: TypeLedger, subscribe: Sequence[str], unsubscribe: Sequence[str]) -> None:
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#xds-protocol-delta-subscribe
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#xds-protocol-unsubscribe
        if not subscribe and not unsubscribe:
            return  # a bare ACK or NACK
        joining, leaving = set(subscribe), set(unsubscribe)
        names = set(ledger.names)
        if _WILDCARD in joining and not ledger.wildcard:
            # Every name is wanted now; the proxy holds only what it held through its names.
            rules.materialize(ledger, names)
            ledger.wildcard = True
        joining.discard(_WILDCARD)
        for name in joining:
            if not ledger.wants(name):
                rules.forget(ledger, name)
        # The proxy may have forgotten a resource it still seems to hold: a subscribed name is
        # always sent again (when it exists).
        names |= joining
        leave_wildcard = _WILDCARD in leaving
        leaving.discard(_WILDCARD)
        ledger.announce = (ledger.announce | joining) - leaving
        for name in leaving:
            names.discard(name)
            if leave_wildcard or not ledger.wildcard:
                rules.drop_override(ledger, name)  # the proxy forgets it; a resubscribe gets it anew
            # Under a wildcard the name stays covered by it: the proxy keeps it and its updates.
        if leave_wildcard and ledger.wildcard:
            # Unsubscribing "*" leaves wildcard mode; the proxy drops what it had only through it
            # and keeps its explicit names.
            rules.materialize(ledger, names)
            ledger.wildcard = False
        # An empty subscription after this is just empty, never the legacy wildcard again (that
        # is only for a type's first request on a stream), so the ledger stays.
        ledger.names = self._shared.intern(frozenset(names))
        ledger.synced_with = None
        if subscribe:
            self._ask_answer(ledger)
        if ledger.type_url == types.ROUTE:
            self._follow_routes(subscribe, unsubscribe)

    def _follow_routes(self, subscribe: Iterable[str], unsubscribe: Sequence[str]) -> None:
        """Route configurations (re)subscribed: Envoy starts their VHDS anew and holds none of
        their virtual hosts; unsubscribed: it dropped them (see _route_configurations)."""
        joining = [n for n in subscribe if n != _WILDCARD]
        for type_url in types.NAMESPACED_TYPES:
            namespaced = self._conn.types.get(type_url)
            if namespaced is not None and (joining or unsubscribe):
                self._resubscribe(namespaced, joining, unsubscribe)

    # -- the sender ------------------------------------------------------------------------------

    def _has_changes(self, ledger: TypeLedger, snapshot: Snapshot) -> bool:
        typed = snapshot.by_type.get(ledger.type_url)
        updates, removed = rules.changes(ledger, typed, removals=True)
        return bool(updates or removed)

    def _cut(self, ledger: TypeLedger, snapshot: Snapshot, rewarm: frozenset[str]) -> Cut | None:
        typed = snapshot.by_type.get(ledger.type_url)
        # Removed: names the proxy holds (we sent them, or it listed them on reconnect) that are
        # gone. https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#deleting-resources
        # A subscribed name that never existed is not reported: the proxy's initial_fetch_timeout
        # covers it, as the spec expects clients to do. Envoy's RDS ignores a delta removal, and
        # the removal still stops that timeout, so a listener would never finish warming.
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#knowing-when-a-requested-resource-does-not-exist
        # A proxy that holds nothing of the type gets everything it wants: the same bytes for
        # every proxy of the view with that subscription, encoded once.
        fresh = typed is not None and rules.holds_nothing(ledger)
        updates, removed = rules.changes(ledger, typed, removals=True)
        updates = rules.rewarm(ledger, typed, updates, rewarm)
        changes = bool(updates or removed)
        if not changes and not ledger.respond:
            return None
        ledger.respond = False
        version = typed.version if typed is not None else ""
        type_url = ledger.type_url
        shared = self._shared
        subscription = None if ledger.wildcard else ledger.names

        everything = fresh and typed is not None and not removed

        def payload() -> bytes:
            if everything and typed is not None:
                return shared.everything(typed, subscription, updates)
            return b"".join(shared.encoded(type_url, r) for r in updates)

        def encode(nonce: str) -> bytes:
            return wire.delta_discovery_response(
                system_version_info=version,
                resources=payload(),
                type_url=type_url,
                nonce=nonce,
                removed=removed,
                control_plane=self._control_plane,
            )

        return Cut(
            version=version,
            typed=typed if typed is not None else TypeResources.build(type_url, ()),
            # Everything wanted: the view's one set of those names, not a set per stream.
            names=wanted_names(typed, subscription)
            if everything and typed is not None
            else frozenset(r.name for r in updates),
            changes=changes,
            encode=encode,
            summary=lambda: f"{len(updates)} resources, {len(removed)} removed",
            # Within ``typed``, the names sent and removed make the bytes; everything a
            # subscription selects is named by the subscription (see DeltaResourceCache.everything).
            key=None
            if typed is None
            else ("delta", subscription)
            if everything
            else ("delta", tuple(r.name for r in updates), tuple(removed)),
        )
