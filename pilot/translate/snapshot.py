"""build_snapshot: every resource of every type for one view, checked, then serialized once.

The final check is go-control-plane's ``Snapshot.Consistent()``: every EDS name is an EDS cluster,
every EDS cluster has its assignment, and every route configuration a listener names exists. A
failure is a bug in the translator, never bad user config, so it raises.

Given the view's previous snapshot and the context it was built from, ``build_snapshot`` only
translates the types whose generator is affected by the config that changed in between (Istio's
``skippedCdsConfigs`` and friends): a VirtualService edit rebuilds listeners and routes, not
clusters and endpoints. Types are kept or rebuilt in consistency groups (CDS with EDS, LDS with
RDS), so every check still sees both sides of what it compares. A changed kind no generator
declares rebuilds everything.

Each snapshot also says which config objects made each resource (``Snapshot.origins``, from
pilot.translate.provenance), so that a resource a proxy rejects can be traced to them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf.message import Message

from pilot.cache.snapshot import Snapshot
from pilot.config.kinds import POD, VIRTUAL_SERVICE
from pilot.config.objects import ConfigKey
from pilot.errors import TranslationError
from pilot.translate.context import PushContext
from pilot.translate.generators import GENERATORS
from pilot.translate.provenance import provenance
from pilot.translate.proxy import ProxyView
from pilot.xds import types
from pilot.xds.listeners import route_config_names

Messages = dict[str, list[tuple[str, Message]]]


def generate_messages(view: ProxyView, context: PushContext) -> Messages:
    """Every generator's output for ``view``: type URL → [(name, message)] (debug views, tests)."""
    return {type_url: generator.generate(view, context) for type_url, generator in GENERATORS.items()}


def inconsistencies(messages: Mapping[str, Sequence[tuple[str, Message]]]) -> list[str]:
    """What is wrong with a set of generated messages; empty when consistent."""
    problems = [
        f"{types.short_name(type_url)}: {name!r} generated {count} times"
        for type_url, items in messages.items()
        for name, count in Counter(name for name, _ in items).items()
        if count > 1
    ]
    eds_clusters = {
        name
        for name, cluster in messages.get(types.CLUSTER, ())
        if cluster.type == cluster_pb2.Cluster.EDS  # type: ignore[attr-defined]
    }
    assignments = {name for name, _ in messages.get(types.ENDPOINT, ())}
    problems += [
        f"ClusterLoadAssignment {n!r} has no EDS cluster" for n in sorted(assignments - eds_clusters)
    ]
    problems += [
        f"EDS cluster {n!r} has no ClusterLoadAssignment" for n in sorted(eds_clusters - assignments)
    ]
    route_configs = {name for name, _ in messages.get(types.ROUTE, ())}
    named = route_config_names(message for _, message in messages.get(types.LISTENER, ()))
    problems += [
        f"route configuration {n!r} named by a listener is missing" for n in sorted(named - route_configs)
    ]
    return problems


# Types whose consistency is checked against each other: kept or rebuilt together.
GROUPS: tuple[tuple[str, ...], ...] = ((types.CLUSTER, types.ENDPOINT), (types.LISTENER, types.ROUTE))


def _groups() -> list[tuple[str, ...]]:
    grouped = {type_url for group in GROUPS for type_url in group}
    out = [tuple(t for t in group if t in GENERATORS) for group in GROUPS]
    out += [(type_url,) for type_url in GENERATORS if type_url not in grouped]
    return [group for group in out if group]


def _known_kinds() -> frozenset[str] | None:
    """Every config kind some generator says it reads; None if a generator does not say."""
    kinds: set[str] = set()
    for generator in GENERATORS.values():
        declared = getattr(generator, "kinds", None)
        if declared is None:
            return None
        kinds.update(declared)
    return frozenset(kinds)


def types_to_rebuild(
    changed: Iterable[ConfigKey] | None, previous: Snapshot | None = None, sidecar: bool = False
) -> list[str]:
    """The type URLs a view must translate again after ``changed`` (None: unknown, all of them).
    ``sidecar``: the view is under a Sidecar resource, whose egress listeners also import the
    services their VirtualServices route to (Istio's convertToSidecarScope), so a VirtualService
    change can change its clusters too: it rebuilds everything."""
    everything = list(GENERATORS)
    if changed is None or previous is None:
        return everything
    # A Pod only decides which view a proxy gets (its labels and service account), never what a view
    # holds: a Pod change rebuilds nothing here (the pusher moves proxies whose view it changed).
    keys = [key for key in changed if key.kind != POD]
    if sidecar and any(key.kind == VIRTUAL_SERVICE for key in keys):
        return everything
    known = _known_kinds()
    if known is None or any(key.kind not in known for key in keys):
        return everything
    rebuild: set[str] = set()
    for group in _groups():
        missing = any(t not in previous.by_type for t in group)
        # No key at all means nothing changed (a generator reads an empty list as "anything").
        if missing or (keys and any(GENERATORS[t].affected_by(keys) for t in group)):
            rebuild.update(group)
    return [t for t in everything if t in rebuild]


def build_snapshot(
    view: ProxyView, context: PushContext, previous: tuple[PushContext, Snapshot] | None = None
) -> Snapshot:
    """Translate ``view`` at ``context``'s version into a consistent, serialized Snapshot.

    ``previous``: the context the view's last snapshot was built from, and that snapshot. Types no
    change since then can affect are taken from it untranslated; the rest share every unchanged
    resource with it.
    """
    if previous is None:
        rebuild = list(GENERATORS)
        old = None
    else:
        old_context, old = previous
        rebuild = types_to_rebuild(context.changed_since(old_context), old, sidecar=view.sidecar is not None)
    messages = {type_url: GENERATORS[type_url].generate(view, context) for type_url in rebuild}
    problems = inconsistencies(messages)
    if problems:
        raise TranslationError(
            f"inconsistent snapshot for {view} at version {context.version}: " + "; ".join(problems)
        )
    keep = [type_url for type_url in GENERATORS if type_url not in messages]
    origins = MappingProxyType(provenance(view, context, messages))
    return Snapshot.from_messages(context.version, messages, old, keep=keep, origins=origins)


__all__ = ["GROUPS", "build_snapshot", "generate_messages", "inconsistencies", "types_to_rebuild"]
