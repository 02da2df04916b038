"""The mesh CA: its signing key and certificate, the chain up to the root, and where they come from.

``load_or_create(ca_dir, settings)`` follows istiod's order (pilot/pkg/bootstrap/istio_ca.go,
security/pkg/pki/ca/ca.go): the operator's Istio ``cacerts`` layout when the directory has it
(``ca-cert.pem``, ``ca-key.pem``, ``root-cert.pem``, ``cert-chain.pem``; a partial set is an error, as
in Istio), else a self-signed root created there on first start and reused after. The self-signed
root is written in the same layout, so every later start takes the one loading path.

Loaded material is checked as Istio's ``util.Verify`` (security/pkg/pki/util/keycertbundle.go) does:
the key matches ``ca-cert.pem`` and ``ca-cert.pem`` chains to ``root-cert.pem`` through
``cert-chain.pem``; each error names the file at fault.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from pilot.ca import directory
from pilot.ca.identity import DEFAULT_TRUST_DOMAIN, check_trust_domain
from pilot.errors import ConfigError

# Keys a CA may sign with. Ed25519 signs without a separate hash.
SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

# Istio: MinimumRsaKeySize (security/pkg/pki/util/generate_csr.go).
MIN_RSA_KEY_SIZE = 2048
# Longest chain walked from ca-cert.pem to a root; real hierarchies have one or two intermediates.
MAX_CHAIN_DEPTH = 8


class KeyAlgorithm(Enum):
    """Key of a self-signed root. Istio's default is RSA 2048 (CITADEL_SELF_SIGNED_CA_RSA_KEY_SIZE);
    pilot defaults to ECDSA P-256: the same strength as RSA 3072 at a fraction of the signing cost."""

    ECDSA_P256 = "ecdsa-p256"
    RSA = "rsa"


@dataclass(frozen=True, slots=True)
class CaSettings:
    """Every tunable of the mesh CA, with Istio's defaults (security/pkg/cmd/constants.go,
    pilot/pkg/features/security.go)."""

    # The SPIFFE trust domain (mesh config trustDomain); also the self-signed root's O.
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    key_algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA_P256
    rsa_key_size: int = 2048
    # CITADEL_SELF_SIGNED_CA_CERT_TTL: 3650 days.
    root_lifetime: datetime.timedelta = datetime.timedelta(days=3650)
    # DEFAULT_WORKLOAD_CERT_TTL (used when a CSR asks for 0 or less): 24 h.
    workload_lifetime: datetime.timedelta = datetime.timedelta(hours=24)
    # MAX_WORKLOAD_CERT_TTL: 90 days; a CSR asking for more is refused, as Istio's CA does.
    max_workload_lifetime: datetime.timedelta = datetime.timedelta(days=90)

    def __post_init__(self) -> None:
        check_trust_domain(self.trust_domain)
        if self.rsa_key_size < MIN_RSA_KEY_SIZE:
            raise ValueError(f"rsa_key_size must be at least {MIN_RSA_KEY_SIZE}")
        if not datetime.timedelta(0) < self.workload_lifetime <= self.max_workload_lifetime:
            raise ValueError("need 0 < workload_lifetime <= max_workload_lifetime")
        if self.root_lifetime <= datetime.timedelta(0):
            raise ValueError("root_lifetime must be positive")


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def signature_hash(key: SigningKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    """The hash Go's x509 picks for a key (crypto/x509 signingParamsForKey): SHA-256 for RSA and
    P-256, SHA-384 for P-384, SHA-512 for P-521, none for Ed25519."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size == 384:
        return hashes.SHA384()
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size == 521:
        return hashes.SHA512()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    return hashes.SHA256()


def generate_key(
    algorithm: KeyAlgorithm, rsa_key_size: int = 2048
) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if algorithm is KeyAlgorithm.RSA:
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_key_size)
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: SigningKey) -> bytes:
    # PKCS#8, as istio-agent writes with PKCS8_KEY and openssl genpkey does.
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def certificate_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """The signing key and certificate, the certificates between it and the root, and the roots.

    ``intermediates`` is ordered from the signing certificate's issuer upwards and holds neither the
    signing certificate nor a root. For a self-signed root the signing certificate is the root.
    ``roots`` is root-cert.pem: usually one certificate, more while roots rotate.
    """

    settings: CaSettings
    key: SigningKey
    certificate: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    roots: tuple[x509.Certificate, ...]
    roots_pem: str = field(repr=False)

    @property
    def is_self_signed(self) -> bool:
        return self.certificate in self.roots

    @property
    def chain_above_leaf(self) -> tuple[x509.Certificate, ...]:
        """What a leaf's holder sends after its own certificate: the signing certificate and the
        intermediates, without the root (peers have it)."""
        return () if self.is_self_signed else (self.certificate, *self.intermediates)

    @property
    def not_after(self) -> datetime.datetime:
        """When the first certificate of the signing chain expires: no leaf may outlive it."""
        return min(cert.not_valid_after_utc for cert in (self.certificate, *self.intermediates))

    def sign(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        """Issue ``builder`` from this CA: issuer name, Authority Key Identifier, signature.

        The AKI is the issuer's SKI (RFC 5280 4.2.1.1). A signing certificate without an SKI (Istio's own
        samples/certs/ca-cert.pem has none) gets the key identifier computed from its public key, the
        SHA-1 method of RFC 5280 4.2.1.2 that openssl's ``subjectKeyIdentifier=hash`` uses too."""
        try:
            ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        except x509.ExtensionNotFound:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())
        builder = builder.issuer_name(self.certificate.subject).add_extension(aki, critical=False)
        return builder.sign(self.key, signature_hash(self.key))


def create_self_signed_root(settings: CaSettings) -> tuple[SigningKey, x509.Certificate]:
    """A new root key and certificate as Istio's self-signed CA makes them (security/pkg/pki/util/
    generate_cert.go genCertTemplateFromOptions with IsCA, IsSelfSigned, Org = trust domain): subject O
    only, CA:TRUE (critical), NotBefore now, lifetime root_lifetime. Istio's KeyUsage is keyCertSign
    alone; pilot adds cRLSign, which RFC 5280 4.2.1.3 and the CA/Browser Forum expect of a root."""
    key = generate_key(settings.key_algorithm, settings.rsa_key_size)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, settings.trust_domain)])
    start = now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + settings.root_lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # Go adds the SKI to every CA certificate it creates (crypto/x509 CreateCertificate).
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, signature_hash(key))
    )
    return key, certificate


def load_or_create(ca_dir: Path, settings: CaSettings) -> CertificateAuthority:
    """The CA of ``ca_dir``: the files there, or a self-signed root created there when it has none.

    A directory that already holds the whole cacerts layout is only read, without the lock, so
    it may be read-only (a Kubernetes Secret mounted as Istio mounts ``cacerts``)."""
    if all((ca_dir / name).is_file() for name in directory.CACERTS_FILES):
        return load_cacerts(ca_dir, settings)
    with directory.locked(ca_dir):
        present = [name for name in directory.CACERTS_FILES if (ca_dir / name).exists()]
        if not present:
            key, root = create_self_signed_root(settings)
            root_pem = certificate_pem(root).encode()
            for name, data in (
                (directory.ROOT_CERT, root_pem),
                (directory.CERT_CHAIN, root_pem),
                (directory.CA_CERT, root_pem),
            ):
                directory.write_atomically(ca_dir / name, data, directory.PUBLIC)
            directory.write_atomically(ca_dir / directory.CA_KEY, private_key_pem(key), directory.PRIVATE)
        elif len(present) < len(directory.CACERTS_FILES):
            missing = [name for name in directory.CACERTS_FILES if name not in present]
            raise ConfigError(
                f"CA directory {ca_dir} has {', '.join(present)} but not {', '.join(missing)}: the cacerts "
                "layout needs all four (or none, for a self-signed root)"
            )
    return load_cacerts(ca_dir, settings)


def _certificates(path: Path, may_be_empty: bool = False) -> list[x509.Certificate]:
    data = directory.read(path)
    if may_be_empty and not data.strip():
        return []
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as err:
        raise ConfigError(f"{path}: not PEM certificates ({err})") from err
    return certificates


def _private_key(path: Path) -> SigningKey:
    data = directory.read(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{path}: not an unencrypted PEM private key ({err})") from err
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise ConfigError(
            f"{path}: a {type(key).__name__} cannot sign certificates here (RSA, ECDSA, Ed25519)"
        )
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_KEY_SIZE:
        raise ConfigError(f"{path}: RSA key of {key.key_size} bits, below the minimum {MIN_RSA_KEY_SIZE}")
    return key


def _check_is_ca(certificate: x509.Certificate, where: Path) -> None:
    """Istio refuses a signing certificate that is not a CA (ca.go NewPluggedCertIstioCAOptions)."""
    subject = certificate.subject.rfc4514_string() or "(empty subject)"
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise ConfigError(f"{where}: certificate {subject} is not a CA (basicConstraints CA:TRUE missing)")
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not usage.key_cert_sign:
        raise ConfigError(
            f"{where}: certificate {subject} may not sign certificates (keyUsage without keyCertSign)"
        )


def _check_valid_at(certificate: x509.Certificate, at: datetime.datetime, where: Path) -> None:
    subject = certificate.subject.rfc4514_string() or "(empty subject)"
    if at < certificate.not_valid_before_utc:
        raise ConfigError(
            f"{where}: certificate {subject} is not valid before {certificate.not_valid_before_utc}"
        )
    if at >= certificate.not_valid_after_utc:
        raise ConfigError(f"{where}: certificate {subject} expired at {certificate.not_valid_after_utc}")


def _issued(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def chain_to_root(
    leaf: x509.Certificate, candidates: Sequence[x509.Certificate], roots: Sequence[x509.Certificate]
) -> tuple[list[x509.Certificate], x509.Certificate] | None:
    """(intermediates from ``leaf``'s issuer upwards, the root reached), or None when no path of
    signatures leads from ``leaf`` to one of ``roots``."""
    path: list[x509.Certificate] = []
    current = leaf
    for _ in range(MAX_CHAIN_DEPTH):
        root = next((root for root in roots if _issued(current, root)), None)
        if root is not None:
            return path, root
        issuer = next((c for c in candidates if c not in path and c != current and _issued(current, c)), None)
        if issuer is None:
            return None
        path.append(issuer)
        current = issuer
    return None


def load_cacerts(ca_dir: Path, settings: CaSettings) -> CertificateAuthority:
    """The CA from Istio's cacerts files in ``ca_dir``, verified; ConfigError naming the file at fault."""
    cert_path, key_path = ca_dir / directory.CA_CERT, ca_dir / directory.CA_KEY
    root_path, chain_path = ca_dir / directory.ROOT_CERT, ca_dir / directory.CERT_CHAIN
    signing = _certificates(cert_path)
    if len(signing) != 1:
        raise ConfigError(f"{cert_path}: expected one certificate (the signing CA), found {len(signing)}")
    certificate = signing[0]
    key = _private_key(key_path)
    if key.public_key() != certificate.public_key():
        raise ConfigError(
            f"{key_path} does not match {cert_path}: the key's public half is not the certificate's"
        )
    roots = _certificates(root_path)
    chain = _certificates(chain_path, may_be_empty=True)
    at = now()
    _check_is_ca(certificate, cert_path)
    _check_valid_at(certificate, at, cert_path)
    for root in roots:
        if not _issued(root, root):
            subject = root.subject.rfc4514_string()
            raise ConfigError(f"{root_path}: certificate {subject} is not self-signed, so it is not a root")
    found = chain_to_root(certificate, [c for c in chain if c not in roots], roots)
    if found is None:
        raise ConfigError(
            f"{cert_path} does not chain to {root_path} through {chain_path}: no path of signatures leads "
            f"from {certificate.subject.rfc4514_string()} to a root there"
        )
    intermediates, root = found
    for issuer in intermediates:
        _check_is_ca(issuer, chain_path)
        _check_valid_at(issuer, at, chain_path)
    _check_is_ca(root, root_path)
    _check_valid_at(root, at, root_path)
    return CertificateAuthority(
        settings=settings,
        key=key,
        certificate=certificate,
        intermediates=tuple(intermediates),
        roots=tuple(roots),
        roots_pem="".join(certificate_pem(root) for root in roots),
    )
