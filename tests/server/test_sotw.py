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
from tests.server.resources import VIEW, base_snapshot, cluster, route


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


async def test_named_subscription_sends_the_whole_named_set(harness: AdsHarness) -> None:
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
