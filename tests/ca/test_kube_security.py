"""The Kubernetes side of the mesh CA against the fake API server (tests/support/kube_api.py), through
the real ``kubernetes`` client: TokenReview authentication, the ``istio-ca-root-cert`` ConfigMap in
every namespace, and both wired into ``pilot serve --kube --ca-dir`` with the secure port."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from pilot.app import serve
from pilot.ca.identity import ServiceAccount
from pilot.ca.kube_token_review import TokenReviewAuthenticator
from pilot.errors import AuthenticationError
from pilot.sources.kube import load_api_client
from pilot.sources.kube_api import WatchOptions
from pilot.sources.kube_root_cert import CONFIG_MAP_NAME, ROOT_CERT_KEY, RootCertPublisher
from pilot.sources.kube_writes import review_token
from pilot.xds import types
from tests.ca.secure_port import secure_channel, secure_settings
from tests.support.kube_api import FakeKubeApi, service, write_kubeconfig

DEADLINE = 10.0
ROOTS = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
SA_TOKEN = "sa-token-of-alpha-web"


def api_client(tmp_path: Path, kube: FakeKubeApi) -> Any:
    return load_api_client(write_kubeconfig(tmp_path / "kubeconfig", kube.url, token="admin"))


def authenticator(client: Any) -> TokenReviewAuthenticator:
    return TokenReviewAuthenticator(
        lambda token, audiences: review_token(client, token, audiences, WatchOptions())
    )


async def test_token_review_proves_the_service_account_for_the_istio_ca_audience(tmp_path: Path):
    async with FakeKubeApi(token="admin") as kube:
        kube.token_reviews[SA_TOKEN] = ("system:serviceaccount:alpha:web", ("istio-ca",))
        kube.token_reviews["api-audience"] = (
            "system:serviceaccount:alpha:web",
            ("https://kubernetes.default.svc",),
        )
        kube.token_reviews["a-user"] = ("jane@example.com", ("istio-ca",))
        client = api_client(tmp_path, kube)
        try:
            review = authenticator(client)
            assert await review.authenticate(SA_TOKEN) == ServiceAccount("alpha", "web")
            body = [path for method, path in kube.writes if method == "POST"]
            assert body == ["/apis/authentication.k8s.io/v1/tokenreviews"]
            for token, reason in (
                ("api-audience", "audiences is invalid"),
                ("unknown", "token lookup failed"),
                ("a-user", "not a service account"),
                ("", "no token"),
                ("x" * 5000, "larger than"),
            ):
                with pytest.raises(AuthenticationError, match=reason):
                    await review.authenticate(token)
        finally:
            client.close()


async def test_token_review_fails_closed_when_the_api_server_refuses(tmp_path: Path):
    async with FakeKubeApi(token="admin") as kube:
        client = load_api_client(write_kubeconfig(tmp_path / "kubeconfig", kube.url, token="wrong"))
        try:
            with pytest.raises(AuthenticationError, match="TokenReview failed.*401"):
                await authenticator(client).authenticate(SA_TOKEN)
        finally:
            client.close()


def test_an_answer_for_another_audience_is_refused():
    review = TokenReviewAuthenticator(lambda token, audiences: {})
    status = {
        "authenticated": True,
        "user": {"username": "system:serviceaccount:a:b"},
        "audiences": ["other"],
    }
    with pytest.raises(AuthenticationError, match="audience is not istio-ca"):
        review.account_from(status)


async def test_the_root_is_published_in_every_namespace_and_kept_there(tmp_path: Path):
    async with FakeKubeApi(token="admin") as kube:
        kube.namespaces |= {"alpha", "beta", "kube-system"}
        kube.apply(service("reviews", "gamma"))
        client = api_client(tmp_path, kube)
        try:
            publisher = RootCertPublisher(client, ROOTS)
            first = await asyncio.to_thread(publisher.reconcile)
            assert first.created == ("alpha", "beta", "gamma") and not first.failed
            assert kube.get("ConfigMap", "kube-system", CONFIG_MAP_NAME) is None  # Istio skips it
            published = kube.get("ConfigMap", "beta", CONFIG_MAP_NAME)
            assert published is not None and published["data"] == {ROOT_CERT_KEY: ROOTS}
            assert published["metadata"]["labels"] == {"istio.io/config": "true"}

            # Changed by someone: put back; unchanged ones are not written again.
            kube.apply({**published, "data": {ROOT_CERT_KEY: "tampered"}})
            writes = len(kube.writes)
            second = await asyncio.to_thread(publisher.reconcile)
            assert second.updated == ("beta",) and not second.created
            assert len(kube.writes) == writes + 1
            assert kube.get("ConfigMap", "beta", CONFIG_MAP_NAME)["data"] == {ROOT_CERT_KEY: ROOTS}  # type: ignore[index]
        finally:
            client.close()


async def test_a_failing_namespace_does_not_stop_the_others(tmp_path: Path):
    async with FakeKubeApi(token="admin") as kube:
        kube.namespaces |= {"alpha", "beta"}
        client = api_client(tmp_path, kube)
        try:
            kube.before_request = lambda path, query: (
                kube.fail("configmaps", 403, "Forbidden") if "/alpha/" in path else kube.heal("configmaps")
            )
            result = await asyncio.to_thread(RootCertPublisher(client, ROOTS).reconcile)
            assert result.failed == ("alpha",) and result.created == ("beta",)
        finally:
            client.close()


async def test_pilot_serve_kube_authenticates_xds_by_token_review_and_publishes_the_root(tmp_path: Path):
    async with FakeKubeApi(token="admin") as kube:
        kube.namespaces |= {"alpha", "beta"}
        kube.token_reviews[SA_TOKEN] = ("system:serviceaccount:alpha:web", ("istio-ca",))
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, token="admin")
        settings = secure_settings(tmp_path / "ca", kube=True, kubeconfig=kubeconfig)
        async with serve(settings) as pilot:
            root = (tmp_path / "ca" / "root-cert.pem").read_text()
            deadline = time.monotonic() + DEADLINE
            while kube.get("ConfigMap", "beta", CONFIG_MAP_NAME) is None:
                assert time.monotonic() < deadline, "the root ConfigMap was not published"
                await asyncio.sleep(0.05)
            assert kube.get("ConfigMap", "alpha", CONFIG_MAP_NAME)["data"][ROOT_CERT_KEY] == root  # type: ignore[index]

            async with secure_channel(tmp_path / "ca", pilot.xds_tls_port) as channel:
                stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)

                async def first_answer(token: str, node_id: str) -> Any:
                    call = stub.StreamAggregatedResources(
                        metadata=(("authorization", f"Bearer {token}"),), timeout=DEADLINE
                    )
                    try:
                        await call.write(
                            discovery_pb2.DiscoveryRequest(
                                node=base_pb2.Node(id=node_id), type_url=types.CLUSTER
                            )
                        )
                        return await call.read()
                    finally:
                        call.cancel()

                answer = await first_answer(SA_TOKEN, "sidecar~10.0.0.1~web-1.alpha~alpha.svc.cluster.local")
                assert answer.type_url == types.CLUSTER
                for token, node_id, code in (
                    (
                        SA_TOKEN,
                        "sidecar~10.0.0.1~web-1.beta~beta.svc.cluster.local",
                        grpc.StatusCode.PERMISSION_DENIED,
                    ),
                    (
                        "forged",
                        "sidecar~10.0.0.1~web-1.alpha~alpha.svc.cluster.local",
                        grpc.StatusCode.UNAUTHENTICATED,
                    ),
                ):
                    with pytest.raises(grpc.aio.AioRpcError) as raised:
                        await first_answer(token, node_id)
                    assert raised.value.code() is code, raised.value.details()
