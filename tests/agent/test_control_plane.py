"""The agent against a stand-in of pilot's secure port (the real CSR service over TLS): the
certificate with the token, refusals with the CA's reason, and the xDS proxy forwarding Envoy's
ADS with the token as the file holds it when the stream opens."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from pilot.agent.ca_client import CaClient, CaUnavailableError, CertificateRefusedError
from pilot.agent.command import first_certificate
from pilot.agent.control_plane import secure_channel
from pilot.agent.xds_proxy import XdsProxy
from pilot.ca.authority import now
from pilot.ca.identity import ServiceAccount
from pilot.ca.server_credentials import ISTIOD_HOST
from tests.agent.fake_pilot import ABORT_TYPE, FakePilot, pack, start_fake_pilot

SLEEP = ServiceAccount("default", "sleep")
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
MINUTE = datetime.timedelta(minutes=1)


@dataclass
class Setup:
    pilot: FakePilot
    channel: grpc.aio.Channel
    token_file: Path

    def client(self, account: ServiceAccount = SLEEP) -> CaClient:
        return CaClient(self.channel, self.token_file, account, "cluster.local", MINUTE)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    pilot = await start_fake_pilot(
        tmp_path / "ca", {CLUSTER_TYPE: [pack(cluster_pb2.Cluster(name="outbound|80||a.default.svc"))]}
    )
    token_file = tmp_path / "token"
    token_file.write_text(pilot.token(SLEEP) + "\n")
    channel = secure_channel(pilot.address, pilot.root_pem, ISTIOD_HOST)
    try:
        yield Setup(pilot, channel, token_file)
    finally:
        await channel.close(None)
        await pilot.stop()


async def test_certificate_for_the_token_identity(setup: Setup):
    secret = await setup.client().fetch()
    assert 50 < secret.lifetime.total_seconds() <= 60  # the lifetime asked for
    assert secret.root_pem == setup.pilot.root_pem


async def test_refusals_say_why(setup: Setup):
    # The token proves default/sleep; a CSR for default/other is refused by the CA.
    with pytest.raises(CertificateRefusedError, match="PERMISSION_DENIED"):
        await setup.client(ServiceAccount("default", "other")).fetch()
    setup.token_file.write_text("not-a-jwt")
    with pytest.raises(
        CertificateRefusedError, match="UNAUTHENTICATED: authentication failed: token is not a JWT"
    ):
        await first_certificate(setup.client().fetch)
    setup.token_file.unlink()
    with pytest.raises(CertificateRefusedError, match="cannot read the token file"):
        await setup.client().fetch()


async def test_unreachable_pilot_is_retried_then_given_up(setup: Setup, tmp_path: Path):
    await setup.pilot.stop()
    with pytest.raises(CaUnavailableError, match="no certificate within 1s"):
        await first_certificate(setup.client().fetch, datetime.timedelta(seconds=1))


@pytest.fixture
async def stub(setup: Setup, tmp_path: Path) -> AsyncIterator[ads_pb2_grpc.AggregatedDiscoveryServiceStub]:
    """Envoy's side of the proxy: an ADS client on the agent's Unix socket."""
    server = grpc.aio.server()
    XdsProxy(setup.channel, setup.token_file).add_to(server)
    server.add_insecure_port(f"unix:{tmp_path / 'xds'}")
    await server.start()
    channel = grpc.aio.insecure_channel(f"unix:{tmp_path / 'xds'}")
    try:
        yield ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    finally:
        await channel.close(None)
        await server.stop(None)


async def test_xds_proxy_forwards_with_the_current_token(setup: Setup, stub):
    call = stub.StreamAggregatedResources()
    await call.write(
        discovery_pb2.DiscoveryRequest(type_url=CLUSTER_TYPE, node={"id": "sidecar~1~a.default~x"})
    )
    response = await call.read()
    assert response.type_url == CLUSTER_TYPE and response.nonce == "1"
    cluster = cluster_pb2.Cluster()
    assert response.resources[0].Unpack(cluster) and cluster.name == "outbound|80||a.default.svc"
    await call.write(discovery_pb2.DiscoveryRequest(type_url=CLUSTER_TYPE, response_nonce="1"))
    await call.done_writing()
    assert await call.code() is grpc.StatusCode.OK
    assert setup.pilot.callers == [SLEEP]
    assert [r.response_nonce for r in setup.pilot.requests] == ["", "1"]
    assert setup.pilot.requests[0].node.id == "sidecar~1~a.default~x"

    # The token file rotates: the next stream carries the new token.
    other = ServiceAccount("default", "other")
    setup.token_file.write_text(setup.pilot.token(other))
    call = stub.StreamAggregatedResources()
    await call.write(discovery_pb2.DiscoveryRequest(type_url=CLUSTER_TYPE))
    await call.read()
    assert setup.pilot.callers == [SLEEP, other]
    call.cancel()


async def test_xds_proxy_forwards_delta_ads(setup: Setup, stub):
    call = stub.DeltaAggregatedResources()
    await call.write(discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER_TYPE, node={"id": "n"}))
    response = await call.read()
    assert (response.type_url, response.nonce, [r.name for r in response.resources]) == (
        CLUSTER_TYPE,
        "delta-1",
        ["r0"],
    )
    await call.done_writing()
    assert await call.code() is grpc.StatusCode.OK
    assert setup.pilot.callers == [SLEEP]


async def test_xds_proxy_passes_pilots_refusals_on(setup: Setup, stub):
    call = stub.StreamAggregatedResources()
    await call.write(discovery_pb2.DiscoveryRequest(type_url=ABORT_TYPE))
    assert await call.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "default/sleep may not ask for that" in await call.details()

    long_ago = now() - datetime.timedelta(hours=2)
    setup.token_file.write_text(setup.pilot.token(SLEEP, MINUTE, issued_at=long_ago))
    call = stub.StreamAggregatedResources()
    assert await call.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in await call.details()
    setup.token_file.unlink()
    call = stub.DeltaAggregatedResources()
    assert await call.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "cannot read the token file" in await call.details()
