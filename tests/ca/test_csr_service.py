"""IstioCertificateService/CreateCertificate on a real grpc.aio server over TLS from the CA, called by a
real client that trusts only root-cert.pem and checks istiod's name, as istio-agent does."""

from __future__ import annotations

import base64
import datetime
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pilot._gen import ca_pb2, ca_pb2_grpc
from pilot.ca.authority import CaSettings, CertificateAuthority, load_or_create
from pilot.ca.csr_service import CertificateService
from pilot.ca.identity import ServiceAccount
from pilot.ca.server_credentials import ISTIOD_HOST, istiod_key_and_chain, istiod_server_credentials
from pilot.ca.tokens import MAX_TOKEN_BYTES, FolderTokenAuthenticator, issue_token, load_or_create_signing_key
from pilot.metrics import REGISTRY
from tests.ca.pki import make_csr, make_istio_cacerts, verify_chain
from tests.support.certs import openssl_available

SLEEP = ServiceAccount("default", "sleep")
SLEEP_ID = "spiffe://cluster.local/ns/default/sa/sleep"
HOUR = datetime.timedelta(hours=1)
FUZZ_SEED = 20261203
FUZZ_COUNT = 400


@dataclass
class Ca:
    ca_dir: Path
    authority: CertificateAuthority
    port: int
    stub: ca_pb2_grpc.IstioCertificateServiceStub

    def token(self, account: ServiceAccount = SLEEP, **kwargs) -> str:
        return issue_token(load_or_create_signing_key(self.ca_dir), account, HOUR, **kwargs)

    async def create(
        self, csr: str, token: str | None = None, validity: int = 0
    ) -> ca_pb2.IstioCertificateResponse:
        metadata = (("authorization", f"Bearer {token if token is not None else self.token()}"),)
        request = ca_pb2.IstioCertificateRequest(csr=csr, validity_duration=validity)
        return await self.stub.CreateCertificate(request, metadata=metadata, timeout=10)


async def serve(ca_dir: Path) -> AsyncIterator[Ca]:
    authority = load_or_create(ca_dir, CaSettings())
    server = grpc.aio.server()
    CertificateService(authority, FolderTokenAuthenticator.from_ca_dir(ca_dir)).add_to(server)
    port = server.add_secure_port("127.0.0.1:0", istiod_server_credentials(authority, ["pilot.example"]))
    await server.start()
    credentials = grpc.ssl_channel_credentials(root_certificates=authority.roots_pem.encode())
    # The client dials an address and checks the certificate for istiod's name (the agent's ISTIOD_SAN).
    channel = grpc.aio.secure_channel(
        f"127.0.0.1:{port}", credentials, options=[("grpc.ssl_target_name_override", ISTIOD_HOST)]
    )
    try:
        yield Ca(ca_dir, authority, port, ca_pb2_grpc.IstioCertificateServiceStub(channel))
    finally:
        await channel.close()
        await server.stop(None)


@pytest.fixture
async def ca(tmp_path: Path) -> AsyncIterator[Ca]:
    async for running in serve(tmp_path / "ca"):
        yield running


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def refused(call, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value.details() or ""


async def test_a_good_csr_gets_a_chain_that_verifies_to_the_root(ca: Ca):
    issued_before = counter("citadel_server_success_cert_issuance_count_total")
    response = await ca.create(make_csr([SLEEP_ID]), validity=3600)

    chain = list(response.cert_chain)
    assert len(chain) == 2 and chain[-1] == ca.authority.roots_pem
    assert all(pem.endswith("\n") for pem in chain)  # Istio: one PEM per element, trailing newline
    verified = verify_chain(chain)
    assert verified.subjects == [x509.UniformResourceIdentifier(SLEEP_ID)]
    leaf = x509.load_pem_x509_certificate(chain[0].encode())
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == datetime.timedelta(hours=1, minutes=2)
    assert counter("citadel_server_success_cert_issuance_count_total") == issued_before + 1


async def test_the_port_serves_istiods_certificate_from_the_ca(ca: Ca):
    key_pem, chain_pem = istiod_key_and_chain(ca.authority, ["pilot.example", "10.0.0.1"])
    leaf = x509.load_pem_x509_certificate(chain_pem)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [ISTIOD_HOST, "pilot.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.1"]
    key = serialization.load_pem_private_key(key_pem, None)
    assert key.public_key() == leaf.public_key()
    # The lifetime of Istio's istiod certificate (SelfSignedCACertTTL), clamped to the root's.
    assert leaf.not_valid_after_utc == ca.authority.not_after


async def test_a_client_that_checks_another_name_does_not_connect(ca: Ca):
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.authority.roots_pem.encode())
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{ca.port}", credentials, options=[("grpc.ssl_target_name_override", "evil.example")]
    ) as channel:
        stub = ca_pb2_grpc.IstioCertificateServiceStub(channel)
        request = ca_pb2.IstioCertificateRequest(csr=make_csr())
        await refused(stub.CreateCertificate(request, timeout=5), grpc.StatusCode.UNAVAILABLE)


async def test_a_csr_for_another_identity_is_permission_denied(ca: Ca):
    before = counter("citadel_server_csr_sign_error_count_total", error_type="IDENTITY_MISMATCH")
    details = await refused(
        ca.create(make_csr(["spiffe://cluster.local/ns/prod/sa/payments"])), grpc.StatusCode.PERMISSION_DENIED
    )
    assert "asks for spiffe://cluster.local/ns/prod/sa/payments but the caller is " + SLEEP_ID in details
    assert counter("citadel_server_csr_sign_error_count_total", error_type="IDENTITY_MISMATCH") == before + 1


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("expired", "token has expired"),
        ("wrong-signature", "signature does not verify"),
        ("wrong-audience", "audience is not istio-ca"),
        ("oversized", f"larger than the {MAX_TOKEN_BYTES} allowed"),
        ("garbage", "not a JWT"),
    ],
)
async def test_bad_tokens_are_unauthenticated(ca: Ca, tmp_path: Path, token: str, reason: str):
    tokens = {
        "expired": lambda: issue_token(
            load_or_create_signing_key(ca.ca_dir),
            SLEEP,
            HOUR,
            issued_at=datetime.datetime.now(datetime.UTC) - 3 * HOUR,
        ),
        "wrong-signature": lambda: issue_token(load_or_create_signing_key(tmp_path / "other"), SLEEP, HOUR),
        "wrong-audience": lambda: ca.token(audience="kubernetes"),
        "oversized": lambda: "e" * (MAX_TOKEN_BYTES + 1000),
        "garbage": lambda: "not-a-jwt",
    }
    before = counter("citadel_server_authentication_failure_count_total")
    details = await refused(
        ca.create(make_csr([SLEEP_ID]), token=tokens[token]()), grpc.StatusCode.UNAUTHENTICATED
    )
    assert details == f"authentication failed: {reason}" or reason in details
    assert counter("citadel_server_authentication_failure_count_total") == before + 1
    assert (await ca.create(make_csr([SLEEP_ID]))).cert_chain  # still serving


async def test_calls_without_a_bearer_token_are_unauthenticated(ca: Ca):
    request = ca_pb2.IstioCertificateRequest(csr=make_csr())
    details = await refused(ca.stub.CreateCertificate(request, timeout=5), grpc.StatusCode.UNAUTHENTICATED)
    assert "no authorization metadata" in details
    call = ca.stub.CreateCertificate(request, metadata=(("authorization", f"Basic {ca.token()}"),), timeout=5)
    assert "not 'Bearer <token>'" in await refused(call, grpc.StatusCode.UNAUTHENTICATED)


async def test_malformed_and_fuzzed_csrs_are_invalid_argument_and_the_server_keeps_answering(ca: Ca):
    """Seeded, bounded fuzzing (hypothesis is not a dependency): random bytes, random text, and single-byte
    mutations of a valid CSR's DER (every byte is covered by its signature or is the signature)."""
    rng = random.Random(FUZZ_SEED)
    good = x509.load_pem_x509_csr(make_csr([SLEEP_ID]).encode()).public_bytes(serialization.Encoding.DER)
    token = ca.token()

    def pem(der: bytes) -> str:
        body = base64.encodebytes(der).decode()
        return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"

    cases = [
        "",
        " ",
        "-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n",
        "x" * 20_000,
    ]
    for _ in range(FUZZ_COUNT):
        choice = rng.randrange(3)
        if choice == 0:
            cases.append(pem(rng.randbytes(rng.randrange(1, 600))))
        elif choice == 1:
            cases.append("".join(chr(rng.randrange(1, 0x2FF)) for _ in range(rng.randrange(1, 300))))
        else:
            mutated = bytearray(good)
            mutated[rng.randrange(len(mutated))] ^= rng.randrange(1, 256)
            cases.append(pem(bytes(mutated)))
    for index, csr in enumerate(cases):
        details = await refused(ca.create(csr, token=token), grpc.StatusCode.INVALID_ARGUMENT)
        assert details.startswith("CSR refused: "), (index, details)
    assert (await ca.create(make_csr([SLEEP_ID]), token=token)).cert_chain


async def test_a_lifetime_above_the_max_is_invalid_argument(ca: Ca):
    details = await refused(ca.create(make_csr(), validity=91 * 24 * 3600), grpc.StatusCode.INVALID_ARGUMENT)
    assert "greater than the max allowed" in details


@pytest.mark.skipif(not openssl_available(), reason="openssl makes the operator's cacerts")
async def test_the_operators_cacerts_with_an_intermediate_end_to_end(tmp_path: Path):
    make_istio_cacerts(tmp_path / "work", tmp_path / "cacerts")
    async for ca in serve(tmp_path / "cacerts"):
        response = await ca.create(make_csr([SLEEP_ID]))
        chain = list(response.cert_chain)
        assert len(chain) == 3
        assert x509.load_pem_x509_certificate(chain[1].encode()) == ca.authority.certificate
        assert verify_chain(chain).subjects == [x509.UniformResourceIdentifier(SLEEP_ID)]
