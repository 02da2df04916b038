"""DeltaAggregatedResources: incremental xDS on one ADS stream.

Spec: https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#incremental-xds

The stream's tasks, cache watch, push slots and ADS ordering are
:class:`~pilot.server.connection.AdsStream`'s, shared with state of the world. What differs is the
bookkeeping, per type URL and per resource (:class:`DeltaTypeState`):

- the subscription: wildcard (``*``) and explicit names, changed by ``resource_names_subscribe``
  and ``resource_names_unsubscribe``;
- what the proxy holds: name → version, seeded from ``initial_resource_versions`` on a (re)connect
  and updated by every response we send. A response holds only the resources whose version
  differs from that, and ``removed_resources`` for names the proxy holds that are gone;
- the versions the proxy rejected, per name: never sent again; a newer version is.

A NACKed response still counts as applied (as go-control-plane does): Envoy applies the valid
resources of a delta CDS or LDS response and rejects the others, and the error does not say which
were which; so nothing of it is resent, and its versions are marked rejected until the proxy ACKs
another version of the same name.

Resources go out as ``Resource`` messages encoded once per (type, name, version) by a
:class:`~pilot.server.wire.DeltaResourceCache` shared by every stream.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pilot.cache.cache import SnapshotCache
from pilot.cache.snapshot import Resource, Snapshot
from pilot.errors import XdsProtocolError
from pilot.server import wire
from pilot.server.connection import AdsStream, Connection, FanOut, PushSlot, StreamContext, TypeState
from pilot.xds import types

__all__ = ["DeltaStream", "DeltaTypeState"]

log = logging.getLogger("pilot.server.delta")

_WILDCARD = "*"
_MAX_OUTSTANDING = 64  # un-ACKed responses remembered per type; older ones count as applied
_MAX_REJECTED = 1024  # names with rejected versions remembered per type


@dataclass(frozen=True, slots=True)
class _Sent:
    """One response not yet ACKed or NACKed."""

    version: str  # its system_version_info
    updates: tuple[tuple[str, str], ...]  # (name, version) of each resource it carried


@dataclass(slots=True)
class DeltaTypeState(TypeState):
    """One type URL on one delta stream. ``wildcard`` and ``names`` (explicit names, without
    ``*``) are the subscription; the rest is what the proxy holds and what it was sent. The
    status fields are :class:`TypeState`'s (its SotW-only ``content_*``/``rejected_*`` stay
    unused). Owned by the stream's tasks, like every TypeState."""

    held: dict[str, str] = field(default_factory=dict)  # name -> version the proxy has
    announce: set[str] = field(default_factory=set)  # newly subscribed: send even if held
    outstanding: OrderedDict[str, _Sent] = field(default_factory=OrderedDict)  # by nonce, oldest first
    rejected: dict[str, set[str]] = field(default_factory=dict)  # name -> versions NACKed
    # The type version of the snapshot ``held`` was last brought in line with, while nothing in
    # the subscription changed since: a snapshot whose type has that version has nothing to send.
    synced_with: str | None = None

    def is_rejected(self, name: str, version: str) -> bool:
        versions = self.rejected.get(name)
        return versions is not None and version in versions

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names


@dataclass(slots=True)
class _Delta:
    """What one response for one type holds."""

    version: str  # the type's version in the snapshot (system_version_info)
    updates: list[Resource]
    removed: list[str]

    def __bool__(self) -> bool:
        return bool(self.updates or self.removed)


class DeltaStream(AdsStream):
    """The incremental protocol on one ADS stream (see :class:`AdsStream` for its life)."""

    def __init__(
        self,
        conn: Connection,
        context: StreamContext,
        cache: SnapshotCache,
        fanout: FanOut,
        resources: wire.DeltaResourceCache,
        control_plane: bytes = b"",
    ) -> None:
        super().__init__(conn, context, cache, fanout)
        self._resources = resources
        self._control_plane = control_plane  # already tagged as DeltaDiscoveryResponse field 7
        self._types: dict[str, DeltaTypeState] = {}  # the same objects as conn.types

    # -- the reader ------------------------------------------------------------------------------

    def _on_request(self, request: Any) -> None:
        type_url: str = request.type_url
        if not type_url:
            # On ADS every request must name its type, since one stream carries all of them.
            # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#aggregated-discovery-service
            raise XdsProtocolError("DeltaDiscoveryRequest on ADS must set type_url")
        state = self._types.get(type_url)
        if state is None:
            self._open(type_url, request)
            return
        if request.response_nonce:
            self._on_reply(state, request)
        # Subscription changes ride on ACKs and NACKs too, and they are deltas: apply every one,
        # whatever the nonce (a stale request's changes are still changes).
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#incremental-xds
        self._resubscribe(state, request.resource_names_subscribe, request.resource_names_unsubscribe)

    def _open(self, type_url: str, request: Any) -> None:
        """The first request for ``type_url`` on this stream (a new proxy, or one reconnecting)."""
        if request.HasField("error_detail"):
            self._record_nack(None, type_url, request.response_nonce, "", request.error_detail)
        subscribe = frozenset(request.resource_names_subscribe)
        # Wildcard: an explicit "*", or, for LDS and CDS only, a first request that names nothing
        # (the legacy form Envoy still sends). Explicit names may sit beside the wildcard.
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#how-the-client-specifies-what-resources-to-return
        wildcard = _WILDCARD in subscribe or (not subscribe and type_url in types.WILDCARD_TYPES)
        names = subscribe - {_WILDCARD}
        state = DeltaTypeState(type_url, wildcard, names)
        # On a reconnect the proxy lists what it already has: only resources it has at another
        # version (or not at all) are sent, and names it has that no longer exist are removed.
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#incremental-xds
        initial: Mapping[str, str] = request.initial_resource_versions
        state.held = {name: version for name, version in initial.items() if state.wants(name)}
        # Names it asks for but has no version of are sent even if it seems to hold them.
        state.announce = set(names - state.held.keys())
        self._types[type_url] = self._conn.types[type_url] = state
        # The first request of a type is always answered, even with nothing, so that the proxy's
        # initial fetch completes.
        self._ask_answer(state)

    def _on_reply(self, state: DeltaTypeState, request: Any) -> None:
        """A request carrying ``response_nonce``: the ACK or NACK of one of our responses."""
        nonce: str = request.response_nonce
        sent = self._settle(state, nonce)
        if request.HasField("error_detail"):
            # NACK: never answered (that would resend what was just rejected). Its versions are
            # not sent again; newer versions of the same names are.
            # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#nack
            self._record_nack(state, state.type_url, nonce, state.version_acked, request.error_detail)
            if sent is not None:
                for name, version in sent.updates:
                    state.rejected.setdefault(name, set()).add(version)
                while len(state.rejected) > _MAX_REJECTED:
                    del state.rejected[next(iter(state.rejected))]
                if nonce == state.nonce_sent:
                    state.push_started = None
            return
        if sent is not None:
            # The proxy took these versions: older rejections of the same names are moot.
            for name, _ in sent.updates:
                state.rejected.pop(name, None)
        if nonce != state.nonce_sent:
            # An ACK of an older response (or of a nonce we never sent) while a newer one is on
            # its way: stale, it changes no status.
            # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#resource-updates
            self._record_stale(state, nonce)
            return
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#ack
        state.record_ack(nonce, sent.version if sent is not None else state.version_sent)

    @staticmethod
    def _settle(state: DeltaTypeState, nonce: str) -> _Sent | None:
        """Forget the response ``nonce`` and every earlier one (the proxy answers them in order);
        return it, or None if it is not one still in flight."""
        if nonce not in state.outstanding:
            return None
        while True:
            key, sent = state.outstanding.popitem(last=False)
            if key == nonce:
                return sent

    def _resubscribe(
        self, state: DeltaTypeState, subscribe: Iterable[str], unsubscribe: Iterable[str]
    ) -> None:
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#xds-protocol-delta-subscribe
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#xds-protocol-unsubscribe
        subscribe, unsubscribe = set(subscribe), set(unsubscribe)
        if not subscribe and not unsubscribe:
            return  # a bare ACK or NACK
        if _WILDCARD in subscribe:
            state.wildcard = True
        names = set(state.names)
        for name in subscribe - {_WILDCARD}:
            # The proxy may have forgotten a resource it still seems to hold: a subscribed name is
            # always sent again (when it exists).
            names.add(name)
            state.announce.add(name)
        leave_wildcard = _WILDCARD in unsubscribe
        for name in unsubscribe - {_WILDCARD}:
            names.discard(name)
            state.announce.discard(name)
            if leave_wildcard or not state.wildcard:
                state.held.pop(name, None)  # the proxy forgets it; a resubscribe gets it anew
            # Under a wildcard the name stays covered by it: the proxy keeps it and its updates.
        if leave_wildcard:
            # Unsubscribing "*" leaves wildcard mode; the proxy drops what it had only through it
            # and keeps its explicit names.
            state.wildcard = False
            state.held = {n: v for n, v in state.held.items() if n in names}
        # An empty subscription after this is just empty, never the legacy wildcard again (that
        # is only for a type's first request on a stream), so the state stays.
        state.names = frozenset(names)
        state.synced_with = None
        if subscribe:
            self._ask_answer(state)

    # -- the sender ------------------------------------------------------------------------------

    def _diff(self, state: DeltaTypeState, snapshot: Snapshot) -> _Delta:
        """What ``state``'s proxy must be sent to hold ``snapshot``'s resources it subscribes to."""
        typed = snapshot.by_type.get(state.type_url)
        version = typed.version if typed is not None else ""
        if state.synced_with == version and not state.announce:
            return _Delta(version, [], [])
        resources: Mapping[str, Resource] = typed.resources if typed is not None else {}
        held, announce = state.held, state.announce
        updates: list[Resource] = []
        if state.wildcard:
            present: Iterable[Resource] = resources.values()
        else:
            present = (resources[name] for name in sorted(state.names) if name in resources)
        for resource in present:
            name = resource.name
            if (name in announce or held.get(name) != resource.version) and not state.is_rejected(
                name, resource.version
            ):
                updates.append(resource)
        # Names the proxy holds (we sent them, or it listed them on reconnect) that are gone.
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#deleting-resources
        # A subscribed name that never existed is not reported: the proxy's initial_fetch_timeout
        # covers it, as the spec expects clients to do. Envoy's RDS ignores a delta removal, and
        # the removal still stops that timeout, so a listener would never finish warming.
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#knowing-when-a-requested-resource-does-not-exist
        removed = sorted(name for name in held.keys() - resources.keys() if state.wants(name))
        delta = _Delta(version, updates, removed)
        if not delta and not announce:
            state.synced_with = version
        return delta

    def _changes_in(self, snapshot: Snapshot) -> bool:
        return any(state.nonce_sent and self._diff(state, snapshot) for state in self._types.values())

    async def _send(self, snapshot: Snapshot, slot: PushSlot | None, push_started: float | None) -> None:
        """Write, in ADS order, each type that was asked for or holds changes for this proxy.

        Order: CDS, EDS, LDS, RDS, so that nothing names a resource the proxy does not have yet;
        we do not wait for ACKs in between, as on one ADS stream Envoy applies them in order.
        https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#eventual-consistency-considerations
        """
        updated_clusters: frozenset[str] = frozenset()
        for type_url in self._ordered_types():
            state = self._types.get(type_url)
            if state is None:
                continue
            delta = self._diff(state, snapshot)
            if type_url == types.ENDPOINT and updated_clusters:
                self._rewarm(state, snapshot, delta, updated_clusters)
            if not delta and not state.respond:
                continue
            if type_url == types.CLUSTER:
                # Clusters the proxy has at another version: it rebuilds and re-warms them.
                updated_clusters = frozenset(
                    r.name for r in delta.updates if state.held.get(r.name) not in (None, r.version)
                )
            await self._respond(state, delta, slot, push_started if delta else None)

    def _rewarm(
        self, state: DeltaTypeState, snapshot: Snapshot, delta: _Delta, clusters: frozenset[str]
    ) -> None:
        """Add the unchanged endpoints of clusters this batch updated.

        Envoy builds an updated cluster anew and keeps it warming until that cluster's EDS
        subscription delivers a ClusterLoadAssignment; with delta too, the new cluster's watch
        does not change the subscription, so nothing would be sent and the cluster would wait for
        initial_fetch_timeout (15 s). EDS names are cluster names here, as in Istio.
        https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#resource-warming
        """
        resources = snapshot.resources(types.ENDPOINT)
        sending = {r.name for r in delta.updates}
        again = [
            resources[name]
            for name in sorted(clusters)
            if name in resources
            and name not in sending
            and state.wants(name)
            and not state.is_rejected(name, resources[name].version)
        ]
        if again:
            delta.updates = sorted(delta.updates + again, key=lambda r: r.name)

    async def _respond(
        self, state: DeltaTypeState, delta: _Delta, slot: PushSlot | None, push_started: float | None
    ) -> None:
        nonce = self._conn.next_nonce()
        data = wire.delta_discovery_response(
            system_version_info=delta.version,
            resources=b"".join(self._resources.encoded(state.type_url, r) for r in delta.updates),
            type_url=state.type_url,
            nonce=nonce,
            removed=delta.removed,
            control_plane=self._control_plane,
        )
        # Record before writing: the proxy's ACK may be read before this task resumes after the
        # write, and an ACK of a nonce not yet recorded would look stale.
        for resource in delta.updates:
            state.held[resource.name] = resource.version
        for name in delta.removed:
            state.held.pop(name, None)
        state.outstanding[nonce] = _Sent(delta.version, tuple((r.name, r.version) for r in delta.updates))
        while len(state.outstanding) > _MAX_OUTSTANDING:
            state.outstanding.popitem(last=False)
        state.announce.clear()
        state.respond = False
        state.synced_with = delta.version
        state.nonce_sent = nonce
        state.version_sent = delta.version
        state.sent_at = time.time()
        state.push_started = push_started
        await self._write(state, data, slot)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "Delta ADS:%s sent %s version %s nonce %s: %d resources, %d removed, %d bytes",
                types.short_name(state.type_url),
                self._conn.node_id,
                delta.version,
                nonce,
                len(delta.updates),
                len(delta.removed),
                len(data),
            )
