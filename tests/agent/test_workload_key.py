"""The workload key, its CSR, the CA's answer checked against the key, and the files (key 0600)."""

from __future__ import annotations

import datetime
import random
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pilot.agent.secret_cache import renewal_delay
from pilot.agent.workload_key import (
    CertificateChainError,
    WorkloadSecret,
    certificate_request,
    new_key,
    secret_from_chain,
    write_credentials,
)
from pilot.ca.authority import CaSettings, load_or_create, now
from pilot.ca.identity import ServiceAccount
from pilot.ca.workload_certificate import issue_workload_certificate, parse_csr

SLEEP = ServiceAccount("default", "sleep")


def test_csr_is_p256_for_the_spiffe_id_and_the_ca_signs_it(tmp_path: Path):
    key = new_key()
    assert isinstance(key.curve, ec.SECP256R1)
    csr_pem = certificate_request(key, SLEEP, "cluster.local")
    csr = parse_csr(csr_pem)  # the CA's own checks: signature, key type
    assert csr.public_key() == key.public_key()
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/default/sa/sleep"
    ]
    authority = load_or_create(tmp_path / "ca", CaSettings())
    issued = issue_workload_certificate(authority, csr_pem, SLEEP, 600)
    secret = secret_from_chain(key, list(issued.chain_pems), now())
    assert secret.serial == issued.leaf.serial_number
    assert secret.root_pem.decode() == authority.roots_pem
    assert x509.load_pem_x509_certificates(secret.chain_pem)[0] == issued.leaf
    assert serialization.load_pem_private_key(secret.key_pem, None).public_key() == key.public_key()
    assert 590 < secret.lifetime.total_seconds() <= 600


def test_an_answer_for_another_key_or_without_root_is_refused(tmp_path: Path):
    authority = load_or_create(tmp_path / "ca", CaSettings())
    issued = issue_workload_certificate(
        authority, certificate_request(new_key(), SLEEP, "cluster.local"), SLEEP
    )
    with pytest.raises(CertificateChainError, match="not for the key"):
        secret_from_chain(new_key(), list(issued.chain_pems), now())
    with pytest.raises(CertificateChainError, match="need a leaf and a root"):
        secret_from_chain(new_key(), list(issued.chain_pems[:1]), now())
    with pytest.raises(CertificateChainError, match="not PEM"):
        secret_from_chain(new_key(), ["junk", "junk"], now())


def test_credentials_files_key_is_private(tmp_path: Path):
    secret = WorkloadSecret(b"KEY", b"CHAIN", b"ROOT", 1, now(), now())
    folder = tmp_path / "etc/certs"
    write_credentials(folder, secret)
    write_credentials(folder, secret)  # replacing works
    assert stat.S_IMODE((folder / "key.pem").stat().st_mode) == 0o600
    assert (folder / "key.pem").read_bytes() == b"KEY"
    assert (folder / "cert-chain.pem").read_bytes() == b"CHAIN"
    assert sorted(p.name for p in folder.iterdir()) == ["cert-chain.pem", "key.pem", "root-cert.pem"]


def test_renewal_at_half_the_lifetime_with_jitter():
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    secret = WorkloadSecret(b"", b"", b"", 1, start + datetime.timedelta(hours=24), start)
    assert renewal_delay(secret, 0.5, 0.0, start) == 12 * 3600
    delays = {renewal_delay(secret, 0.5, 0.01, start, random.Random(seed)) for seed in range(50)}
    assert min(delays) >= 12 * 3600 - 432 and max(delays) <= 12 * 3600 + 432  # 1 % of the 12 h grace
    assert len(delays) > 1
    assert renewal_delay(secret, 0.5, 0.0, start + datetime.timedelta(hours=13)) == 0.0
