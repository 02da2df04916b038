"""The subscription ledger of one type URL on one stream, for both ADS protocols.

A :class:`TypeLedger` is what the server knows of one proxy and one type (go-control-plane's
``stream/v3.Subscription``, Istio's ``WatchedResource``): what the proxy subscribes to, what it
holds, what was sent to it and is still in flight under which nonce, what it ACKed, and what it
rejected. The functions below are the rules over it that do not depend on the protocol: what the
proxy holds after a response, what differs from a snapshot, what a NACK bars and an ACK clears.
``sotw.py`` and ``delta.py`` keep only their request rules and response shapes.

What the proxy holds is kept in O(1) per stream while it is in step with its view, not as a
name -> version map of its own: every response brings every wanted name in line with one
snapshot's resources (``base``, shared by every stream of the view), except the few names in
``overrides`` (newly wanted names, rejected versions not sent, names listed on a reconnect).
Spec: https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from pilot import metrics
from pilot.cache.snapshot import Resource, TypeResources
from pilot.server.resource_diff import diff, wanted, wanted_changes
from pilot.server.status import NackStatus
from pilot.xds import types

__all__ = [
    "MAX_PENDING",
    "NO_OVERRIDES",
    "Sent",
    "TypeLedger",
    "accept",
    "acknowledge",
    "carried",
    "changes",
    "drop_override",
    "forget",
    "holds_nothing",
    "in_flight",
    "in_step",
    "materialize",
    "record",
    "reject",
    "rewarm",
    "settle",
    "unreject",
    "updated",
]

_V = TypeVar("_V")

MAX_PENDING = 64  # responses in flight remembered per type; older ones count as applied
_MAX_REJECTED = 1024  # names with rejected versions remembered per type
_NOTHING: frozenset[str] = frozenset()  # one empty set for every ledger (an empty set is 200 bytes)
# One empty, read-only map for every ledger without overrides or rejections (an empty dict is 64
# bytes, and a stream in step has none): a ledger gets a dict of its own only to write one.
NO_OVERRIDES: Mapping[str, str | None] = MappingProxyType({})
_NO_REJECTIONS: Mapping[str, set[str]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Sent:
    """One response of one type: what it carried, read from the snapshot it was cut from."""

    nonce: str
    version: str  # the response's (system_)version_info
    typed: TypeResources | None  # the type's resources in the snapshot it was cut from
    names: frozenset[str] | None  # the names it carried (None: every resource of ``typed``)
    content: str | None = None  # identity of a whole-state response (SotW LDS/CDS), else None

    def carried(self) -> Iterator[tuple[str, str]]:
        """(name, version) of every resource the response carried."""
        return carried(self.typed, self.names)


def carried(typed: TypeResources | None, names: frozenset[str] | None) -> Iterator[tuple[str, str]]:
    """(name, version) of the resources ``names`` (None: all) of ``typed`` holds."""
    if typed is None:
        return
    resources = typed.resources
    if names is None:
        yield from ((name, resource.version) for name, resource in resources.items())
        return
    for name in names:
        found = resources.get(name)
        if found is not None:
            yield name, found.version


@dataclass(slots=True)
class TypeLedger:
    """One type URL on one stream. Owned by the stream's tasks; never shared between streams."""

    type_url: str
    wildcard: bool
    names: frozenset[str]  # explicitly subscribed names, without "*"
    # A request asked for a response (first request, reconnect, newly subscribed names).
    respond: bool = False
    # No response has answered the type's first request yet: the next one goes out even if empty.
    first: bool = True
    # What the proxy holds: base's version of every wanted name not in ``overrides``; for those,
    # the override (None: nothing). base None: nothing but the overrides.
    base: TypeResources | None = None
    overrides: Mapping[str, str | None] = field(default_factory=lambda: NO_OVERRIDES)
    # Newly subscribed names sent at the next response even if the proxy seems to hold them.
    announce: frozenset[str] = _NOTHING
    # The type version of the snapshot the proxy was last brought in line with, while nothing in
    # the subscription changed since: a snapshot whose type has that version has nothing to send.
    synced_with: str | None = None
    rejected: Mapping[str, set[str]] = field(default_factory=lambda: _NO_REJECTIONS)  # name -> NACKed
    # The nonce and whole-state content the proxy rejected: never sent again.
    rejected_nonce: str = ""
    rejected_content: str | None = None
    # Responses in flight (not ACKed or NACKed yet), oldest first (a tuple: usually one or none).
    pending: tuple[Sent, ...] = ()
    content_sent: str | None = None  # Sent.content of the latest response
    sent_from: TypeResources | None = None  # Sent.typed of the latest response
    # The latest response and the latest ACK and NACK, as /debug/syncz shows them.
    nonce_sent: str = ""
    version_sent: str = ""
    sent_at: float | None = None  # wall-clock seconds
    nonce_acked: str = ""
    version_acked: str = ""
    last_nack: NackStatus | None = None
    # Monotonic time the snapshot behind the last response reached the stream (for convergence
    # time); None when the last response answered a request rather than pushed a change.
    push_started: float | None = None
    # Names subscribe namespaces (VHDS): a name is wanted when its namespace is (types.namespace_of).
    namespaced: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.namespaced = self.type_url in types.NAMESPACED_TYPES

    def wants(self, name: str) -> bool:
        if self.wildcard or name in self.names:
            return True
        return self.namespaced and types.namespace_of(name) in self.names

    def announced(self, name: str) -> bool:
        """Whether ``name`` was newly subscribed (itself or its namespace): sent even if held."""
        announce = self.announce
        if not announce:
            return False
        return name in announce or (self.namespaced and types.namespace_of(name) in announce)

    def held_version(self, name: str) -> str | None:
        """The version of ``name`` the proxy holds (None: none), for a wanted name."""
        if name in self.overrides:
            return self.overrides[name]
        resource = self.base.resources.get(name) if self.base is not None else None
        return resource.version if resource is not None else None

    def is_rejected(self, name: str, version: str) -> bool:
        versions = self.rejected.get(name)
        return versions is not None and version in versions


# -- the subscription -----------------------------------------------------------------------------


def forget(ledger: TypeLedger, name: str) -> None:
    """The proxy holds nothing of ``name`` (it did not want it, or dropped it)."""
    if ledger.base is not None and name in ledger.base.resources:
        ledger.overrides = overrides = _writable(ledger.overrides)
        overrides[name] = None
    else:
        drop_override(ledger, name)


def drop_override(ledger: TypeLedger, name: str) -> None:
    """What the proxy holds of ``name`` is ``base``'s again (or nothing, without ``base``)."""
    ledger.overrides = _without(ledger.overrides, name, NO_OVERRIDES)


def _without(held: Mapping[str, _V], name: str, empty: Mapping[str, _V]) -> Mapping[str, _V]:
    """``held`` without ``name``: the same dict, or the shared ``empty`` once nothing is left."""
    if isinstance(held, dict) and name in held:
        del held[name]
        return held or empty
    return held


def _writable(held: Mapping[str, _V]) -> dict[str, _V]:
    """``held`` to write into: the ledger's own dict, or a new one in place of the shared empty map."""
    return held if isinstance(held, dict) else {}


def materialize(ledger: TypeLedger, keep: Iterable[str]) -> None:
    """Write out what the proxy holds of the names in ``keep`` as overrides and forget the rest:
    for a change of what is wanted that ``base`` cannot express (entering or leaving wildcard)."""
    held = {name: ledger.held_version(name) for name in keep}
    ledger.base = None
    kept = {name: version for name, version in held.items() if version is not None}
    ledger.overrides = kept or NO_OVERRIDES


# -- what differs ---------------------------------------------------------------------------------


def holds_nothing(ledger: TypeLedger) -> bool:
    """The proxy holds nothing of the type and rejected nothing: it is sent everything it wants."""
    return ledger.base is None and not ledger.overrides and not ledger.rejected


def in_step(ledger: TypeLedger, typed: TypeResources | None) -> bool:
    """The proxy's last response was cut from ``typed`` itself (an unchanged type is the same
    object in every snapshot) and its subscription did not change since: nothing differs, as
    ``changes`` would find, without its walk. A push asks this of every type of every stream."""
    return (
        typed is not None
        and typed is ledger.base
        and ledger.synced_with == typed.version
        and not ledger.announce
    )


def changes(
    ledger: TypeLedger, typed: TypeResources | None, *, removals: bool = False
) -> tuple[list[Resource], list[str]]:
    """What differs for the proxy from ``typed``: the wanted resources it does not hold at their
    version (or that were newly subscribed), but not at a version it rejected (wildcard in the
    type's order, else in name order); and with ``removals``, the wanted names it holds that
    ``typed`` no longer has (name order). Remembers when nothing differs, so an unchanged type
    is not compared again."""
    version = typed.version if typed is not None else ""
    if typed is not None and ledger.base is not None and ledger.base.version == version:
        ledger.base = typed  # the same content (a version is a hash of it): hold the newer one
    if ledger.synced_with == version and not ledger.announce:
        return [], []
    updates = _updates(ledger, typed)
    removed = _removed(ledger, typed) if removals else []
    if not updates and not removed and not ledger.announce:
        ledger.synced_with = version
        if removals and not ledger.overrides and not ledger.rejected:
            # In step with ``typed`` (an equal rebuild of base): hold on to it, not the old one.
            ledger.base = typed
    return updates, removed


def _updates(ledger: TypeLedger, typed: TypeResources | None) -> list[Resource]:
    if typed is None or (typed is ledger.base and not ledger.overrides and not ledger.announce):
        return []
    if holds_nothing(ledger):
        # Everything it wants: the same for every stream with this subscription (computed once).
        return list(wanted(typed, None if ledger.wildcard else ledger.names))
    if ledger.base is not None and not ledger.overrides and not ledger.announce:
        # In step with base: what changed since base (shared by the view's streams), if wanted.
        if not ledger.rejected:
            return list(wanted_changes(ledger.base, typed, None if ledger.wildcard else ledger.names)[0])
        wants, rejected = ledger.wants, ledger.is_rejected
        found = [
            r for r in diff(ledger.base, typed).updated if wants(r.name) and not rejected(r.name, r.version)
        ]
        return found if ledger.wildcard else sorted(found, key=_name)
    updates: list[Resource] = []
    resources = typed.resources
    base: Mapping[str, Resource] = ledger.base.resources if ledger.base is not None else {}
    overrides, announce = ledger.overrides, ledger.announce
    present: Iterable[Resource]
    if ledger.wildcard:
        present = resources.values()
    elif ledger.namespaced:
        spaces = ledger.names
        present = (r for n, r in resources.items() if types.namespace_of(n) in spaces)
    else:
        present = (resources[name] for name in ledger.names if name in resources)
    for resource in present:
        name = resource.name
        if not (announce and ledger.announced(name)):
            if name in overrides:
                held = overrides[name]
            else:
                old = base.get(name)
                if old is resource:  # unchanged resources are shared between snapshots
                    continue
                held = old.version if old is not None else None
            if held == resource.version:
                continue
        if not ledger.is_rejected(name, resource.version):
            updates.append(resource)
    if not ledger.wildcard:
        updates.sort(key=_name)
    return updates


def _removed(ledger: TypeLedger, typed: TypeResources | None) -> list[str]:
    resources: Mapping[str, Resource] = typed.resources if typed is not None else {}
    overrides, base = ledger.overrides, ledger.base
    gone: set[str] = set()
    if base is not None and base is not typed:
        if typed is not None and not overrides:
            return list(wanted_changes(base, typed, None if ledger.wildcard else ledger.names)[1])
        gone = base.resources.keys() - resources.keys()
        if overrides:
            gone.difference_update(overrides)
    gone.update(n for n, v in overrides.items() if v is not None and n not in resources)
    return sorted(n for n in gone if ledger.wants(n))


def rewarm(
    ledger: TypeLedger, typed: TypeResources | None, updates: list[Resource], clusters: frozenset[str]
) -> list[Resource]:
    """``updates`` plus the unchanged endpoints of the clusters this batch updated.

    Envoy builds an updated cluster anew and keeps it warming until that cluster's own EDS
    subscription delivers a ClusterLoadAssignment. Its re-request changes no subscription (SotW:
    same names and nonce, so it looks like an ACK), so nothing would be sent and the cluster would
    wait for initial_fetch_timeout (15 s). Istio pushes EDS with every full push; we send only the
    updated clusters' assignments. EDS names are cluster names here, as in Istio.
    https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#resource-warming
    """
    if not clusters or typed is None:
        return updates
    resources = typed.resources
    sending = {r.name for r in updates}
    again = [
        resources[name]
        for name in clusters
        if name in resources
        and name not in sending
        and ledger.wants(name)
        and not ledger.is_rejected(name, resources[name].version)
    ]
    return sorted(updates + again, key=_name) if again else updates


def updated(ledger: TypeLedger, sent: Iterable[tuple[str, str]]) -> frozenset[str]:
    """Of the resources about to be sent, those the proxy holds at another version (it rebuilds
    them: for clusters, it re-warms them)."""
    if ledger.base is None and not ledger.overrides:
        return _NOTHING  # it holds nothing
    return frozenset(name for name, version in sent if ledger.held_version(name) not in (None, version))


# -- responses, ACKs and NACKs ------------------------------------------------------------------


def record(
    ledger: TypeLedger,
    sent: Sent,
    push_started: float | None,
    *,
    drops_removed: bool,
    keep_pending: bool,
) -> None:
    """``sent`` goes out now. Record it before writing: the proxy's ACK may be read before the
    writer resumes, and an ACK of a nonce not yet recorded would look stale.

    Afterwards the proxy holds ``sent.typed``'s version of every wanted name, except versions it
    rejected (not sent: it keeps what it had). ``drops_removed``: a response also removes what
    the snapshot does not have (delta); else (SotW) an empty type changes nothing held.
    ``keep_pending``: earlier responses stay in flight until ACKed (delta); else the new one
    supersedes them (SotW: a request with an older nonce is stale) and stays until the next."""
    typed = sent.typed
    if typed is not None or drops_removed:
        overrides: dict[str, str | None] | None = None
        if typed is not None:
            for name, versions in ledger.rejected.items():
                resource = typed.resources.get(name)
                if resource is not None and resource.version in versions and ledger.wants(name):
                    held = None if ledger.announced(name) else ledger.held_version(name)
                    if held != resource.version:
                        if overrides is None:
                            overrides = {}
                        overrides[name] = held  # not sent: the proxy keeps what it had
        ledger.base, ledger.overrides = typed, overrides or NO_OVERRIDES
    ledger.synced_with = sent.version
    ledger.announce = _NOTHING
    ledger.respond = False
    ledger.first = False
    ledger.content_sent = sent.content
    ledger.sent_from = typed
    ledger.pending = (*ledger.pending[1 - MAX_PENDING :], sent) if keep_pending else (sent,)
    ledger.nonce_sent = sent.nonce
    ledger.version_sent = sent.version
    ledger.sent_at = time.time()
    ledger.push_started = push_started


def in_flight(ledger: TypeLedger, nonce: str) -> Sent | None:
    """The response ``nonce`` if it is still in flight, else None."""
    return next((sent for sent in ledger.pending if sent.nonce == nonce), None)


def settle(ledger: TypeLedger, nonce: str) -> Sent | None:
    """Forget the response ``nonce`` and every earlier one (the proxy answers them in order);
    return it, or None if it is not one still in flight."""
    for i, sent in enumerate(ledger.pending):
        if sent.nonce == nonce:
            ledger.pending = ledger.pending[i + 1 :]
            return sent
    return None


def reject(ledger: TypeLedger, sent: Sent) -> None:
    """The proxy NACKed ``sent``: it still counts as applied (the error does not say which
    resources failed), but its versions are never sent again; newer versions of the same names
    are. A whole-state response is rejected as a whole: its content is not sent again.
    https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#nack"""
    if sent.content is None:
        ledger.rejected = rejected = _writable(ledger.rejected)
        for name, version in sent.carried():
            rejected.setdefault(name, set()).add(version)
        while len(rejected) > _MAX_REJECTED:
            del rejected[next(iter(rejected))]
        if not rejected:
            ledger.rejected = _NO_REJECTIONS
    if sent.nonce == ledger.nonce_sent:
        ledger.rejected_nonce = sent.nonce
        ledger.rejected_content = ledger.content_sent
        ledger.push_started = None


def accept(ledger: TypeLedger, sent: Sent) -> None:
    """The proxy took ``sent``'s versions: older rejections of the same names are moot."""
    if ledger.rejected and sent.content is None:
        ledger.rejected = rejected = _writable(ledger.rejected)
        for name, _ in sent.carried():
            rejected.pop(name, None)
        if not rejected:
            ledger.rejected = _NO_REJECTIONS


def unreject(ledger: TypeLedger, name: str) -> None:
    """No version of ``name`` counts as rejected any more."""
    ledger.rejected = _without(ledger.rejected, name, _NO_REJECTIONS)


def acknowledge(ledger: TypeLedger, nonce: str, version: str) -> None:
    """The proxy ACKed the latest response ``nonce`` (of ``version``): record it, observe the
    convergence time of the push it carried, and forget the last NACK.
    https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#ack"""
    if ledger.nonce_acked != nonce:
        # The strings already held for the latest response, when equal (a request's are copies).
        ledger.nonce_acked = ledger.nonce_sent if nonce == ledger.nonce_sent else nonce
        ledger.version_acked = ledger.version_sent if version == ledger.version_sent else version
        if ledger.push_started is not None:
            metrics.proxy_convergence_time.observe(time.monotonic() - ledger.push_started)
            ledger.push_started = None
    ledger.last_nack = None


def _name(resource: Resource) -> str:
    return resource.name
