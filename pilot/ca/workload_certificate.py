"""Workload and server certificates issued by the mesh CA, and the CSR checks before signing.

The leaf follows Istio's ``genCertTemplateFromCSR`` (security/pkg/pki/util/generate_cert.go) and
its tests (security/pkg/pki/ca/ca_test.go TestSignCSR: KeyUsage digitalSignature|keyEncipherment,
ExtKeyUsage serverAuth+clientAuth, IsCA false, the SPIFFE id as SAN):

- subject empty, the identity only in a critical SAN (san.go BuildSANExtension marks it critical,
  as RFC 5280 4.2.1.6 requires for an empty subject); Istio's dual-use CN is not issued;
- keyUsage digitalSignature + keyEncipherment (critical), extKeyUsage serverAuth + clientAuth,
  basicConstraints CA:FALSE (critical), a 128-bit-or-more random serial;
- NotBefore now - 2 min (ClockSkewGracePeriod), NotAfter now + lifetime, clamped to the signing
  chain's own expiry; a signing chain already expired signs nothing;
- Authority Key Identifier = the issuer's SKI, as Go writes it; pilot also writes the leaf's own
  Subject Key Identifier, which Go writes only for CA certificates.

Where pilot is stricter than Istio's CA: Istio ignores the CSR's SANs and certifies the caller
(server.go CreateCertificate uses caller.Identities); pilot refuses a CSR whose SPIFFE SAN names
anyone but the caller (a CSR without one is certified for the caller, as in Istio), and refuses keys
Istio's own clients never make: RSA under 2048 (MinimumRsaKeySize) or over 8192 bits, curves other
than P-256 and P-384 (generate_cert.go SupportedEllipticCurves).
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from pilot.ca.authority import CertificateAuthority, certificate_pem, now
from pilot.ca.identity import ServiceAccount
from pilot.errors import CertificateRequestError, IdentityMismatchError

# Istio's util.ClockSkewGracePeriod: leaves are valid from 2 minutes before issue.
CLOCK_SKEW_GRACE = datetime.timedelta(minutes=2)
# A P-384 or RSA 8192 CSR is under 4 KiB of PEM; anything far larger is not a CSR worth parsing.
MAX_CSR_BYTES = 16 * 1024
MAX_RSA_KEY_SIZE = 8192
ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1)

# What a CSR's public key may be, and so what a certificate may certify.
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True, slots=True)
class IssuedChain:
    """A signed leaf and what the CA returns with it: leaf first, intermediates, root bundle last
    (istio/api security/v1alpha1/ca.proto: "the root cert is the last element")."""

    leaf: x509.Certificate
    chain_pems: tuple[str, ...]


def _leaf_usages() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def leaf_builder(
    public_key: PublicKey,
    names: Sequence[x509.GeneralName],
    lifetime: datetime.timedelta,
    authority: CertificateAuthority,
) -> x509.CertificateBuilder:
    """An unsigned leaf for ``names`` as Istio issues one; ``authority.sign`` adds issuer and AKI."""
    issued_at = now()
    if issued_at >= authority.not_after:
        raise CertificateRequestError(f"the CA's signing chain expired at {authority.not_after}")
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(issued_at - CLOCK_SKEW_GRACE)
        .not_valid_after(min(issued_at + lifetime, authority.not_after))
        .add_extension(x509.SubjectAlternativeName(names), critical=True)
        .add_extension(_leaf_usages(), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def chain_pems(authority: CertificateAuthority, leaf: x509.Certificate) -> tuple[str, ...]:
    """One PEM per certificate, leaf first, then the root bundle as one last element, as Istio's
    server.go CreateCertificate answers. Istio appends cert-chain.pem as given, which in its own
    tooling (tools/certs/Makefile.selfsigned.mk) ends with the root, so Istio sends the root twice;
    pilot sends it once, last."""
    return (
        certificate_pem(leaf),
        *(certificate_pem(cert) for cert in authority.chain_above_leaf),
        authority.roots_pem,
    )


def parse_csr(csr_pem: str) -> x509.CertificateSigningRequest:
    """The CSR, its signature verified and its key allowed; CertificateRequestError saying why not."""
    data = csr_pem.encode("utf-8", errors="replace")
    if len(data) > MAX_CSR_BYTES:
        raise CertificateRequestError(f"CSR of {len(data)} bytes is larger than the {MAX_CSR_BYTES} allowed")
    if not data.strip():
        raise CertificateRequestError("the request has no CSR")
    try:
        csr = x509.load_pem_x509_csr(data)
        signature_valid = csr.is_signature_valid
        public_key = csr.public_key()
    except (ValueError, TypeError) as err:
        raise CertificateRequestError(f"CSR is not a PEM PKCS#10 certificate request: {err}") from err
    except UnsupportedAlgorithm as err:
        raise CertificateRequestError(f"CSR uses an unsupported algorithm: {err}") from err
    if not signature_valid:
        raise CertificateRequestError("CSR signature does not verify with its own public key")
    check_public_key(public_key)
    return csr


def check_public_key(public_key: object) -> PublicKey:
    if isinstance(public_key, rsa.RSAPublicKey):
        if not 2048 <= public_key.key_size <= MAX_RSA_KEY_SIZE:
            raise CertificateRequestError(
                f"RSA key of {public_key.key_size} bits: allowed are 2048 to {MAX_RSA_KEY_SIZE}"
            )
        return public_key
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ALLOWED_CURVES):
            raise CertificateRequestError(f"ECDSA curve {public_key.curve.name}: allowed are P-256 and P-384")
        return public_key
    raise CertificateRequestError(
        f"{type(public_key).__name__} keys are not allowed: RSA or ECDSA P-256/P-384"
    )


def requested_uris(csr: x509.CertificateSigningRequest) -> list[str]:
    """The URI SANs a CSR asks for (Istio's agent puts the SPIFFE id there, CSR host = SPIFFE id)."""
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    except (ValueError, x509.DuplicateExtension) as err:
        raise CertificateRequestError(f"CSR extensions are malformed: {err}") from err
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def requested_lifetime(authority: CertificateAuthority, seconds: int) -> datetime.timedelta:
    """Istio's rule (ca.go sign): 0 or less → the default lifetime; over the max → refused."""
    settings = authority.settings
    if seconds <= 0:
        return settings.workload_lifetime
    if seconds > settings.max_workload_lifetime.total_seconds():
        raise CertificateRequestError(
            f"requested lifetime {seconds}s is greater than the max allowed "
            f"{int(settings.max_workload_lifetime.total_seconds())}s"
        )
    return datetime.timedelta(seconds=seconds)


def issue_workload_certificate(
    authority: CertificateAuthority, csr_pem: str, caller: ServiceAccount, validity_seconds: int = 0
) -> IssuedChain:
    """Sign ``csr_pem`` for ``caller``'s SPIFFE id; CertificateRequestError (IdentityMismatchError
    when the CSR names someone else) with the reason otherwise."""
    csr = parse_csr(csr_pem)
    spiffe_id = caller.spiffe_id(authority.settings.trust_domain)
    others = [uri for uri in requested_uris(csr) if uri != spiffe_id]
    if others:
        raise IdentityMismatchError(
            f"CSR asks for {', '.join(others)} but the caller is {spiffe_id} (service account {caller})"
        )
    lifetime = requested_lifetime(authority, validity_seconds)
    public_key = check_public_key(csr.public_key())
    names = [x509.UniformResourceIdentifier(spiffe_id)]
    leaf = authority.sign(leaf_builder(public_key, names, lifetime, authority))
    return IssuedChain(leaf=leaf, chain_pems=chain_pems(authority, leaf))


def server_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """DNS names, and IP addresses for hosts that are addresses (Istio's BuildSubjectAltNameExtension)."""
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue_server_certificate(
    authority: CertificateAuthority, public_key: PublicKey, hosts: Sequence[str], lifetime: datetime.timedelta
) -> x509.Certificate:
    """A certificate for a server known by ``hosts`` (istiod's own, Istio's GenKeyCert)."""
    if not hosts:
        raise CertificateRequestError("a server certificate needs at least one host")
    return authority.sign(leaf_builder(public_key, server_names(hosts), lifetime, authority))
