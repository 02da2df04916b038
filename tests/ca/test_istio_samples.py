"""pilot's CA against Istio's own sample material (istio/istio samples/certs, see istio_samples_certs/)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cryptography import x509

from pilot.ca.authority import CaSettings, load_or_create
from pilot.ca.identity import ServiceAccount
from pilot.ca.workload_certificate import issue_workload_certificate
from tests.ca.pki import make_csr, new_key, openssl_verify
from tests.support.certs import openssl_available

SAMPLES = Path(__file__).parent / "istio_samples_certs"
CACERTS = ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem")
FOO = ServiceAccount("foo", "foo")


@pytest.fixture
def samples_ca_dir(tmp_path: Path) -> Path:
    for name in CACERTS:
        shutil.copy(SAMPLES / name, tmp_path / name)
    return tmp_path


def _extensions(certificate: x509.Certificate) -> dict[str, bool]:
    """Extension name → critical."""
    return {extension.oid._name: extension.critical for extension in certificate.extensions}  # noqa: SLF001


@pytest.mark.skipif(not openssl_available(), reason="openssl checks the chain")
def test_istios_sample_cacerts_load_and_sign(samples_ca_dir: Path, tmp_path: Path):
    """The chain verifies with OpenSSL, not under -x509_strict nor cryptography's CA/Browser Forum profile:
    the sample CA's basicConstraints is not critical and it has no key identifiers."""
    authority = load_or_create(samples_ca_dir, CaSettings(trust_domain="trust-domain-foo"))
    assert (
        authority.certificate.subject.rfc4514_string() == "CN=Istio CA,O=Istio,L=Sunnyvale,ST=California,C=US"
    )
    issued = issue_workload_certificate(authority, make_csr(key=new_key("rsa2048")), FOO)
    # cert-chain.pem is ca-cert.pem alone here: leaf, Istio CA, root.
    assert len(issued.chain_pems) == 3
    assert issued.chain_pems[-1] == (SAMPLES / "root-cert.pem").read_text()
    assert (
        openssl_verify(issued.chain_pems, tmp_path / "verify", strict=False).strip().endswith("leaf.pem: OK")
    )


def test_pilots_leaf_has_the_extensions_of_istios_leaf(samples_ca_dir: Path):
    """Istio's leaf (issued by its tooling from the same CA) and pilot's: the same extensions with the
    same criticality and values; pilot adds the SKI and an AKI (Istio writes an AKI only when the
    issuer has an SKI, which this sample CA lacks)."""
    istio = x509.load_pem_x509_certificate((SAMPLES / "leaf-workload-foo-cert.pem").read_bytes())
    authority = load_or_create(samples_ca_dir, CaSettings(trust_domain="trust-domain-foo"))
    pilot = issue_workload_certificate(authority, make_csr(), FOO).leaf

    assert pilot.subject == istio.subject == x509.Name([])
    assert pilot.issuer == istio.issuer
    extra = {"subjectKeyIdentifier": False, "authorityKeyIdentifier": False}
    assert _extensions(pilot) == _extensions(istio) | extra
    for kind in (x509.KeyUsage, x509.ExtendedKeyUsage, x509.BasicConstraints, x509.SubjectAlternativeName):
        assert pilot.extensions.get_extension_for_class(kind) == istio.extensions.get_extension_for_class(
            kind
        )


def test_a_root_bundle_is_returned_whole_and_last(samples_ca_dir: Path):
    """During root rotation root-cert.pem holds old and new roots; Istio returns the whole bundle as the
    last element of cert_chain (server.go: "we do not want to flatten the root cert")."""
    shutil.copy(SAMPLES / "root-cert-combined.pem", samples_ca_dir / "root-cert.pem")
    authority = load_or_create(samples_ca_dir, CaSettings(trust_domain="trust-domain-foo"))
    assert len(authority.roots) == 2
    issued = issue_workload_certificate(authority, make_csr(), FOO)
    assert issued.chain_pems[-1].count("BEGIN CERTIFICATE") == 2
    assert issued.chain_pems[-1] == authority.roots_pem
