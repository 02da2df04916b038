"""``pilot serve --kube`` in-process: app.serve() with the KubeSource and the webhook, against the fake API
server, with a real grpc.aio ADS client. Skipped until pilot.settings has the Kubernetes fields (the
app/cli/settings patch of docs/kubernetes.md)."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson
import pytest
from envoy.config.endpoint.v3 import endpoint_pb2

from pilot.settings import Settings
from pilot.xds import types
from tests.server.ads_client import AdsClient
from tests.sources.test_kube_webhook import admission_review, make_certs
from tests.support import free_port
from tests.support.kube_api import FakeKubeApi, endpoint_slice, pod, service, virtual_service

pytestmark = pytest.mark.skipif(
    "kube" not in {f.name for f in dataclasses.fields(Settings)},
    reason="Settings has no Kubernetes fields yet",
)

NODE = "sidecar~10.1.0.9~client.default~default.svc.cluster.local"
CLUSTER_V1 = "outbound|9080|v1|reviews.default.svc.cluster.local"


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: fake, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: fake, context: {cluster: fake, user: u}}]\ncurrent-context: fake\n"
    )
    return path


async def test_serve_kube_routes_to_ready_pods_of_a_subset_and_validates(tmp_path: Path):
    from pilot.app import serve

    async with FakeKubeApi(token="t") as kube:
        kube.apply(service("reviews", cluster_ip="10.96.1.5"))
        kube.apply(pod("reviews-v1", ip="10.1.0.1", labels={"app": "reviews", "version": "v1"}))
        kube.apply(pod("reviews-v2", ip="10.1.0.2", labels={"app": "reviews", "version": "v2"}))
        endpoints = [("10.1.0.1", "reviews-v1", True), ("10.1.0.2", "reviews-v2", True)]
        kube.apply(endpoint_slice("reviews-a", "reviews", endpoints=endpoints))
        kube.apply(
            {
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
        )
        kube.apply(virtual_service("reviews", subset="v1"))
        certs = make_certs(tmp_path / "certs")
        settings = Settings(
            xds_host="127.0.0.1",
            xds_port=0,
            http_host="127.0.0.1",
            http_port=0,
            debounce_after=0.01,
            debounce_max=1.0,
            shutdown_grace=1.0,
            kube=True,
            kubeconfig=kubeconfig(tmp_path / "kubeconfig", kube.url),
            pilot_namespace="pilot-system",
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
                assignment = endpoint_pb2.ClusterLoadAssignment.FromString(resource.value)
                addresses = [
                    e.endpoint.address.socket_address.address
                    for lb in assignment.endpoints
                    for e in lb.lb_endpoints
                ]
                assert addresses == ["10.1.0.1"]
                await client.ack(response, [CLUSTER_V1])
                # A new ready v1 pod reaches the proxy.
                kube.apply(pod("reviews-v1b", ip="10.1.0.3", labels={"app": "reviews", "version": "v1"}))
                endpoints.append(("10.1.0.3", "reviews-v1b", True))
                kube.apply(endpoint_slice("reviews-a", "reviews", endpoints=endpoints))
                update = await client.recv()
                assignment = endpoint_pb2.ClusterLoadAssignment.FromString(update.resources[0].value)
                assert sorted(
                    e.endpoint.address.socket_address.address
                    for lb in assignment.endpoints
                    for e in lb.lb_endpoints
                ) == ["10.1.0.1", "10.1.0.3"]
                client.close()

            context = ssl.create_default_context(cafile=str(certs.ca))
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
                bad = virtual_service("reviews", weight=-1)
                url = f"https://127.0.0.1:{settings.webhook_port}/validate"
                async with session.post(url, data=orjson.dumps(admission_review(bad))) as reply:
                    answer: Any = await reply.json()
                assert answer["response"]["allowed"] is False
