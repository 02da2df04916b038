"""Caller authentication for the CA: the authenticator interface and folder-mode service-account tokens.

In Kubernetes a workload proves its service account with a projected token (audience ``istio-ca``)
that istiod checks through TokenReview (istio/istio security/pkg/server/ca/authenticate/kubeauth/
kube_jwt.go). Without Kubernetes, ``pilot token`` stands in for the API server: it signs a JWT with the
same claims (Kubernetes pkg/serviceaccount/claims.go: iss, sub ``system:serviceaccount:NS:SA``, aud,
exp, iat, nbf, jti and the ``kubernetes.io`` block) with an ES256 key kept in the CA directory,
separate from the CA key, and ``FolderTokenAuthenticator`` verifies it. Both are ``TokenAuthenticator``s,
so a TokenReview authenticator plugs in beside this one.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pilot.ca import directory
from pilot.ca.authority import now, private_key_pem
from pilot.ca.identity import ServiceAccount
from pilot.errors import AuthenticationError, ConfigError

# TOKEN_AUDIENCES default (pilot/pkg/features/security.go) and the agent's projected token audience.
DEFAULT_AUDIENCE = "istio-ca"
# The issuer of folder-mode tokens; a Kubernetes API server's is its service-account issuer URL.
ISSUER = "pilot"
ALGORITHM = "ES256"
# go-jose's DefaultLeeway, which the Kubernetes token authenticator applies to exp/nbf/iat.
LEEWAY = datetime.timedelta(minutes=1)
# A Kubernetes service-account token is about 1 KiB; far larger is refused before decoding.
MAX_TOKEN_BYTES = 4096


class TokenAuthenticator(Protocol):
    """Turns a bearer token into the service account it proves (Istio's ``security.Authenticator``)."""

    async def authenticate(self, token: str) -> ServiceAccount:
        """The caller's service account; AuthenticationError with the reason when the token proves none."""
        ...


def load_or_create_signing_key(ca_dir: Path) -> ec.EllipticCurvePrivateKey:
    """The token-signing key of ``ca_dir``, created (P-256, 0600) when missing."""
    path = ca_dir / directory.TOKEN_SIGNING_KEY
    with directory.locked(ca_dir):
        if not path.exists():
            directory.write_atomically(
                path, private_key_pem(ec.generate_private_key(ec.SECP256R1())), directory.PRIVATE
            )
        data = directory.read(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{path}: not an unencrypted PEM private key ({err})") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError(f"{path}: the token-signing key must be ECDSA P-256 (ES256)")
    return key


def issue_token(
    key: ec.EllipticCurvePrivateKey,
    account: ServiceAccount,
    lifetime: datetime.timedelta,
    audience: str = DEFAULT_AUDIENCE,
    issued_at: datetime.datetime | None = None,
) -> str:
    """A JWT with a Kubernetes service-account token's claims for ``account``."""
    if lifetime <= datetime.timedelta(0):
        raise ValueError("a token's lifetime must be positive")
    start = issued_at or now()
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": account.username,
        "aud": [audience],
        "iat": start,
        "nbf": start,
        "exp": start + lifetime,
        "jti": str(uuid.uuid4()),
        "kubernetes.io": {"namespace": account.namespace, "serviceaccount": {"name": account.name}},
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def _describe(err: jwt.PyJWTError, audiences: Sequence[str]) -> str:
    if isinstance(err, jwt.ExpiredSignatureError):
        return "token has expired"
    if isinstance(err, jwt.ImmatureSignatureError):
        return "token is not valid yet"
    if isinstance(err, jwt.InvalidAudienceError):
        return f"token audience is not {' or '.join(audiences)}"
    if isinstance(err, jwt.InvalidSignatureError):
        return "token signature does not verify with this CA's token-signing key"
    if isinstance(err, jwt.InvalidAlgorithmError):
        return f"token is not signed with {ALGORITHM}"
    if isinstance(err, jwt.MissingRequiredClaimError):
        return f"token has no {err.claim!r} claim"
    if isinstance(err, jwt.InvalidIssuerError):
        return f"token issuer is not {ISSUER!r}"
    if isinstance(err, jwt.DecodeError):
        return f"token is not a JWT ({err})"
    return f"token is invalid ({err})"


def _account_from(claims: dict[str, Any]) -> ServiceAccount:
    """The account the claims name; ``sub`` and the ``kubernetes.io`` block must agree."""
    try:
        account = ServiceAccount.from_username(str(claims["sub"]))
    except ValueError as err:
        raise AuthenticationError(f"token subject: {err}") from err
    block = claims.get("kubernetes.io")
    if isinstance(block, dict):
        serviceaccount = block.get("serviceaccount")
        name = serviceaccount.get("name") if isinstance(serviceaccount, dict) else None
        if block.get("namespace") != account.namespace or name != account.name:
            raise AuthenticationError("token's kubernetes.io claims do not match its subject")
    return account


@dataclass(frozen=True, slots=True)
class FolderTokenAuthenticator:
    """Verifies ``pilot token`` tokens: ES256 signature by the CA directory's token-signing key,
    issuer, audience, exp/nbf/iat with a one-minute leeway, and the service-account subject."""

    public_key: ec.EllipticCurvePublicKey
    audiences: tuple[str, ...] = (DEFAULT_AUDIENCE,)

    @classmethod
    def from_ca_dir(
        cls, ca_dir: Path, audiences: tuple[str, ...] = (DEFAULT_AUDIENCE,)
    ) -> FolderTokenAuthenticator:
        return cls(load_or_create_signing_key(ca_dir).public_key(), audiences)

    def verify(self, token: str) -> ServiceAccount:
        """The synchronous check behind ``authenticate`` (no I/O: the key is in memory)."""
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthenticationError(
                f"token of {len(token)} bytes is larger than the {MAX_TOKEN_BYTES} allowed"
            )
        if not token:
            raise AuthenticationError("no token")
        try:
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=[ALGORITHM],
                audience=list(self.audiences),
                issuer=ISSUER,
                leeway=LEEWAY,
                options={"require": ["exp", "iat", "nbf", "iss", "sub", "aud"]},
            )
        except jwt.PyJWTError as err:
            raise AuthenticationError(_describe(err, self.audiences)) from err
        return _account_from(claims)

    async def authenticate(self, token: str) -> ServiceAccount:
        return self.verify(token)
