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
pilot.translate.provenance), so that a resource a proxy rejects can be traced to them, and which
config objects translation could not take as written (``Snapshot.problems``, from
pilot.translate.problems), so that ``/debug/configz`` can say why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf.message import Message

from pilot.cache.snapshot import Encoded, Snapshot
from pilot.config.kinds import POD, VIRTUAL_SERVICE
from pilot.config.objects import ConfigKey
from pilot.errors import TranslationError
from pilot.translate.context import PushContext
from pilot.translate.generators import GENERATORS, VHDS, Generator, uses_vhds
from pilot.translate.problems import translation_problems
from pilot.translate.provenance import provenance
from pilot.translate.proxy import ProxyView
from pilot.xds import types
from pilot.xds.listeners import route_config_names

Messages = dict[str, list[tuple[str, Message]]]
# What build_snapshot serializes: some resources are serialized already.
EncodedMessages = dict[str, list[tuple[str, Message | Encoded]]]


def generators_for(view: ProxyView | None) -> Mapping[str, Generator]:
    """The generators of ``view``'s types: every view's, and VHDS for a view that uses it."""
    if view is not None and uses_vhds(view):
        return {**GENERATORS, VHDS.type_url: VHDS}
    return GENERATORS


def generate_messages(view: ProxyView, context: PushContext) -> Messages:
    """Every generator's output for ``view``: type URL → [(name, message)] (debug views, tests)."""
    generators = generators_for(view)
    return {type_url: generator.generate(view, context) for type_url, generator in generators.items()}


def inconsistencies(messages: Mapping[str, Sequence[tuple[str, Message | Encoded]]]) -> list[str]:
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
        if cluster.type == cluster_pb2.Cluster.EDS  # type: ignore[union-attr]
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
    problems += [
        f"virtual host {n!r} belongs to no route configuration"
        for n, _ in messages.get(types.VIRTUAL_HOST, ())
        if types.namespace_of(n) not in route_configs
    ]
    return problems


# Types whose consistency is checked against each other: kept or rebuilt together.
GROUPS: tuple[tuple[str, ...], ...] = (
    (types.CLUSTER, types.ENDPOINT),
    (types.LISTENER, types.ROUTE, types.VIRTUAL_HOST),
)


def _groups(generators: Mapping[str, Generator]) -> list[tuple[str, ...]]:
    grouped = {type_url for group in GROUPS for type_url in group}
    out = [tuple(t for t in group if t in generators) for group in GROUPS]
    out += [(type_url,) for type_url in generators if type_url not in grouped]
    return [group for group in out if group]


def _known_kinds(generators: Mapping[str, Generator]) -> frozenset[str] | None:
    """Every config kind some generator says it reads; None if a generator does not say."""
    kinds: set[str] = set()
    for generator in generators.values():
        declared = getattr(generator, "kinds", None)
        if declared is None:
            return None
        kinds.update(declared)
    return frozenset(kinds)


def types_to_rebuild(
    changed: Iterable[ConfigKey] | None, previous: Snapshot | None = None, view: ProxyView | None = None
) -> list[str]:
    """The type URLs a view must translate again after ``changed`` (None: unknown, all of them).
    A view under a Sidecar resource rebuilds everything on a VirtualService change: its egress
    listeners also import the services their VirtualServices route to (Istio's
    convertToSidecarScope), so such a change can change its clusters too."""
    generators = generators_for(view)
    everything = list(generators)
    if changed is None or previous is None:
        return everything
    # A Pod only decides which view a proxy gets (its labels and service account), never what a view
    # holds: a Pod change rebuilds nothing here (the pusher moves proxies whose view it changed).
    keys = [key for key in changed if key.kind != POD]
    if view is not None and view.sidecar is not None and any(key.kind == VIRTUAL_SERVICE for key in keys):
        return everything
    known = _known_kinds(generators)
    if known is None or any(key.kind not in known for key in keys):
        return everything
    rebuild: set[str] = set()
    for group in _groups(generators):
        missing = any(t not in previous.by_type for t in group)
        # No key at all means nothing changed (a generator reads an empty list as "anything").
        if missing or (keys and any(generators[t].affected_by(keys) for t in group)):
            rebuild.update(group)
    return [t for t in everything if t in rebuild]


def _generate(
    generator: Generator, view: ProxyView, context: PushContext
) -> list[tuple[str, Message | Encoded]]:
    """The generator's resources, serialized already where it can (``generate_encoded``)."""
    encoded = getattr(generator, "generate_encoded", None)
    return list(encoded(view, context) if encoded is not None else generator.generate(view, context))


def build_snapshot(
    view: ProxyView, context: PushContext, previous: tuple[PushContext, Snapshot] | None = None
) -> Snapshot:
    """Translate ``view`` at ``context``'s version into a consistent, serialized Snapshot.

    ``previous``: the context the view's last snapshot was built from, and that snapshot. Types no
    change since then can affect are taken from it untranslated; the rest share every unchanged
    resource with it.
    """
    generators = generators_for(view)
    if previous is None:
        rebuild = list(generators)
        old = None
    else:
        old_context, old = previous
        rebuild = types_to_rebuild(context.changed_since(old_context), old, view)
    messages: EncodedMessages = {
        type_url: _generate(generators[type_url], view, context) for type_url in rebuild
    }
    problems = inconsistencies(messages)
    if problems:
        raise TranslationError(
            f"inconsistent snapshot for {view} at version {context.version}: " + "; ".join(problems)
        )
    keep = [type_url for type_url in generators if type_url not in messages]
    origins = MappingProxyType(provenance(view, context, messages))
    # What translation could not take shows in the listeners (the RBAC filters): kept listeners
    # keep the problems they were built with.
    untaken = (
        translation_problems(view, context) if old is None or types.LISTENER in messages else old.problems
    )
    return Snapshot.from_messages(
        context.version, messages, old, keep=keep, origins=origins, problems=untaken
    )


__all__ = [
    "GROUPS",
    "build_snapshot",
    "generate_messages",
    "generators_for",
    "inconsistencies",
    "types_to_rebuild",
]
