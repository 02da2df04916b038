"""A real Envoy against the in-process ADS server: the hand-encoded responses are accepted, every
type is ACKed, listeners finish warming, and a config Envoy rejects is NACKed, recorded and not
sent again while newer config still gets through."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from google.protobuf import any_pb2

from pilot import metrics
from pilot.cache.snapshot import Snapshot
from pilot.xds import types
from tests.server.harness import AdsHarness, HarnessFactory
from tests.server.resources import VIEW, cluster, endpoints, make_snapshot, route
from tests.support import EnvoyProcess, failure_logs

pytestmark = pytest.mark.e2e

NODE = "sidecar~127.0.0.1~envoy-1.default~default.svc.cluster.local"
DEADLINE = 30.0


def http_listener(name: str, route_name: str, stat_prefix: str) -> listener_pb2.Listener:
    """An HTTP listener on 127.0.0.1, port chosen by Envoy, whose routes come over ADS (RDS)."""
    ads = config_source_pb2.ConfigSource(resource_api_version=config_source_pb2.V3)
    ads.ads.SetInParent()
    router = any_pb2.Any()
    router.Pack(router_pb2.Router())
    manager = hcm.HttpConnectionManager(
        stat_prefix=stat_prefix,
        rds=hcm.Rds(route_config_name=route_name, config_source=ads),
        http_filters=[hcm.HttpFilter(name="envoy.filters.http.router", typed_config=router)],
    )
    typed = any_pb2.Any()
    typed.Pack(manager)
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=0)
        ),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager", typed_config=typed
                    )
                ]
            )
        ],
    )


def envoy_snapshot(
    version: str, *, cluster_timeout_ms: int = 1000, port: int = 18001, stat_prefix: str = "listener_80"
) -> Snapshot:
    listener = http_listener("listener_80", "80", stat_prefix)
    return make_snapshot(
        version,
        clusters=[cluster("a", cluster_timeout_ms)],
        loads=[endpoints("a", port)],
        listeners=[listener],
        routes=[route("80", "a")],
    )


async def eventually(predicate: Callable[[], object], what: str) -> None:
    """Poll a (possibly blocking) predicate in a thread until it holds; the event loop keeps serving."""
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while not await asyncio.to_thread(predicate):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def envoy(
    make_harness: HarnessFactory, tmp_path: Path
) -> AsyncIterator[tuple[AdsHarness, EnvoyProcess]]:
    harness = await make_harness()
    harness.cache.set_snapshot(VIEW, envoy_snapshot("v1"))
    proxy = EnvoyProcess(NODE, harness.port, tmp_path, log_level="info")
    failure_logs.watch(proxy)
    try:
        await asyncio.to_thread(proxy.start)
        yield harness, proxy
    finally:
        await asyncio.to_thread(proxy.stop)
        failure_logs.unwatch(proxy)


def all_acked(harness: AdsHarness) -> bool:
    connections = harness.ads.connections()
    if len(connections) != 1:
        return False
    states = connections[0].types
    return all(
        url in states and states[url].nonce_sent and states[url].nonce_acked == states[url].nonce_sent
        for url in types.PUSH_ORDER
    )


async def test_envoy_accepts_acks_and_warms(envoy: tuple[AdsHarness, EnvoyProcess]) -> None:
    harness, proxy = envoy
    await eventually(lambda: all_acked(harness), "Envoy to ACK CDS, EDS, LDS and RDS")
    await eventually(lambda: "listener_80" in proxy.active_listeners(), "listener_80 to warm")
    status = harness.connection(NODE)
    assert status.types[types.ENDPOINT].names == ("a",) and status.types[types.ROUTE].names == ("80",)
    assert status.types[types.CLUSTER].wildcard and status.types[types.LISTENER].wildcard
    assert proxy.rejected_updates() == {}


async def test_envoy_nack_is_recorded_and_not_resent(envoy: tuple[AdsHarness, EnvoyProcess]) -> None:
    harness, proxy = envoy
    await eventually(lambda: all_acked(harness), "Envoy to ACK everything")
    acked = harness.connection(NODE).types[types.CLUSTER].version_acked

    # A negative connect timeout fails Envoy's validation: CDS is NACKed.
    harness.cache.set_snapshot(VIEW, envoy_snapshot("v2", cluster_timeout_ms=-1000))
    await eventually(lambda: harness.connection(NODE).types[types.CLUSTER].last_nack is not None, "the NACK")
    nack = harness.connection(NODE).types[types.CLUSTER].last_nack
    assert nack is not None and "duration" in nack.message
    assert harness.connection(NODE).types[types.CLUSTER].version_acked == acked

    # New endpoints (same bad clusters): EDS goes out and is ACKed, the rejected CDS is not resent.
    harness.cache.set_snapshot(VIEW, envoy_snapshot("v3", cluster_timeout_ms=-1000, port=18002))
    eds_version = harness.cache.get_snapshot(VIEW).type_version(types.ENDPOINT)  # type: ignore[union-attr]
    await eventually(
        lambda: harness.connection(NODE).types[types.ENDPOINT].version_acked == eds_version, "EDS v3 ACK"
    )
    assert await asyncio.to_thread(lambda: proxy.rejected_updates()) == {
        "cluster_manager.cds.update_rejected": 1
    }

    # Good clusters again: accepted, and the NACK is cleared.
    harness.cache.set_snapshot(VIEW, envoy_snapshot("v4", cluster_timeout_ms=2000, port=18002))
    await eventually(lambda: all_acked(harness), "Envoy to ACK the fixed clusters")
    assert harness.connection(NODE).types[types.CLUSTER].last_nack is None
    assert await asyncio.to_thread(lambda: proxy.rejected_updates()) == {
        "cluster_manager.cds.update_rejected": 1
    }


def settled(proxy: EnvoyProcess, cluster_version: str, stat_prefix: str) -> bool:
    """Envoy runs clusters of ``cluster_version`` and a listener with ``stat_prefix``, none of
    them still warming. (A listener updated in place keeps its old version_info in the dump.)"""
    dump = proxy.config_dump()
    clusters = next(c for c in dump["configs"] if c["@type"].endswith("ClustersConfigDump"))
    listeners = next(c for c in dump["configs"] if c["@type"].endswith("ListenersConfigDump"))
    dynamic = listeners.get("dynamic_listeners", [])
    if clusters.get("dynamic_warming_clusters") or any("warming_state" in x for x in dynamic):
        return False
    versions = {c.get("version_info") for c in clusters.get("dynamic_active_clusters", [])}
    return versions == {cluster_version} and all(f'"{stat_prefix}"' in json.dumps(x) for x in dynamic)


async def test_envoy_updated_cluster_and_listener_warm_without_fetch_timeout(
    envoy: tuple[AdsHarness, EnvoyProcess],
) -> None:
    harness, proxy = envoy
    await eventually(lambda: all_acked(harness), "Envoy to ACK everything")
    # Updated cluster (needs its endpoints again) and updated listener (same RDS name). Envoy's
    # initial_fetch_timeout is 15 s: converging well before that means nothing waited for it.
    updated = envoy_snapshot("v2", cluster_timeout_ms=2500, stat_prefix="renamed")
    harness.cache.set_snapshot(VIEW, updated)
    start = asyncio.get_running_loop().time()
    await eventually(
        lambda: settled(proxy, updated.type_version(types.CLUSTER), "renamed"),
        "the updated cluster and listener to warm",
    )
    assert asyncio.get_running_loop().time() - start < 10
    await eventually(lambda: all_acked(harness), "Envoy to ACK the update")


def hosts(proxy: EnvoyProcess) -> dict[str, set[str]]:
    """cluster -> the endpoint addresses Envoy has for it (admin /clusters)."""
    found: dict[str, set[str]] = {}
    for line in proxy.admin_get("/clusters").text.splitlines():
        parts = line.split("::")
        if len(parts) >= 3 and parts[2] == "health_flags":
            found.setdefault(parts[0], set()).add(parts[1])
    return found


async def test_envoy_takes_a_push_of_only_the_changed_endpoints(
    envoy: tuple[AdsHarness, EnvoyProcess],
) -> None:
    # SotW EDS responses hold only what changed; Envoy applies each assignment to its own cluster
    # and keeps the others.
    # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#grouping-resources-into-responses
    harness, proxy = envoy
    listener = http_listener("listener_80", "80", "listener_80")

    def two_clusters(version: str, b_port: int) -> Snapshot:
        return make_snapshot(
            version,
            clusters=[cluster("a"), cluster("b")],
            loads=[endpoints("a", 18001), endpoints("b", b_port)],
            listeners=[listener],
            routes=[route("80", "a")],
        )

    harness.cache.set_snapshot(VIEW, two_clusters("v2", 18002))
    await eventually(lambda: hosts(proxy).get("b") == {"127.0.0.1:18002"}, "cluster b and its endpoints")
    await eventually(lambda: all_acked(harness), "Envoy to ACK everything")
    eds_pushes = metrics.REGISTRY.get_sample_value("pilot_xds_pushes_total", {"type": "eds"}) or 0.0

    changed = two_clusters("v3", 18003)
    harness.cache.set_snapshot(VIEW, changed)
    await eventually(lambda: hosts(proxy).get("b") == {"127.0.0.1:18003"}, "b's new endpoint")
    assert (await asyncio.to_thread(hosts, proxy))["a"] == {"127.0.0.1:18001"}
    eds_version = changed.type_version(types.ENDPOINT)
    await eventually(
        lambda: harness.connection(NODE).types[types.ENDPOINT].version_acked == eds_version, "the EDS ACK"
    )
    assert metrics.REGISTRY.get_sample_value("pilot_xds_pushes_total", {"type": "eds"}) == eds_pushes + 1
    assert await asyncio.to_thread(proxy.rejected_updates) == {}
