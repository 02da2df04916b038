"""ADS rules both protocols share, each test run over state of the world and delta (incremental)
against a real grpc.aio server and client over 127.0.0.1.

The clients model what the proxy holds (``XdsClient.held``), so a test states what the proxy
ends up with rather than how each protocol spells it: SotW resends whole LDS/CDS states, delta
sends only changes and ``removed_resources``. Absence of a response is checked with a barrier
(``expect_silence``), never by sleeping. Rules only one protocol has live in test_sotw.py and
test_delta.py.
"""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Callable

import grpc
import pytest

from pilot import metrics
from pilot.cache.snapshot import TypeResources
from pilot.server.status import Backlog
from pilot.xds import types
from tests.server.ads_client import DEADLINE, DEFAULT_NODE, PROBE_TYPE, Update, XdsClient, versions
from tests.server.harness import AdsHarness, HarnessFactory
from tests.server.resources import VIEW, base_snapshot, cluster, endpoints, listener, make_snapshot, route


@pytest.fixture(params=["sotw", "delta"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def wait_until(predicate: Callable[[], object], what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def recv_acked(client: XdsClient) -> Update:
    update = await client.recv()
    await client.ack(update)
    return update


async def connect_cds_lds(
    harness: AdsHarness, protocol: str, node_id: str = DEFAULT_NODE
) -> tuple[XdsClient, Update, Update]:
    """Open a stream, get and ACK the wildcard CDS and LDS answers."""
    client = harness.xds_client(protocol, node_id)
    await client.subscribe(types.CLUSTER)
    cds = await recv_acked(client)
    await client.subscribe(types.LISTENER)
    lds = await recv_acked(client)
    return client, cds, lds


async def subscribe_all(harness: AdsHarness, protocol: str) -> XdsClient:
    client, _, _ = await connect_cds_lds(harness, protocol)
    await client.subscribe(types.ENDPOINT, ["a", "b"])
    await recv_acked(client)
    await client.subscribe(types.ROUTE, ["80", "81"])
    await recv_acked(client)
    return client


# -- first requests, ACK, NACK --------------------------------------------------------------------


async def test_initial_wildcard_cds_and_lds(harness: AdsHarness, protocol: str) -> None:
    client = harness.xds_client(protocol)
    await client.subscribe(types.CLUSTER)
    await client.subscribe(types.LISTENER)
    cds, lds = await client.recv(), await client.recv()
    snapshot = base_snapshot()
    assert (cds.type_url, cds.resources) == (types.CLUSTER, versions(snapshot, types.CLUSTER))
    assert (lds.type_url, lds.resources) == (types.LISTENER, versions(snapshot, types.LISTENER))
    assert cds.version == snapshot.type_version(types.CLUSTER)
    assert lds.version == snapshot.type_version(types.LISTENER)
    assert cds.nonce and lds.nonce and cds.nonce != lds.nonce
    assert harness.callbacks.opened == [(1, DEFAULT_NODE)]
    assert harness.connection().protocol == protocol


async def test_ack_gets_no_response_and_is_recorded(harness: AdsHarness, protocol: str) -> None:
    client, cds, lds = await connect_cds_lds(harness, protocol)
    await client.expect_silence()
    status = harness.connection().types[types.CLUSTER]
    assert (status.nonce_sent, status.nonce_acked) == (cds.nonce, cds.nonce)
    assert (status.version_sent, status.version_acked) == (cds.version, cds.version)
    assert status.wildcard and status.last_nack is None and status.last_sent_at is not None


async def test_nack_is_recorded_and_not_answered_and_rejected_resources_are_not_resent(
    harness: AdsHarness, protocol: str
) -> None:
    client, cds, _ = await connect_cds_lds(harness, protocol)
    rejects = sample("pilot_total_xds_rejects_total", type="cds")

    # A new cluster set is pushed; the proxy rejects the bad cluster.
    harness.cache.set_snapshot(VIEW, base_snapshot("v2", clusters=[cluster("a"), cluster("bad")]))
    bad = await client.recv()
    assert "bad" in bad.names
    await client.nack(bad, "cluster bad: invalid", invalid=["bad"])
    await client.expect_silence()

    status = harness.connection().types[types.CLUSTER]
    assert status.last_nack is not None and status.last_nack.message == "cluster bad: invalid"
    assert status.last_nack.nonce == bad.nonce
    assert (status.nonce_acked, status.version_acked) == (cds.nonce, cds.version)  # still on v1
    assert sample("pilot_total_xds_rejects_total", type="cds") == rejects + 1
    assert "bad" not in client.held(types.CLUSTER)

    # A snapshot that changes only listeners: the rejected clusters are not sent again.
    listeners = [listener("0.0.0.0_90", 90)]
    harness.cache.set_snapshot(
        VIEW, base_snapshot("v3", clusters=[cluster("a"), cluster("bad")], listeners=listeners)
    )
    assert (await recv_acked(client)).type_url == types.LISTENER
    await client.expect_silence()

    # Newer clusters are sent; once ACKed, the NACK is cleared.
    good = base_snapshot("v4", clusters=[cluster("a"), cluster("good")], listeners=listeners)
    harness.cache.set_snapshot(VIEW, good)
    update = await recv_acked(client)
    assert update.type_url == types.CLUSTER
    assert client.held(types.CLUSTER) == versions(good, types.CLUSTER)
    await client.expect_silence()
    status = harness.connection().types[types.CLUSTER]
    assert status.last_nack is None and status.nonce_acked == update.nonce

    # Config going back to the rejected cluster does not push it again. (SotW compares whole
    # responses: nothing is sent. Delta compares resources: "good" is gone, "bad" stays unsent.)
    harness.cache.set_snapshot(
        VIEW, base_snapshot("v5", clusters=[cluster("a"), cluster("bad")], listeners=listeners)
    )
    if protocol == "delta":
        update = await recv_acked(client)
        assert (update.names, update.removed) == ([], ["good"])
    await client.expect_silence()


async def test_later_requests_may_omit_the_node(harness: AdsHarness, protocol: str) -> None:
    client = harness.xds_client(protocol)
    await client.subscribe(types.CLUSTER)  # carries the node
    await recv_acked(client)  # these do not
    await client.subscribe(types.LISTENER)
    assert (await client.recv()).type_url == types.LISTENER


# -- named types: RDS, EDS ------------------------------------------------------------------------


async def test_named_subscription_and_changes(harness: AdsHarness, protocol: str) -> None:
    client, _, _ = await connect_cds_lds(harness, protocol)
    snapshot = base_snapshot()
    await client.subscribe(types.ENDPOINT, ["a"])
    eds = await recv_acked(client)
    assert (eds.type_url, eds.names) == (types.ENDPOINT, ["a"])
    await client.expect_silence()

    # One more name: the proxy then holds both.
    await client.subscribe(types.ENDPOINT, ["b"])
    assert "b" in (await recv_acked(client)).names
    assert client.held(types.ENDPOINT) == versions(snapshot, types.ENDPOINT)

    # Dropping a name needs no answer.
    await client.unsubscribe(types.ENDPOINT, ["b"])
    await client.expect_silence()
    assert harness.connection().types[types.ENDPOINT].names == ("a",)

    # RDS the same way; names that do not exist yet are not sent, and an answer still comes.
    await client.subscribe(types.ROUTE, ["80", "nope"])
    rds = await recv_acked(client)
    assert (rds.type_url, rds.names) == (types.ROUTE, ["80"])
    assert client.held(types.ROUTE) == {"80": versions(snapshot, types.ROUTE)["80"]}
    status = harness.connection().types[types.ROUTE]
    assert not status.wildcard and status.names == ("80", "nope")


async def test_named_resource_that_appears_later_is_pushed(harness: AdsHarness, protocol: str) -> None:
    client, _, _ = await connect_cds_lds(harness, protocol)
    await client.subscribe(types.ROUTE, ["82"])
    assert (await recv_acked(client)).names == []
    harness.cache.set_snapshot(
        VIEW, base_snapshot("v2", routes=[route("80", "a"), route("81", "b"), route("82", "a")])
    )
    pushed = await client.recv()
    assert (pushed.type_url, pushed.names) == (types.ROUTE, ["82"])


async def test_unsubscribed_names_are_no_longer_pushed(harness: AdsHarness, protocol: str) -> None:
    client, _, _ = await connect_cds_lds(harness, protocol)
    await client.subscribe(types.ROUTE, ["80", "81"])
    await recv_acked(client)
    await client.unsubscribe(types.ROUTE, ["81"])
    await client.expect_silence()
    harness.cache.set_snapshot(VIEW, base_snapshot("v2", routes=[route("80", "a"), route("81", "z")]))
    await client.expect_silence()  # only 81 changed, and it is no longer watched


# -- pushes ---------------------------------------------------------------------------------------


async def test_new_snapshot_pushes_changed_types_in_ads_order(harness: AdsHarness, protocol: str) -> None:
    client = await subscribe_all(harness, protocol)
    pushes = sample("pilot_xds_pushes_total", type="eds")
    changed_all = make_snapshot(
        "v2",
        clusters=[cluster("a", 2000), cluster("b")],
        loads=[endpoints("a", 9001), endpoints("b", 8002)],
        listeners=[listener("0.0.0.0_80", 80)],
        routes=[route("80", "b"), route("81", "b")],
    )
    harness.cache.set_snapshot(VIEW, changed_all)
    got = [(await recv_acked(client)).type_url for _ in range(4)]
    assert got == [types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE]
    await client.expect_silence()
    assert sample("pilot_xds_pushes_total", type="eds") == pushes + 1
    assert sample("pilot_xds_push_bytes_total", type="eds") > 0
    for type_url in types.PUSH_ORDER:
        assert client.held(type_url) == versions(changed_all, type_url)

    # Only routes change: only RDS is sent.
    only_routes = make_snapshot(
        "v3",
        clusters=[cluster("a", 2000), cluster("b")],
        loads=[endpoints("a", 9001), endpoints("b", 8002)],
        listeners=[listener("0.0.0.0_80", 80)],
        routes=[route("80", "a"), route("81", "b")],
    )
    harness.cache.set_snapshot(VIEW, only_routes)
    rds = await recv_acked(client)
    assert rds.type_url == types.ROUTE and "80" in rds.names
    assert client.held(types.ROUTE) == versions(only_routes, types.ROUTE)
    await client.expect_silence()


async def test_updated_cluster_gets_its_unchanged_endpoints_again(harness: AdsHarness, protocol: str) -> None:
    # Envoy rebuilds an updated cluster and keeps it warming until EDS answers for it again.
    client = await subscribe_all(harness, protocol)
    harness.cache.set_snapshot(VIEW, base_snapshot("v2", clusters=[cluster("a", 3000), cluster("b")]))
    cds = await recv_acked(client)
    eds = await recv_acked(client)
    assert (cds.type_url, eds.type_url) == (types.CLUSTER, types.ENDPOINT)
    assert eds.names == ["a"]  # only the updated cluster's assignment
    await client.expect_silence()

    # A new cluster (not yet subscribed to) and a removed one: CDS only; Envoy asks for new names.
    v3 = base_snapshot("v3", clusters=[cluster("a", 3000), cluster("c")])
    harness.cache.set_snapshot(VIEW, v3)
    assert (await recv_acked(client)).type_url == types.CLUSTER
    assert client.held(types.CLUSTER) == versions(v3, types.CLUSTER)
    await client.expect_silence()


async def test_unrelated_named_change_is_not_resent(harness: AdsHarness, protocol: str) -> None:
    client, _, _ = await connect_cds_lds(harness, protocol)
    await client.subscribe(types.ENDPOINT, ["a"])
    await recv_acked(client)
    # Endpoints of b change; this proxy only watches a.
    harness.cache.set_snapshot(VIEW, base_snapshot("v2", loads=[endpoints("a", 8001), endpoints("b", 9999)]))
    await client.expect_silence()
    # The whole snapshot set again with an identical content: nothing either.
    harness.cache.set_snapshot(VIEW, base_snapshot("v3"))
    await client.expect_silence()


async def test_removed_cluster_is_removed_from_the_proxy(harness: AdsHarness, protocol: str) -> None:
    client, _, _ = await connect_cds_lds(harness, protocol)
    snapshot = base_snapshot("v2", clusters=[cluster("a")], loads=[endpoints("a", 8001)])
    harness.cache.set_snapshot(VIEW, snapshot)
    cds = await recv_acked(client)
    assert cds.type_url == types.CLUSTER and cds.version == snapshot.type_version(types.CLUSTER)
    assert client.held(types.CLUSTER) == versions(snapshot, types.CLUSTER)
    await client.expect_silence()


async def test_convergence_time_is_observed_on_ack_of_a_push(harness: AdsHarness, protocol: str) -> None:
    client, _, _ = await connect_cds_lds(harness, protocol)
    before = sample("pilot_proxy_convergence_time_count")
    harness.cache.set_snapshot(VIEW, base_snapshot("v2", clusters=[cluster("z")]))
    await recv_acked(client)
    await client.expect_silence()
    assert sample("pilot_proxy_convergence_time_count") == before + 1


async def test_waits_for_a_snapshot_before_answering(make_harness: HarnessFactory, protocol: str) -> None:
    harness = await make_harness()
    client = harness.xds_client(protocol)
    await client.subscribe(types.CLUSTER)
    await wait_until(lambda: harness.ads.connections(), "the stream to open")
    harness.cache.set_snapshot(VIEW, base_snapshot())
    assert (await client.recv()).names == ["a", "b"]


# -- stream lifecycle -----------------------------------------------------------------------------


async def test_missing_node_is_invalid_argument(harness: AdsHarness, protocol: str) -> None:
    client = harness.xds_client(protocol)
    await client.subscribe(types.CLUSTER, node=False)
    assert await client.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert harness.callbacks.opened == [] and harness.callbacks.closed == []


async def test_refused_node_is_invalid_argument(harness: AdsHarness, protocol: str) -> None:
    harness.callbacks.refuse.add("sidecar-bad")
    client = harness.xds_client(protocol, "sidecar-bad")
    await client.subscribe(types.CLUSTER)
    assert await client.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert harness.callbacks.closed == []


async def test_missing_type_url_ends_only_that_stream(harness: AdsHarness, protocol: str) -> None:
    good, _, _ = await connect_cds_lds(harness, protocol, "sidecar-good")
    bad = harness.xds_client(protocol, "sidecar-bad")
    await bad.subscribe("")
    assert await bad.status() == grpc.StatusCode.INVALID_ARGUMENT
    await wait_until(lambda: len(harness.callbacks.closed) == 1, "on_stream_closed")
    await good.expect_silence()
    assert [c.node_id for c in harness.ads.connections()] == ["sidecar-good"]


async def test_client_cancel_cleans_up(harness: AdsHarness, protocol: str) -> None:
    clients_before = sample("pilot_xds")
    client, _, _ = await connect_cds_lds(harness, protocol)
    assert sample("pilot_xds") == clients_before + 1
    assert harness.ads.find_view(DEFAULT_NODE) == VIEW
    assert harness.cache.watcher_count(VIEW) == 1
    client.close()
    await wait_until(lambda: harness.callbacks.closed == [1], "on_stream_closed")
    assert sample("pilot_xds") == clients_before
    assert harness.ads.connections() == [] and harness.ads.find_view(DEFAULT_NODE) is None
    assert harness.cache.watcher_count(VIEW) == 0


async def test_connection_status_for_syncz(harness: AdsHarness, protocol: str) -> None:
    client, cds, lds = await connect_cds_lds(harness, protocol)
    await client.expect_silence()  # the ACKs are processed
    status = harness.connection()
    assert status.stream_id == 1 and status.protocol == protocol and status.view == VIEW
    assert status.peer.startswith("ipv4:127.0.0.1:") and status.connected_at <= time.time()
    assert set(status.types) == {types.CLUSTER, types.LISTENER, PROBE_TYPE}
    assert status.types[types.LISTENER].nonce_acked == lds.nonce


async def test_both_protocols_at_once_share_the_registry(harness: AdsHarness) -> None:
    sotw, _, _ = await connect_cds_lds(harness, "sotw", "sidecar-sotw")
    delta, _, _ = await connect_cds_lds(harness, "delta", "sidecar-delta")
    assert {c.node_id: c.protocol for c in harness.ads.connections()} == {
        "sidecar-sotw": "sotw",
        "sidecar-delta": "delta",
    }
    snapshot = base_snapshot("v2", clusters=[cluster("a"), cluster("c")])
    harness.cache.set_snapshot(VIEW, snapshot)
    for client in (sotw, delta):
        assert (await recv_acked(client)).type_url == types.CLUSTER
        assert client.held(types.CLUSTER) == versions(snapshot, types.CLUSTER)


# -- fan-out --------------------------------------------------------------------------------------


async def test_stalled_client_does_not_hold_up_others(make_harness: HarnessFactory, protocol: str) -> None:
    harness = await make_harness(push_concurrency=1, send_timeout=0.3)
    harness.callbacks.views.update({"sidecar-stalled": "stalled", "sidecar-healthy": "healthy"})
    harness.cache.set_snapshot("stalled", make_snapshot("v1", clusters=[cluster("s")]))
    harness.cache.set_snapshot("healthy", make_snapshot("v1", clusters=[cluster("h")]))
    timeouts = sample("pilot_xds_write_timeout_total")

    # The stalled client reads its first answer, then never reads again. Without BDP probing its
    # HTTP/2 window stays at 64 KiB, so a push of a few MiB cannot be written to it.
    stalled = harness.xds_client(protocol, "sidecar-stalled", options={"grpc.http2.bdp_probe": 0})
    await stalled.subscribe(types.CLUSTER)
    await recv_acked(stalled)
    healthy, _, _ = await connect_cds_lds(harness, protocol, "sidecar-healthy")

    huge = make_snapshot("v2", clusters=[cluster(f"s{i:03}-" + "x" * 20_000) for i in range(200)])
    harness.cache.set_snapshot("stalled", huge)
    # Its push holds the only slot until the send timeout gives it back.
    await wait_until(
        lambda: (
            harness.connection("sidecar-stalled").types[types.CLUSTER].version_sent
            == huge.type_version(types.CLUSTER)
        ),
        "the push to the stalled client to start",
    )
    harness.cache.set_snapshot("healthy", make_snapshot("v2", clusters=[cluster("h2")]))
    pushed = await recv_acked(healthy)
    assert pushed.type_url == types.CLUSTER and healthy.held(types.CLUSTER).keys() == {"h2"}
    assert sample("pilot_xds_write_timeout_total") == timeouts + 1

    # A request from the healthy proxy is answered without waiting for a slot.
    await healthy.subscribe(types.ROUTE, ["80"])
    assert (await healthy.recv()).type_url == types.ROUTE


async def test_slow_proxy_holds_at_most_its_latest_snapshot(harness: AdsHarness, protocol: str) -> None:
    # 50 snapshots pushed to a proxy that does not read: the stream never queues them. It writes
    # one response at a time and keeps only the newest snapshot it has not adopted; the others
    # are freed. When the proxy reads again it gets what was being written, then the newest.
    stalled = harness.xds_client(protocol, options={"grpc.http2.bdp_probe": 0})
    await stalled.subscribe(types.CLUSTER)
    await recv_acked(stalled)
    await stalled.expect_silence()
    stream_id = harness.connection().stream_id
    answered = harness.connection().types[types.CLUSTER].nonce_sent

    def backlog() -> Backlog:
        found = harness.ads.backlog(stream_id)
        assert found is not None
        return found

    # The first push is a MiB or two: with a 64 KiB HTTP/2 window it cannot be written until the
    # proxy reads.
    huge = make_snapshot("v1", clusters=[cluster(f"s{i:03}-" + "x" * 10_000) for i in range(100)])
    harness.cache.set_snapshot(VIEW, huge)
    # The push, not the tail of the write of the first answer (which may still be returning).
    await wait_until(
        lambda: backlog().writing and harness.connection().types[types.CLUSTER].nonce_sent != answered,
        "the push to the stalled proxy to block",
    )
    sent_before = harness.connection().types[types.CLUSTER].nonce_sent

    alive: list[weakref.ref[TypeResources]] = []
    for n in range(2, 51):
        snapshot = make_snapshot(f"v{n}", clusters=[cluster(f"n{n}-{i}-" + "y" * 20_000) for i in range(10)])
        alive.append(weakref.ref(snapshot.by_type[types.CLUSTER]))
        harness.cache.set_snapshot(VIEW, snapshot)
        del snapshot
        for _ in range(3):
            await asyncio.sleep(0)  # let the stream's tasks run
        assert backlog().pending_snapshots <= 1
    assert backlog().pending_snapshots == 1 and backlog().writing
    assert harness.connection().types[types.CLUSTER].nonce_sent == sent_before  # nothing else written
    gc.collect()
    # Only the newest snapshot is still held (by the cache and the stream); the 48 others are gone.
    assert [ref() is not None for ref in alive] == [False] * 48 + [True]

    # The proxy reads again: the blocked push, then the newest snapshot, and nothing in between.
    first = await recv_acked(stalled)
    assert first.resources == versions(huge, types.CLUSTER)
    newest = await recv_acked(stalled)
    assert newest.version == alive[-1]().version  # type: ignore[union-attr]
    await stalled.expect_silence()
    assert backlog() == Backlog(pending_snapshots=0, pending_since=None, writing=False)


async def test_requests_are_answered_while_a_push_waits_for_a_slot(
    make_harness: HarnessFactory, protocol: str
) -> None:
    harness = await make_harness(push_concurrency=1, send_timeout=DEADLINE * 3)
    harness.callbacks.views.update({"sidecar-stalled": "stalled", "sidecar-healthy": "healthy"})
    harness.cache.set_snapshot("stalled", make_snapshot("v1", clusters=[cluster("s")]))
    harness.cache.set_snapshot("healthy", base_snapshot("v1"))
    stalled = harness.xds_client(protocol, "sidecar-stalled", options={"grpc.http2.bdp_probe": 0})
    await stalled.subscribe(types.CLUSTER)
    await recv_acked(stalled)
    healthy, _, _ = await connect_cds_lds(harness, protocol, "sidecar-healthy")

    # The stalled client holds the only slot for longer than this test runs.
    huge = make_snapshot("v2", clusters=[cluster(f"s{i:03}-" + "x" * 20_000) for i in range(200)])
    harness.cache.set_snapshot("stalled", huge)
    await wait_until(
        lambda: (
            harness.connection("sidecar-stalled").types[types.CLUSTER].version_sent
            == huge.type_version(types.CLUSTER)
        ),
        "the push to the stalled client to start",
    )
    # A new cluster and a route using it: the push must wait for the slot ...
    routes = [route("80", "a"), route("81", "b"), route("82", "c")]
    v2 = base_snapshot("v2", clusters=[cluster("a"), cluster("b"), cluster("c")], routes=routes)
    harness.cache.set_snapshot("healthy", v2)
    # ... but a request is answered at once, from the snapshot the proxy already has (no route
    # 82 yet, so nothing can name cluster c before CDS has delivered it).
    await healthy.subscribe(types.ROUTE, ["82"])
    early = await recv_acked(healthy)
    assert (early.type_url, early.names) == (types.ROUTE, [])

    # The stalled proxy goes away; its slot is freed and the push goes out in order.
    stalled.close()
    cds = await recv_acked(healthy)
    assert cds.type_url == types.CLUSTER and healthy.held(types.CLUSTER) == versions(v2, types.CLUSTER)
    rds = await recv_acked(healthy)
    assert (rds.type_url, rds.names) == (types.ROUTE, ["82"])


async def test_close_ends_every_stream_with_unavailable_and_refuses_new_ones(
    harness: AdsHarness, protocol: str
) -> None:
    client, _, _ = await connect_cds_lds(harness, protocol)
    await harness.ads.close()
    assert await client.status() == grpc.StatusCode.UNAVAILABLE
    await wait_until(lambda: not harness.ads.connections(), "streams to be unregistered")
    assert harness.callbacks.closed  # on_stream_closed was called for the ended stream
    # The refusal comes before the server reads a request: sending one would race with it (the write
    # fails once the call has ended, sometimes with a client-side INTERNAL that hides the status).
    late = harness.xds_client(protocol, "late-node")
    assert await late.status() == grpc.StatusCode.UNAVAILABLE
