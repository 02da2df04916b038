"""A real Envoy speaking incremental xDS (``api_type: DELTA_GRPC``) to the in-process ADS server:
the hand-encoded DeltaDiscoveryResponses are accepted, every type is ACKed, listeners warm, an
update is followed (an updated cluster re-warms without waiting for initial_fetch_timeout), a
NACK is recorded and not resent, and a reconnecting Envoy is not sent again what it has."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pilot.xds import types
from tests.server.harness import AdsHarness, HarnessFactory
from tests.server.resources import VIEW
from tests.server.test_envoy_sotw import NODE, all_acked, envoy_snapshot, eventually, settled
from tests.support import EnvoyProcess, failure_logs

pytestmark = pytest.mark.e2e

SENT = re.compile(r"Delta ADS:(?P<type>\w+) sent .*: (?P<resources>\d+) resources, (?P<removed>\d+) removed")


@pytest.fixture
async def envoy(
    make_harness: HarnessFactory, tmp_path: Path
) -> AsyncIterator[tuple[AdsHarness, EnvoyProcess]]:
    harness = await make_harness()
    harness.cache.set_snapshot(VIEW, envoy_snapshot("v1"))
    proxy = EnvoyProcess(NODE, harness.port, tmp_path, delta=True, log_level="info")
    failure_logs.watch(proxy)
    try:
        await asyncio.to_thread(proxy.start)
        yield harness, proxy
    finally:
        await asyncio.to_thread(proxy.stop)
        failure_logs.unwatch(proxy)


def delta_stats(proxy: EnvoyProcess) -> dict[str, int]:
    return proxy.stats(r"(cds|lds|eds|rds)\.(update_success|update_rejected|update_attempt)$")


async def test_envoy_delta_accepts_acks_and_warms(envoy: tuple[AdsHarness, EnvoyProcess]) -> None:
    harness, proxy = envoy
    await eventually(lambda: all_acked(harness), "Envoy to ACK CDS, EDS, LDS and RDS")
    await eventually(lambda: "listener_80" in proxy.active_listeners(), "listener_80 to warm")
    status = harness.connection(NODE)
    assert status.protocol == "delta"
    assert status.types[types.ENDPOINT].names == ("a",) and status.types[types.ROUTE].names == ("80",)
    assert status.types[types.CLUSTER].wildcard and status.types[types.LISTENER].wildcard
    assert await asyncio.to_thread(proxy.rejected_updates) == {}


async def test_envoy_delta_follows_an_update_without_fetch_timeout(
    envoy: tuple[AdsHarness, EnvoyProcess],
) -> None:
    harness, proxy = envoy
    await eventually(lambda: all_acked(harness), "Envoy to ACK everything")
    # Updated cluster (Envoy rebuilds it and it needs its endpoints again) and updated listener
    # (same RDS name). initial_fetch_timeout is 15 s: converging well before means nothing waited.
    updated = envoy_snapshot("v2", cluster_timeout_ms=2500, stat_prefix="renamed")
    harness.cache.set_snapshot(VIEW, updated)
    start = asyncio.get_running_loop().time()
    # With delta, Envoy's config dump shows each resource's own version.
    cluster_version = updated.resources(types.CLUSTER)["a"].version
    await eventually(
        lambda: settled(proxy, cluster_version, "renamed"), "the updated cluster and listener to warm"
    )
    assert asyncio.get_running_loop().time() - start < 10
    await eventually(lambda: all_acked(harness), "Envoy to ACK the update")

    # New endpoints only: one EDS response, and Envoy takes it.
    moved = envoy_snapshot("v3", cluster_timeout_ms=2500, stat_prefix="renamed", port=18002)
    harness.cache.set_snapshot(VIEW, moved)
    eds_version = moved.type_version(types.ENDPOINT)
    await eventually(
        lambda: harness.connection(NODE).types[types.ENDPOINT].version_acked == eds_version, "EDS v3 ACK"
    )
    await eventually(lambda: "a::127.0.0.1:18002::" in proxy.admin_get("/clusters").text, "the new endpoint")
    assert await asyncio.to_thread(proxy.rejected_updates) == {}


async def test_envoy_delta_nack_is_recorded_and_not_resent(envoy: tuple[AdsHarness, EnvoyProcess]) -> None:
    harness, proxy = envoy
    await eventually(lambda: all_acked(harness), "Envoy to ACK everything")
    acked = harness.connection(NODE).types[types.CLUSTER].version_acked

    # A negative connect timeout fails Envoy's validation: CDS is NACKed.
    harness.cache.set_snapshot(VIEW, envoy_snapshot("v2", cluster_timeout_ms=-1000))
    await eventually(lambda: harness.connection(NODE).types[types.CLUSTER].last_nack is not None, "the NACK")
    nack = harness.connection(NODE).types[types.CLUSTER].last_nack
    assert nack is not None and "duration" in nack.message
    assert harness.connection(NODE).types[types.CLUSTER].version_acked == acked

    # New endpoints (same bad cluster): EDS goes out and is ACKed, the rejected CDS is not resent.
    v3 = envoy_snapshot("v3", cluster_timeout_ms=-1000, port=18002)
    harness.cache.set_snapshot(VIEW, v3)
    eds_version = v3.type_version(types.ENDPOINT)
    await eventually(
        lambda: harness.connection(NODE).types[types.ENDPOINT].version_acked == eds_version, "EDS v3 ACK"
    )
    assert await asyncio.to_thread(proxy.rejected_updates) == {"cluster_manager.cds.update_rejected": 1}

    # A good cluster again: accepted, and the NACK is cleared.
    harness.cache.set_snapshot(VIEW, envoy_snapshot("v4", cluster_timeout_ms=2000, port=18002))
    await eventually(lambda: all_acked(harness), "Envoy to ACK the fixed cluster")
    assert harness.connection(NODE).types[types.CLUSTER].last_nack is None
    assert await asyncio.to_thread(proxy.rejected_updates) == {"cluster_manager.cds.update_rejected": 1}


async def test_envoy_delta_reconnect_sends_only_what_changed(
    make_harness: HarnessFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Envoy keeps its config while the control plane is away and, on the new stream, lists the
    # versions it has (initial_resource_versions): unchanged resources are not sent again.
    caplog.set_level(logging.DEBUG, logger="pilot.server.delta")
    first = await make_harness()
    first.cache.set_snapshot(VIEW, envoy_snapshot("v1"))
    proxy = EnvoyProcess(NODE, first.port, tmp_path, delta=True, log_level="info")
    failure_logs.watch(proxy)
    try:
        await asyncio.to_thread(proxy.start)
        await eventually(lambda: all_acked(first), "Envoy to ACK everything")
        await eventually(lambda: "listener_80" in proxy.active_listeners(), "listener_80 to warm")
        await first.stop()
        caplog.clear()

        # A new server on the same port, where only the endpoints moved.
        second = await make_harness(port=first.port)
        second.cache.set_snapshot(VIEW, envoy_snapshot("v2", port=18002))
        await eventually(lambda: all_acked(second), "Envoy to reconnect and ACK")
        # What each first response on the new stream carried: (resources, removed) per type.
        sent = {
            match["type"]: (int(match["resources"]), int(match["removed"]))
            for match in (
                SENT.search(r.getMessage()) for r in caplog.records if r.name == "pilot.server.delta"
            )
            if match is not None
        }
        assert sent == {"cds": (0, 0), "eds": (1, 0), "lds": (0, 0), "rds": (0, 0)}
        await eventually(
            lambda: "a::127.0.0.1:18002::" in proxy.admin_get("/clusters").text, "the new endpoint"
        )
        assert await asyncio.to_thread(proxy.rejected_updates) == {}
    finally:
        await asyncio.to_thread(proxy.stop)
        failure_logs.unwatch(proxy)
