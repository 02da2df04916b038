"""LDS and CDS subscribed by name, as gRPC's xDS client subscribes (never the wildcard), in both
protocols: the server sends exactly the subscribed resources that exist, answers a name it does
not have, and pushes only changes to subscribed names. No server change was needed for gRPC;
these tests pin that down."""

from __future__ import annotations

import pytest

from pilot.xds import types
from tests.server.ads_client import XdsClient
from tests.server.conftest import harness, make_harness  # noqa: F401 (fixtures)
from tests.server.harness import AdsHarness
from tests.server.resources import VIEW, base_snapshot, cluster, listener


@pytest.fixture(params=["sotw", "delta"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def recv_acked(client: XdsClient):  # noqa: ANN201
    update = await client.recv()
    await client.ack(update)
    return update


@pytest.mark.parametrize(
    ("type_url", "first", "second"),
    [
        (types.LISTENER, "0.0.0.0_80", "0.0.0.0_81"),
        (types.CLUSTER, "a", "b"),
    ],
)
async def test_named_listener_and_cluster_subscriptions(
    harness: AdsHarness,  # noqa: F811 (the imported fixture)
    protocol: str,
    type_url: str,
    first: str,
    second: str,  # noqa: F811
) -> None:
    client = harness.xds_client(protocol)
    await client.subscribe(type_url, [first])
    assert (await recv_acked(client)).names == [first]
    status = harness.connection().types[type_url]
    assert not status.wildcard and status.names == (first,)

    # A name the server does not have is answered (gRPC then waits for its does-not-exist timer).
    await client.subscribe(type_url, ["reviews.default.svc.cluster.local:9999"])
    answer = await recv_acked(client)
    assert second not in answer.names and "reviews.default.svc.cluster.local:9999" not in answer.names
    await client.expect_silence()

    # A change to an unsubscribed resource is not pushed; one to a subscribed resource is.
    if type_url == types.LISTENER:
        other = base_snapshot("v2", listeners=[listener(first, 80), listener(second, 8181)])
        mine = base_snapshot("v3", listeners=[listener(first, 8080), listener(second, 8181)])
    else:
        other = base_snapshot("v2", clusters=[cluster(first), cluster(second, timeout_ms=2000)])
        mine = base_snapshot(
            "v3", clusters=[cluster(first, timeout_ms=2000), cluster(second, timeout_ms=2000)]
        )
    harness.cache.set_snapshot(VIEW, other)
    await client.expect_silence()
    harness.cache.set_snapshot(VIEW, mine)
    assert (await recv_acked(client)).names == [first]
