"""The mesh CA's key material: a self-signed root created once, or the operator's Istio cacerts, checked."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from pilot.ca.authority import CaSettings, KeyAlgorithm, certificate_pem, load_or_create, private_key_pem
from pilot.ca.identity import ServiceAccount
from pilot.ca.workload_certificate import issue_workload_certificate
from pilot.errors import ConfigError
from tests.ca.pki import make_csr, make_istio_cacerts, new_key, openssl_verify, verify_chain
from tests.support.certs import openssl_available

needs_openssl = pytest.mark.skipif(not openssl_available(), reason="openssl makes the operator's cacerts")
SLEEP = ServiceAccount("default", "sleep")


@pytest.fixture
def istio_cacerts(tmp_path: Path) -> Path:
    """A CA directory holding an operator's cacerts (an intermediate under a root), as Istio makes them."""
    ca_dir = tmp_path / "cacerts"
    make_istio_cacerts(tmp_path / "work", ca_dir)
    return ca_dir


def test_a_self_signed_root_is_created_on_first_start_as_istio_makes_it(tmp_path: Path):
    ca_dir = tmp_path / "ca"
    authority = load_or_create(ca_dir, CaSettings())

    root = authority.certificate
    assert authority.roots == (root,) and authority.is_self_signed and authority.chain_above_leaf == ()
    # Istio: subject O = trust domain only, CA:TRUE critical, 3650 days, keyCertSign (pilot: + cRLSign).
    assert root.subject == x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cluster.local")])
    assert root.issuer == root.subject
    constraints = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = root.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    assert root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert root.not_valid_after_utc - root.not_valid_before_utc == datetime.timedelta(days=3650)
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    assert root.public_key().curve.name == "secp256r1"

    # Istio's cacerts layout; the key 0600, in a 0700 directory.
    assert sorted(p.name for p in ca_dir.iterdir() if not p.name.startswith(".")) == [
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
        "root-cert.pem",
    ]
    assert stat.S_IMODE((ca_dir / "ca-key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(ca_dir.stat().st_mode) == 0o700
    assert not list(ca_dir.glob(".ca-*"))  # no temporary files left behind


def test_the_root_is_reused_on_the_next_start(tmp_path: Path):
    first = load_or_create(tmp_path, CaSettings())
    second = load_or_create(tmp_path, CaSettings())
    assert second.certificate == first.certificate


def test_concurrent_first_starts_create_one_root(tmp_path: Path):
    """``pilot serve`` and ``pilot token`` racing on an empty directory: the flock lets one create."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        authorities = list(pool.map(lambda _: load_or_create(tmp_path, CaSettings()), range(4)))
    assert len({authority.certificate for authority in authorities}) == 1


def test_an_rsa_root_when_configured(tmp_path: Path):
    authority = load_or_create(
        tmp_path, CaSettings(key_algorithm=KeyAlgorithm.RSA, trust_domain="example.org")
    )
    public_key = authority.certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == 2048
    assert (
        authority.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        == "example.org"
    )
    issued = issue_workload_certificate(authority, make_csr(), SLEEP)
    assert verify_chain(issued.chain_pems).subjects == [
        x509.UniformResourceIdentifier("spiffe://example.org/ns/default/sa/sleep")
    ]


def test_a_partial_cacerts_set_is_an_error_naming_the_missing_files(tmp_path: Path):
    load_or_create(tmp_path, CaSettings())
    (tmp_path / "cert-chain.pem").unlink()
    (tmp_path / "root-cert.pem").unlink()
    with pytest.raises(ConfigError, match=r"but not root-cert.pem, cert-chain.pem"):
        load_or_create(tmp_path, CaSettings())


@needs_openssl
def test_the_operators_cacerts_with_an_intermediate(istio_cacerts: Path, tmp_path: Path):
    ca_dir = istio_cacerts
    before = {p.name: p.read_bytes() for p in ca_dir.iterdir()}

    authority = load_or_create(ca_dir, CaSettings())

    assert {p.name: p.read_bytes() for p in ca_dir.iterdir() if not p.name.startswith(".")} == before
    assert not authority.is_self_signed and authority.intermediates == ()
    assert authority.chain_above_leaf == (authority.certificate,)
    issued = issue_workload_certificate(
        authority, make_csr(["spiffe://cluster.local/ns/default/sa/sleep"]), SLEEP
    )
    assert len(issued.chain_pems) == 3  # leaf, the intermediate, the root
    assert issued.chain_pems[1] == (ca_dir / "ca-cert.pem").read_text()
    assert issued.chain_pems[2] == (ca_dir / "root-cert.pem").read_text()
    verified = verify_chain(issued.chain_pems)
    assert [cert.subject.rfc4514_string() for cert in verified.chain[1:]] == [
        "L=cluster1,CN=Intermediate CA,O=Istio",
        "CN=Root CA,O=Istio",
    ]
    for purpose in ("sslclient", "sslserver"):
        assert openssl_verify(issued.chain_pems, tmp_path / purpose, purpose).strip().endswith("leaf.pem: OK")


@needs_openssl
def test_a_key_that_does_not_match_its_certificate_is_an_error_naming_both(
    istio_cacerts: Path, tmp_path: Path
):
    ca_dir = istio_cacerts
    (ca_dir / "ca-key.pem").write_bytes((tmp_path / "work" / "root-key.pem").read_bytes())
    with pytest.raises(ConfigError, match=r"ca-key.pem does not match .*ca-cert.pem"):
        load_or_create(ca_dir, CaSettings())


def test_a_key_of_the_same_type_that_does_not_match_is_an_error(tmp_path: Path):
    load_or_create(tmp_path, CaSettings())
    (tmp_path / "ca-key.pem").write_bytes(private_key_pem(new_key("ec")))
    with pytest.raises(ConfigError, match=r"ca-key.pem does not match .*ca-cert.pem"):
        load_or_create(tmp_path, CaSettings())


@needs_openssl
def test_a_chain_that_does_not_reach_the_root_is_an_error(istio_cacerts: Path, tmp_path: Path):
    ca_dir = istio_cacerts
    other = load_or_create(tmp_path / "other", CaSettings())
    (ca_dir / "root-cert.pem").write_bytes((tmp_path / "other" / "root-cert.pem").read_bytes())
    assert other.certificate  # a root, but not the one that signed ca-cert.pem
    with pytest.raises(
        ConfigError, match=r"ca-cert.pem does not chain to .*root-cert.pem through .*cert-chain.pem"
    ):
        load_or_create(ca_dir, CaSettings())


@needs_openssl
def test_an_empty_cert_chain_is_enough_when_the_root_signed_ca_cert(istio_cacerts: Path):
    """Istio's Verify puts cert-chain.pem in the intermediates pool, which may be empty."""
    ca_dir = istio_cacerts
    (ca_dir / "cert-chain.pem").write_bytes(b"")
    authority = load_or_create(ca_dir, CaSettings())
    assert verify_chain(issue_workload_certificate(authority, make_csr(), SLEEP).chain_pems)


def test_unreadable_material_names_the_file(tmp_path: Path):
    load_or_create(tmp_path, CaSettings())
    (tmp_path / "ca-key.pem").write_text("not a key")
    with pytest.raises(ConfigError, match=r"ca-key.pem: not an unencrypted PEM private key"):
        load_or_create(tmp_path, CaSettings())
    (tmp_path / "ca-key.pem").write_bytes(b"")
    (tmp_path / "ca-cert.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=r"ca-cert.pem: not PEM certificates"):
        load_or_create(tmp_path, CaSettings())


def test_a_signing_certificate_that_is_not_a_ca_is_refused(tmp_path: Path):
    """A workload certificate plugged in as ca-cert.pem (Istio refuses it too: ca.go `!cert.IsCA`)."""
    authority = load_or_create(tmp_path / "root", CaSettings())
    key = new_key()
    leaf = issue_workload_certificate(authority, make_csr(key=key), SLEEP).leaf
    ca_dir = tmp_path / "cacerts"
    ca_dir.mkdir()
    (ca_dir / "ca-cert.pem").write_text(certificate_pem(leaf))
    (ca_dir / "ca-key.pem").write_bytes(private_key_pem(key))
    (ca_dir / "root-cert.pem").write_text(authority.roots_pem)
    (ca_dir / "cert-chain.pem").write_text(certificate_pem(leaf) + authority.roots_pem)
    with pytest.raises(ConfigError, match=r"ca-cert.pem: certificate .* is not a CA"):
        load_or_create(ca_dir, CaSettings())


def test_a_complete_cacerts_directory_is_only_read(istio_cacerts: Path):
    """A mounted Secret is read-only: loading the operator's cacerts writes nothing there (no lock)."""
    before = sorted(path.name for path in istio_cacerts.iterdir())
    authority = load_or_create(istio_cacerts, CaSettings())
    assert not authority.is_self_signed
    assert sorted(path.name for path in istio_cacerts.iterdir()) == before
