"""What a hostile or broken proxy can make the server keep, show, log or do (issue 11, findings 4
and 5, and the request rate limits): bounded NACK text, validated node ids, rate limits."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import orjson
import pytest

from pilot.debug import views
from pilot.server.limits import LogGate, StreamLimits
from pilot.server.node_id import InvalidNodeIdError, check_node_id
from pilot.server.status import MAX_DETAIL_BYTES, bounded_text
from pilot.settings import istio_request_rate
from pilot.xds import types
from tests.server.ads_client import DEADLINE
from tests.server.harness import AdsHarness, HarnessFactory
from tests.server.resources import VIEW, base_snapshot, cluster
from tests.server.test_ads import connect_cds_lds, protocol, recv_acked, sample

__all__ = ["protocol"]  # the fixture, shared with test_ads

# -- finding 4: NACK text ------------------------------------------------------------------------


def test_bounded_text_keeps_short_text_and_cuts_long_text_to_the_limit() -> None:
    assert bounded_text("cluster bad: invalid") == "cluster bad: invalid"
    for text in ("x" * 10_000, "é" * 10_000, "😀" * 3000):
        cut = bounded_text(text)
        assert len(cut.encode()) <= MAX_DETAIL_BYTES
        assert cut.startswith(text[:100]) and "bytes, cut to 4096" in cut


def test_log_gate_logs_the_first_then_one_per_interval_with_the_count_held_back() -> None:
    gate = LogGate(10.0)
    assert gate.admit(100.0) == 0
    assert [gate.admit(100.0 + i) for i in range(1, 6)] == [None] * 5
    assert gate.admit(110.0) == 5
    assert gate.admit(111.0) is None


async def test_thirty_huge_nacks_leave_kept_shown_and_logged_text_bounded(
    harness: AdsHarness, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    client, cds, _ = await connect_cds_lds(harness, protocol)
    harness.cache.set_snapshot(VIEW, base_snapshot("v2", clusters=[cluster("a"), cluster("bad")]))
    bad = await client.recv()
    huge = "E" * 3_900_000  # under gRPC's 4 MB receive limit, as in the issue
    caplog.set_level(logging.WARNING, logger="pilot.server")
    for i in range(30):
        await client.nack(bad, f"{i}:{huge}", invalid=["bad"])
    await client.expect_silence()

    nack = harness.connection().types[types.CLUSTER].last_nack
    assert nack is not None and nack.message.startswith("29:")
    assert len(nack.message.encode()) <= MAX_DETAIL_BYTES
    shown = orjson.dumps(views.syncz(harness.ads.connections()))
    assert len(shown) < 4 * MAX_DETAIL_BYTES  # the whole page, for one stream
    nack_lines = [r.getMessage() for r in caplog.records if "NACK from" in r.getMessage()]
    assert len(nack_lines) == 1  # the first; the other 29 come within the interval
    assert all(len(line.encode()) <= MAX_DETAIL_BYTES + 512 for line in nack_lines)


# -- finding 5: node ids -------------------------------------------------------------------------

ABSURD_NODE_IDS = [
    "x" * (1 << 20),  # 1 MB
    "sidecar~10.0.0.1~a.default~default.svc.cluster.local" + "a" * 2000,  # too long
    "front\x00envoy",  # NUL byte
    "../../etc/passwd",
    "sidecar~10.0.0.1~../..~default.svc.cluster.local",
    "a/b",
    "front envoy\n",
    "sidecar~10.0.0.1~app.default",  # 3 parts
    "sidecar~10.0.0.1~app.default~default.svc.cluster.local~extra",  # 5 parts
    "pirate~10.0.0.1~app.default~default.svc.cluster.local",  # unknown type
    "sidecar~999.1.1.1~app.default~default.svc.cluster.local",  # not an IP
    "sidecar~10.0.0.1~App_1.default~default.svc.cluster.local",  # not DNS-1123
]

GOOD_NODE_IDS = [
    "front-envoy",
    "test-node",
    "envoy_1.local",
    "sidecar~10.0.0.1~app-1.default~default.svc.cluster.local",
    "sidecar~fd00::1~app-1.default~default.svc.cluster.local",
    "router~0.0.0.0~istio-ingressgateway.istio-system~istio-system.svc.cluster.local",
]


@pytest.mark.parametrize("node_id", ABSURD_NODE_IDS, ids=range(len(ABSURD_NODE_IDS)))
def test_absurd_node_ids_are_refused_with_a_short_reason(node_id: str) -> None:
    with pytest.raises(InvalidNodeIdError) as refused:
        check_node_id(node_id)
    assert len(str(refused.value)) < 400


@pytest.mark.parametrize("node_id", GOOD_NODE_IDS)
def test_istio_and_plain_node_ids_are_accepted(node_id: str) -> None:
    check_node_id(node_id)


async def test_streams_with_absurd_node_ids_end_with_invalid_argument(
    harness: AdsHarness, protocol: str
) -> None:
    refused = sample("pilot_xds_invalid_node_id_total")
    for node_id in ABSURD_NODE_IDS:
        client = harness.xds_client(protocol, node_id)
        await client.subscribe(types.CLUSTER)
        code = await client.raw.status()  # type: ignore[attr-defined]
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (node_id[:60], code)
    assert sample("pilot_xds_invalid_node_id_total") == refused + len(ABSURD_NODE_IDS)
    assert harness.callbacks.opened == []  # none reached the pusher
    _, cds, _ = await connect_cds_lds(harness, protocol, "front-envoy")  # plain ids still served
    assert cds.names


# -- request rate limits -------------------------------------------------------------------------


def test_istio_default_request_rate_scales_with_cpus() -> None:
    assert (istio_request_rate(2), istio_request_rate(8), istio_request_rate(64)) == (25.0, 55.0, 100.0)


async def test_new_streams_past_the_rate_are_refused_with_resource_exhausted(
    make_harness: HarnessFactory, protocol: str
) -> None:
    # One token per 10 s, burst 1 (istiod's limiter): the first stream gets it; the next waits a
    # second for another and is refused.
    harness = await make_harness(limits=StreamLimits(streams_per_second=0.1))
    harness.cache.set_snapshot(VIEW, base_snapshot())
    limited = sample("pilot_xds_rate_limited_total", scope="stream")
    await connect_cds_lds(harness, protocol)
    late = harness.xds_client(protocol, "front-envoy")
    await late.subscribe(types.CLUSTER)
    assert await late.raw.status() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    assert sample("pilot_xds_rate_limited_total", scope="stream") == limited + 1


async def test_a_flooding_stream_is_held_to_its_rate_while_others_get_their_pushes(
    make_harness: HarnessFactory,
) -> None:
    rate, burst = 50.0, 10
    harness = await make_harness(limits=StreamLimits(requests_per_second=rate, request_burst=burst))
    harness.cache.set_snapshot(VIEW, base_snapshot())
    healthy, _, _ = await connect_cds_lds(harness, "sotw")
    flooder = harness.client("front-envoy")

    async def flood() -> None:
        while True:  # a first request of CDS again and again: each asks for the whole state
            await flooder.request(types.CLUSTER, nonce="")

    answered = 0

    async def count_answers() -> None:
        nonlocal answered
        while True:
            await flooder.recv()
            answered += 1

    tasks = [asyncio.create_task(flood()), asyncio.create_task(count_answers())]
    try:
        started = time.monotonic()
        await asyncio.sleep(0.5)
        lags = []
        for version in range(2, 7):
            harness.cache.set_snapshot(VIEW, base_snapshot(f"v{version}", clusters=[cluster(f"c{version}")]))
            pushed = time.monotonic()
            update = await recv_acked(healthy)
            lags.append(time.monotonic() - pushed)
            assert update.type_url == types.CLUSTER and f"c{version}" in update.names
        elapsed = time.monotonic() - started
        # Its answers: the first request's, the burst, the rate, and the five pushes it shares.
        assert answered <= 1 + burst + rate * elapsed + 5 + 1, (answered, elapsed)
        assert max(lags) < 0.5, lags
        assert sample("pilot_xds_rate_limited_total", scope="request") > 0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert time.monotonic() - started < DEADLINE
