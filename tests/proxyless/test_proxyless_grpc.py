"""Real grpcio clients routed by pilot with no Envoy: ``xds:///reviews.default.svc.cluster.local:9080``.

gRPC's xDS client speaks state of the world only (grpc-core has no delta xDS), so these tests
cover SotW; delta for Envoy is covered by the server's own tests. Every assertion names the
backend that answered each call (or the status it failed with).
"""

from __future__ import annotations

import time

import pytest

from tests.proxyless.conftest import ProxylessMesh, XdsClient, destination_rule, service_entry, to, virtual_service

pytestmark = pytest.mark.e2e


def only(name: str, count: int = 20):  # noqa: ANN201 -- a predicate on a reply
    return lambda reply: reply.outcomes == {name: count}


def no_nack(proxyless: ProxylessMesh) -> None:
    log = proxyless.pilot.log_path.read_text(errors="replace")
    assert "NACK" not in log, proxyless.pilot.log_tail(20)


def test_unary_calls_reach_both_endpoints_round_robin(proxyless: ProxylessMesh, client: XdsClient) -> None:
    proxyless.remove("vs.yaml")
    reply = client.wait_for(lambda r: r.outcomes == {"v1": 10, "v2": 10}, message="round robin over v1 and v2")
    assert sum(reply.outcomes.values()) == 20
    no_nack(proxyless)


def test_virtual_service_edits_move_calls_without_reconnecting(
    proxyless: ProxylessMesh, client: XdsClient
) -> None:
    proxyless.write("vs.yaml", virtual_service({"route": [to("v2")]}))
    client.wait_for(only("v2"), message="100% to v2")
    proxyless.write("vs.yaml", virtual_service({"route": [to("v1")]}))
    client.wait_for(only("v1"), message="100% to v1")
    log = proxyless.pilot.log_path.read_text()
    assert log.count("sotw stream") == 1, "the client reconnected"
    no_nack(proxyless)


def test_weighted_split_by_subsets(proxyless: ProxylessMesh, client: XdsClient) -> None:
    proxyless.write("vs.yaml", virtual_service({"route": [to("v1")]}))
    client.wait_for(only("v1"), message="100% to v1")
    proxyless.write("vs.yaml", virtual_service({"route": [to("v1", 80), to("v2", 20)]}))
    client.wait_for(lambda r: r.outcomes["v2"] > 0, calls=50, message="v2 in the split")
    outcomes = client.call(500).outcomes
    assert set(outcomes) == {"v1", "v2"}, outcomes
    # Binomial(500, 0.2): standard deviation 8.9 calls; ±30 calls is more than 3 of them.
    assert abs(outcomes["v2"] - 100) <= 30, outcomes


def test_header_match(proxyless: ProxylessMesh, client: XdsClient) -> None:
    proxyless.write(
        "vs.yaml",
        virtual_service(
            {"match": [{"headers": {"x-user": {"exact": "jason"}}}], "route": [to("v2")]},
            {"route": [to("v1")]},
        ),
    )
    client.wait_for(only("v2"), metadata={"x-user": "jason"}, message="jason to v2")
    assert client.call(20).outcomes == {"v1": 20}
    assert client.call(20, {"x-user": "other"}).outcomes == {"v1": 20}


def test_fault_abort_returns_the_configured_status(proxyless: ProxylessMesh, client: XdsClient) -> None:
    abort = {"abort": {"grpcStatus": "PERMISSION_DENIED", "percentage": {"value": 100}}}
    proxyless.write(
        "vs.yaml",
        virtual_service(
            {"match": [{"headers": {"x-fault": {"exact": "yes"}}}], "fault": abort, "route": [to("v1")]},
            {"route": [to("v2")]},
        ),
    )
    client.wait_for(only("PERMISSION_DENIED", 10), calls=10, metadata={"x-fault": "yes"}, message="abort")
    assert client.call(10).outcomes == {"v2": 10}
    no_nack(proxyless)


def test_route_timeout_ends_slow_calls(proxyless: ProxylessMesh, client: XdsClient) -> None:
    proxyless.write("vs.yaml", virtual_service({"route": [to("v1")], "timeout": "0.3s"}))
    slow = {"sleep-ms": "1500"}
    reply = client.wait_for(
        lambda r: r.outcomes == {"DEADLINE_EXCEEDED": 2}, calls=2, metadata=slow, message="route timeout"
    )
    assert all(0.25 <= s < 1.2 for s in reply.seconds), reply.seconds
    assert client.call(5).outcomes == {"v1": 5}


def test_removed_endpoint_stops_getting_calls(proxyless: ProxylessMesh, client: XdsClient) -> None:
    proxyless.remove("vs.yaml")
    client.wait_for(lambda r: r.outcomes == {"v1": 10, "v2": 10}, message="both endpoints")
    only_v1 = {"v1": proxyless.backends["v1"]}
    started = time.monotonic()
    proxyless.write("reviews.yaml", service_entry(only_v1), destination_rule())
    client.wait_for(only("v1", 10), calls=10, timeout=5.0, message="v2 removed")
    elapsed = time.monotonic() - started
    proxyless.write("reviews.yaml", service_entry(proxyless.backends), destination_rule())
    # pilot debounces 0.1 s; the rest is its push and the client's EDS update.
    assert elapsed < 1.5, f"v2 still called {elapsed:.2f}s after its endpoint was removed"


def test_unknown_host_fails_fast_without_an_error_loop(proxyless: ProxylessMesh, client: XdsClient) -> None:
    reply = client.call(3, target="ratings.default.svc.cluster.local:9080", timeout=10.0)
    assert reply.outcomes == {"UNAVAILABLE": 3}, reply.outcomes
    assert max(reply.seconds) < 5.0, reply.seconds
    assert client.call(4).outcomes.total() == 4
    no_nack(proxyless)
