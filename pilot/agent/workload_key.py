"""The workload's private key, its CSR, the secret the CA's answer makes, and the files it is kept in.

As Istio's agent with ``ECC_SIGNATURE_ALGORITHM=ECDSA`` (security/pkg/pki/util/generate_csr.go): a
fresh ECDSA P-256 key per certificate, a PKCS#10 CSR whose only name is the SPIFFE id as a URI SAN
(the CSR host), signed with SHA-256. The key never leaves the agent except to Envoy over SDS and
into the work directory, mode 0600, as Istio's ``OUTPUT_CERTS`` writes ``key.pem``,
``cert-chain.pem`` and ``root-cert.pem``.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pilot.ca.authority import private_key_pem
from pilot.ca.identity import ServiceAccount
from pilot.errors import PilotError

PRIVATE = 0o600
PUBLIC = 0o644


class CertificateChainError(PilotError):
    """The CA answered with something that is not a usable chain for our key."""


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def certificate_request(key: ec.EllipticCurvePrivateKey, account: ServiceAccount, trust_domain: str) -> str:
    """A PEM CSR for ``account``'s SPIFFE id, signed with ``key``."""
    spiffe_id = account.spiffe_id(trust_domain)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True, slots=True)
class WorkloadSecret:
    """A key and the chain the CA signed for it: what SDS serves as ``default`` and ``ROOTCA``.

    ``chain_pem`` is the leaf and intermediates (Envoy's ``certificate_chain``), ``root_pem`` the
    last element of the CA's answer (Istio's rootCertPEM when the CA client has no trust bundle).
    ``created_at`` is when the agent received it: rotation counts the lifetime from there, as
    Istio's ``SecretItem.CreatedTime``, not from the leaf's back-dated notBefore.
    """

    key_pem: bytes = field(repr=False)
    chain_pem: bytes
    root_pem: bytes
    serial: int
    not_after: datetime.datetime
    created_at: datetime.datetime

    @property
    def lifetime(self) -> datetime.timedelta:
        return self.not_after - self.created_at


def secret_from_chain(
    key: ec.EllipticCurvePrivateKey, chain_pems: list[str], received_at: datetime.datetime
) -> WorkloadSecret:
    """Check the CA's answer (leaf first, root last) against ``key`` and make the secret."""
    if len(chain_pems) < 2:
        # Istio's citadel client: "invalid empty CertChain" / a chain without a root is refused.
        raise CertificateChainError(
            f"the CA answered {len(chain_pems)} certificate(s): need a leaf and a root"
        )
    try:
        leaf = x509.load_pem_x509_certificate(chain_pems[0].encode())
        x509.load_pem_x509_certificates(chain_pems[-1].encode())
    except ValueError as err:
        raise CertificateChainError(f"the CA's answer is not PEM certificates: {err}") from err
    if leaf.public_key() != key.public_key():
        raise CertificateChainError("the CA's leaf certificate is not for the key the CSR was signed with")
    chain = "".join(pem if pem.endswith("\n") else pem + "\n" for pem in chain_pems[:-1])
    return WorkloadSecret(
        key_pem=private_key_pem(key),
        chain_pem=chain.encode(),
        root_pem=chain_pems[-1].encode(),
        serial=leaf.serial_number,
        not_after=leaf.not_valid_after_utc,
        created_at=received_at,
    )


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` atomically; the temporary file has ``mode`` from its creation on."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def write_credentials(folder: Path, secret: WorkloadSecret) -> None:
    """``key.pem`` (0600), ``cert-chain.pem`` and ``root-cert.pem`` in ``folder`` (Istio's OUTPUT_CERTS)."""
    write_file(folder / "key.pem", secret.key_pem, PRIVATE)
    write_file(folder / "cert-chain.pem", secret.chain_pem, PUBLIC)
    write_file(folder / "root-cert.pem", secret.root_pem, PUBLIC)
