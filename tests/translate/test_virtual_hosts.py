"""VHDS views (node metadata VHDS: "true"): route configurations without their virtual hosts, and
the virtual hosts as resources ``ROUTE_CONFIG/VHOST`` that add up to the full route configurations."""

from __future__ import annotations

import dataclasses

from envoy.config.route.v3 import route_components_pb2, route_pb2

from pilot.config.objects import ConfigKey
from pilot.translate.proxy import Proxy
from pilot.translate.snapshot import build_snapshot, inconsistencies
from pilot.xds import types
from tests import factories

VHDS_VIEW = dataclasses.replace(factories.sidecar(), virtual_host_discovery=True)


def vhds_objects(weight: int = 90) -> list:
    services = [factories.http_service(name, port=9080) for name in ("reviews", "ratings", "details")]
    rule = factories.destination_rule(
        "reviews", host="reviews", subsets=[{"name": "v1", "labels": {"version": "v1"}}]
    )
    split = factories.virtual_service(
        "reviews",
        hosts=["reviews"],
        http=[
            {
                "route": [
                    {"destination": {"host": "reviews", "subset": "v1"}, "weight": weight},
                    {"destination": {"host": "reviews"}, "weight": 100 - weight},
                ]
            }
        ],
    )
    return [*services, rule, split]


def test_node_metadata_asks_for_vhds() -> None:
    node = "sidecar~10.0.0.1~a.default~default.svc.cluster.local"
    assert Proxy.from_node(node, {"VHDS": "true"}).view() == VHDS_VIEW
    assert not Proxy.from_node("plain").view().virtual_host_discovery


def test_virtual_hosts_add_up_to_the_route_configurations() -> None:
    context = factories.push_context(*vhds_objects())
    full = build_snapshot(factories.sidecar(), context)
    split = build_snapshot(VHDS_VIEW, context)
    assert types.VIRTUAL_HOST not in full.by_type  # a view without VHDS: Istio's shape, unchanged
    assert split.by_type.keys() == {*full.by_type, types.VIRTUAL_HOST}
    for name, resource in full.resources(types.ROUTE).items():
        whole = resource.unpack(route_pb2.RouteConfiguration())
        shell = split.resources(types.ROUTE)[name].unpack(route_pb2.RouteConfiguration())
        assert not shell.virtual_hosts and shell.vhds.config_source.HasField("ads")
        vhosts = {
            n: r.unpack(route_components_pb2.VirtualHost())
            for n, r in split.resources(types.VIRTUAL_HOST).items()
            if types.namespace_of(n) == name
        }
        # Each named ROUTE_CONFIG/VHOST (Envoy removes VHDS virtual hosts by that name), and
        # otherwise Istio's virtual host.
        assert sorted(vhosts) == sorted(f"{name}/{v.name}" for v in whole.virtual_hosts)
        for vhost in whole.virtual_hosts:
            got = vhosts[f"{name}/{vhost.name}"]
            assert got.name == f"{name}/{vhost.name}"
            got.name = vhost.name
            assert got == vhost
        shell.ClearField("vhds")
        whole.ClearField("virtual_hosts")
        assert shell == whole  # every other field as Istio's
    assert split.inconsistencies() == []


def test_an_edit_changes_one_virtual_host_and_traces_to_its_virtual_service() -> None:
    before_context = factories.push_context(*vhds_objects(90))
    before = build_snapshot(VHDS_VIEW, before_context)
    after_context = factories.push_context(*vhds_objects(50), revision=2)
    after = build_snapshot(VHDS_VIEW, after_context, (before_context, before))
    full = build_snapshot(VHDS_VIEW, after_context)  # incremental equals full
    assert {t: {n: r.version for n, r in typed.resources.items()} for t, typed in after.by_type.items()} == {
        t: {n: r.version for n, r in typed.resources.items()} for t, typed in full.by_type.items()
    }
    changed = [
        name
        for name, resource in after.resources(types.VIRTUAL_HOST).items()
        if before.resources(types.VIRTUAL_HOST)[name].version != resource.version
    ]
    assert changed == ["9080/reviews.default.svc.cluster.local:9080"]
    assert after.by_type[types.ROUTE] is before.by_type[types.ROUTE]  # the shells did not change
    assert ConfigKey("VirtualService", "default", "reviews") in after.origins[types.VIRTUAL_HOST][changed[0]]


def test_a_virtual_host_must_belong_to_a_route_configuration() -> None:
    orphan = route_components_pb2.VirtualHost(name="81/x:81", domains=["x"])
    assert inconsistencies({types.VIRTUAL_HOST: [("81/x:81", orphan)]}) == [
        "virtual host '81/x:81' belongs to no route configuration"
    ]
