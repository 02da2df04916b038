"""The admission webhook over real HTTPS (a CA and server certificate made with the openssl CLI)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from pilot.config.store import ConfigStore
from pilot.errors import ConfigError
from pilot.sources.kube import KubeSource
from pilot.sources.kube_webhook import PATH, AdmissionWebhook, review
from tests.sources.test_kube import FAST, client_for, eventually, running, vs_key
from tests.support import free_port, wait_until_async
from tests.support.kube_api import FakeKubeApi, virtual_service

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certs(directory: Path, name: str = "tls") -> Certs:
    """A CA, and a server certificate it signed for 127.0.0.1 / localhost (ECDSA P-256: quick to make)."""
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "ca.crt").exists():
        openssl(
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=pilot test CA",
            cwd=directory,
        )
    (directory / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        "/CN=pilot.pilot-system.svc",
        cwd=directory,
    )
    openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-set_serial",
        str(uuid.uuid4().int >> 64),
        "-out",
        f"{name}.crt",
        "-days",
        "1",
        "-extfile",
        f"{name}.ext",
        cwd=directory,
    )
    return Certs(directory / "ca.crt", directory / f"{name}.crt", directory / f"{name}.key")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@dataclass
class Client:
    session: aiohttp.ClientSession
    url: str

    async def post(self, body: bytes) -> tuple[int, Any]:
        async with self.session.post(
            self.url, data=body, headers={"Content-Type": "application/json"}
        ) as reply:
            text = await reply.read()
            if reply.content_type == "application/json":
                return reply.status, orjson.loads(text)
            return reply.status, text.decode()

    async def review(self, obj: dict[str, Any] | None, operation: str = "CREATE") -> dict[str, Any]:
        status, body = await self.post(orjson.dumps(admission_review(obj, operation)))
        assert status == 200, body
        response: dict[str, Any] = body["response"]
        return response


def admission_review(obj: dict[str, Any] | None, operation: str = "CREATE") -> dict[str, Any]:
    meta = (obj or {}).get("metadata", {})
    kind = (obj or {}).get("kind", "VirtualService")
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "networking.istio.io", "version": "v1", "kind": kind},
            "resource": {"group": "networking.istio.io", "version": "v1", "resource": kind.lower() + "s"},
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", "default"),
            "operation": operation,
            "userInfo": {"username": "admin"},
            "object": obj,
            "oldObject": None,
            "dryRun": False,
        },
    }


@pytest.fixture
async def webhook(certs: Certs) -> AsyncIterator[Client]:
    server = AdmissionWebhook(certs.cert, certs.key, host="127.0.0.1", port=0)
    port = await server.start()
    context = ssl.create_default_context(cafile=str(certs.ca))  # verifies the chain and 127.0.0.1
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
            yield Client(session, f"https://127.0.0.1:{port}{PATH}")
    finally:
        await server.stop()


def unknown_field_vs() -> dict[str, Any]:
    obj = virtual_service("reviews")
    obj["spec"]["http"][0]["route"][0]["wieght"] = 80
    return obj


async def test_a_valid_object_is_allowed(webhook: Client):
    response = await webhook.review(virtual_service("reviews"))
    assert response == {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True}


async def test_unknown_field_is_denied_with_the_text_pilot_logs(
    webhook: Client, caplog: pytest.LogCaptureFixture
):
    response = await webhook.review(unknown_field_vs())
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    message = response["status"]["message"]
    assert message == (
        "kube:VirtualService/default/reviews: VirtualService default/reviews: spec.http[0].route[0].wieght: "
        'unknown field; did you mean "weight"?'
    )
    # The same object reaching pilot through the watch is logged with exactly that text.
    async with FakeKubeApi() as kube:
        kube.apply(unknown_field_vs())
        api_client = client_for(kube)
        store = ConfigStore()
        try:
            with caplog.at_level(logging.WARNING, logger="pilot.sources.kube"):
                source = KubeSource(store, namespaces=None, api_client=api_client, options=FAST)
                async with running(source):
                    await eventually(lambda: bool(store.errors()), "the error recorded")
        finally:
            api_client.close()
    logged = [r.getMessage() for r in caplog.records if r.name == "pilot.sources.kube"]
    assert message in logged
    assert store.get(vs_key("reviews")) is None


async def test_bad_weight_is_denied(webhook: Client):
    response = await webhook.review(virtual_service("reviews", weight=-5))
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert message.startswith("kube:VirtualService/default/reviews: VirtualService default/reviews: ")
    assert "spec.http[0].route[0].weight" in message


async def test_warnings_are_returned(webhook: Client):
    rule = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "ratings", "namespace": "default"},
        "spec": {"host": "ratings", "trafficPolicy": {"loadBalancer": {"simple": "LEAST_CONN"}}},
    }
    response = await webhook.review(rule)
    assert response["allowed"] is True
    (warning,) = response["warnings"]
    assert warning.startswith("kube:DestinationRule/default/ratings: DestinationRule default/ratings: ")
    assert "LEAST_CONN is deprecated" in warning


async def test_namespace_and_name_come_from_the_request_when_the_object_lacks_them(webhook: Client):
    obj = virtual_service("reviews", weight=-1)
    del obj["metadata"]["namespace"]
    body = admission_review(obj)
    body["request"]["namespace"] = "shop"
    status, reply = await webhook.post(orjson.dumps(body))
    assert status == 200
    assert reply["response"]["status"]["message"].startswith("kube:VirtualService/shop/reviews: ")


async def test_delete_and_other_kinds_are_allowed(webhook: Client):
    assert (await webhook.review(None, "DELETE"))["allowed"] is True
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "namespace": "d"}}
    assert (await webhook.review(deployment))["allowed"] is True


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        orjson.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}),
        orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
        orjson.dumps(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": ""}}
        ),
    ],
)
async def test_a_malformed_review_is_a_400(webhook: Client, body: bytes):
    status, reply = await webhook.post(body)
    assert status == 400
    assert "malformed AdmissionReview" in reply


def test_review_is_a_pure_function():
    answer = review(admission_review(virtual_service("reviews")))
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"


async def test_plain_http_is_refused(certs: Certs):
    server = AdmissionWebhook(certs.cert, certs.key, host="127.0.0.1", port=0)
    port = await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                async with session.post(f"http://127.0.0.1:{port}{PATH}", data=b"{}") as reply:
                    await reply.read()
    finally:
        await server.stop()


async def test_run_serves_rotated_certificates_to_new_connections(tmp_path: Path):
    first = make_certs(tmp_path, "first")
    cert, key = tmp_path / "serving.crt", tmp_path / "serving.key"
    shutil.copy(first.cert, cert)
    shutil.copy(first.key, key)
    port = free_port()
    server = AdmissionWebhook(cert, key, host="127.0.0.1", port=port, cert_check_interval=0.02)
    context = ssl.create_default_context(cafile=str(first.ca))

    async def serial() -> int:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        try:
            peer = writer.get_extra_info("ssl_object").getpeercert()
            return int(peer["serialNumber"], 16)
        finally:
            writer.close()
            await writer.wait_closed()

    task = asyncio.create_task(server.run())
    try:
        before = await wait_until_async(serial, timeout=10, message="the webhook serves", ignore=(OSError,))
        second = make_certs(tmp_path, "second")  # same CA (tmp_path/ca.crt), new serial
        shutil.copy(second.cert, cert)
        shutil.copy(second.key, key)
        await wait_until_async(lambda: _changed(serial, before), timeout=10, message="the new certificate")
        assert server.certs is not None
        cert.write_text("garbage")  # a half-written rotation keeps the current certificate
        assert not server.certs.reload_if_changed()
        assert await serial() != before
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    with pytest.raises(OSError):  # stopped: the port is closed
        await asyncio.open_connection("127.0.0.1", port)


async def _changed(serial: Any, before: int) -> bool:
    return bool(await serial() != before)


async def test_missing_certificate_is_a_config_error(tmp_path: Path):
    server = AdmissionWebhook(tmp_path / "no.crt", tmp_path / "no.key", host="127.0.0.1", port=0)
    with pytest.raises(ConfigError, match="webhook certificate"):
        await server.start()
