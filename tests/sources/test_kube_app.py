"""``pilot serve --kube`` in-process: app.serve() with the KubeSource and the webhook, against the fake API
server, with a real grpc.aio ADS client."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson
from envoy.config.endpoint.v3 import endpoint_pb2

from pilot.settings import Settings
from pilot.xds import types
from tests.server.ads_client import AdsClient
from tests.sources.test_kube_webhook import admission_review, make_certs
from tests.support import free_port
from tests.support.kube_api import (
    FakeKubeApi,
    endpoint_slice,
    pod,
    service,
    virtual_service,
    write_kubeconfig,
)

NODE = "sidecar~10.1.0.9~client.default~default.svc.cluster.local"
CLUSTER_V1 = "outbound|9080|v1|reviews.default.svc.cluster.local"


def addresses_of(resource: Any) -> list[str]:
    """``ADDRESS:PORT`` of every endpoint of a ClusterLoadAssignment (an ``Any``), sorted."""
    assignment = endpoint_pb2.ClusterLoadAssignment.FromString(resource.value)
    return sorted(
        f"{e.endpoint.address.socket_address.address}:{e.endpoint.address.socket_address.port_value}"
        for lb in assignment.endpoints
        for e in lb.lb_endpoints
    )


def kube_settings(tmp_path: Path, kube: FakeKubeApi, **extra: Any) -> Settings:
    return Settings(
        xds_host="127.0.0.1",
        xds_port=0,
        http_host="127.0.0.1",
        http_port=0,
        debounce_after=0.01,
        debounce_max=1.0,
        shutdown_grace=1.0,
        kube=True,
        kubeconfig=write_kubeconfig(tmp_path / "kubeconfig", kube.url, token="t"),
        pilot_namespace="pilot-system",
        **extra,
    )


def reviews_destination_rule() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {
            "host": "reviews",
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}},
            ],
        },
    }


async def test_serve_kube_routes_to_ready_pods_of_a_subset_and_validates(tmp_path: Path) -> None:
    from pilot.app import serve

    async with FakeKubeApi(token="t") as kube:
        kube.apply(service("reviews", cluster_ip="10.96.1.5"))
        kube.apply(pod("reviews-v1", ip="10.1.0.1", labels={"app": "reviews", "version": "v1"}))
        kube.apply(pod("reviews-v2", ip="10.1.0.2", labels={"app": "reviews", "version": "v2"}))
        endpoints = [("10.1.0.1", "reviews-v1", True), ("10.1.0.2", "reviews-v2", True)]
        kube.apply(endpoint_slice("reviews-a", "reviews", endpoints=endpoints))
        kube.apply(reviews_destination_rule())
        kube.apply(virtual_service("reviews", subset="v1"))
        certs = make_certs(tmp_path / "certs")
        settings = kube_settings(
            tmp_path,
            kube,
            webhook_host="127.0.0.1",
            webhook_port=free_port(),
            webhook_cert=certs.cert,
            webhook_key=certs.key,
        )
        async with serve(settings) as pilot:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{pilot.xds_port}") as channel:
                client = AdsClient(channel, NODE)
                await client.request(types.ENDPOINT, [CLUSTER_V1])
                response = await client.recv()
                (resource,) = response.resources
                assert addresses_of(resource) == ["10.1.0.1:9080"]
                await client.ack(response, [CLUSTER_V1])
                # A new ready v1 pod reaches the proxy.
                kube.apply(pod("reviews-v1b", ip="10.1.0.3", labels={"app": "reviews", "version": "v1"}))
                endpoints.append(("10.1.0.3", "reviews-v1b", True))
                kube.apply(endpoint_slice("reviews-a", "reviews", endpoints=endpoints))
                update = await client.recv()
                assert addresses_of(update.resources[0]) == ["10.1.0.1:9080", "10.1.0.3:9080"]
                client.close()

            context = ssl.create_default_context(cafile=str(certs.ca))
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
                bad = virtual_service("reviews", weight=-1)
                url = f"https://127.0.0.1:{settings.webhook_port}/validate"
                async with session.post(url, data=orjson.dumps(admission_review(bad))) as reply:
                    answer: Any = await reply.json()
                assert answer["response"]["allowed"] is False


async def test_two_pods_at_one_address_are_two_endpoints_each_with_its_port(tmp_path: Path) -> None:
    """Two pods sharing an address (hostNetwork pods on one node; the e2e test's two backends on 127.0.0.1),
    each in its own EndpointSlice with its own port: each subset gets its own pod's address and port."""
    from pilot.app import serve

    async with FakeKubeApi(token="t") as kube:
        kube.apply(service("reviews", cluster_ip="10.96.1.5"))
        for version, port in (("v1", 8001), ("v2", 8002)):
            labels = {"app": "reviews", "version": version}
            kube.apply(pod(f"reviews-{version}", ip="10.1.0.1", labels=labels))
            kube.apply(
                endpoint_slice(
                    f"reviews-{version}",
                    "reviews",
                    endpoints=[("10.1.0.1", f"reviews-{version}", True)],
                    ports=[("http", port)],
                )
            )
        kube.apply(reviews_destination_rule())
        clusters = [f"outbound|9080|{v}|reviews.default.svc.cluster.local" for v in ("v1", "v2")]
        async with serve(kube_settings(tmp_path, kube)) as pilot:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{pilot.xds_port}") as channel:
                client = AdsClient(channel, NODE)
                await client.request(types.ENDPOINT, clusters)
                response = await client.recv()
                by_cluster = {
                    endpoint_pb2.ClusterLoadAssignment.FromString(r.value).cluster_name: addresses_of(r)
                    for r in response.resources
                }
                assert by_cluster == {clusters[0]: ["10.1.0.1:8001"], clusters[1]: ["10.1.0.1:8002"]}
                client.close()
