"""What a new PushContext takes from the previous one: which config keys changed, whether only
edits of kinds that leave every host as it was (then the context is the previous one with those
parts replaced, ``edited_context``), and which routes and VirtualService entries carry over
(pilot.translate.pieces, pilot.translate.scope)."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pilot._gen import networking_pb2 as nw
from pilot.config import kinds
from pilot.config.gateway_api.convert import convert as convert_gateway_api
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.config.store import StoreSnapshot
from pilot.translate import delegate
from pilot.translate.config_entries import VirtualServiceEntry, virtual_service_entry
from pilot.translate.config_order import authorization_policies_of, by_key, of_kind, peer_authentications_of
from pilot.translate.pieces import RoutePieces

if TYPE_CHECKING:
    from pilot.translate.context import PushContext


def edited_context(
    snapshot: StoreSnapshot, previous: PushContext, changed: frozenset[ConfigKey]
) -> PushContext:
    """The context of ``snapshot`` when it differs from ``previous``'s only by edited objects of
    ``HOSTLESS`` kinds (``edits_only``): every part of ``previous`` no such edit touches is
    taken as it is, the VirtualServices with the edited ones' entries replaced in place (their
    key and creation time, so their order, are the same), the policies of an edited kind made again."""
    assert previous.objects is not None
    edited_kinds = {key.kind for key in changed}
    mesh = previous.mesh
    virtual_services = previous.virtual_services
    pairs: list[tuple[VirtualServiceEntry, VirtualServiceEntry]] = []
    if kinds.VIRTUAL_SERVICE in edited_kinds:
        virtual_services, pairs = edited_virtual_services(snapshot, previous, changed)
    # The same hosts when every edited VirtualService kept its selection (same_hosts_map).
    same_hosts = (
        {id(old): new for old, new in pairs}
        if all(selection(old) == selection(new) for old, new in pairs)
        else None
    )
    gone = [old for old, _ in pairs]
    route_pieces = (
        RoutePieces(previous.route_pieces, gone, same_hosts)
        if edited_kinds <= ROUTING_ONLY
        else RoutePieces()
    )
    by_kind: dict[str, list[ConfigObject]] = {}
    if edited_kinds - {kinds.VIRTUAL_SERVICE, kinds.POD}:
        for obj in sorted(snapshot.objects.values(), key=by_key):
            by_kind.setdefault(obj.kind, []).append(obj)
    return type(previous)(
        revision=snapshot.revision,
        mesh=mesh,
        services=previous.services,
        virtual_services=virtual_services,
        destination_rules=previous.destination_rules,
        gateways=previous.gateways,
        sidecars=(
            tuple(of_kind(kinds.SIDECAR_INFO, by_kind))
            if kinds.SIDECAR in edited_kinds
            else previous.sidecars
        ),
        peer_authentications=(
            peer_authentications_of(by_kind)
            if kinds.PEER_AUTHENTICATION in edited_kinds
            else previous.peer_authentications
        ),
        authorization_policies=(
            authorization_policies_of(by_kind)
            if kinds.AUTHORIZATION_POLICY in edited_kinds
            else previous.authorization_policies
        ),
        request_authentications=previous.request_authentications,
        jwks=previous.jwks,
        objects=snapshot.objects,
        _workloads=previous._workloads,
        _services_of=previous._services_of,
        route_pieces=route_pieces,
        _changed_from=(previous.objects, changed),
        _same_hosts_as=previous.objects if same_hosts is not None else None,
        _previous=weakref.ref(previous) if same_hosts is not None else None,
        _replaced=same_hosts or {},
    )


# What a change of these kinds alone leaves of the previous context's routes (pilot.translate.pieces):
# a Pod only chooses a proxy's view.
ROUTING_ONLY = frozenset({kinds.VIRTUAL_SERVICE, kinds.POD})


def changed_keys(
    new: Mapping[ConfigKey, ConfigObject], old: Mapping[ConfigKey, ConfigObject]
) -> frozenset[ConfigKey]:
    """The keys added, removed or changed from ``old`` to ``new`` (the store keeps the same object
    for an unchanged key, and an edited key in its place: compared side by side first, by identity,
    which hashes no key)."""
    if new is old:
        return frozenset()
    if len(new) == len(old):
        side_by_side: set[ConfigKey] = set()
        for (key, obj), (old_key, old_obj) in zip(new.items(), old.items(), strict=True):
            if key is not old_key and key != old_key:
                break
            if obj is not old_obj:
                side_by_side.add(key)
        else:
            return frozenset(side_by_side)
    changed = {key for key, obj in new.items() if old.get(key) is not obj}
    changed.update(key for key in old if key not in new)
    return frozenset(changed)


def edits_only(
    snapshot: StoreSnapshot, previous: PushContext | None, changed: frozenset[ConfigKey] | None
) -> frozenset[ConfigKey] | None:
    """``changed`` when it is only edits (no key added or removed) of ``HOSTLESS`` kinds, none of a
    VirtualService that is or was a delegate or changed its creation time, and there are no Gateway
    API objects (whose conversion reads every kind); else None."""
    if previous is None or changed is None or previous.objects is None:
        return None
    old, new = previous.objects, snapshot.objects
    for key in changed:
        if key.kind not in HOSTLESS or key not in old or key not in new:
            return None
        if key.kind == kinds.VIRTUAL_SERVICE:
            before, after = old[key], new[key]
            if not (kinds.VIRTUAL_SERVICE_INFO.holds(before) and kinds.VIRTUAL_SERVICE_INFO.holds(after)):
                return None
            if delegate.is_delegate(before.spec) or delegate.is_delegate(after.spec):
                return None
            if before.created != after.created:
                return None
    if convert_gateway_api(new).objects:
        return None
    return changed


def edited_virtual_services(
    snapshot: StoreSnapshot, previous: PushContext, changed: frozenset[ConfigKey]
) -> tuple[tuple[VirtualServiceEntry, ...], list[tuple[VirtualServiceEntry, VirtualServiceEntry]]]:
    """``previous``'s VirtualService entries, each edited one (no delegate, same creation time:
    ``edits_only``) replaced in place by its new entry (a root's with its delegates merged); and
    the (old, new) entry pairs."""
    out = list(previous.virtual_services)
    pairs: list[tuple[VirtualServiceEntry, VirtualServiceEntry]] = []
    mesh = previous.mesh
    delegates: dict[tuple[str, str], ConfigObject[nw.VirtualService]] | None = None
    for key in changed:
        if key.kind != kinds.VIRTUAL_SERVICE:
            continue
        obj = snapshot.objects[key]
        assert kinds.VIRTUAL_SERVICE_INFO.holds(obj)
        spec = obj.spec
        if delegate.is_root(spec):
            if delegates is None:
                delegates = {
                    (o.namespace, o.name): o
                    for o in snapshot.objects.values()
                    if kinds.VIRTUAL_SERVICE_INFO.holds(o) and delegate.is_delegate(o.spec)
                }
            spec = delegate.merge_root(obj, delegates, mesh.virtual_service_export_to)
        entry = virtual_service_entry(obj, spec, mesh)
        for index, vs in enumerate(out):
            if vs.key.name == key.name and vs.key.namespace == key.namespace:
                out[index] = entry
                pairs.append((vs, entry))
                break
    return tuple(out), pairs


# Kinds whose change leaves every host, port and key of pilot.translate.provenance's index as it was
# (a VirtualService only if it keeps its selection, see ``same_hosts_map``).
HOSTLESS = frozenset(
    {kinds.VIRTUAL_SERVICE, kinds.POD, kinds.PEER_AUTHENTICATION, kinds.AUTHORIZATION_POLICY, kinds.SIDECAR}
)


def replaced_entries(
    previous: PushContext, virtual_services: tuple[VirtualServiceEntry, ...]
) -> tuple[list[VirtualServiceEntry], bool]:
    """The previous context's VirtualService entries that are not entries any more, and whether
    each was replaced by one of the same key and selection (``selection``), none added."""
    kept = {id(vs) for vs in virtual_services}
    gone = [vs for vs in previous.virtual_services if id(vs) not in kept]
    was = {id(vs) for vs in previous.virtual_services}
    made = {vs.key: vs for vs in virtual_services if id(vs) not in was}
    same_hosts = len(made) == len(gone) and all(
        (now := made.get(vs.key)) is not None and selection(now) == selection(vs) for vs in gone
    )
    return gone, same_hosts


def same_hosts_map(
    previous: PushContext, changed: frozenset[ConfigKey], virtual_services: tuple[VirtualServiceEntry, ...]
) -> dict[int, VirtualServiceEntry] | None:
    """When only kinds of ``HOSTLESS`` changed, and every VirtualService kept its selection: the
    id of each previous entry that is not an entry any more -> the one of its key that replaced
    it; else None."""
    if any(key.kind not in HOSTLESS for key in changed):
        return None
    gone, same = replaced_entries(previous, virtual_services)
    if not same:
        return None
    new = {vs.key: vs for vs in virtual_services} if gone else {}
    return {id(vs): new[vs.key] for vs in gone}


def inherited_route_pieces(
    previous: PushContext | None,
    changed: frozenset[ConfigKey] | None,
    virtual_services: tuple[VirtualServiceEntry, ...],
) -> RoutePieces:
    """The previous context's route pieces when only VirtualServices (or Pods) changed since (None:
    there is no previous context, or its mesh settings or workloads differ), without the routes of
    the VirtualServices that are not the same entry any more; else none."""
    if previous is None or changed is None or any(key.kind not in ROUTING_ONLY for key in changed):
        return RoutePieces()
    gone, same_hosts = replaced_entries(previous, virtual_services)
    if not same_hosts:
        return RoutePieces(previous.route_pieces, gone)
    new = {vs.key: vs for vs in virtual_services}
    return RoutePieces(previous.route_pieces, gone, {id(vs): new[vs.key] for vs in gone})


def selection(vs: VirtualServiceEntry) -> tuple[object, ...]:
    """What decides where a VirtualService's routes go (which hosts, ports and proxies): all of
    it but the routes themselves."""
    return (vs.key, vs.hosts, vs.gateways, vs.export_to, vs.created)
