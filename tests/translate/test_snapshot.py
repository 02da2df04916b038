from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf import json_format

from pilot.config.objects import ConfigKey
from pilot.errors import TranslationError
from pilot.translate import generators, snapshot
from pilot.translate.listeners import build_listeners
from pilot.translate.proxy import InterceptionMode
from pilot.xds import types
from tests import factories as f
from tests.translate.golden import ENVOY, static_bootstrap


def kitchen_sink():
    """Everything milestone 1 does not translate, next to things it does: nothing may crash."""
    return f.push_context(
        f.http_service(
            "reviews", port=9080, endpoints=[{"address": "10.0.0.1", "labels": {"version": "v1"}}]
        ),
        f.http_service("db", port=5432, protocol="TCP", endpoints=[{"address": "10.0.0.2"}]),
        f.destination_rule(
            "reviews",
            host="reviews",
            trafficPolicy={
                "loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}},
                "tls": {"mode": "ISTIO_MUTUAL"},
                "connectionPool": {
                    "tcp": {"tcpKeepalive": {"time": "7200s", "interval": "75s", "probes": 9}},
                    "http": {
                        "useClientProtocol": True,
                        "maxConcurrentStreams": 10,
                        "h2UpgradePolicy": "UPGRADE",
                    },
                },
                "outlierDetection": {"consecutiveGatewayErrors": 3, "consecutiveErrors": 4},
            },
            subsets=[
                {
                    "name": "v1",
                    "labels": {"version": "v1"},
                    "trafficPolicy": {"loadBalancer": {"consistentHash": {"maglev": {"tableSize": 65537}}}},
                },
                {"name": "pass", "trafficPolicy": {"loadBalancer": {"simple": "PASSTHROUGH"}}},
            ],
        ),
        f.virtual_service(
            "reviews",
            hosts=["reviews"],
            http=[
                {
                    "match": [{"uri": {"prefix": "/m"}, "queryParams": {"q": {"exact": "1"}}}],
                    "mirror": {"host": "reviews", "subset": "v1"},
                    "mirrorPercentage": {"value": 5},
                    "corsPolicy": {
                        "allowOrigins": [{"exact": "https://a.example.com"}],
                        "allowMethods": ["GET"],
                    },
                    "route": [{"destination": {"host": "reviews", "subset": "v1"}}],
                },
                {"match": [{"uri": {"prefix": "/d"}}], "delegate": {"name": "other", "namespace": "default"}},
                {
                    "match": [{"withoutHeaders": {"x-a": {"exact": "b"}}}],
                    "fault": {"delay": {"exponentialDelay": "1s", "percentage": {"value": 5}}},
                    "route": [{"destination": {"host": "reviews"}}],
                },
            ],
            tcp=[{"route": [{"destination": {"host": "db"}}]}],
            tls=[{"match": [{"sniHosts": ["reviews"]}], "route": [{"destination": {"host": "reviews"}}]}],
        ),
        f.virtual_service("delegate", http=[{"route": [{"destination": {"host": "reviews"}}]}]),
        f.config("Gateway", "gw", {"selector": {"istio": "ingressgateway"}}, namespace="istio-system"),
    )


@pytest.mark.parametrize(
    "view", [f.sidecar(), f.sidecar("other", InterceptionMode.REDIRECT), f.router()], ids=str
)
def test_build_snapshot_has_every_type(view) -> None:
    context = kitchen_sink()
    snap = snapshot.build_snapshot(view, context)
    assert snap.version == context.version
    assert set(snap.by_type) == {types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE}
    assert snap.inconsistencies() == []
    assert "outbound|9080|pass|reviews.default.svc.cluster.local" in snap.resources(types.CLUSTER)
    assert "outbound|9080|pass|reviews.default.svc.cluster.local" not in snap.resources(types.ENDPOINT)


@pytest.mark.skipif(not ENVOY.exists(), reason="no envoy binary in .venv")
def test_envoy_accepts_the_kitchen_sink(tmp_path: Path) -> None:
    messages = snapshot.generate_messages(f.sidecar(mode=InterceptionMode.REDIRECT), kitchen_sink())
    config = tmp_path / "envoy.json"
    config.write_text(json_format.MessageToJson(static_bootstrap(messages)))
    result = subprocess.run(
        [str(ENVOY), "--mode", "validate", "-c", str(config), "-l", "warning"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_inconsistencies() -> None:
    eds = cluster_pb2.Cluster(name="a", type=cluster_pb2.Cluster.EDS)
    messages = {
        types.CLUSTER: [("a", eds), ("a", eds)],
        types.ENDPOINT: [("b", endpoint_pb2.ClusterLoadAssignment(cluster_name="b"))],
        types.LISTENER: build_listeners(f.sidecar(), f.push_context(f.http_service("reviews"))),
        types.ROUTE: [],
    }
    problems = snapshot.inconsistencies(messages)
    assert "cds: 'a' generated 2 times" in problems
    assert "ClusterLoadAssignment 'b' has no EDS cluster" in problems
    assert "EDS cluster 'a' has no ClusterLoadAssignment" in problems
    assert "route configuration '80' named by a listener is missing" in problems


def test_build_snapshot_raises_on_a_translator_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = generators.FunctionGenerator(types.ROUTE, frozenset(), lambda view, context: [])
    monkeypatch.setattr(snapshot, "GENERATORS", {**generators.GENERATORS, types.ROUTE: broken})
    with pytest.raises(TranslationError, match="route configuration '80'"):
        snapshot.build_snapshot(f.sidecar(), f.push_context(f.http_service("reviews")))


def test_generators_say_not_me_cheaply() -> None:
    vs = ConfigKey("VirtualService", "default", "reviews")
    dr = ConfigKey("DestinationRule", "default", "reviews")
    gw = ConfigKey("Gateway", "istio-system", "gw")
    se = ConfigKey("ServiceEntry", "default", "reviews")
    assert generators.RDS.affected_by([vs]) and not generators.CDS.affected_by([vs])
    assert generators.CDS.affected_by([dr]) and generators.EDS.affected_by([dr])
    # tcp/tls routes and the DestinationRule's TCP settings are in listeners; hash policies in routes.
    assert generators.LDS.affected_by([vs]) and generators.LDS.affected_by([dr])
    assert generators.RDS.affected_by([dr]) and not generators.EDS.affected_by([vs, gw])
    assert all(g.affected_by([se]) for g in generators.GENERATORS.values())
    assert all(g.affected_by([]) for g in generators.GENERATORS.values())
    assert list(generators.GENERATORS) == [types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE]


def test_a_pod_change_rebuilds_nothing_of_a_view() -> None:
    """A Pod decides which view a proxy reads, never what a view holds."""
    from pilot.config.kinds import POD
    from pilot.config.objects import ConfigKey
    from pilot.translate.snapshot import build_snapshot, types_to_rebuild

    context = f.push_context(f.http_service("reviews", port=9080))
    previous = build_snapshot(f.sidecar("default"), context)
    assert types_to_rebuild([ConfigKey(POD, "default", "reviews-v1-abc")], previous) == []
    assert types_to_rebuild([ConfigKey("ServiceEntry", "default", "reviews")], previous) != []
