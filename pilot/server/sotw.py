"""StreamAggregatedResources: the state-of-the-world ADS rules for one stream.

Spec: https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol

The stream's tasks, cache watch and push slots are :class:`~pilot.server.connection.AdsStream`'s
(shared with delta). Here: the request rules (Istio's ``ShouldRespond``): NACK, unsubscribe, first
request, stale nonce, ACK, subscription change; and what a response holds, which depends on the
type (https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#grouping-resources-into-responses):

- Listener and Cluster (LDS, CDS): the complete state of the world. A response holds every
  subscribed resource, and goes out when that set or any version in it changes for this proxy.
- every other type (RDS, EDS, ...): grouped as in incremental xDS. A push holds only the subscribed
  resources whose version differs from the one this proxy was last sent; a subscription change is
  answered with only the newly added names (those that exist). Only the first request of a type
  on a stream gets every subscribed resource, and is answered even when none exists.

One deliberate resend: after new clusters, the endpoints of clusters that were updated go out
again even if unchanged, because Envoy keeps an updated cluster warming until they do.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pilot.cache.cache import SnapshotCache
from pilot.cache.snapshot import Snapshot, TypeResources
from pilot.errors import XdsProtocolError
from pilot.server import wire
from pilot.server.connection import AdsStream, Connection, FanOut, PushSlot, StreamContext, TypeState
from pilot.xds import types

__all__ = ["SotwContext", "SotwStream", "SotwTypeState"]

log = logging.getLogger("pilot.server.sotw")

_WILDCARD = "*"
_MAX_REJECTED = 1024  # names with rejected versions remembered per named type

# What the stream needs of a grpc.aio ServicerContext (requests in, encoded bytes out).
SotwContext = StreamContext


@dataclass(slots=True)
class SotwTypeState(TypeState):
    """One type URL on one SotW stream. LDS and CDS use :class:`TypeState`'s ``content_*`` and
    ``rejected_*`` (whole responses); the named types (RDS, EDS, ...) use the per-resource fields
    below, like delta. Owned by the stream's tasks, like every TypeState.

    What the proxy holds of a named type is kept in O(1) per stream, not a name -> version map:
    every response brings every subscribed name in line with one snapshot's resources
    (``base``), except the few in ``overrides``. A response the proxy NACKed still counts as sent
    (Envoy's SotW mux applies a response watch by watch and the error does not say which one
    failed), and its versions go to ``rejected``."""

    # For each subscribed name not in ``overrides``, the proxy holds base's version of it (nothing
    # if base has no such name). None: nothing sent on this stream yet.
    base: TypeResources | None = None
    # name -> what the proxy holds instead (None: nothing): newly subscribed names, and names whose
    # base version it rejected and that were therefore not sent.
    overrides: dict[str, str | None] = field(default_factory=dict)
    rejected: dict[str, set[str]] = field(default_factory=dict)  # name -> versions NACKed
    # What the last response carried: the names of the type's resources it was cut from (the
    # selection's own frozenset, shared by the streams of a view).
    last_sent: tuple[TypeResources, frozenset[str]] | None = None
    # The next response is the first of this type on the stream: send it even if it is empty.
    answer_empty: bool = False
    # The type version of the snapshot the proxy was last brought in line with, while nothing in
    # the subscription changed since: a snapshot whose type has that version has nothing to send.
    synced_with: str | None = None

    def held_version(self, name: str) -> str | None:
        """The version of ``name`` the proxy holds (None: none), for a subscribed name."""
        if name in self.overrides:
            return self.overrides[name]
        resource = self.base.resources.get(name) if self.base is not None else None
        return resource.version if resource is not None else None

    @property
    def full_state(self) -> bool:
        """Whether every response of this type is the complete state of the world (LDS, CDS)."""
        return self.type_url in types.WILDCARD_TYPES

    def is_rejected(self, name: str, version: str) -> bool:
        versions = self.rejected.get(name)
        return versions is not None and version in versions


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
        self._types: dict[str, SotwTypeState] = {}  # the same objects as conn.types

    # -- the reader ------------------------------------------------------------------------------

    def _on_request(self, request: Any) -> None:
        type_url: str = request.type_url
        if not type_url:
            # On ADS every request must name its type, since one stream carries all of them.
            # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#aggregated-discovery-service
            raise XdsProtocolError("DiscoveryRequest on ADS must set type_url")
        state = self._types.get(type_url)

        if request.HasField("error_detail"):
            self._on_nack(state, request)
            return

        names = frozenset(request.resource_names)
        wildcard_type = type_url in types.WILDCARD_TYPES
        if not wildcard_type and not names:
            # An empty list for a named type unsubscribes from every resource of it; nothing to send.
            # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#unsubscribing-from-resources
            if self._types.pop(type_url, None) is not None:
                del self._conn.types[type_url]
                log.debug("ADS:%s %s unsubscribed", types.short_name(type_url), self._conn.node_id)
            return

        if state is None or not request.response_nonce:
            # First request for this type on this stream (a new proxy, or one reconnecting with a
            # nonce from another server): always answer, with every subscribed resource.
            # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#ack-and-nack-semantics-summary
            wildcard = wildcard_type and (not names or _WILDCARD in names)
            if state is None:
                state = SotwTypeState(type_url, wildcard, self._selections.intern(names - {_WILDCARD}))
                self._types[type_url] = state
                self._conn.types[type_url] = state
            else:
                state.wildcard, state.names = wildcard, self._selections.intern(names - {_WILDCARD})
            # Whatever this stream sent before, the proxy gets the whole subscription again.
            state.base = None
            state.overrides.clear()
            state.synced_with = None
            state.answer_empty = True
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
        names = self._selections.intern(names)
        self._narrow(state, names)
        if not state.full_state and state.base is not None:
            for name in added & state.base.resources.keys():
                state.overrides[name] = None  # the proxy has forgotten it: sent even if unchanged
        state.wildcard, state.names = wildcard, names
        state.synced_with = None
        # LDS and CDS answer with the new complete state. For named types only new names need a
        # response (and only those are sent): Envoy keeps what it has for the others and drops
        # what it no longer asks for (Istio's ShouldRespond answers the same requests).
        if wildcard_type or added:
            self._ask_answer(state)

    def _on_nack(self, state: SotwTypeState | None, request: Any) -> None:
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
            for name, version in _carried(state.last_sent):
                state.rejected.setdefault(name, set()).add(version)
            while len(state.rejected) > _MAX_REJECTED:
                del state.rejected[next(iter(state.rejected))]

    def _on_ack(self, state: SotwTypeState, request: Any) -> None:
        # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#ack
        state.record_ack(request.response_nonce, request.version_info)
        # The proxy took these versions: older rejections of the same names are moot.
        if state.rejected:
            for name, _ in _carried(state.last_sent):
                state.rejected.pop(name, None)

    def _narrow(self, state: SotwTypeState, names: frozenset[str]) -> None:
        """The proxy dropped some names: forget what it held of them (a later subscription gets
        them anew). For LDS/CDS subscribed by name, re-derive what it holds for the names it keeps
        from the snapshot of the last response, so the next snapshot is compared with that (and an
        unchanged resource is not resent)."""
        if not state.full_state:
            for name in state.names - names:
                state.overrides.pop(name, None)
            return
        if state.wildcard or state.sent_from is None or not names <= state.names:
            return
        narrowed = self._selections.select(state.sent_from, state.type_url, names).content
        if state.rejected_nonce == state.nonce_sent:
            state.rejected_content = narrowed
        state.content_sent = narrowed

    # -- the sender ------------------------------------------------------------------------------

    def _changed_names(self, state: SotwTypeState, snapshot: Snapshot) -> list[str]:
        """The subscribed names of a named type whose version in ``snapshot`` differs from what
        the proxy holds (and is not one it rejected), in name order."""
        typed = snapshot.by_type.get(state.type_url)
        version = typed.version if typed is not None else ""
        if state.synced_with == version:
            return []
        changed: list[str] = []
        if typed is not None and not (typed is state.base and not state.overrides):
            resources = typed.resources
            base = state.base.resources if state.base is not None else {}
            overrides = state.overrides
            for name in state.names:
                resource = resources.get(name)
                if resource is None:
                    continue
                if name in overrides:
                    held = overrides[name]
                else:
                    old = base.get(name)
                    if old is resource:  # unchanged resources are shared between snapshots
                        continue
                    held = old.version if old is not None else None
                if held != resource.version and not state.is_rejected(name, resource.version):
                    changed.append(name)
            changed.sort()
        if not changed:
            state.synced_with = version
        return changed

    def _changes_in(self, snapshot: Snapshot) -> bool:
        for state in self._types.values():
            if not state.nonce_sent:
                continue
            if state.full_state:
                names = None if state.wildcard else state.names
                content = self._selections.select(snapshot, state.type_url, names).content
                if content not in (state.content_sent, state.rejected_content):
                    return True
            elif self._changed_names(state, snapshot):
                return True
        return False

    async def _send(self, snapshot: Snapshot, slot: PushSlot | None, push_started: float | None) -> None:
        """Write, in ADS order, every type that was asked for or that holds changes for this
        proxy; never what it last rejected.

        Order: CDS, EDS, LDS, RDS, so that nothing names a resource the proxy does not have yet.
        We do not wait for ACKs in between: on one ADS stream Envoy applies them in that order.
        https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#eventual-consistency-considerations
        """
        updated_clusters: frozenset[str] = frozenset()
        for type_url in self._ordered_types():
            state = self._types.get(type_url)  # the reader may have dropped it meanwhile
            if state is None:
                continue
            if state.full_state:
                before = state.sent_from
                if await self._send_full_state(state, snapshot, slot, push_started):
                    if type_url == types.CLUSTER and before is not None:
                        updated_clusters = _updated(before, snapshot, types.CLUSTER)
            else:
                rewarm = updated_clusters if type_url == types.ENDPOINT else frozenset()
                await self._send_named(state, snapshot, slot, push_started, rewarm)

    async def _send_full_state(
        self, state: SotwTypeState, snapshot: Snapshot, slot: PushSlot | None, push_started: float | None
    ) -> bool:
        """LDS or CDS: the complete subscribed set, if asked for or if it differs from what the
        proxy was last sent. Returns whether a response went out.
        https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#grouping-resources-into-responses"""
        selection = self._selections.select(snapshot, state.type_url, None if state.wildcard else state.names)
        if state.respond:
            state.respond = False
        elif not state.nonce_sent or selection.content in (state.content_sent, state.rejected_content):
            # Unchanged for this proxy, or exactly what it rejected: nothing to send.
            # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#when-to-send-an-update
            return False
        changed = selection.content != state.content_sent
        await self._respond(state, snapshot, selection, slot, push_started if changed else None)
        return True

    async def _send_named(
        self,
        state: SotwTypeState,
        snapshot: Snapshot,
        slot: PushSlot | None,
        push_started: float | None,
        rewarm: frozenset[str],
    ) -> None:
        """RDS, EDS and other named types: only the subscribed resources the proxy does not hold
        at their current version. The proxy keeps the others; a resource is never deleted by
        leaving it out (the parent resource stops naming it, and the proxy unsubscribes).
        https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#grouping-resources-into-responses
        https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#deleting-resources"""
        if not state.nonce_sent and not state.respond:
            return  # its first request has not been answered yet: that answer sends everything
        changed = self._changed_names(state, snapshot)
        changes = bool(changed)
        if rewarm:
            changed = self._rewarm(state, snapshot, changed, rewarm)
        answer = state.respond and state.answer_empty
        state.respond = False
        if not changed and not answer:
            return
        selection = self._selections.select(snapshot, state.type_url, frozenset(changed))
        await self._respond(state, snapshot, selection, slot, push_started if changes else None)

    def _rewarm(
        self, state: SotwTypeState, snapshot: Snapshot, changed: list[str], clusters: frozenset[str]
    ) -> list[str]:
        """Add the unchanged endpoints of clusters this batch updated.

        Envoy builds an updated cluster anew and keeps it warming until that cluster's own EDS
        subscription gets a ClusterLoadAssignment. Its re-request carries the same names and
        nonce, so it looks like an ACK and would get no answer; the cluster would then wait for
        initial_fetch_timeout (15 s). Istio avoids this by pushing EDS with every full push; we send
        only the updated clusters' assignments. EDS names are cluster names here, as in Istio.
        https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#resource-warming
        """
        resources = snapshot.resources(types.ENDPOINT)
        sending = set(changed)
        again = [
            name
            for name in clusters & state.names
            if name in resources
            and name not in sending
            and not state.is_rejected(name, resources[name].version)
        ]
        return sorted(sending.union(again)) if again else changed

    async def _respond(
        self,
        state: SotwTypeState,
        snapshot: Snapshot,
        selection: wire.Selection,
        slot: PushSlot | None,
        push_started: float | None,
    ) -> None:
        """Send ``selection`` as one response."""
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
        if state.full_state:
            state.content_sent = selection.content
        else:
            typed = snapshot.by_type.get(state.type_url)
            state.last_sent = (typed, selection.names or frozenset()) if typed is not None else None
            self._synced(state, typed)
            state.answer_empty = False
        state.nonce_sent = nonce
        state.version_sent = selection.version
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


    @staticmethod
    def _synced(state: SotwTypeState, typed: TypeResources | None) -> None:
        """A response of ``state``'s named type cut from ``typed`` carries every subscribed
        resource the proxy did not hold at its version there, except rejected versions: the proxy
        now holds ``typed``'s version of every subscribed name, but for those."""
        if typed is None:
            return  # nothing of the type exists: the (empty) response changed nothing held
        overrides: dict[str, str | None] = {}
        for name in state.rejected:
            resource = typed.resources.get(name)
            if resource is not None and name in state.names and resource.version in state.rejected[name]:
                held = state.held_version(name)
                if held != resource.version:
                    overrides[name] = held  # not sent: it keeps what it had
        state.base, state.overrides = typed, overrides
        state.synced_with = typed.version


def _carried(sent: tuple[TypeResources, frozenset[str]] | None) -> list[tuple[str, str]]:
    """(name, version) of every resource a response carried."""
    if sent is None:
        return []
    typed, names = sent
    return [(name, typed.resources[name].version) for name in sorted(names) if name in typed.resources]


def _updated(before: Snapshot, after: Snapshot, type_url: str) -> frozenset[str]:
    """Names of ``type_url`` in both snapshots, at different versions."""
    old, new = before.resources(type_url), after.resources(type_url)
    if old is new:
        return frozenset()
    return frozenset(name for name, r in new.items() if name in old and old[name].version != r.version)
