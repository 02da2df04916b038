"""TLS credentials of the secure port (Istio's 15012) from the mesh CA.

istiod serves 15012 with a certificate its own CA issues for its DNS names
(pilot/pkg/bootstrap/certcontroller.go initDNSCertsIstiod → ca.GenKeyCert): ``istiod.istio-system.svc``
plus the hosts the operator names, lifetime SelfSignedCACertTTL (10 years, clamped to the signing
chain), an ECDSA key when the CA's key is ECDSA and RSA 2048 otherwise. Clients trust root-cert.pem
and check one of those names (the agent's ISTIOD_SAN / discovery host).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import grpc
from cryptography.hazmat.primitives.asymmetric import ec

from pilot.ca.authority import (
    CertificateAuthority,
    KeyAlgorithm,
    certificate_pem,
    generate_key,
    private_key_pem,
)
from pilot.ca.workload_certificate import issue_server_certificate

ISTIOD_HOST = "istiod.istio-system.svc"
SERVING_LIFETIME = datetime.timedelta(days=3650)


def istiod_key_and_chain(
    authority: CertificateAuthority,
    hosts: Sequence[str] = (),
    lifetime: datetime.timedelta = SERVING_LIFETIME,
) -> tuple[bytes, bytes]:
    """(PEM private key, PEM chain: leaf then intermediates) for istiod's names and ``hosts``."""
    algorithm = (
        KeyAlgorithm.ECDSA_P256 if isinstance(authority.key, ec.EllipticCurvePrivateKey) else KeyAlgorithm.RSA
    )
    key = generate_key(algorithm)
    leaf = issue_server_certificate(authority, key.public_key(), [ISTIOD_HOST, *hosts], lifetime)
    chain = "".join(certificate_pem(cert) for cert in (leaf, *authority.chain_above_leaf))
    return private_key_pem(key), chain.encode()


def istiod_server_credentials(
    authority: CertificateAuthority, hosts: Sequence[str] = ()
) -> grpc.ServerCredentials:
    """Server credentials for the secure port: a fresh key and istiod's certificate from ``authority``.

    Client certificates are not requested: grpc's Python API offers "require and verify" or
    "don't request", not Istio's "verify if presented", and the CSR caller has no certificate yet.
    """
    key_pem, chain_pem = istiod_key_and_chain(authority, hosts)
    return grpc.ssl_server_credentials([(key_pem, chain_pem)])
