"""A resource a proxy rejects holds back only the config object that broke it, end to end: the
real app (folder source, pusher, translator, ADS server) and an Envoy-like client that NACKs any
route configuration carrying a marker header, over state of the world and delta.

Two VirtualServices share route configuration "7070" (both services listen on 7070). The proxy
rejects the route once one of them carries the marker; the pusher traces the rejection to that
VirtualService, holds it at the version the proxy accepted, and the other VirtualService's edit
reaches the proxy. https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#nack
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from envoy.config.route.v3 import route_pb2

from pilot.config.objects import ConfigKey
from pilot.xds import types
from tests.server.ads_client import Update
from tests.server.envoy_like import EnvoyLike
from tests.test_scoped_push import destination_rule, poll, service_entry, serving, write

NODE = "sidecar~10.0.0.1~app-a.a~a.svc.cluster.local"
MARKER = "x-this-proxy-rejects"
ROUTE = "7070"


@pytest.fixture(params=["sotw", "delta"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class RejectingEnvoy(EnvoyLike):
    """ACKs everything except a route configuration that matches on MARKER: the whole response is
    NACKed and nothing of it applied, with an error that, like Envoy's RDS errors, names no resource
    but quotes the value it refuses."""

    async def _take(self, update: Update) -> bool:
        if update.type_url == types.ROUTE:
            bad = [name for name, value in update.values.items() if MARKER.encode() in value]
            if bad:
                await self.client.nack(update, f"header matcher '{MARKER}' is not allowed here", bad)
                return False
        return await super()._take(update)

    def weights(self, service: str, route: str = ROUTE) -> list[int]:
        config = route_pb2.RouteConfiguration.FromString(self.values[types.ROUTE][route])
        vhost = next(v for v in config.virtual_hosts if v.name == f"{service}.a.svc.cluster.local:{route}")
        return [c.weight.value for r in vhost.routes for c in r.route.weighted_clusters.clusters]


def virtual_service(name: str, weights: tuple[int, int], *, marker: bool = False) -> dict[str, Any]:
    host = f"{name}.a.svc.cluster.local"
    route: dict[str, Any] = {
        "route": [
            {"destination": {"host": host, "subset": "v1"}, "weight": weights[0]},
            {"destination": {"host": host, "subset": "v2"}, "weight": weights[1]},
        ]
    }
    http = [{"match": [{"headers": {MARKER: {"exact": "1"}}}], **route}, route] if marker else [route]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "a"},
        "spec": {"hosts": [host], "http": http},
    }


def service(name: str, address: str, port: int = 7070) -> list[dict[str, Any]]:
    return [service_entry(name, "a", port, [address]), destination_rule(name, "a")]


async def test_a_rejected_object_holds_back_only_itself(tmp_path: Path, protocol: str) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    write(config_dir, "svc-a.yaml", service("svc-a", "10.1.0.1"))
    write(config_dir, "svc-b.yaml", service("svc-b", "10.1.0.2"))
    write(config_dir, "vs-a.yaml", [virtual_service("svc-a", (90, 10))])
    write(config_dir, "vs-b.yaml", [virtual_service("svc-b", (90, 10))])
    async with serving(config_dir) as mesh:
        pilot = mesh.pilot
        channel_proxy = await mesh.proxy(NODE, protocol)
        proxy = RejectingEnvoy(channel_proxy.client)
        proxy.values = channel_proxy.values
        assert proxy.weights("svc-a") == [90, 10] and proxy.weights("svc-b") == [90, 10]

        # svc-a's VirtualService gets the marker: the proxy rejects route configuration 7070.
        await mesh.change("vs-a.yaml", [virtual_service("svc-a", (50, 50), marker=True)])
        await proxy.settle()

        # svc-b's edit reaches the proxy; svc-a stays at the version the proxy accepted.
        await mesh.change("vs-b.yaml", [virtual_service("svc-b", (20, 80))])
        await proxy.settle()
        assert proxy.weights("svc-b") == [20, 80]
        assert proxy.weights("svc-a") == [90, 10]

        # The rejection is reported on svc-a's VirtualService, the only object held back.
        vs_a = ConfigKey("VirtualService", "a", "svc-a")
        await poll(lambda: [r.key for r in pilot.pusher.rejections()] == [vs_a], "svc-a held back")
        [rejection] = pilot.pusher.rejections()
        assert (rejection.proxy, rejection.type_url, rejection.resource) == (NODE, types.ROUTE, ROUTE)
        assert rejection.origin == "vs-a.yaml" and MARKER in rejection.error

        # A new version of svc-a clears the hold and is tried.
        await mesh.change("vs-a.yaml", [virtual_service("svc-a", (10, 90))])
        await proxy.settle()
        assert proxy.weights("svc-a") == [10, 90]
        assert pilot.pusher.rejections() == []


async def test_a_rejected_response_of_two_routes_still_delivers_the_innocent_one(
    tmp_path: Path, protocol: str
) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    write(config_dir, "svc-a.yaml", service("svc-a", "10.1.0.1"))
    write(config_dir, "svc-c.yaml", service("svc-c", "10.1.0.3", port=7171))
    write(config_dir, "routes.yaml", [virtual_service("svc-a", (90, 10)), virtual_service("svc-c", (90, 10))])
    async with serving(config_dir) as mesh:
        started = await mesh.proxy(NODE, protocol)
        proxy = RejectingEnvoy(started.client)
        proxy.values = started.values

        # One push changes route configurations 7070 (svc-a, now rejected) and 7171 (svc-c).
        edited = [virtual_service("svc-a", (50, 50), marker=True), virtual_service("svc-c", (20, 80))]
        await mesh.change("routes.yaml", edited)
        await proxy.settle()
        await poll(lambda: mesh.pilot.pusher.rejections(), "svc-a held back")
        await proxy.settle()
        assert proxy.weights("svc-c", "7171") == [20, 80]
        assert proxy.weights("svc-a") == [90, 10]
        [rejection] = mesh.pilot.pusher.rejections()
        assert rejection.key == ConfigKey("VirtualService", "a", "svc-a") and rejection.resource == ROUTE
