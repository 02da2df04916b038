"""State-of-the-world ADS against a real grpc.aio server and client over 127.0.0.1.

Absence of a response is checked with a barrier (AdsClient.expect_silence), never by sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2

from pilot import metrics
from pilot.xds import types
from tests.server.ads_client import DEADLINE, DEFAULT_NODE, PROBE_TYPE, AdsClient
from tests.server.harness import AdsHarness, HarnessFactory
from tests.server.resources import (
    VIEW,
    base_snapshot,
    cluster,
    endpoints,
    listener,
    make_snapshot,
    route,
)

MESSAGES = {
    types.CLUSTER: cluster_pb2.Cluster,
    types.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    types.LISTENER: listener_pb2.Listener,
    types.ROUTE: route_pb2.RouteConfiguration,
}


def names_of(response: discovery_pb2.DiscoveryResponse) -> list[str]:
    message_type = MESSAGES[response.type_url]
    out = []
    for resource in response.resources:
        assert isinstance(resource, any_pb2.Any) and resource.type_url == response.type_url
        message = message_type.FromString(resource.value)
        out.append(message.cluster_name if response.type_url == types.ENDPOINT else message.name)
    return out


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def wait_until(predicate: Callable[[], object], what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def connect_cds_lds(
    harness: AdsHarness, node_id: str = DEFAULT_NODE
) -> tuple[AdsClient, discovery_pb2.DiscoveryResponse, discovery_pb2.DiscoveryResponse]:
    """Open a stream, get and ACK the wildcard CDS and LDS answers."""
    client = harness.client(node_id)
    await client.request(types.CLUSTER)
    cds = await client.recv()
    await client.ack(cds)
    await client.request(types.LISTENER)
    lds = await client.recv()
    await client.ack(lds)
    return client, cds, lds


# -- first requests, ACK, NACK, nonces ------------------------------------------------------------


async def test_initial_wildcard_cds_and_lds(harness: AdsHarness) -> None:
    client = harness.client()
    await client.request(types.CLUSTER)
    await client.request(types.LISTENER, ["*"])
    cds = await client.recv()
    lds = await client.recv()
    snapshot = base_snapshot()
    assert (cds.type_url, names_of(cds)) == (types.CLUSTER, ["a", "b"])
    assert (lds.type_url, names_of(lds)) == (types.LISTENER, ["0.0.0.0_80", "0.0.0.0_81"])
    assert cds.version_info == snapshot.type_version(types.CLUSTER)
    assert lds.version_info == snapshot.type_version(types.LISTENER)
    assert cds.nonce and lds.nonce and cds.nonce != lds.nonce
    assert harness.callbacks.opened == [(1, DEFAULT_NODE)]


async def test_ack_gets_no_response_and_is_recorded(harness: AdsHarness) -> None:
    client, cds, lds = await connect_cds_lds(harness)
    await client.expect_silence()
    status = harness.connection().types[types.CLUSTER]
    assert (status.nonce_sent, status.nonce_acked) == (cds.nonce, cds.nonce)
    assert (status.version_sent, status.version_acked) == (cds.version_info, cds.version_info)
    assert status.wildcard and status.last_nack is None and status.last_sent_at is not None


async def test_nack_is_recorded_and_not_answered_and_rejected_content_is_not_resent(
    harness: AdsHarness,
) -> None:
    client, cds, _ = await connect_cds_lds(harness)
    rejects = sample("pilot_total_xds_rejects_total", type="cds")

    # A new cluster set is pushed; the proxy rejects it.
    harness.cache.set_snapshot(VIEW, base_snapshot("v2", clusters=[cluster("a"), cluster("bad")]))
    bad = await client.recv()
    assert names_of(bad) == ["a", "bad"]
    await client.nack(bad, "cluster bad: invalid")
    await client.expect_silence()

    status = harness.connection().types[types.CLUSTER]
    assert status.last_nack is not None and status.last_nack.message == "cluster bad: invalid"
    assert status.last_nack.nonce == bad.nonce
    assert (status.nonce_acked, status.version_acked) == (cds.nonce, cds.version_info)  # still on v1
    assert sample("pilot_total_xds_rejects_total", type="cds") == rejects + 1

    # A snapshot that changes only listeners: the rejected clusters are not sent again.
    harness.cache.set_snapshot(
        VIEW,
        base_snapshot("v3", clusters=[cluster("a"), cluster("bad")], listeners=[listener("0.0.0.0_90", 90)]),
    )
    lds = await client.recv()
    assert lds.type_url == types.LISTENER
    await client.ack(lds)
    await client.expect_silence()

    # Newer clusters are sent; once ACKed, the NACK is cleared.
    harness.cache.set_snapshot(
        VIEW,
        base_snapshot("v4", clusters=[cluster("a"), cluster("good")], listeners=[listener("0.0.0.0_90", 90)]),
    )
    good = await client.recv()
    assert names_of(good) == ["a", "good"]
    await client.ack(good)
    await client.expect_silence()
    status = harness.connection().types[types.CLUSTER]
    assert status.last_nack is None and status.nonce_acked == good.nonce

    # Config going back to the rejected clusters does not push them again.
    harness.cache.set_snapshot(
        VIEW,
        base_snapshot("v5", clusters=[cluster("a"), cluster("bad")], listeners=[listener("0.0.0.0_90", 90)]),
    )
    await client.expect_silence()


async def test_request_after_nack_with_the_same_nonce_is_not_an_ack(harness: AdsHarness) -> None:
    client, cds, _ = await connect_cds_lds(harness)
    await client.request(types.ENDPOINT, ["a"])
    eds = await client.recv()
    await client.nack(eds, "bad endpoints", names=["a"])
    # Envoy asks for more names after a NACK with the rejected nonce and its old version.
    await client.request(types.ENDPOINT, ["a", "b"], nonce=eds.nonce, version="")
    more = await client.recv()
    assert names_of(more) == ["a", "b"]
    status = harness.connection().types[types.ENDPOINT]
    assert status.nonce_acked == "" and status.last_nack is not None


async def test_stale_nonce_is_ignored(harness: AdsHarness) -> None:
    client, cds, _ = await connect_cds_lds(harness)
    expired = sample("pilot_xds_expired_nonce_total", type="cds")
    harness.cache.set_snapshot(VIEW, base_snapshot("v2", clusters=[cluster("c")]))
    newer = await client.recv()
    assert names_of(newer) == ["c"]
    # A request still carrying the older nonce (even one asking for something) is stale.
    await client.request(types.CLUSTER, ["x"], nonce=cds.nonce)
    await client.expect_silence()
    assert sample("pilot_xds_expired_nonce_total", type="cds") == expired + 1
    assert harness.connection().types[types.CLUSTER].nonce_acked == cds.nonce


async def test_later_requests_may_omit_the_node(harness: AdsHarness) -> None:
    client = harness.client()
    await client.request(types.CLUSTER)  # carries the node
    cds = await client.recv()
    await client.request(types.CLUSTER, nonce=cds.nonce, version=cds.version_info, node=False)
    await client.request(types.LISTENER, node=False)
    assert (await client.recv()).type_url == types.LISTENER


# -- named types: RDS, EDS ------------------------------------------------------------------------


async def test_named_subscription_and_changes(harness: AdsHarness) -> None:
    client, _, _ = await connect_cds_lds(harness)
    await client.request(types.ENDPOINT, ["a"])
    eds = await client.recv()
    assert (eds.type_url, names_of(eds)) == (types.ENDPOINT, ["a"])
    await client.ack(eds, ["a"])
    await client.expect_silence()

    # Subscribing to one more name answers with the whole new set.
    await client.request(types.ENDPOINT, ["a", "b"], nonce=eds.nonce)
    eds2 = await client.recv()
    assert names_of(eds2) == ["a", "b"]
    await client.ack(eds2, ["a", "b"])

    # Dropping a name needs no answer (Envoy forgets it by itself).
    await client.request(types.ENDPOINT, ["a"], nonce=eds2.nonce)
    await client.expect_silence()
    assert harness.connection().types[types.ENDPOINT].names == ("a",)

    # RDS the same way; names that do not exist yet are left out, and an answer is still sent.
    await client.request(types.ROUTE, ["80", "nope"])
    rds = await client.recv()
    assert (rds.type_url, names_of(rds)) == (types.ROUTE, ["80"])
    await client.ack(rds, ["80", "nope"])
    await client.request(types.ROUTE, ["80", "nope", "gone"], nonce=rds.nonce)
    rds2 = await client.recv()
    assert names_of(rds2) == ["80"]
    status = harness.connection().types[types.ROUTE]
    assert not status.wildcard and status.names == ("80", "gone", "nope")


async def test_named_resource_that_appears_later_is_pushed(harness: AdsHarness) -> None:
    client, _, _ = await connect_cds_lds(harness)
    await client.request(types.ROUTE, ["82"])
    empty = await client.recv()
    assert names_of(empty) == []
    await client.ack(empty, ["82"])
    harness.cache.set_snapshot(
        VIEW, base_snapshot("v2", routes=[route("80", "a"), route("81", "b"), route("82", "a")])
    )
    pushed = await client.recv()
    assert (pushed.type_url, names_of(pushed)) == (types.ROUTE, ["82"])


async def test_unsubscribe_with_empty_names_drops_the_type(harness: AdsHarness) -> None:
    client, _, _ = await connect_cds_lds(harness)
    await client.request(types.ROUTE, ["80"])
    rds = await client.recv()
    await client.ack(rds, ["80"])
    await client.request(types.ROUTE, [], nonce=rds.nonce)
    await client.expect_silence()
    assert types.ROUTE not in harness.connection().types
    harness.cache.set_snapshot(VIEW, base_snapshot("v2", routes=[route("80", "z")]))
    await client.expect_silence()  # RDS is no longer watched


# -- pushes ---------------------------------------------------------------------------------------


SUBSCRIBED = {types.CLUSTER: [], types.LISTENER: [], types.ENDPOINT: ["a", "b"], types.ROUTE: ["80", "81"]}


async def subscribe_all(harness: AdsHarness) -> AdsClient:
    client, cds, lds = await connect_cds_lds(harness)
    await client.request(types.ENDPOINT, ["a", "b"])
    eds = await client.recv()
    await client.ack(eds, ["a", "b"])
    await client.request(types.ROUTE, ["80", "81"])
    rds = await client.recv()
    await client.ack(rds, ["80", "81"])
    return client


async def test_new_snapshot_pushes_changed_types_in_ads_order(harness: AdsHarness) -> None:
    client = await subscribe_all(harness)
    pushes = sample("pilot_xds_pushes_total", type="eds")
    changed_all = make_snapshot(
        "v2",
        clusters=[cluster("a", 2000), cluster("b")],
        loads=[endpoints("a", 9001), endpoints("b", 8002)],
        listeners=[listener("0.0.0.0_80", 80)],
        routes=[route("80", "b"), route("81", "b")],
    )
    harness.cache.set_snapshot(VIEW, changed_all)
    got = []
    for _ in range(4):
        response = await client.recv()
        got.append(response.type_url)
        await client.ack(response, SUBSCRIBED[response.type_url])
    assert got == [types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE]
    await client.expect_silence()
    assert sample("pilot_xds_pushes_total", type="eds") == pushes + 1
    assert sample("pilot_xds_push_bytes_total", type="eds") > 0

    # Only routes change: only RDS is sent, with every subscribed name.
    only_routes = make_snapshot(
        "v3",
        clusters=[cluster("a", 2000), cluster("b")],
        loads=[endpoints("a", 9001), endpoints("b", 8002)],
        listeners=[listener("0.0.0.0_80", 80)],
        routes=[route("80", "a"), route("81", "b")],
    )
    harness.cache.set_snapshot(VIEW, only_routes)
    rds = await client.recv()
    assert rds.type_url == types.ROUTE and names_of(rds) == ["80", "81"]
    await client.ack(rds, SUBSCRIBED[types.ROUTE])
    await client.expect_silence()


async def test_updated_cluster_gets_its_unchanged_endpoints_again(harness: AdsHarness) -> None:
    # Envoy rebuilds an updated cluster and keeps it warming until EDS answers for it again.
    client = await subscribe_all(harness)
    harness.cache.set_snapshot(VIEW, base_snapshot("v2", clusters=[cluster("a", 3000), cluster("b")]))
    cds = await client.recv()
    eds = await client.recv()
    assert (cds.type_url, eds.type_url) == (types.CLUSTER, types.ENDPOINT)
    assert names_of(eds) == ["a"]  # only the updated cluster's assignment
    await client.ack(cds)
    await client.ack(eds, SUBSCRIBED[types.ENDPOINT])
    await client.expect_silence()

    # A new cluster (not yet subscribed to) and a removed one: CDS only; Envoy asks for new names.
    harness.cache.set_snapshot(VIEW, base_snapshot("v3", clusters=[cluster("a", 3000), cluster("c")]))
    cds = await client.recv()
    assert names_of(cds) == ["a", "c"]
    await client.expect_silence()


async def test_unrelated_named_change_is_not_resent(harness: AdsHarness) -> None:
    client, _, _ = await connect_cds_lds(harness)
    await client.request(types.ENDPOINT, ["a"])
    eds = await client.recv()
    await client.ack(eds, ["a"])
    # Endpoints of b change; this proxy only watches a.
    harness.cache.set_snapshot(
        VIEW,
        base_snapshot("v2", loads=[endpoints("a", 8001), endpoints("b", 9999)]),
    )
    await client.expect_silence()
    # The whole snapshot set again with an identical content: nothing either.
    harness.cache.set_snapshot(VIEW, base_snapshot("v3"))
    await client.expect_silence()


async def test_removed_cluster_is_left_out_of_the_next_cds(harness: AdsHarness) -> None:
    client, _, _ = await connect_cds_lds(harness)
    snapshot = base_snapshot("v2", clusters=[cluster("a")], loads=[endpoints("a", 8001)])
    harness.cache.set_snapshot(VIEW, snapshot)
    cds = await client.recv()
    assert (cds.type_url, names_of(cds)) == (types.CLUSTER, ["a"])
    assert cds.version_info == snapshot.type_version(types.CLUSTER)
    await client.ack(cds)
    await client.expect_silence()


async def test_convergence_time_is_observed_on_ack_of_a_push(harness: AdsHarness) -> None:
    client, _, _ = await connect_cds_lds(harness)
    before = sample("pilot_proxy_convergence_time_count")
    harness.cache.set_snapshot(VIEW, base_snapshot("v2", clusters=[cluster("z")]))
    cds = await client.recv()
    await client.ack(cds)
    await client.expect_silence()
    assert sample("pilot_proxy_convergence_time_count") == before + 1


async def test_waits_for_a_snapshot_before_answering(make_harness: HarnessFactory) -> None:
    harness = await make_harness()
    client = harness.client()
    await client.request(types.CLUSTER)
    await wait_until(lambda: harness.ads.connections(), "the stream to open")
    harness.cache.set_snapshot(VIEW, base_snapshot())
    assert names_of(await client.recv()) == ["a", "b"]


# -- stream lifecycle -----------------------------------------------------------------------------


async def test_missing_node_is_invalid_argument(harness: AdsHarness) -> None:
    client = harness.client()
    await client.request(types.CLUSTER, node=False)
    assert await client.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert harness.callbacks.opened == [] and harness.callbacks.closed == []


async def test_refused_node_is_invalid_argument(harness: AdsHarness) -> None:
    harness.callbacks.refuse.add("sidecar~bad")
    client = harness.client("sidecar~bad")
    await client.request(types.CLUSTER)
    assert await client.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert harness.callbacks.closed == []


async def test_missing_type_url_ends_only_that_stream(harness: AdsHarness) -> None:
    good, _, _ = await connect_cds_lds(harness, "sidecar~good")
    bad = harness.client("sidecar~bad")
    await bad.request("")
    assert await bad.status() == grpc.StatusCode.INVALID_ARGUMENT
    await wait_until(lambda: len(harness.callbacks.closed) == 1, "on_stream_closed")
    await good.expect_silence()
    assert [c.node_id for c in harness.ads.connections()] == ["sidecar~good"]


async def test_client_cancel_cleans_up(harness: AdsHarness) -> None:
    clients_before = sample("pilot_xds")
    client, _, _ = await connect_cds_lds(harness)
    assert sample("pilot_xds") == clients_before + 1
    assert harness.ads.find_view(DEFAULT_NODE) == VIEW
    assert harness.cache.watcher_count(VIEW) == 1
    client.close()
    await wait_until(lambda: harness.callbacks.closed == [1], "on_stream_closed")
    assert sample("pilot_xds") == clients_before
    assert harness.ads.connections() == [] and harness.ads.find_view(DEFAULT_NODE) is None
    assert harness.cache.watcher_count(VIEW) == 0


async def test_connection_status_for_syncz(harness: AdsHarness) -> None:
    client, cds, lds = await connect_cds_lds(harness)
    await client.expect_silence()  # the ACKs are processed
    status = harness.connection()
    assert status.stream_id == 1 and status.protocol == "sotw" and status.view == VIEW
    assert status.peer.startswith("ipv4:127.0.0.1:") and status.connected_at <= time.time()
    assert set(status.types) == {types.CLUSTER, types.LISTENER, PROBE_TYPE}
    assert status.types[types.LISTENER].nonce_acked == lds.nonce


async def test_delta_is_unimplemented(harness: AdsHarness) -> None:
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(harness.channel())
    call = stub.DeltaAggregatedResources()
    await call.write(discovery_pb2.DeltaDiscoveryRequest(type_url=types.CLUSTER))
    assert await asyncio.wait_for(call.code(), DEADLINE) == grpc.StatusCode.UNIMPLEMENTED


# -- fan-out --------------------------------------------------------------------------------------


async def test_stalled_client_does_not_hold_up_others(make_harness: HarnessFactory) -> None:
    harness = await make_harness(push_concurrency=1, send_timeout=0.3)
    harness.callbacks.views.update({"sidecar~stalled": "stalled", "sidecar~healthy": "healthy"})
    harness.cache.set_snapshot("stalled", make_snapshot("v1", clusters=[cluster("s")]))
    harness.cache.set_snapshot("healthy", make_snapshot("v1", clusters=[cluster("h")]))
    timeouts = sample("pilot_xds_write_timeout_total")

    # The stalled client reads its first answer, then never reads again. Without BDP probing its
    # HTTP/2 window stays at 64 KiB, so a push of a few MiB cannot be written to it.
    stalled = harness.client("sidecar~stalled", options={"grpc.http2.bdp_probe": 0})
    await stalled.request(types.CLUSTER)
    await stalled.ack(await stalled.recv())
    healthy, _, _ = await connect_cds_lds(harness, "sidecar~healthy")

    huge = make_snapshot("v2", clusters=[cluster(f"s{i:03}-" + "x" * 20_000) for i in range(200)])
    harness.cache.set_snapshot("stalled", huge)
    # Its push holds the only slot until the send timeout gives it back.
    await wait_until(
        lambda: (
            harness.connection("sidecar~stalled").types[types.CLUSTER].version_sent
            == huge.type_version(types.CLUSTER)
        ),
        "the push to the stalled client to start",
    )
    harness.cache.set_snapshot("healthy", make_snapshot("v2", clusters=[cluster("h2")]))
    pushed = await healthy.recv(timeout=DEADLINE)
    assert names_of(pushed) == ["h2"]
    assert sample("pilot_xds_write_timeout_total") == timeouts + 1

    # The stalled stream still answers nothing else meanwhile, and a request from the healthy
    # proxy is answered without waiting for a slot.
    await healthy.request(types.ROUTE, ["80"])
    assert (await healthy.recv()).type_url == types.ROUTE


async def test_requests_are_answered_while_a_push_waits_for_a_slot(make_harness: HarnessFactory) -> None:
    harness = await make_harness(push_concurrency=1, send_timeout=DEADLINE * 3)
    harness.callbacks.views.update({"sidecar~stalled": "stalled", "sidecar~healthy": "healthy"})
    harness.cache.set_snapshot("stalled", make_snapshot("v1", clusters=[cluster("s")]))
    harness.cache.set_snapshot("healthy", base_snapshot("v1"))
    stalled = harness.client("sidecar~stalled", options={"grpc.http2.bdp_probe": 0})
    await stalled.request(types.CLUSTER)
    await stalled.ack(await stalled.recv())
    healthy, _, _ = await connect_cds_lds(harness, "sidecar~healthy")

    # The stalled client holds the only slot for longer than this test runs.
    huge = make_snapshot("v2", clusters=[cluster(f"s{i:03}-" + "x" * 20_000) for i in range(200)])
    harness.cache.set_snapshot("stalled", huge)
    await wait_until(
        lambda: (
            harness.connection("sidecar~stalled").types[types.CLUSTER].version_sent
            == huge.type_version(types.CLUSTER)
        ),
        "the push to the stalled client to start",
    )
    # A new cluster and a route using it: the push must wait for the slot ...
    routes = [route("80", "a"), route("81", "b"), route("82", "c")]
    harness.cache.set_snapshot(
        "healthy", base_snapshot("v2", clusters=[cluster("a"), cluster("b"), cluster("c")], routes=routes)
    )
    # ... but a request is answered at once, from the snapshot the proxy already has (no route
    # 82 yet, so nothing can name cluster c before CDS has delivered it).
    await healthy.request(types.ROUTE, ["82"])
    early = await healthy.recv()
    assert (early.type_url, names_of(early)) == (types.ROUTE, [])
    await healthy.ack(early, ["82"])

    # The stalled proxy goes away; its slot is freed and the push goes out in order.
    stalled.close()
    cds = await healthy.recv()
    assert (cds.type_url, names_of(cds)) == (types.CLUSTER, ["a", "b", "c"])
    rds = await healthy.recv()
    assert (rds.type_url, names_of(rds)) == (types.ROUTE, ["82"])
