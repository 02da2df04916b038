"""The operator endpoints over real HTTP (aiohttp's test server on 127.0.0.1), reading a real store
and cache; the ADS server's registry is a stand-in holding real ConnectionStatus values."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable, Sequence
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2, struct_pb2

from pilot._gen import networking_pb2
from pilot.cache.cache import SnapshotCache
from pilot.cache.snapshot import Snapshot
from pilot.config.objects import ConfigKey, ConfigObject, FieldError, ParseResult
from pilot.config.store import ConfigStore
from pilot.debug import views
from pilot.debug.http import HttpServer, build_app
from pilot.server.connection import ConnectionStatus, NackStatus, TypeStatus
from pilot.xds import types

SIDECAR = "sidecar~10.0.0.1~reviews-1.shop~shop.svc.cluster.local"
ROUTER = "router~10.0.0.2~gw.istio-system~istio-system.svc.cluster.local"
VIEW = ("sidecar", "shop")


def type_status(url: str, sent: str, acked: str, nack: NackStatus | None = None, names: tuple[str, ...] = ()):
    return TypeStatus(
        type_url=url,
        wildcard=not names,
        names=names,
        version_sent=f"v{sent}" if sent else "",
        nonce_sent=sent,
        version_acked=f"v{acked}" if acked else "",
        nonce_acked=acked,
        last_nack=nack,
        last_sent_at=1.0 if sent else None,
    )


class Registry:
    """Stand-in for AdsServer's read side."""

    def __init__(self) -> None:
        nack = NackStatus(message="bad cluster", code=3, nonce="4", version="v2", at=2.0)
        self.statuses = [
            ConnectionStatus(
                stream_id=1,
                node_id=SIDECAR,
                peer="ipv4:127.0.0.1:5000",
                connected_at=1.0,
                view=str(VIEW),
                protocol="sotw",
                types={
                    types.CLUSTER: type_status(types.CLUSTER, "4", "2", nack),
                    types.ENDPOINT: type_status(types.ENDPOINT, "5", "5", names=("outbound|80||a",)),
                    types.LISTENER: type_status(types.LISTENER, "6", ""),
                },
            ),
        ]
        self.views: dict[str, Hashable] = {SIDECAR: VIEW}

    def connections(self) -> Sequence[ConnectionStatus]:
        return self.statuses

    def find_view(self, node_id: str) -> Hashable | None:
        return self.views.get(node_id)


def snapshot() -> Snapshot:
    router = any_pb2.Any()
    router.Pack(struct_pb2.Struct())  # any packed message; rendering must resolve it
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix="outbound_0.0.0.0_9080",
        rds=hcm_pb2.Rds(route_config_name="9080"),
    )
    manager.http_filters.add(name="envoy.filters.http.router").typed_config.CopyFrom(router)
    listener = listener_pb2.Listener(name="0.0.0.0_9080")
    listener.filter_chains.add().filters.add(
        name="envoy.filters.network.http_connection_manager"
    ).typed_config.Pack(manager)
    name = "outbound|80||a"
    return Snapshot.from_messages(
        "ctx-1",
        {
            types.CLUSTER: [(name, cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS))],
            types.ENDPOINT: [(name, endpoint_pb2.ClusterLoadAssignment(cluster_name=name))],
            types.LISTENER: [("0.0.0.0_9080", listener)],
            types.ROUTE: [("9080", route_pb2.RouteConfiguration(name="9080"))],
        },
    )


def store_with_config() -> ConfigStore:
    store = ConfigStore()
    spec = networking_pb2.ServiceEntry(hosts=["a.example.com"], export_to=["."])
    objects = tuple(
        ConfigObject(
            ConfigKey("ServiceEntry", "shop", name),
            "networking.istio.io/v1",
            spec,
            "se.yaml",
            labels=(("app", "a"),),
        )
        for name in ("a", "b")
    )
    problem = FieldError(
        "se.yaml",
        "weights must sum to 100",
        ConfigKey("VirtualService", "shop", "r"),
        "spec.http[0].route",
        line=12,
    )
    store.apply(ParseResult("se.yaml", objects=objects, errors=(problem,)))
    broken = FieldError("broken.yaml", "YAML syntax error", line=3)
    store.apply(ParseResult("broken.yaml", errors=(broken,), fatal=True))
    return store


class ReadyFlag:
    def __init__(self) -> None:
        self.value = False

    def __call__(self) -> bool:
        return self.value


@pytest.fixture
def ready_flag() -> ReadyFlag:
    return ReadyFlag()


@pytest.fixture
def cache() -> SnapshotCache:
    cache = SnapshotCache()
    cache.set_snapshot(VIEW, snapshot())
    return cache


@pytest.fixture
async def client(cache: SnapshotCache, ready_flag: ReadyFlag) -> AsyncIterator[TestClient[Any, Any]]:
    app = build_app(
        store=store_with_config(),
        cache=cache,
        server=Registry(),
        ready_check=ready_flag,
        push_status_provider=lambda: {"push_count": 3},
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


async def test_ready_follows_the_check(client, ready_flag):
    response = await client.get("/ready")
    assert response.status == 503
    ready_flag.value = True
    response = await client.get("/ready")
    assert response.status == 200


async def test_metrics_are_prometheus_text_with_fresh_config_gauges(client):
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert 'pilot_config_objects{kind="ServiceEntry"} 2.0' in text
    assert 'pilot_config_errors{severity="error"} 2.0' in text
    assert 'pilot_config_errors{severity="warning"} 0.0' in text
    assert "pilot_xds_pushes" in text or "pilot_push_triggers" in text


async def test_syncz_reports_each_type_like_proxy_status(client):
    response = await client.get("/debug/syncz")
    assert response.status == 200
    [row] = await response.json()
    assert row["proxy"] == SIDECAR
    assert row["view"] == str(VIEW)
    assert row["cds"]["status"] == "STALE"
    assert row["cds"]["last_nack"] == {
        "message": "bad cluster",
        "code": 3,
        "nonce": "4",
        "version": "v2",
        "at": 2.0,
    }
    assert row["eds"]["status"] == "SYNCED"
    assert row["eds"]["subscribed"] == ["outbound|80||a"]
    assert row["lds"]["status"] == "STALE (Never Acknowledged)"
    assert row["lds"]["subscribed"] is None  # wildcard
    assert row["rds"]["status"] == "NOT SENT"
    # istiod's flat keys, for tools written against istiod.
    assert (row["cluster_sent"], row["cluster_acked"]) == ("4", "2")
    assert (row["route_sent"], row["route_acked"]) == ("", "")


async def test_config_dump_is_envoy_admin_shaped(client):
    response = await client.get("/debug/config_dump", params={"proxyID": SIDECAR})
    assert response.status == 200
    dump = await response.json()
    assert dump["proxy"] == SIDECAR and dump["version"] == "ctx-1"
    by_type = {config["@type"].rsplit(".", 1)[-1]: config for config in dump["configs"]}
    assert list(by_type) == [
        "ClustersConfigDump",
        "EndpointsConfigDump",
        "ListenersConfigDump",
        "RoutesConfigDump",
    ]
    [cluster] = by_type["ClustersConfigDump"]["dynamic_active_clusters"]
    assert cluster["cluster"]["@type"] == types.CLUSTER
    assert cluster["cluster"]["name"] == "outbound|80||a"
    assert cluster["cluster"]["type"] == "EDS"
    [listener] = by_type["ListenersConfigDump"]["dynamic_listeners"]
    assert listener["name"] == "0.0.0.0_9080"
    manager = listener["active_state"]["listener"]["filter_chains"][0]["filters"][0]["typed_config"]
    # Proto field names, like Envoy's admin, and nested typed configs rendered.
    assert manager["rds"]["route_config_name"] == "9080"
    assert manager["@type"].endswith("HttpConnectionManager")
    [route] = by_type["RoutesConfigDump"]["dynamic_route_configs"]
    assert route["route_config"]["name"] == "9080"
    [endpoint] = by_type["EndpointsConfigDump"]["dynamic_endpoint_configs"]
    assert endpoint["endpoint_config"]["cluster_name"] == "outbound|80||a"


async def test_config_dump_accepts_istios_short_proxy_id(client):
    response = await client.get("/debug/config_dump", params={"proxyID": "reviews-1.shop"})
    assert response.status == 200
    assert (await response.json())["proxy"] == SIDECAR


async def test_config_dump_of_an_unknown_proxy_is_404(client):
    response = await client.get("/debug/config_dump", params={"proxyID": ROUTER})
    assert response.status == 404
    assert "not connected" in (await response.json())["error"]
    response = await client.get("/debug/config_dump")
    assert response.status == 400


async def test_configz_lists_objects_and_errors(client):
    response = await client.get("/debug/configz")
    assert response.status == 200
    body = await response.json()
    assert [(o["kind"], o["namespace"], o["name"]) for o in body["objects"]] == [
        ("ServiceEntry", "shop", "a"),
        ("ServiceEntry", "shop", "b"),
    ]
    first = body["objects"][0]
    assert first["origin"] == "se.yaml" and first["revision"] == 1
    assert first["spec"] == {"hosts": ["a.example.com"], "exportTo": ["."]}
    assert first["labels"] == {"app": "a"}
    errors = {e["origin"]: e for e in body["errors"]}
    assert errors["se.yaml"] == {
        "origin": "se.yaml",
        "line": 12,
        "kind": "VirtualService",
        "namespace": "shop",
        "name": "r",
        "key": "VirtualService shop/r",
        "path": "spec.http[0].route",
        "message": "weights must sum to 100",
        "severity": "error",
    }
    assert errors["broken.yaml"]["line"] == 3


async def test_push_status_and_index(client):
    assert await (await client.get("/debug/push_status")).json() == {"push_count": 3}
    index = await (await client.get("/debug")).json()
    assert "/debug/syncz" in index["endpoints"]


def test_sync_status_rule():
    assert views.sync_status("", "") == "NOT SENT"
    assert views.sync_status("3", "3") == "SYNCED"
    assert views.sync_status("3", "") == "STALE (Never Acknowledged)"
    assert views.sync_status("3", "2") == "STALE"


def test_unrenderable_resource_does_not_break_the_dump():
    from pilot.cache.snapshot import Resource

    body = any_pb2.Any(type_url="type.googleapis.com/nowhere.v1.Thing", value=b"").SerializeToString()
    rendered = views.render_resource(types.CLUSTER, Resource("x", "1", body))
    assert rendered["name"] == "x" and "render_error" in rendered


def test_nested_typed_config_of_a_package_nobody_imported_is_rendered():
    from pilot.cache.snapshot import Resource

    listener = listener_pb2.Listener(name="l")
    http_filter = listener.filter_chains.add().filters.add(name="x")
    http_filter.typed_config.type_url = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer"
    resource = Resource.from_message(types.LISTENER, "l", listener)
    rendered = views.render_resource(types.LISTENER, resource)
    assert "render_error" not in rendered
    assert rendered["filter_chains"][0]["filters"][0]["typed_config"]["@type"].endswith("buffer.v3.Buffer")


# --- the HTTP port under abuse: half-sent requests, too many connections ----------------------------------


async def _started(**kwargs: Any) -> HttpServer:
    app = build_app(store=ConfigStore(), cache=SnapshotCache(), server=Registry(), ready_check=lambda: True)
    http = HttpServer(app, "127.0.0.1", 0, **kwargs)
    await http.start()
    return http


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        async with asyncio.timeout(within):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def _ready(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    try:
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


async def _half_sent(port: int, count: int, opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]):
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /ready HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and never the rest
        opened.append((reader, writer))


async def test_half_sent_requests_are_closed_after_the_request_timeout() -> None:
    """200 sockets sending partial headers stayed open for good (still open after 30 s)."""
    http = await _started(request_timeout=1.0, max_connections=300)
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        await _half_sent(http.port, 200, opened)
        assert (await _ready(http.port)).startswith(b"HTTP/1.1 200")
        started = asyncio.get_running_loop().time()
        closed = await asyncio.gather(*(_closed_by_server(reader, within=10) for reader, _ in opened))
        assert all(closed)
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        for _, writer in opened:
            writer.close()
        await http.stop()


async def test_connections_past_the_cap_are_refused_and_the_port_recovers() -> None:
    http = await _started(request_timeout=30.0, max_connections=20)
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        await _half_sent(http.port, 20, opened)
        await asyncio.sleep(0.1)
        assert (await _ready(http.port)).startswith(b"HTTP/1.1 503")  # past the cap: refused at once
        for _, writer in opened:
            writer.close()
        deadline = asyncio.get_running_loop().time() + 5
        while not (await _ready(http.port)).startswith(b"HTTP/1.1 200"):
            assert asyncio.get_running_loop().time() < deadline, "the port never recovered"
            await asyncio.sleep(0.05)
    finally:
        await http.stop()
