"""build_snapshot: every resource of every type for one view, checked, then serialized once.

The final check is go-control-plane's ``Snapshot.Consistent()``: every EDS name is an EDS cluster,
every EDS cluster has its assignment, and every route configuration a listener names exists. A
failure is a bug in the translator, never bad user config, so it raises.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf.message import Message

from pilot.cache.snapshot import Snapshot
from pilot.errors import TranslationError
from pilot.translate.context import PushContext
from pilot.translate.generators import GENERATORS
from pilot.translate.listeners import HCM_FILTER
from pilot.translate.proxy import ProxyView
from pilot.xds import types

Messages = dict[str, list[tuple[str, Message]]]


def generate_messages(view: ProxyView, context: PushContext) -> Messages:
    """Every generator's output for ``view``: type URL → [(name, message)] (debug views, tests)."""
    return {type_url: generator.generate(view, context) for type_url, generator in GENERATORS.items()}


def _listener_route_names(listeners: Sequence[tuple[str, Message]]) -> set[str]:
    out = set()
    for _, message in listeners:
        listener: Any = message
        chains = [*listener.filter_chains]
        if listener.HasField("default_filter_chain"):
            chains.append(listener.default_filter_chain)
        for chain in chains:
            for network_filter in chain.filters:
                if network_filter.name == HCM_FILTER:
                    manager = hcm_pb2.HttpConnectionManager()
                    network_filter.typed_config.Unpack(manager)
                    if manager.HasField("rds"):
                        out.add(manager.rds.route_config_name)
    return out


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
    named = _listener_route_names(messages.get(types.LISTENER, ()))
    problems += [
        f"route configuration {n!r} named by a listener is missing" for n in sorted(named - route_configs)
    ]
    return problems


def build_snapshot(view: ProxyView, context: PushContext) -> Snapshot:
    """Translate ``view`` at ``context``'s version into a consistent, serialized Snapshot."""
    messages = generate_messages(view, context)
    problems = inconsistencies(messages)
    if problems:
        raise TranslationError(
            f"inconsistent snapshot for {view} at version {context.version}: " + "; ".join(problems)
        )
    return Snapshot.from_messages(context.version, messages)


__all__ = ["build_snapshot", "generate_messages", "inconsistencies"]
