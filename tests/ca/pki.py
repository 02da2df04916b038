"""Test PKI for the CA tests: an operator's Istio ``cacerts`` made the way Istio's own tooling makes it
(openssl with the config of istio/istio tools/certs/common.mk and Makefile.selfsigned.mk), CSRs as
istio-agent makes them (security/pkg/pki/util/generate_csr.go: the SPIFFE id as URI SAN), and a
standards check of an issued chain with cryptography's X.509 path validation.
"""

from __future__ import annotations

import datetime
import subprocess
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.verification import PolicyBuilder, Store, VerifiedClient

_REQ = """[ req ]
encrypt_key = no
prompt = no
utf8 = yes
default_md = sha256
req_extensions = req_ext
x509_extensions = req_ext
distinguished_name = req_dn
[ req_ext ]
subjectKeyIdentifier = hash
"""

_ROOT_CONF = (
    _REQ
    + """basicConstraints = critical, CA:true
keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment, keyCertSign
[ req_dn ]
O = Istio
CN = Root CA
"""
)

_INTERMEDIATE_CONF = (
    _REQ
    + """basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment, keyCertSign
subjectAltName=@san
[ san ]
DNS.1 = istiod.istio-system.svc
[ req_dn ]
O = Istio
CN = Intermediate CA
L = cluster1
"""
)


def _openssl(cwd: Path, *args: str) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {result.stderr.strip()}")


def make_istio_cacerts(work: Path, ca_dir: Path) -> None:
    """Istio's ``make root-ca`` then ``make cluster1-cacerts``, the outputs copied into ``ca_dir``.

    Keys are P-256 (root) and RSA 2048 (intermediate) instead of Istio's RSA 4096, to stay fast and
    to cover both key types.
    """
    work.mkdir(parents=True, exist_ok=True)
    ca_dir.mkdir(parents=True, exist_ok=True)
    (work / "root-ca.conf").write_text(_ROOT_CONF)
    (work / "intermediate.conf").write_text(_INTERMEDIATE_CONF)
    # The commands of Istio's Makefiles, in order (root-key.pem, root-cert.pem, ca-key.pem, ca-cert.pem).
    for command in (
        "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out root-key.pem",
        "req -sha256 -new -key root-key.pem -config root-ca.conf -out root-cert.csr",
        "x509 -req -sha256 -days 3650 -signkey root-key.pem -extensions req_ext -extfile root-ca.conf"
        " -in root-cert.csr -out root-cert.pem",
        "genrsa -out ca-key.pem 2048",
        "req -sha256 -new -config intermediate.conf -key ca-key.pem -out cluster-ca.csr",
        "x509 -req -sha256 -days 730 -CA root-cert.pem -CAkey root-key.pem -CAcreateserial"
        " -extensions req_ext -extfile intermediate.conf -in cluster-ca.csr -out ca-cert.pem",
    ):
        _openssl(work, *command.split())
    root = (work / "root-cert.pem").read_bytes()
    ca_cert = (work / "ca-cert.pem").read_bytes()
    (ca_dir / "ca-cert.pem").write_bytes(ca_cert)
    (ca_dir / "ca-key.pem").write_bytes((work / "ca-key.pem").read_bytes())
    (ca_dir / "root-cert.pem").write_bytes(root)
    (ca_dir / "cert-chain.pem").write_bytes(ca_cert + root)


def new_key(kind: str = "ec") -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "p521":
        return ec.generate_private_key(ec.SECP521R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(kind.removeprefix("rsa")))


def make_csr(
    uris: Sequence[str] = (), key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None
) -> str:
    """A PEM CSR as istio-agent sends it: empty subject, the SPIFFE id as a URI SAN."""
    key = key or new_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri) for uri in uris]), critical=True
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def verify_chain(chain_pems: Sequence[str], at: datetime.datetime | None = None) -> VerifiedClient:
    """Path-validate a CreateCertificate answer (leaf first, roots last) as an mTLS client certificate
    (RFC 5280 with the CA/Browser Forum profile cryptography implements)."""
    leaf = x509.load_pem_x509_certificate(chain_pems[0].encode())
    intermediates = [x509.load_pem_x509_certificate(pem.encode()) for pem in chain_pems[1:-1]]
    roots = x509.load_pem_x509_certificates(chain_pems[-1].encode())
    builder = PolicyBuilder().store(Store(roots)).time(at or datetime.datetime.now(datetime.UTC))
    return builder.build_client_verifier().verify(leaf, intermediates)


def openssl_verify(
    chain_pems: Sequence[str], work: Path, purpose: str = "sslclient", strict: bool = True
) -> str:
    """``openssl verify`` of a CreateCertificate answer (OpenSSL's checks, kin to Envoy's BoringSSL;
    ``strict``: with -x509_strict, RFC 5280's rules on every certificate); its output, or RuntimeError
    with openssl's complaint."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "leaf.pem").write_text(chain_pems[0])
    (work / "intermediates.pem").write_text("".join(chain_pems[1:-1]))
    (work / "roots.pem").write_text(chain_pems[-1])
    args = ["verify", *(["-x509_strict"] if strict else []), "-purpose", purpose, "-CAfile", "roots.pem"]
    if len(chain_pems) > 2:
        args += ["-untrusted", "intermediates.pem"]
    result = subprocess.run(
        ["openssl", *args, "leaf.pem"], cwd=work, capture_output=True, text=True, timeout=30
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl verify: {result.stdout.strip()} {result.stderr.strip()}")
    return result.stdout
