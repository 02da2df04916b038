"""The secure port's caller contract: ``authorization: Bearer <token>`` metadata, proved by a token
authenticator (folder-mode tokens or Kubernetes TokenReview).

One contract for every call on the port: CreateCertificate (pilot.ca.csr_service), ADS streams
(pilot.server.authentication) and the debug endpoints over HTTP (an ``Authorization`` header).
Istio reads the same header for its KubeJWTAuthenticator (security/pkg/server/ca/authenticate/
kubeauth/kube_jwt.go, security.ExtractBearerToken).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pilot.ca.identity import ServiceAccount
from pilot.ca.tokens import MAX_TOKEN_BYTES, TokenAuthenticator
from pilot.errors import AuthenticationError

BEARER = "Bearer "
AUTHORIZATION = "authorization"

# gRPC invocation metadata (or HTTP headers): (key, value) pairs, binary values as bytes.
Metadata = Iterable[tuple[str, str | bytes]] | None


def bearer_token(metadata: Metadata) -> str:
    """The token of ``authorization: Bearer TOKEN``; AuthenticationError when there is none."""
    values = [value for key, value in (metadata or ()) if key.lower() == AUTHORIZATION]
    if not values:
        raise AuthenticationError("no authorization metadata: send 'authorization: Bearer <token>'")
    value = values[0] if isinstance(values[0], str) else values[0].decode("utf-8", errors="replace")
    if len(value) > MAX_TOKEN_BYTES + len(BEARER):
        raise AuthenticationError(f"token of {len(value)} bytes is larger than the {MAX_TOKEN_BYTES} allowed")
    if not value.startswith(BEARER):
        raise AuthenticationError("authorization metadata is not 'Bearer <token>'")
    return value[len(BEARER) :].strip()


@dataclass(frozen=True, slots=True)
class BearerAuthenticator:
    """The caller of a call whose metadata carries a bearer token ``tokens`` accepts."""

    tokens: TokenAuthenticator

    async def authenticate_metadata(self, metadata: Metadata) -> ServiceAccount:
        """The caller's service account; AuthenticationError saying why not."""
        return await self.tokens.authenticate(bearer_token(metadata))
