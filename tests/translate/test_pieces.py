"""Route pieces carried from one push context to the next give the bytes a full build gives.

For every scenario of testdata/translate/ and a mesh of many services, every VirtualService is
edited in turn, in a chain of contexts each built from the one before (as the pusher builds them):
its routes changed (a timeout on each HTTP route: the pieces of the others are kept, and whole
route configurations are kept or patched, pilot.translate.route_records), its routes moved to a
port no service has (a kept configuration loses virtual hosts: it is made anew), its hosts
changed (route configurations are made again, pieces kept), its
destinations changed (which changes the services a Sidecar imports, and with them every piece of
that scope), then put back. At every step the incremental snapshot and a snapshot from the chained
context must be byte-identical to a full translation from scratch, for the views of
tests/push/test_incremental.py and a sidecar under a Sidecar resource.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from google.protobuf import duration_pb2

from pilot._gen import networking_pb2 as nw
from pilot.cache.snapshot import Snapshot
from pilot.config.kinds import VIRTUAL_SERVICE
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.translate.context import PushContext
from pilot.translate.routes import build_routes
from pilot.translate.snapshot import build_snapshot
from pilot.xds import types
from tests import factories
from tests.push import test_incremental as incremental

VIEWS = (
    *incremental.VIEWS,
    dataclasses.replace(factories.sidecar("app"), sidecar=ConfigKey("Sidecar", "app", "default")),
)


def _mesh(count: int) -> list[ConfigObject]:
    """``count`` HTTP services over 3 ports in two namespaces, a VirtualService each (a weighted
    split between two subsets for every other one), and a Sidecar for namespace ``app``."""
    out: list[ConfigObject] = []
    for i in range(count):
        namespace = ("default", "app")[i % 2]
        name = f"svc-{i}"
        out.append(factories.http_service(name, namespace=namespace, port=(80, 8080, 9090)[i % 3]))
        out.append(
            factories.destination_rule(
                name,
                namespace=namespace,
                host=name,
                subsets=[{"name": v, "labels": {"version": v}} for v in ("v1", "v2")],
            )
        )
        split = [
            {"destination": {"host": name, "subset": "v1"}, "weight": 70},
            {"destination": {"host": name, "subset": "v2"}, "weight": 30},
        ]
        single = [{"destination": {"host": name}}]
        route = {"name": "main", "route": split if i % 2 else single}
        out.append(factories.virtual_service(name, namespace=namespace, hosts=[name], http=[route]))
    # The Sidecar of ``app`` imports svc-0 of ``default``; ``cross`` routes to svc-2 there, which the
    # Sidecar then imports too (Istio's convertToSidecarScope), until it is edited away.
    cross = {"route": [{"destination": {"host": "svc-2.default.svc.cluster.local"}}]}
    out.append(factories.virtual_service("cross", namespace="app", hosts=["cross"], http=[cross]))
    sidecar = {"egress": [{"hosts": ["./*", "default/svc-0.default.svc.cluster.local"]}]}
    out.append(factories.config("Sidecar", "default", sidecar, namespace="app"))
    return out


def _to_first_service(obj: ConfigObject) -> ConfigObject:
    """Every destination of ``obj`` is svc-0 of ``default`` (a Sidecar imports it already)."""
    spec = nw.VirtualService()
    spec.CopyFrom(obj.spec)
    for route in spec.http:
        for destination in route.route:
            destination.destination.host = "svc-0.default.svc.cluster.local"
            destination.destination.ClearField("subset")
    return dataclasses.replace(obj, spec=spec)


def _with_timeout(obj: ConfigObject) -> ConfigObject:
    spec = nw.VirtualService()
    spec.CopyFrom(obj.spec)
    for route in spec.http:
        route.timeout.CopyFrom(duration_pb2.Duration(seconds=3))
    return dataclasses.replace(obj, spec=spec)


def _on_no_port(obj: ConfigObject) -> ConfigObject:
    """Every HTTP route matches port 1 only: the VirtualService has no routes on any port, so it
    makes no virtual host for its hosts that are no service (a kept configuration is made anew)."""
    spec = nw.VirtualService()
    spec.CopyFrom(obj.spec)
    for route in spec.http:
        if not route.match:
            route.match.add()
        for match in route.match:
            match.port = 1
    return dataclasses.replace(obj, spec=spec)


def _with_host(obj: ConfigObject) -> ConfigObject:
    spec = nw.VirtualService()
    spec.CopyFrom(obj.spec)
    spec.hosts.append(f"{obj.name}.extra.example.com")
    return dataclasses.replace(obj, spec=spec)


def _bodies(snapshot: Snapshot) -> dict[str, dict[str, bytes]]:
    return {
        types.short_name(type_url): {name: r.body for name, r in typed.resources.items()}
        for type_url, typed in snapshot.by_type.items()
    }


def _chain(objects: list[ConfigObject], every: int = 1) -> None:
    """The edits in a chain of contexts; the views are translated at every ``every``-th context
    only, from the last one translated (as a pusher does for a view held back, or a push that
    coalesced: the contexts in between made no configuration of theirs)."""
    revision = 1
    context = PushContext.build(factories.store_snapshot(objects, revision))
    snapshots = {view: build_snapshot(view, context) for view in VIEWS}
    translated = context
    for index, obj in enumerate(objects):
        if obj.kind != VIRTUAL_SERVICE:
            continue
        edits = (_with_timeout(obj), _on_no_port(obj), obj, _with_host(obj), _to_first_service(obj), obj)
        for edited in edits:
            revision += 1
            objects = [*objects[:index], edited, *objects[index + 1 :]]
            store = factories.store_snapshot(objects, revision)
            chained = PushContext.build(store, context)
            context = chained
            if revision % every:
                continue
            truth = PushContext.build(store)
            for view in VIEWS:
                full = build_snapshot(view, truth)
                expected = _bodies(full)
                incremental = build_snapshot(view, chained, (translated, snapshots[view]))
                assert _bodies(incremental) == expected, (obj.key, edited is obj, view)
                assert dict(incremental.origins) == dict(full.origins), (obj.key, view)
                assert _bodies(build_snapshot(view, chained)) == expected, (obj.key, view)
                snapshots[view] = incremental
            translated = chained


@pytest.mark.parametrize("path", incremental.SCENARIOS, ids=lambda p: p.stem)
def test_chained_contexts_translate_as_a_full_build(path: Path) -> None:
    _chain(factories.load_yaml(path))


def test_chained_contexts_translate_a_mesh_as_a_full_build() -> None:
    _chain(_mesh(12))


@pytest.mark.parametrize("every", [2, 3])
def test_contexts_not_translated_pass_their_edits_on(every: int) -> None:
    _chain(_mesh(12), every)


def test_a_route_edit_keeps_the_other_route_configurations() -> None:
    objects = _mesh(6)
    view = factories.sidecar("default")
    before = PushContext.build(factories.store_snapshot(objects, 1))
    old = dict(build_routes(view, before))
    index = next(i for i, o in enumerate(objects) if o.key == ConfigKey(VIRTUAL_SERVICE, "default", "svc-2"))
    objects[index] = _with_timeout(objects[index])  # svc-2 is on port 9090
    after = PushContext.build(factories.store_snapshot(objects, 2), before)
    new = dict(build_routes(view, after))
    assert new["8080"] is old["8080"]
    assert new["9090"] is not old["9090"]
    assert new["9090"] != old["9090"]
    # Port 80 lists every VirtualService's hosts (istiod's rule for hosts that are no service there).
    assert new["80"] is not old["80"]
    # Without a previous context nothing is kept.
    fresh = PushContext.build(factories.store_snapshot(objects, 2))
    assert dict(build_routes(view, fresh))["8080"] is not old["8080"]
