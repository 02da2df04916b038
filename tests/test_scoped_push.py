"""Pushes are scoped to what changed, end to end: the real app (folder source, pusher, translator,
ADS server) and real gRPC clients that subscribe like Envoy, over state of the world and delta.

Each test writes Istio YAML, waits until pilot has pushed it and every stream has written what it
had to write, then lets each proxy settle (a probe barrier, never a sleep) and looks at the bytes
it received per type. https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from pilot.app import RunningPilot, serve
from pilot.localmesh.config_files import write_atomically
from pilot.settings import Settings
from pilot.xds import types
from tests.server.ads_client import DEADLINE, AdsClient, DeltaClient, DeltaXds, SotwXds, XdsClient
from tests.server.envoy_like import EnvoyLike, bytes_by_type, names_by_type

MESH_SERVICES = 50
NODE_A = "sidecar~10.0.0.1~app-a.a~a.svc.cluster.local"
NODE_B = "sidecar~10.0.0.2~app-b.b~b.svc.cluster.local"
TYPES = ("cds", "eds", "lds", "rds")


@pytest.fixture(params=["sotw", "delta"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- config ---------------------------------------------------------------------------------------


def service_entry(
    name: str, namespace: str, port: int, addresses: list[str], export_to: list[str] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "hosts": [f"{name}.{namespace}.svc.cluster.local"],
        "location": "MESH_INTERNAL",
        "ports": [{"number": port, "name": "http", "protocol": "HTTP"}],
        "resolution": "STATIC",
        "endpoints": [
            {"address": address, "labels": {"version": f"v{i % 2 + 1}"}}
            for i, address in enumerate(addresses)
        ],
    }
    if export_to is not None:
        spec["exportTo"] = export_to
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def destination_rule(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "host": f"{name}.{namespace}.svc.cluster.local",
            "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2")],
        },
    }


def virtual_service(name: str, namespace: str, weights: tuple[int, int]) -> dict[str, Any]:
    host = f"{name}.{namespace}.svc.cluster.local"
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "hosts": [host],
            "exportTo": ["."],
            "http": [
                {
                    "route": [
                        {"destination": {"host": host, "subset": "v1"}, "weight": weights[0]},
                        {"destination": {"host": host, "subset": "v2"}, "weight": weights[1]},
                    ]
                }
            ],
        },
    }


def mesh_service(index: int, addresses: list[str] | None = None) -> list[dict[str, Any]]:
    """One of the mesh's shared services (visible everywhere): half on port 8080, half on 9080."""
    name = f"svc-{index:02}"
    port = 8080 if index % 2 == 0 else 9080
    addresses = addresses or [f"10.2.{index}.1", f"10.2.{index}.2"]
    return [service_entry(name, "mesh", port, addresses), destination_rule(name, "mesh")]


def write(config_dir: Path, filename: str, docs: list[dict[str, Any]]) -> None:
    write_atomically(config_dir / filename, yaml.safe_dump_all(docs, sort_keys=False))


def write_mesh(config_dir: Path, services: int) -> None:
    """``services`` shared services; ``svc-a`` only namespace a sees (exportTo "."), with a
    VirtualService; ``svc-b`` in namespace b."""
    for index in range(services):
        write(config_dir, f"mesh-{index:02}.yaml", mesh_service(index))
    write(config_dir, "a.yaml", a_service(port=7070, weights=(100, 0)))
    write(
        config_dir,
        "b.yaml",
        [service_entry("svc-b", "b", 7070, ["10.3.0.1"]), destination_rule("svc-b", "b")],
    )


def a_service(
    *,
    port: int,
    weights: tuple[int, int],
    addresses: tuple[str, ...] = ("10.1.0.1", "10.1.0.2"),
) -> list[dict[str, Any]]:
    return [
        service_entry("svc-a", "a", port, list(addresses), export_to=["."]),
        destination_rule("svc-a", "a"),
        virtual_service("svc-a", "a", weights),
    ]


# -- running pilot and proxies --------------------------------------------------------------------


async def poll(predicate: Callable[[], object], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Mesh:
    """A running in-process pilot, its config folder and the proxies connected to it."""

    def __init__(self, pilot: RunningPilot, config_dir: Path) -> None:
        self.pilot = pilot
        self.config_dir = config_dir
        self._channels: list[grpc.aio.Channel] = []
        self._clients: list[XdsClient] = []

    async def proxy(self, node_id: str, protocol: str) -> EnvoyLike:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.pilot.xds_port}")
        self._channels.append(channel)
        client: XdsClient
        if protocol == "sotw":
            client = SotwXds(AdsClient(channel, node_id))
        else:
            client = DeltaXds(DeltaClient(channel, node_id))
        self._clients.append(client)
        return await EnvoyLike(client).start()

    async def change(self, filename: str, docs: list[dict[str, Any]]) -> None:
        """Write a file; return once pilot has pushed it and every stream has written its share."""
        store, pusher, ads = self.pilot.store, self.pilot.pusher, self.pilot.ads
        before = store.revision
        write(self.config_dir, filename, docs)
        await poll(lambda: store.revision > before, f"{filename} in the store")
        await poll(
            lambda: pusher.last_push is not None and pusher.last_push.revision >= store.revision,
            f"the push of {filename}",
        )

        def streams_idle() -> bool:
            for conn in ads.connections():
                backlog = ads.backlog(conn.stream_id)
                if backlog is not None and (backlog.pending_snapshots or backlog.writing):
                    return False
            return True

        await poll(streams_idle, "every stream to write the push")

    async def close(self) -> None:
        for client in self._clients:
            client.close()
        for channel in self._channels:
            await channel.close(None)


@asynccontextmanager
async def running_mesh(tmp_path: Path, services: int) -> AsyncIterator[Mesh]:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    write_mesh(config_dir, services)
    async with serving(config_dir) as mesh:
        yield mesh


@asynccontextmanager
async def serving(config_dir: Path) -> AsyncIterator[Mesh]:
    """pilot serving ``config_dir`` in-process, on free ports."""
    settings = Settings(
        config_dir=config_dir,
        xds_host="127.0.0.1",
        xds_port=0,
        http_host="127.0.0.1",
        http_port=0,
        debounce_after=0.05,
    )
    async with serve(settings) as pilot:
        mesh = Mesh(pilot, config_dir)
        try:
            yield mesh
        finally:
            await mesh.close()


# -- the rules ------------------------------------------------------------------------------------


async def test_change_a_namespace_cannot_see_sends_it_nothing(tmp_path: Path, protocol: str) -> None:
    async with running_mesh(tmp_path, services=4) as mesh:
        proxy_a = await mesh.proxy(NODE_A, protocol)
        proxy_b = await mesh.proxy(NODE_B, protocol)
        cluster_a = "outbound|7070||svc-a.a.svc.cluster.local"
        assert cluster_a in proxy_a.values[types.CLUSTER]
        assert cluster_a not in proxy_b.values[types.CLUSTER]

        # The VirtualService of svc-a (exported to its own namespace only): new weights.
        await mesh.change("a.yaml", a_service(port=7070, weights=(20, 80)))
        to_a, to_b = bytes_by_type(await proxy_a.settle()), bytes_by_type(await proxy_b.settle())
        assert to_b == {}, f"namespace b was sent {dict(to_b)}"
        assert set(to_a) == {"rds"} and to_a["rds"] > 0

        # svc-a moves to another port: new clusters, endpoints, listener and route for a; b: nothing.
        await mesh.change("a.yaml", a_service(port=7171, weights=(20, 80)))
        to_a, to_b = bytes_by_type(await proxy_a.settle()), bytes_by_type(await proxy_b.settle())
        assert to_b == {}, f"namespace b was sent {dict(to_b)}"
        assert to_a["cds"] > 0 and to_a["lds"] > 0 and to_a["eds"] > 0 and to_a["rds"] > 0


async def test_endpoint_change_sends_only_the_affected_endpoints(tmp_path: Path, protocol: str) -> None:
    async with running_mesh(tmp_path, services=6) as mesh:
        proxies = [await mesh.proxy(NODE_A, protocol), await mesh.proxy(NODE_B, protocol)]
        host = "svc-03.mesh.svc.cluster.local"

        # One endpoint of svc-03 gets a new address, then a third endpoint is added.
        for addresses in (["10.2.3.1", "10.9.9.9"], ["10.2.3.1", "10.9.9.9", "10.9.9.10"]):
            await mesh.change("mesh-03.yaml", mesh_service(3, addresses))
            for proxy in proxies:
                updates = await proxy.settle()
                sent = bytes_by_type(updates)
                assert set(sent) == {"eds"}, f"an endpoint change sent {dict(sent)}"
                names = names_by_type(updates)["eds"]
                # The assignments of svc-03's clusters (all, v1 and v2 subsets), no other.
                assert names and all(name.endswith(f"|{host}") for name in names), names


async def test_bytes_one_proxy_receives_for_one_endpoint_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_mesh(tmp_path, services=MESH_SERVICES) as mesh:
        fresh = {}
        proxies = {}
        for protocol in ("sotw", "delta"):
            proxies[protocol] = await mesh.proxy(NODE_B, protocol)
            fresh[protocol] = bytes_by_type(proxies[protocol].updates)
        await mesh.change("mesh-07.yaml", mesh_service(7, ["10.2.7.1", "10.8.8.8"]))
        scoped = {protocol: bytes_by_type(await proxy.settle()) for protocol, proxy in proxies.items()}

    clusters = len(proxies["sotw"].values[types.CLUSTER])
    lines = [
        f"\n[scoped push] one proxy, a mesh of {MESH_SERVICES} services ({clusters} clusters); "
        "one endpoint address changed",
        f"  {'protocol':8} {'push':28} " + " ".join(f"{t:>8}" for t in TYPES) + f" {'total':>9}",
    ]
    for protocol in ("sotw", "delta"):
        for label, counts in (
            ("full (a fresh connection)", fresh[protocol]),
            ("scoped (the endpoint change)", scoped[protocol]),
        ):
            cells = " ".join(f"{counts.get(t, 0):>8}" for t in TYPES)
            lines.append(f"  {protocol:8} {label:28} {cells} {sum(counts.values()):>9}")
    with capsys.disabled():
        print("\n".join(lines))

    for protocol in ("sotw", "delta"):
        assert set(scoped[protocol]) == {"eds"}
        # One service's assignments out of fifty: a few percent of the full EDS state.
        assert scoped[protocol]["eds"] * 10 < fresh[protocol]["eds"]
