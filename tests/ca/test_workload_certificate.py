"""Workload certificates from CSRs, field by field against Istio's (security/pkg/pki/ca/ca_test.go
TestSignCSR, security/pkg/pki/util/generate_cert.go genCertTemplateFromCSR)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from pilot.ca.authority import CaSettings, CertificateAuthority, load_or_create
from pilot.ca.identity import ServiceAccount, parse_spiffe_id
from pilot.ca.workload_certificate import MAX_CSR_BYTES, issue_server_certificate, issue_workload_certificate
from pilot.errors import CertificateRequestError, IdentityMismatchError
from tests.ca.pki import make_csr, new_key, openssl_verify, verify_chain
from tests.support.certs import openssl_available

SLEEP = ServiceAccount("default", "sleep")
SLEEP_ID = "spiffe://cluster.local/ns/default/sa/sleep"


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return load_or_create(tmp_path_factory.mktemp("ca"), CaSettings())


def test_a_csr_gets_istios_workload_certificate(authority: CertificateAuthority):
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    issued = issue_workload_certificate(authority, make_csr([SLEEP_ID]), SLEEP)
    leaf = issued.leaf

    assert leaf.subject == x509.Name([])  # Istio: no subject, the identity is in the SAN only
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical and san.value.get_values_for_type(x509.UniformResourceIdentifier) == [SLEEP_ID]
    assert len(san.value) == 1
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.key_encipherment
    assert not usage.value.key_cert_sign and not usage.value.content_commitment
    extended = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(extended) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = authority.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert leaf.issuer == authority.certificate.subject
    # NotBefore = now - 2 min (ClockSkewGracePeriod), 24 h lifetime (DEFAULT_WORKLOAD_CERT_TTL).
    assert before - datetime.timedelta(minutes=2, seconds=5) <= leaf.not_valid_before_utc <= before
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == datetime.timedelta(hours=24, minutes=2)
    assert 0 < leaf.serial_number < 2**160

    # The answer: leaf first, root last; it path-validates as an mTLS client certificate.
    assert len(issued.chain_pems) == 2 and issued.chain_pems[-1] == authority.roots_pem
    verified = verify_chain(issued.chain_pems)
    assert verified.subjects == [x509.UniformResourceIdentifier(SLEEP_ID)]
    assert parse_spiffe_id(SLEEP_ID) == ("cluster.local", SLEEP)


def test_a_csr_without_a_san_is_certified_for_the_caller(authority: CertificateAuthority):
    """Istio's CA certifies the authenticated caller whatever the CSR says; so does pilot when the CSR
    names no one."""
    leaf = issue_workload_certificate(authority, make_csr(), SLEEP).leaf
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [SLEEP_ID]


def test_a_csr_for_another_identity_is_refused_naming_both(authority: CertificateAuthority):
    other = "spiffe://cluster.local/ns/prod/sa/payments"
    with pytest.raises(IdentityMismatchError, match=rf"asks for {other} but the caller is {SLEEP_ID}"):
        issue_workload_certificate(authority, make_csr([other]), SLEEP)
    with pytest.raises(IdentityMismatchError):
        issue_workload_certificate(authority, make_csr([SLEEP_ID, other]), SLEEP)
    with pytest.raises(IdentityMismatchError):  # another trust domain is another identity
        issue_workload_certificate(authority, make_csr(["spiffe://evil.org/ns/default/sa/sleep"]), SLEEP)


def test_the_requested_lifetime_is_honoured_up_to_the_max(authority: CertificateAuthority):
    leaf = issue_workload_certificate(authority, make_csr(), SLEEP, validity_seconds=3600).leaf
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == datetime.timedelta(hours=1, minutes=2)
    ninety_days = 90 * 24 * 3600
    leaf = issue_workload_certificate(authority, make_csr(), SLEEP, validity_seconds=ninety_days).leaf
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == datetime.timedelta(days=90, minutes=2)
    # Istio: "requested TTL ... is greater than the max allowed TTL" (a TTLError, InvalidArgument).
    with pytest.raises(CertificateRequestError, match="greater than the max allowed"):
        issue_workload_certificate(authority, make_csr(), SLEEP, validity_seconds=ninety_days + 1)


def test_a_leaf_never_outlives_the_signing_chain(tmp_path: Path):
    authority = load_or_create(tmp_path, CaSettings(root_lifetime=datetime.timedelta(hours=2)))
    leaf = issue_workload_certificate(authority, make_csr(), SLEEP).leaf
    assert leaf.not_valid_after_utc == authority.certificate.not_valid_after_utc


@pytest.mark.parametrize("kind", ["ec", "p384", "rsa2048", "rsa3072"])
def test_keys_istio_clients_make_are_accepted(authority: CertificateAuthority, kind: str):
    issued = issue_workload_certificate(authority, make_csr([SLEEP_ID], new_key(kind)), SLEEP)
    assert verify_chain(issued.chain_pems)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("rsa1024", "RSA key of 1024 bits: allowed are 2048 to 8192"),
        ("p521", "curve secp521r1: allowed are P-256"),
    ],
)
def test_weak_or_unexpected_keys_are_refused(authority: CertificateAuthority, kind: str, reason: str):
    with pytest.raises(CertificateRequestError, match=reason):
        issue_workload_certificate(authority, make_csr([SLEEP_ID], new_key(kind)), SLEEP)


def test_a_csr_whose_signature_does_not_verify_is_refused(authority: CertificateAuthority):
    csr = x509.load_pem_x509_csr(make_csr([SLEEP_ID]).encode())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte of the signature
    forged = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(CertificateRequestError, match="signature does not verify"):
        issue_workload_certificate(authority, forged, SLEEP)


@pytest.mark.parametrize(
    ("csr", "reason"),
    [
        ("", "no CSR"),
        ("hello", "not a PEM PKCS#10"),
        (
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            "not a PEM PKCS#10",
        ),
        ("x" * (MAX_CSR_BYTES + 1), f"larger than the {MAX_CSR_BYTES} allowed"),
    ],
)
def test_malformed_and_oversized_csrs_are_refused(authority: CertificateAuthority, csr: str, reason: str):
    with pytest.raises(CertificateRequestError, match=reason):
        issue_workload_certificate(authority, csr, SLEEP)


def test_a_server_certificate_names_hosts_and_addresses(authority: CertificateAuthority):
    key = new_key()
    leaf = issue_server_certificate(
        authority,
        key.public_key(),
        ["istiod.istio-system.svc", "127.0.0.1", "pilot.example"],
        datetime.timedelta(days=1),
    )
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.DNSName) == ["istiod.istio-system.svc", "pilot.example"]
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


@pytest.mark.skipif(not openssl_available(), reason="openssl checks the chain")
@pytest.mark.parametrize("purpose", ["sslclient", "sslserver"])
def test_openssl_strictly_verifies_the_chain_for_both_ends_of_mtls(
    authority: CertificateAuthority, tmp_path: Path, purpose: str
):
    issued = issue_workload_certificate(authority, make_csr([SLEEP_ID]), SLEEP)
    assert openssl_verify(issued.chain_pems, tmp_path, purpose).strip().endswith("leaf.pem: OK")
