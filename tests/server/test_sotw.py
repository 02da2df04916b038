"""State-of-the-world rules that delta does not share, against a real grpc.aio server and client.

The rules both protocols share are in test_ads.py (parametrized over SotW and delta). Absence of a
response is checked with a barrier (AdsClient.expect_silence), never by sleeping.
"""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from pilot import metrics
from pilot.xds import types
from tests.server.ads_client import MESSAGES, AdsClient
from tests.server.harness import AdsHarness
from tests.server.resources import VIEW, base_snapshot, cluster, endpoints, route


def names_of(response: discovery_pb2.DiscoveryResponse) -> list[str]:
    message_type = MESSAGES[response.type_url]
    out = []
    for resource in response.resources:
        assert isinstance(resource, any_pb2.Any) and resource.type_url == response.type_url
        message = message_type.FromString(resource.value)
        out.append(message.cluster_name if response.type_url == types.ENDPOINT else message.name)  # type: ignore[attr-defined]
    return out


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def connect_cds_lds(
    harness: AdsHarness,
) -> tuple[AdsClient, discovery_pb2.DiscoveryResponse, discovery_pb2.DiscoveryResponse]:
    """Open a stream, get and ACK the wildcard CDS and LDS answers."""
    client = harness.client()
    await client.request(types.CLUSTER)
    cds = await client.recv()
    await client.ack(cds)
    await client.request(types.LISTENER)
    lds = await client.recv()
    await client.ack(lds)
    return client, cds, lds


async def subscribe_everything(harness: AdsHarness) -> AdsClient:
    """CDS and LDS (wildcard), EDS a and b, RDS 80 and 81: every answer received and ACKed."""
    client, _, _ = await connect_cds_lds(harness)
    await client.request(types.ENDPOINT, ["a", "b"])
    eds = await client.recv()
    assert names_of(eds) == ["a", "b"]
    await client.ack(eds, ["a", "b"])
    await client.request(types.ROUTE, ["80", "81"])
    rds = await client.recv()
    assert names_of(rds) == ["80", "81"]
    await client.ack(rds, ["80", "81"])
    await client.expect_silence()
    return client


async def test_request_after_nack_with_the_same_nonce_is_not_an_ack(harness: AdsHarness) -> None:
    client, cds, _ = await connect_cds_lds(harness)
    await client.request(types.ENDPOINT, ["a"])
    eds = await client.recv()
    await client.nack(eds, "bad endpoints", names=["a"])
    # Envoy asks for more names after a NACK with the rejected nonce and its old version: the new
    # name is sent, the rejected one is not sent again.
    await client.request(types.ENDPOINT, ["a", "b"], nonce=eds.nonce, version="")
    more = await client.recv()
    assert names_of(more) == ["b"]
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


async def test_named_subscription_sends_only_the_new_names(harness: AdsHarness) -> None:
    # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#grouping-resources-into-responses
    client, _, _ = await connect_cds_lds(harness)
    await client.request(types.ENDPOINT, ["a"])
    eds = await client.recv()
    assert (eds.type_url, names_of(eds)) == (types.ENDPOINT, ["a"])
    await client.ack(eds, ["a"])
    await client.expect_silence()

    # Subscribing to one more name answers with that name only: the proxy keeps "a".
    await client.request(types.ENDPOINT, ["a", "b"], nonce=eds.nonce)
    eds2 = await client.recv()
    assert names_of(eds2) == ["b"]
    assert eds2.version_info == base_snapshot().type_version(types.ENDPOINT)
    await client.ack(eds2, ["a", "b"])

    # Dropping a name needs no answer (Envoy forgets it by itself).
    await client.request(types.ENDPOINT, ["a"], nonce=eds2.nonce)
    await client.expect_silence()
    assert harness.connection().types[types.ENDPOINT].names == ("a",)

    # RDS the same way. The first request is answered even if a name does not exist yet; a later
    # request that adds only names that do not exist has nothing to send, and gets nothing.
    await client.request(types.ROUTE, ["80", "nope"])
    rds = await client.recv()
    assert (rds.type_url, names_of(rds)) == (types.ROUTE, ["80"])
    await client.ack(rds, ["80", "nope"])
    await client.request(types.ROUTE, ["80", "nope", "gone"], nonce=rds.nonce)
    await client.expect_silence()
    status = harness.connection().types[types.ROUTE]
    assert not status.wildcard and status.names == ("80", "gone", "nope")
    # When one of them appears, it is pushed alone.
    harness.cache.set_snapshot(
        VIEW, base_snapshot("v2", routes=[route("80", "a"), route("81", "b"), route("gone", "b")])
    )
    assert names_of(await client.recv()) == ["gone"]


async def test_push_sends_only_the_named_resources_that_changed(harness: AdsHarness) -> None:
    # RDS and EDS are grouped as in incremental xDS; LDS and CDS stay complete states of the world.
    # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#grouping-resources-into-responses
    client = await subscribe_everything(harness)
    v2 = base_snapshot(
        "v2",
        clusters=[cluster("a"), cluster("b"), cluster("c")],
        loads=[endpoints("a", 8001), endpoints("b", 9002)],
        routes=[route("80", "a"), route("81", "c")],
    )
    harness.cache.set_snapshot(VIEW, v2)
    cds, eds, rds = await client.recv(), await client.recv(), await client.recv()
    # A new cluster: CDS holds every cluster, the unchanged ones too.
    assert (cds.type_url, names_of(cds)) == (types.CLUSTER, ["a", "b", "c"])
    # Only b's endpoints and route 81 changed: only they are sent, at the snapshot's type version.
    assert (eds.type_url, names_of(eds)) == (types.ENDPOINT, ["b"])
    assert (rds.type_url, names_of(rds)) == (types.ROUTE, ["81"])
    assert eds.version_info == v2.type_version(types.ENDPOINT)
    assert rds.version_info == v2.type_version(types.ROUTE)
    for response, names in ((cds, []), (eds, ["a", "b"]), (rds, ["80", "81"])):
        await client.ack(response, names)
    await client.expect_silence()


async def test_updated_cluster_resends_its_endpoints_beside_the_changed_ones(harness: AdsHarness) -> None:
    client = await subscribe_everything(harness)
    # Cluster a is updated (Envoy re-warms it: its endpoints go again), b's endpoints changed.
    clusters, loads = [cluster("a", 2000), cluster("b")], [endpoints("a", 8001), endpoints("b", 9002)]
    harness.cache.set_snapshot(VIEW, base_snapshot("v2", clusters=clusters, loads=loads))
    cds, eds = await client.recv(), await client.recv()
    assert (cds.type_url, eds.type_url) == (types.CLUSTER, types.ENDPOINT)
    assert names_of(eds) == ["a", "b"]
    await client.ack(cds)
    await client.ack(eds, ["a", "b"])
    await client.expect_silence()


async def test_resubscribed_name_is_sent_again(harness: AdsHarness) -> None:
    # A proxy that dropped a name forgot its resource: subscribing again gets it, unchanged or not.
    client = await subscribe_everything(harness)
    nonce = harness.connection().types[types.ENDPOINT].nonce_sent
    await client.request(types.ENDPOINT, ["a"], nonce=nonce)
    await client.expect_silence()
    await client.request(types.ENDPOINT, ["a", "b"], nonce=nonce)
    assert names_of(await client.recv()) == ["b"]


async def test_reconnect_gets_every_subscribed_named_resource(harness: AdsHarness) -> None:
    # A request with no nonce (a new stream, or a proxy reconnecting) gets the whole subscription.
    first = await subscribe_everything(harness)
    first.close()
    client = harness.client()
    await client.request(types.ENDPOINT, ["a", "b"], version="old-version")
    assert names_of(await client.recv()) == ["a", "b"]


async def test_rejected_named_version_is_not_resent_and_a_newer_one_is(harness: AdsHarness) -> None:
    client = await subscribe_everything(harness)
    harness.cache.set_snapshot(VIEW, base_snapshot("v2", loads=[endpoints("a", 1), endpoints("b", 8002)]))
    bad = await client.recv()
    assert names_of(bad) == ["a"]
    await client.nack(bad, "port 1 is not allowed", names=["a", "b"])
    # b changes, a keeps its rejected version: only b goes out.
    harness.cache.set_snapshot(VIEW, base_snapshot("v3", loads=[endpoints("a", 1), endpoints("b", 9002)]))
    only_b = await client.recv()
    assert names_of(only_b) == ["b"]
    await client.ack(only_b, ["a", "b"])
    await client.expect_silence()
    # A newer version of a goes out.
    harness.cache.set_snapshot(VIEW, base_snapshot("v4", loads=[endpoints("a", 8003), endpoints("b", 9002)]))
    fixed = await client.recv()
    assert names_of(fixed) == ["a"]
    await client.ack(fixed, ["a", "b"])
    await client.expect_silence()
    assert harness.connection().types[types.ENDPOINT].last_nack is None


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


async def test_an_ack_that_swaps_one_name_for_another_is_a_subscription_change(harness: AdsHarness) -> None:
    client = await subscribe_everything(harness)
    nonce = harness.connection().types[types.ROUTE].nonce_sent
    # As many names as before, one of them new: 81 is dropped, and only the new name would be sent.
    await client.request(types.ROUTE, ["80", "nope"], nonce=nonce)
    await client.expect_silence()  # "nope" does not exist: nothing to send
    assert harness.connection().types[types.ROUTE].names == ("80", "nope")
    harness.cache.set_snapshot(VIEW, base_snapshot("v2", routes=[route("80", "a"), route("81", "a")]))
    await client.expect_silence()  # 81 changed, but the proxy no longer asks for it
    # The same names again, in another order: no change.
    await client.request(types.ROUTE, ["nope", "80"], nonce=nonce)
    await client.expect_silence()
    assert harness.connection().types[types.ROUTE].names == ("80", "nope")
