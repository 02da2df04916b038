"""Snapshot.origins: each resource names the config objects it came from (pilot.translate.provenance)."""

from __future__ import annotations

from pilot.translate.snapshot import build_snapshot
from pilot.xds import types
from tests import factories as f

REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.default.svc.cluster.local"


def objects():
    return (
        f.http_service("reviews", port=9080),
        f.http_service("ratings", port=9080),
        f.http_service("details", port=8080),
        f.virtual_service(
            "reviews", hosts=["reviews"], http=[{"route": [{"destination": {"host": "reviews"}}]}]
        ),
        f.virtual_service(
            "ratings", hosts=["ratings"], http=[{"route": [{"destination": {"host": "ratings"}}]}]
        ),
        f.destination_rule("reviews", host="reviews", subsets=[{"name": "v1", "labels": {"version": "v1"}}]),
    )


def names(keys) -> set[str]:
    return {f"{key.kind}/{key.name}" for key in keys}


def test_a_shared_route_configuration_comes_from_every_virtual_service_of_its_hosts() -> None:
    snapshot = build_snapshot(f.sidecar(), f.push_context(*objects()))
    origins = snapshot.origins[types.ROUTE]
    assert names(origins["9080"]) == {
        "ServiceEntry/reviews",
        "ServiceEntry/ratings",
        "VirtualService/reviews",
        "VirtualService/ratings",
        "DestinationRule/reviews",
    }
    assert names(origins["8080"]) == {"ServiceEntry/details"}


def test_clusters_and_endpoints_come_from_service_entries_and_destination_rules_only() -> None:
    snapshot = build_snapshot(f.sidecar(), f.push_context(*objects()))
    for type_url in (types.CLUSTER, types.ENDPOINT):
        origins = snapshot.origins[type_url]
        assert names(origins[f"outbound|9080|v1|{REVIEWS}"]) == {
            "ServiceEntry/reviews",
            "DestinationRule/reviews",
        }
        assert names(origins[f"outbound|9080||{RATINGS}"]) == {"ServiceEntry/ratings"}


def test_a_listener_comes_from_the_objects_of_its_port() -> None:
    snapshot = build_snapshot(f.sidecar(), f.push_context(*objects()))
    origins = snapshot.origins[types.LISTENER]
    assert "VirtualService/ratings" in names(origins["0.0.0.0_9080"])
    assert names(origins["0.0.0.0_8080"]) == {"ServiceEntry/details"}


def test_types_kept_from_the_previous_snapshot_keep_their_origins() -> None:
    kept = objects()
    before = f.push_context(*kept, revision=1)
    first = build_snapshot(f.sidecar(), before)
    edited = [*kept[:3], *kept[4:], f.virtual_service("reviews", hosts=["reviews"], http=[])]
    after = f.push_context(*edited, revision=2)
    second = build_snapshot(f.sidecar(), after, (before, first))
    assert second.by_type[types.CLUSTER] is first.by_type[types.CLUSTER]  # not translated again
    assert second.origins[types.CLUSTER] is first.origins[types.CLUSTER]
    assert "VirtualService/reviews" in names(second.origins[types.ROUTE]["9080"])


def test_every_listener_also_comes_from_the_request_authentications_and_their_keys() -> None:
    from google.protobuf import json_format

    from pilot._gen import security_pb2
    from pilot.config.jwks import JwksKey, resolved_object
    from pilot.config.objects import ConfigKey, ConfigObject

    rule = {"issuer": "i", "jwksUri": "https://idp/keys"}
    spec = json_format.ParseDict({"jwtRules": [rule]}, security_pb2.RequestAuthentication())
    policy = ConfigObject(
        ConfigKey("RequestAuthentication", "default", "jwt"), "security.istio.io/v1", spec, "t"
    )
    keys = resolved_object(JwksKey("https://idp/keys", "i"), '{"keys":[]}')
    snapshot = build_snapshot(f.sidecar(), f.push_context(*objects(), policy, keys))
    origins = snapshot.origins[types.LISTENER]
    assert {"RequestAuthentication/jwt", "Jwks/https://idp/keys|i"} <= names(origins["0.0.0.0_8080"])
