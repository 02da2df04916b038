"""The SDS server on a Unix socket, driven by a grpcio client that speaks as Envoy does:
``default`` and ``ROOTCA`` served, ACKs and stale nonces answered with nothing, a NACK not resent,
a rotated secret pushed on the open stream."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from google.rpc import status_pb2

from pilot.agent.file_secrets import FileSecrets, parse_file_secret_name
from pilot.agent.sds import ROOT_SECRET, SECRET_TYPE, WORKLOAD_SECRET, SecretDiscoveryServer
from pilot.agent.secret_cache import SecretCache
from pilot.agent.workload_key import WorkloadSecret
from pilot.ca.authority import now

SILENCE = 0.3  # how long "no response" is waited for


def secret(serial: int) -> WorkloadSecret:
    return WorkloadSecret(
        key_pem=f"KEY{serial}".encode(),
        chain_pem=f"CHAIN{serial}".encode(),
        root_pem=b"ROOT",
        serial=serial,
        not_after=now() + datetime.timedelta(hours=1),
        created_at=now(),
    )


@dataclass
class Envoyish:
    """One StreamSecrets stream: requests go in a queue, responses are read with a deadline."""

    requests: asyncio.Queue[discovery_pb2.DiscoveryRequest | None]
    call: grpc.aio.StreamStreamCall
    pending: asyncio.Task | None = None  # a read that outlived silent(): the next receive() takes it

    def send(self, names: list[str], version: str = "", nonce: str = "", error: str = "") -> None:
        request = discovery_pb2.DiscoveryRequest(
            type_url=SECRET_TYPE, resource_names=names, version_info=version, response_nonce=nonce
        )
        if error:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        self.requests.put_nowait(request)

    def _read(self) -> asyncio.Task:
        if self.pending is None:
            self.pending = asyncio.ensure_future(self.call.read())
        return self.pending

    async def receive(self) -> discovery_pb2.DiscoveryResponse:
        response = await asyncio.wait_for(asyncio.shield(self._read()), 5)
        self.pending = None
        return response

    async def silent(self) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(self._read()), SILENCE)
        except TimeoutError:
            return True
        self.pending = None
        return False


def secrets_of(response: discovery_pb2.DiscoveryResponse) -> dict[str, secret_pb2.Secret]:
    found = {}
    for packed in response.resources:
        message = secret_pb2.Secret()
        assert packed.Unpack(message)
        found[message.name] = message
    return found


@pytest.fixture
async def sds(tmp_path: Path) -> AsyncIterator[tuple[SecretCache, sds_pb2_grpc.SecretDiscoveryServiceStub]]:
    cache = SecretCache(secret(1))
    files = FileSecrets(interval=0.05)
    poller = asyncio.create_task(files.poll_forever())
    server = grpc.aio.server()
    SecretDiscoveryServer(cache, files).add_to(server)
    socket = tmp_path / "sds"
    server.add_insecure_port(f"unix:{socket}")
    await server.start()
    channel = grpc.aio.insecure_channel(f"unix:{socket}")
    try:
        yield cache, sds_pb2_grpc.SecretDiscoveryServiceStub(channel)
    finally:
        poller.cancel()
        await channel.close()
        await server.stop(None)


def open_stream(stub: sds_pb2_grpc.SecretDiscoveryServiceStub) -> Envoyish:
    queue: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while (request := await queue.get()) is not None:
            yield request

    return Envoyish(queue, stub.StreamSecrets(requests()))


async def test_default_and_rootca_then_ack_then_rotation(sds):
    cache, stub = sds
    envoy = open_stream(stub)
    envoy.send([WORKLOAD_SECRET])
    first = await envoy.receive()
    assert first.type_url == SECRET_TYPE and first.nonce
    served = secrets_of(first)
    assert list(served) == [WORKLOAD_SECRET]
    assert served[WORKLOAD_SECRET].tls_certificate.certificate_chain.inline_bytes == b"CHAIN1"
    assert served[WORKLOAD_SECRET].tls_certificate.private_key.inline_bytes == b"KEY1"
    envoy.send([WORKLOAD_SECRET], first.version_info, first.nonce)  # ACK
    assert await envoy.silent()

    await cache.store(secret(2))
    pushed = await envoy.receive()
    assert pushed.nonce != first.nonce and pushed.version_info != first.version_info
    assert secrets_of(pushed)[WORKLOAD_SECRET].tls_certificate.certificate_chain.inline_bytes == b"CHAIN2"

    roots = open_stream(stub)
    roots.send([ROOT_SECRET])
    served = secrets_of(await roots.receive())
    assert served[ROOT_SECRET].validation_context.trusted_ca.inline_bytes == b"ROOT"
    # The roots did not change: a rotation of the leaf is not pushed to the ROOTCA stream.
    await cache.store(secret(3))
    assert await roots.silent()
    assert (
        secrets_of(await envoy.receive())[WORKLOAD_SECRET].tls_certificate.private_key.inline_bytes == b"KEY3"
    )


async def test_nack_and_stale_nonce_get_no_answer_and_names_can_change(sds):
    cache, stub = sds
    envoy = open_stream(stub)
    envoy.send([WORKLOAD_SECRET])
    first = await envoy.receive()
    envoy.send([WORKLOAD_SECRET], "", first.nonce, error="bad certificate")  # NACK
    assert await envoy.silent()
    envoy.send([WORKLOAD_SECRET, ROOT_SECRET], "", "no-such-nonce")  # stale: ignored
    assert await envoy.silent()
    envoy.send([WORKLOAD_SECRET, ROOT_SECRET], "", first.nonce)  # new names on the latest nonce
    both = await envoy.receive()
    assert sorted(secrets_of(both)) == [ROOT_SECRET, WORKLOAD_SECRET]
    # After the NACK, a new secret is still pushed: it is different bytes.
    await cache.store(secret(2))
    assert WORKLOAD_SECRET in secrets_of(await envoy.receive())


async def test_unknown_name_is_not_answered_with_an_empty_response(sds):
    _, stub = sds
    envoy = open_stream(stub)
    envoy.send(["file-cert:/etc/cert.pem~/etc/key.pem"])
    assert await envoy.silent()
    envoy.send(["file-cert:/etc/cert.pem~/etc/key.pem", ROOT_SECRET])
    assert list(secrets_of(await envoy.receive())) == [ROOT_SECRET]


async def test_delta_and_fetch_are_unimplemented_as_in_istio(sds):
    _, stub = sds
    call = stub.DeltaSecrets(iter([discovery_pb2.DeltaDiscoveryRequest(type_url=SECRET_TYPE)]))
    assert await call.code() is grpc.StatusCode.UNIMPLEMENTED
    assert "use StreamSecrets" in await call.details()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.FetchSecrets(discovery_pb2.DiscoveryRequest(type_url=SECRET_TYPE))
    assert refused.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_file_secret_names_parse_as_istio_writes_them():
    cert = parse_file_secret_name("file-cert:/etc/certs/server.pem~/etc/certs/privatekey.pem")
    assert cert is not None and (cert.certificate, cert.key) == (
        "/etc/certs/server.pem",
        "/etc/certs/privatekey.pem",
    )
    root = parse_file_secret_name("file-root:/etc/certs/ca.pem")
    assert root is not None and root.paths == ("/etc/certs/ca.pem",)
    for other in ("default", "file-cert:/only-cert.pem", "file-root:", "kubernetes://ns/name"):
        assert parse_file_secret_name(other) is None


async def test_file_cert_and_root_are_served_and_pushed_when_the_files_change(sds, tmp_path):
    _, stub = sds
    cert, key, ca = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.write_bytes(b"CERT1")
    key.write_bytes(b"KEY1")
    ca.write_bytes(b"CA1")
    cert_name, root_name = f"file-cert:{cert}~{key}", f"file-root:{ca}"
    envoy = open_stream(stub)
    envoy.send([cert_name, root_name])
    first = await envoy.receive()
    served = secrets_of(first)
    assert served[cert_name].tls_certificate.certificate_chain.inline_bytes == b"CERT1"
    assert served[cert_name].tls_certificate.private_key.inline_bytes == b"KEY1"
    assert served[root_name].validation_context.trusted_ca.inline_bytes == b"CA1"
    envoy.send([cert_name, root_name], first.version_info, first.nonce)  # ACK
    assert await envoy.silent()

    key.write_bytes(b"KEY2")
    pushed = await envoy.receive()
    assert pushed.nonce != first.nonce
    assert secrets_of(pushed)[cert_name].tls_certificate.private_key.inline_bytes == b"KEY2"


async def test_a_missing_file_leaves_only_its_resource_unanswered_until_it_appears(sds, tmp_path, caplog):
    _, stub = sds
    ca = tmp_path / "ca.pem"
    missing_name = f"file-root:{ca}"
    envoy = open_stream(stub)
    with caplog.at_level("WARNING", logger="pilot.agent.sds"):
        envoy.send([missing_name, ROOT_SECRET])
        assert list(secrets_of(await envoy.receive())) == [ROOT_SECRET]
    assert any(
        str(ca) in record.getMessage() and missing_name in record.getMessage() for record in caplog.records
    )
    ca.write_bytes(b"CA-LATE")
    late = secrets_of(await envoy.receive())
    assert late[missing_name].validation_context.trusted_ca.inline_bytes == b"CA-LATE"
