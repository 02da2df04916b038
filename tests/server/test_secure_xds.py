"""The secure port end to end: ``app.serve`` with a CA directory, real grpcio clients over TLS that
trust only root-cert.pem and check istiod's name, bearer tokens from ``pilot token``'s key.

A token of namespace ``alpha`` gets alpha's config (and not beta's, whose ServiceEntry is exported
to beta only); the same token claiming ``beta`` (node id or NAMESPACE metadata) is refused
PERMISSION_DENIED and counted; bad tokens are UNAUTHENTICATED; CSRs get the caller's SPIFFE id."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from cryptography import x509
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot._gen import ca_pb2, ca_pb2_grpc
from pilot.app import RunningPilot, serve
from pilot.ca.identity import ServiceAccount
from pilot.ca.tokens import issue_token, load_or_create_signing_key
from pilot.metrics import REGISTRY
from pilot.xds import types
from tests.ca.pki import make_csr
from tests.ca.secure_port import secure_channel, secure_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

DEADLINE = 10.0
ALPHA = ServiceAccount("alpha", "web")
ALPHA_NODE = "sidecar~10.0.0.1~web-1.alpha~alpha.svc.cluster.local"
BETA_NODE = "sidecar~10.0.0.2~web-1.beta~beta.svc.cluster.local"
HOUR = datetime.timedelta(hours=1)


def exported_service(name: str, namespace: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: [{name}.{namespace}.example.com]
  exportTo: ["."]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 10.1.0.1}}]
"""


@dataclass
class Secure:
    pilot: RunningPilot
    ca_dir: Path
    channel: grpc.aio.Channel

    def token(self, account: ServiceAccount = ALPHA, **kwargs: object) -> str:
        return issue_token(load_or_create_signing_key(self.ca_dir), account, HOUR, **kwargs)  # type: ignore[arg-type]

    def metadata(self, token: str | None = None) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token() if token is None else token}"),)


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("config")
    (folder / "alpha.yaml").write_text(exported_service("shop", "alpha"))
    (folder / "beta.yaml").write_text(exported_service("bank", "beta"))
    return folder


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secure(config_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Secure]:
    """One pilot for the module (starting one takes a second): tests only read from it."""
    tmp_path = tmp_path_factory.mktemp("secure")
    async with serve(secure_settings(tmp_path / "ca", config_dir=config_dir)) as pilot:
        assert pilot.authority is not None and pilot.xds_tls_port > 0 and pilot.xds_port == 0
        channel = secure_channel(tmp_path / "ca", pilot.xds_tls_port)
        try:
            yield Secure(pilot, tmp_path / "ca", channel)
        finally:
            await channel.close()


def node(node_id: str, **metadata: str) -> base_pb2.Node:
    fields = struct_pb2.Struct()
    fields.update(metadata)
    return base_pb2.Node(id=node_id, cluster="test", metadata=fields)


async def clusters(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...], who: base_pb2.Node
) -> list[str]:
    """One CDS round trip on a new ADS stream: the cluster names sent (or the RPC error)."""
    call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(
        metadata=metadata, timeout=DEADLINE
    )
    try:
        try:
            await call.write(discovery_pb2.DiscoveryRequest(node=who, type_url=types.CLUSTER))
        except grpc.aio.AioRpcError:
            # The server refused the stream before the request went out: grpc fails the write
            # with its own INTERNAL error, and the call itself ends with the server's status.
            await call
            raise
        response = await call.read()
        if response is grpc.aio.EOF:  # type: ignore[attr-defined]
            await call  # raises the status
            raise AssertionError("stream ended without a response or an error")
        names = []
        for resource in response.resources:
            cluster = cluster_pb2.Cluster()
            resource.Unpack(cluster)
            names.append(cluster.name)
        return names
    finally:
        call.cancel()


def failures(reason: str) -> float:
    return REGISTRY.get_sample_value("pilot_xds_auth_failures_total", {"reason": reason}) or 0.0


async def expect_refusal(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...], who: base_pb2.Node
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await clusters(channel, metadata, who)
    return raised.value


async def test_a_token_gets_its_namespaces_config_and_only_that(secure: Secure):
    names = await clusters(secure.channel, secure.metadata(), node(ALPHA_NODE))
    assert any("shop.alpha.example.com" in name for name in names), names
    assert not any("bank.beta" in name for name in names), names


async def test_the_same_token_claiming_another_namespace_is_permission_denied(secure: Secure):
    before = failures("permission_denied")
    error = await expect_refusal(secure.channel, secure.metadata(), node(BETA_NODE))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "claims namespace beta" in (error.details() or "") and "alpha/web" in (error.details() or "")
    # The metadata claim counts as much as the node id's.
    error = await expect_refusal(secure.channel, secure.metadata(), node(ALPHA_NODE, NAMESPACE="beta"))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    error = await expect_refusal(secure.channel, secure.metadata(), node(ALPHA_NODE, SERVICE_ACCOUNT="admin"))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED and "service account admin" in (
        error.details() or ""
    )
    assert failures("permission_denied") == before + 3
    assert await clusters(secure.channel, secure.metadata(), node(ALPHA_NODE))  # still serving


async def test_a_node_that_claims_no_namespace_gets_the_tokens(secure: Secure):
    names = await clusters(secure.channel, secure.metadata(), node("front-envoy"))
    assert any("shop.alpha.example.com" in name for name in names), names
    assert not any("bank.beta" in name for name in names), names


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda s: s.token(issued_at=datetime.datetime.now(datetime.UTC) - 2 * HOUR), "expired"),
        (lambda s: s.token(audience="kubernetes"), "audience"),
        (lambda s: s.token()[:-8] + "AAAAAAAA", "signature"),
        (lambda s: "not-a-jwt", "not a JWT"),
        (lambda s: "x" * 6000, "larger than"),  # gRPC core refuses metadata over 8 KiB itself
    ],
)
async def test_bad_tokens_are_unauthenticated_with_the_reason(secure: Secure, make_token, reason: str):
    before = failures("unauthenticated")
    error = await expect_refusal(secure.channel, secure.metadata(make_token(secure)), node(ALPHA_NODE))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert reason in (error.details() or ""), error.details()
    assert failures("unauthenticated") == before + 1


async def test_no_authorization_metadata_is_unauthenticated(secure: Secure):
    error = await expect_refusal(secure.channel, (), node(ALPHA_NODE))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "authorization" in (error.details() or "")


async def test_a_csr_with_the_token_gets_the_callers_spiffe_id(secure: Secure):
    stub = ca_pb2_grpc.IstioCertificateServiceStub(secure.channel)
    csr = make_csr(["spiffe://cluster.local/ns/alpha/sa/web"])
    response = await stub.CreateCertificate(
        ca_pb2.IstioCertificateRequest(csr=csr), metadata=secure.metadata(), timeout=DEADLINE
    )
    leaf = x509.load_pem_x509_certificate(response.cert_chain[0].encode())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/alpha/sa/web"
    ]
    assert response.cert_chain[-1] == (secure.ca_dir / "root-cert.pem").read_text()
    # A CSR for someone else with the same token: refused.
    other = make_csr(["spiffe://cluster.local/ns/beta/sa/web"])
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateCertificate(
            ca_pb2.IstioCertificateRequest(csr=other), metadata=secure.metadata(), timeout=DEADLINE
        )
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED


@settings(max_examples=25, deadline=None)
@given(
    token=st.one_of(
        st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=300),
        st.from_regex(r"[A-Za-z0-9_-]{1,40}\.[A-Za-z0-9_-]{1,80}\.[A-Za-z0-9_-]{0,90}", fullmatch=True),
    )
)
async def test_fuzzed_tokens_are_refused_and_the_server_keeps_serving(secure: Secure, token: str):
    error = await expect_refusal(secure.channel, secure.metadata(token), node(ALPHA_NODE))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED, error.details()
    assert (error.details() or "").startswith("authentication failed: ")


async def create_certificate(
    secure: Secure, csr: str, token: str | None = None
) -> grpc.aio.AioRpcError | None:
    """The error CreateCertificate ends with, or None when it issued a certificate."""
    stub = ca_pb2_grpc.IstioCertificateServiceStub(secure.channel)
    try:
        await stub.CreateCertificate(
            ca_pb2.IstioCertificateRequest(csr=csr), metadata=secure.metadata(token), timeout=DEADLINE
        )
    except grpc.aio.AioRpcError as error:
        return error
    return None


@pytest.mark.parametrize(
    ("csr", "code", "reason"),
    [
        ("", grpc.StatusCode.INVALID_ARGUMENT, "no CSR"),
        (
            "-----BEGIN CERTIFICATE REQUEST-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE REQUEST-----\n",
            grpc.StatusCode.INVALID_ARGUMENT,
            "not a PEM",
        ),
        (
            "-----BEGIN CERTIFICATE REQUEST-----\n" + "A" * 20_000 + "\n-----END CERTIFICATE REQUEST-----\n",
            grpc.StatusCode.INVALID_ARGUMENT,
            "larger than",
        ),
        (
            make_csr(["spiffe://cluster.local/ns/alpha/sa/admin"]),
            grpc.StatusCode.PERMISSION_DENIED,
            "alpha/sa/admin",
        ),
        (
            make_csr(["spiffe://evil.example/ns/alpha/sa/web"]),
            grpc.StatusCode.PERMISSION_DENIED,
            "evil.example",
        ),
    ],
)
async def test_malformed_csrs_and_csrs_for_others_are_refused_with_the_reason(
    secure: Secure, csr: str, code: grpc.StatusCode, reason: str
):
    error = await create_certificate(secure, csr)
    assert error is not None and error.code() is code, error
    assert reason in (error.details() or ""), error.details()


def mutated(csr: str, data: st.DataObject) -> str:
    """``csr`` with a few characters of its base64 body replaced (a corrupted key, name or signature)."""
    lines = csr.splitlines()
    body = list("".join(lines[1:-1]))
    for _ in range(data.draw(st.integers(1, 4))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.sampled_from("AB+/xyz019"))
    text = "".join(body)
    return "\n".join([lines[0], *(text[i : i + 64] for i in range(0, len(text), 64)), lines[-1]]) + "\n"


VALID_CSR = make_csr(["spiffe://cluster.local/ns/alpha/sa/web"])


@settings(max_examples=30, deadline=None)
@given(data=st.data())
async def test_fuzzed_csrs_are_refused_or_certify_only_the_caller(secure: Secure, data: st.DataObject):
    csr = data.draw(
        st.one_of(
            st.text(max_size=400),
            st.binary(max_size=400).map(lambda raw: raw.decode("latin-1")),
            st.just(VALID_CSR).map(lambda text: text).flatmap(lambda text: st.just(mutated(text, data))),
        )
    )
    error = await create_certificate(secure, csr)
    if error is None:
        return  # a mutation that left the CSR valid (base64 padding bits): certified for the caller only
    assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED), error
    assert error.details(), "a refusal says why"


async def test_after_the_fuzzing_the_server_still_issues(secure: Secure):
    assert await create_certificate(secure, VALID_CSR) is None
    assert await create_certificate(secure, VALID_CSR, token="garbage") is not None


async def test_delta_streams_are_authenticated_and_pinned_too(secure: Secure):
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(secure.channel)

    async def first_response(who: base_pb2.Node) -> discovery_pb2.DeltaDiscoveryResponse:
        call = stub.DeltaAggregatedResources(metadata=secure.metadata(), timeout=DEADLINE)
        try:
            await call.write(discovery_pb2.DeltaDiscoveryRequest(node=who, type_url=types.CLUSTER))
            response = await call.read()
            assert response is not grpc.aio.EOF  # type: ignore[attr-defined]
            # While the stream is open, /debug/syncz shows whom it authenticated as, and its view.
            (status,) = [c for c in secure.pilot.ads.connections() if c.protocol == "delta"]
            assert status.identity == "alpha/web" and "/alpha/" in status.view
            return response
        finally:
            call.cancel()

    response = await first_response(node("front-envoy"))
    assert any("shop.alpha" in resource.name for resource in response.resources)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await first_response(node(BETA_NODE))
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
