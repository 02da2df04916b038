"""Incremental translation (a view rebuilt from its previous snapshot) equals a full translation.

For every scenario of testdata/translate/ and every object in it, the config with and without that
object is translated both ways, in both directions, for sidecars in two namespaces, an intercepted
sidecar and a router. The snapshots must be the same resources at the same versions; and the
types the change cannot affect must be the previous snapshot's own objects (nothing re-translated).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from google.protobuf import json_format

from pilot._gen import networking_pb2 as nw
from pilot._gen import security_pb2 as sec
from pilot.cache.snapshot import Snapshot
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.translate.context import PushContext
from pilot.translate.proxy import InterceptionMode, ProxyView
from pilot.translate.snapshot import build_snapshot, types_to_rebuild
from pilot.xds import types
from tests import factories

SECURITY = "security.istio.io/v1"
INPUTS = Path(__file__).resolve().parent.parent.parent / "testdata" / "translate"
SCENARIOS = sorted(INPUTS.glob("*.yaml"))
VIEWS = (
    factories.sidecar("default"),
    factories.sidecar("other"),
    factories.sidecar("default", InterceptionMode.REDIRECT),
    factories.router(),
    dataclasses.replace(factories.sidecar("default"), virtual_host_discovery=True),  # VHDS
)


def _context(objects: list[ConfigObject], revision: int) -> PushContext:
    return PushContext.build(factories.store_snapshot(objects, revision))


def _same(a: Snapshot, b: Snapshot) -> None:
    """The same resources at the same versions, traced to the same objects (provenance)."""
    assert list(a.by_type) == list(b.by_type)
    for type_url, typed in a.by_type.items():
        other = b.by_type[type_url]
        assert typed.version == other.version, types.short_name(type_url)
        assert {n: r.body for n, r in typed.resources.items()} == {
            n: r.body for n, r in other.resources.items()
        }, types.short_name(type_url)
    assert {t: dict(o) for t, o in a.origins.items()} == {t: dict(o) for t, o in b.origins.items()}


def _check(view: ProxyView, before: PushContext, after: PushContext) -> None:
    previous = build_snapshot(view, before)
    # From a context built from the previous one (reusing its services, route pieces and host
    # index: the previous context is the last one translated, as in a push).
    assert after.objects is not None
    reused = PushContext.build(factories.store_snapshot(after.objects.values(), after.revision), before)
    chained = build_snapshot(view, reused, (before, previous))
    incremental = build_snapshot(view, after, (before, previous))
    _same(incremental, build_snapshot(view, after))
    _same(chained, build_snapshot(view, after))
    rebuilt = set(types_to_rebuild(after.changed_since(before), previous, view))
    for type_url, typed in incremental.by_type.items():
        if type_url not in rebuilt:
            assert typed is previous.by_type[type_url]


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_incremental_equals_full_for_every_removed_or_added_object(path: Path) -> None:
    objects = factories.load_yaml(path)
    full = _context(objects, 1)
    for index in range(len(objects)):
        without = _context(objects[:index] + objects[index + 1 :], 2)
        for view in VIEWS:
            _check(view, full, without)
            _check(view, without, full)


def test_a_virtual_service_edit_keeps_clusters_and_endpoints() -> None:
    service = factories.http_service("reviews")
    rule = factories.destination_rule(
        "reviews", host="reviews", subsets=[{"name": "v1", "labels": {"version": "v1"}}]
    )
    route = {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}
    before = factories.push_context(
        service, rule, factories.virtual_service("reviews", hosts=["reviews"], http=[route]), revision=1
    )
    timeout = {**route, "timeout": "3s"}
    after = factories.push_context(
        service, rule, factories.virtual_service("reviews", hosts=["reviews"], http=[timeout]), revision=2
    )
    view = factories.sidecar()
    previous = build_snapshot(view, before)
    snapshot = build_snapshot(view, after, (before, previous))
    assert snapshot.version == after.version
    assert snapshot.by_type[types.CLUSTER] is previous.by_type[types.CLUSTER]
    assert snapshot.by_type[types.ENDPOINT] is previous.by_type[types.ENDPOINT]
    assert snapshot.type_version(types.ROUTE) != previous.type_version(types.ROUTE)
    # The listeners were translated again but did not change: the previous object is kept.
    assert snapshot.by_type[types.LISTENER] is previous.by_type[types.LISTENER]


def test_nothing_changed_keeps_everything_and_unknown_contexts_rebuild_everything() -> None:
    objects = [factories.http_service("reviews")]
    # An equal object that is not the same one counts as changed (the store keeps unchanged ones).
    one = factories.push_context(*objects, revision=1)
    two = factories.push_context(factories.http_service("reviews"), revision=2)
    assert two.changed_since(one) == {objects[0].key}
    snapshot = factories.store_snapshot(objects, 1)
    first, second = PushContext.build(snapshot), PushContext.build(snapshot)
    assert second.changed_since(first) == frozenset()
    view = factories.sidecar()
    previous = build_snapshot(view, first)
    again = build_snapshot(view, second, (first, previous))
    assert all(again.by_type[t] is previous.by_type[t] for t in previous.by_type)
    hand_made = PushContext(
        revision=3, mesh=first.mesh, services=first.services, virtual_services=(), destination_rules=()
    )
    assert hand_made.changed_since(first) is None
    assert types_to_rebuild(None, previous) == list(previous.by_type)


def test_a_context_reuses_the_services_of_unchanged_service_entries() -> None:
    reviews, ratings = factories.http_service("reviews"), factories.http_service("ratings")
    first = PushContext.build(factories.store_snapshot([reviews, ratings], 1))
    changed = factories.http_service("ratings", port=9080)
    second = PushContext.build(factories.store_snapshot([reviews, changed], 2), first)
    by_host = {svc.hostname: svc for svc in second.services}
    old = {svc.hostname: svc for svc in first.services}
    assert by_host["reviews.default.svc.cluster.local"] is old["reviews.default.svc.cluster.local"]
    assert by_host["ratings.default.svc.cluster.local"] is not old["ratings.default.svc.cluster.local"]
    assert by_host["ratings.default.svc.cluster.local"].ports[0].number == 9080
    # The same services as a context built from nothing.
    assert second.services == PushContext.build(factories.store_snapshot([reviews, changed], 2)).services
    # A new WorkloadEntry (which a ServiceEntry may select) or new mesh settings: nothing is reused.
    mesh = factories.mesh_config(defaultServiceExportTo=["."])
    third = PushContext.build(factories.store_snapshot([reviews, changed, mesh], 3), second)
    assert all(svc is not by_host[svc.hostname] for svc in third.services)


def _policies() -> list[ConfigObject]:
    """A PeerAuthentication and an AuthorizationPolicy of namespace ``default``, for the edit chain."""
    mtls = sec.PeerAuthentication(
        mtls=sec.PeerAuthentication.MutualTLS(mode=sec.PeerAuthentication.MutualTLS.STRICT)
    )
    deny = json_format.ParseDict(
        {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["DELETE"]}}]}]},
        sec.AuthorizationPolicy(),
    )
    return [
        ConfigObject(ConfigKey("PeerAuthentication", "default", "default"), SECURITY, mtls, "test"),
        ConfigObject(ConfigKey("AuthorizationPolicy", "default", "deny-delete"), SECURITY, deny, "test"),
    ]


def _edits(obj: ConfigObject) -> list[ConfigObject]:
    """New objects of ``obj``'s key: one that changes nothing it says (an annotation), and one
    that changes what it says, for the kinds whose change is cheap to write."""
    touched = dataclasses.replace(obj, annotations=(*obj.annotations, ("pilot.test/touched", "1")))
    spec = type(obj.spec)()
    spec.CopyFrom(obj.spec)
    if isinstance(spec, sec.PeerAuthentication):
        spec.mtls.mode = sec.PeerAuthentication.MutualTLS.PERMISSIVE
    elif isinstance(spec, sec.AuthorizationPolicy):
        spec.action = sec.AuthorizationPolicy.ALLOW
    elif isinstance(spec, nw.DestinationRule):
        spec.traffic_policy.load_balancer.simple = nw.LoadBalancerSettings.ROUND_ROBIN
    elif isinstance(spec, nw.ServiceEntry) and spec.endpoints:
        spec.endpoints[0].address = "10.99.99.99"
    elif isinstance(spec, nw.Sidecar):
        spec.outbound_traffic_policy.mode = nw.OutboundTrafficPolicy.REGISTRY_ONLY
    elif isinstance(spec, nw.VirtualService) and spec.http:
        spec.http[0].timeout.seconds = 7
    else:
        return [touched]
    return [touched, dataclasses.replace(obj, spec=spec)]


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_chained_edits_of_every_object_translate_as_a_full_build(path: Path) -> None:
    """Every object edited in turn (and put back), each context built from the one before as the
    pusher builds them (an edit of a VirtualService, PeerAuthentication, AuthorizationPolicy, Sidecar
    or Pod takes the rest from the previous context, pilot.translate.context): the incremental
    snapshot equals a full build's, origins included."""
    objects = factories.load_yaml(path) + _policies()
    revision = 1
    context = _context(objects, revision)
    snapshots = {view: build_snapshot(view, context) for view in VIEWS}
    for index, obj in enumerate(objects):
        for edited in (*_edits(obj), obj):
            revision += 1
            objects = [*objects[:index], edited, *objects[index + 1 :]]
            store = factories.store_snapshot(objects, revision)
            chained = PushContext.build(store, context)
            assert chained.changed_since(context) == {obj.key}
            truth = PushContext.build(store)
            for view in VIEWS:
                incremental = build_snapshot(view, chained, (context, snapshots[view]))
                _same(incremental, build_snapshot(view, truth))
                snapshots[view] = incremental
            context = chained
