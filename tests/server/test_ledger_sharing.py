"""What a stream's ledgers hold of the view's snapshot, over both protocols against a real grpc.aio
server and clients: a proxy in step with its view holds the view's own ``TypeResources`` (the
same object for every such stream, no name -> version map of its own); a NACK or a different
subscription gives only that stream state of its own, and ACK/NACK state (/debug/syncz) stays
per stream. The rules themselves are test_ledger.py's."""

from __future__ import annotations

import pytest

from pilot.server.connection import Connection
from pilot.server.ledger import TypeLedger
from pilot.xds import types
from tests.server.ads_client import Update, XdsClient
from tests.server.harness import AdsHarness
from tests.server.resources import VIEW, base_snapshot, endpoints

_TYPES = (types.CLUSTER, types.LISTENER, types.ENDPOINT, types.ROUTE)


@pytest.fixture(params=["sotw", "delta"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def recv_acked(client: XdsClient) -> Update:
    update = await client.recv()
    await client.ack(update)
    return update


async def connect(harness: AdsHarness, protocol: str, node_id: str, eds: list[str]) -> XdsClient:
    """A proxy of VIEW with wildcard CDS and LDS, EDS ``eds`` and RDS 80 and 81, all ACKed."""
    client = harness.xds_client(protocol, node_id)
    for type_url, names in (
        (types.CLUSTER, []),
        (types.LISTENER, []),
        (types.ENDPOINT, eds),
        (types.ROUTE, ["80", "81"]),
    ):
        await client.subscribe(type_url, names)
        await recv_acked(client)
    await client.expect_silence()  # the ACKs are read
    return client


def ledgers(harness: AdsHarness, node_id: str) -> dict[str, TypeLedger]:
    conns: list[Connection] = [c for c in harness.ads._connections.values() if c.node_id == node_id]
    assert len(conns) == 1
    return conns[0].types


def in_step(ledger: TypeLedger) -> bool:
    """It holds exactly ``base`` (nothing of its own) and ACKed the latest response."""
    return not ledger.overrides and not ledger.rejected and ledger.nonce_acked == ledger.nonce_sent


async def test_streams_in_step_share_the_views_resources(harness: AdsHarness, protocol: str) -> None:
    await connect(harness, protocol, "p1", ["a", "b"])
    await connect(harness, protocol, "p2", ["a", "b"])
    snapshot = harness.cache.get_snapshot(VIEW)
    assert snapshot is not None
    one, two = ledgers(harness, "p1"), ledgers(harness, "p2")
    for type_url in _TYPES:
        typed = snapshot.by_type[type_url]
        assert one[type_url].base is typed and two[type_url].base is typed, type_url
        assert in_step(one[type_url]) and in_step(two[type_url]), type_url
        assert one[type_url].names is two[type_url].names  # one interned subscription


async def test_a_nack_or_another_subscription_gives_a_stream_its_own_state(
    harness: AdsHarness, protocol: str
) -> None:
    p1 = await connect(harness, protocol, "p1", ["a", "b"])
    p2 = await connect(harness, protocol, "p2", ["a", "b"])
    p3 = await connect(harness, protocol, "p3", ["a"])
    v2 = base_snapshot("v2", loads=[endpoints("a", 9001), endpoints("b", 8002)])
    harness.cache.set_snapshot(VIEW, v2)
    p1_eds = await recv_acked(p1)
    p2_eds = await p2.recv()
    await p2.nack(p2_eds, "endpoint a is bad", ["a"])
    await recv_acked(p3)
    for client in (p1, p2, p3):
        await client.expect_silence()
    assert p1_eds.names == p2_eds.names == ["a"]

    eds = v2.by_type[types.ENDPOINT]
    one, two, three = (ledgers(harness, node)[types.ENDPOINT] for node in ("p1", "p2", "p3"))
    # p1 ACKed: in step, on the view's resources.
    assert one.base is eds and in_step(one)
    # p2 NACKed: its own record of the rejected version; the rest is still the view's.
    assert two.base is eds and two.is_rejected("a", eds.resources["a"].version)
    assert not one.rejected and not three.rejected
    # p3 wants less: its own subscription, the view's resources.
    assert three.base is eds and in_step(three) and three.names == frozenset({"a"})
    assert three.names is not one.names and one.names is two.names

    # /debug/syncz: ACK and NACK per stream.
    status = {c.node_id: c.types[types.ENDPOINT] for c in harness.ads.connections()}
    assert status["p1"].nonce_acked == p1_eds.nonce and status["p1"].last_nack is None
    assert status["p2"].nonce_acked != p2_eds.nonce and status["p2"].last_nack is not None
    assert "endpoint a is bad" in status["p2"].last_nack.message
    assert status["p3"].last_nack is None and status["p3"].names == ("a",)

    # A newer version of the rejected name is sent, and the stream is back in step.
    v3 = base_snapshot("v3", loads=[endpoints("a", 9002), endpoints("b", 8002)])
    harness.cache.set_snapshot(VIEW, v3)
    assert (await recv_acked(p2)).names == ["a"]
    await recv_acked(p1)
    await p2.expect_silence()
    await p1.expect_silence()
    eds3 = v3.by_type[types.ENDPOINT]
    two = ledgers(harness, "p2")[types.ENDPOINT]
    assert two.base is eds3 and in_step(two) and ledgers(harness, "p1")[types.ENDPOINT].base is eds3


async def test_delta_proxies_that_hold_nothing_record_one_set_of_names(harness: AdsHarness) -> None:
    # A connect storm: every proxy of the view is sent everything it wants, and the response each
    # stream records names the view's one set of those names (3000 clusters each at K=1000).
    clients = [harness.xds_client("delta", node_id) for node_id in ("p1", "p2")]
    for client in clients:
        await client.subscribe(types.CLUSTER, [])
        await client.recv()  # not ACKed: the response stays in flight, recorded in the ledger
    one, two = (ledgers(harness, node_id)[types.CLUSTER].pending for node_id in ("p1", "p2"))
    assert len(one) == len(two) == 1
    assert one[0].names is not None and one[0].names == set(
        harness.cache.get_snapshot(VIEW).by_type[types.CLUSTER].resources
    )
    assert one[0].names is two[0].names
