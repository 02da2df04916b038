from __future__ import annotations

from pilot.translate.generators import build_load_assignments
from tests import factories as f

REVIEWS = "reviews.default.svc.cluster.local"


def assignments(*objects):
    return dict(build_load_assignments(f.sidecar(), f.push_context(*objects)))


def addresses(assignment) -> list[tuple[str, int]]:
    return [
        (lb.endpoint.address.socket_address.address, lb.endpoint.address.socket_address.port_value)
        for group in assignment.endpoints
        for lb in group.lb_endpoints
    ]


def reviews(**extra):
    endpoints = [
        {"address": "10.0.0.1", "labels": {"version": "v1"}},
        {"address": "10.0.0.2", "labels": {"version": "v2", "zone": "a"}, "ports": {"http-9080": 9999}},
        {"address": "10.0.0.3", "labels": {"version": "v2", "zone": "b"}, "weight": 5, "locality": "r/z/s"},
    ]
    return f.http_service("reviews", port=9080, endpoints=endpoints, **extra)


def test_subset_filters_endpoints_by_labels() -> None:
    rule = f.destination_rule(
        "reviews",
        host="reviews",
        subsets=[
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v2", "labels": {"version": "v2"}},
            {"name": "v2a", "labels": {"version": "v2", "zone": "a"}},
            {"name": "none", "labels": {"version": "v9"}},
        ],
    )
    out = assignments(reviews(), rule)
    assert addresses(out[f"outbound|9080||{REVIEWS}"]) == [
        ("10.0.0.1", 9080),
        ("10.0.0.2", 9999),
        ("10.0.0.3", 9080),
    ]
    assert addresses(out[f"outbound|9080|v1|{REVIEWS}"]) == [("10.0.0.1", 9080)]
    assert addresses(out[f"outbound|9080|v2|{REVIEWS}"]) == [("10.0.0.2", 9999), ("10.0.0.3", 9080)]
    assert addresses(out[f"outbound|9080|v2a|{REVIEWS}"]) == [("10.0.0.2", 9999)]
    empty = out[f"outbound|9080|none|{REVIEWS}"]
    assert empty.cluster_name == f"outbound|9080|none|{REVIEWS}" and not empty.endpoints


def test_locality_and_weight() -> None:
    out = assignments(reviews())[f"outbound|9080||{REVIEWS}"]
    assert len(out.endpoints) == 2
    plain, placed = out.endpoints
    assert not plain.HasField("locality")
    assert (placed.locality.region, placed.locality.zone, placed.locality.sub_zone) == ("r", "z", "s")
    assert placed.lb_endpoints[0].load_balancing_weight.value == 5
    # Istio: an endpoint without a weight weighs 1; a locality weighs the sum of its endpoints.
    assert plain.lb_endpoints[0].load_balancing_weight.value == 1
    assert (plain.load_balancing_weight.value, placed.load_balancing_weight.value) == (2, 5)


def test_target_port_then_service_port() -> None:
    se = f.service_entry(
        "x",
        hosts=["x.example.com"],
        resolution="STATIC",
        ports=[{"number": 80, "name": "http", "targetPort": 8080}],
        endpoints=[{"address": "10.0.0.1"}, {"address": "10.0.0.2", "ports": {"http": 7070}}],
    )
    out = assignments(se)["outbound|80||x.example.com"]
    assert addresses(out) == [("10.0.0.1", 8080), ("10.0.0.2", 7070)]


def test_only_eds_clusters_get_assignments_and_hostnames_are_dropped() -> None:
    dns = f.service_entry(
        "dns", hosts=["dns.example.com"], resolution="DNS", ports=[{"number": 80, "name": "http"}]
    )
    bad = f.service_entry(
        "bad",
        hosts=["bad.example.com"],
        resolution="STATIC",
        ports=[{"number": 80, "name": "http"}],
        endpoints=[{"address": "not-an-ip.example.com"}],
    )
    out = assignments(dns, bad)
    assert list(out) == ["outbound|80||bad.example.com"]
    assert addresses(out["outbound|80||bad.example.com"]) == []
