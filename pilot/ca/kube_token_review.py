"""Kubernetes service-account tokens checked by the API server (TokenReview), as istiod's
KubeJWTAuthenticator does (security/pkg/server/ca/authenticate/kubeauth/kube_jwt.go).

The token is sent to the API server with the audiences the CA accepts (``istio-ca``); the answer
must say ``authenticated``, name a service account (``system:serviceaccount:NS:SA``) and, when the
server reports audiences, include one of ours (Istio's ``checkAudience``). The request itself goes
through pilot's Kubernetes client (pilot.sources.kube_writes.review_token), injected as ``review``
so this module stays free of the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pilot.ca.identity import ServiceAccount
from pilot.ca.tokens import DEFAULT_AUDIENCE, MAX_TOKEN_BYTES
from pilot.errors import AuthenticationError

# (token, audiences) → the TokenReview's status; blocking (called in a thread).
Review = Callable[[str, list[str]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class TokenReviewAuthenticator:
    """A TokenAuthenticator that asks the Kubernetes API server."""

    review: Review
    audiences: tuple[str, ...] = (DEFAULT_AUDIENCE,)

    async def authenticate(self, token: str) -> ServiceAccount:
        if not token:
            raise AuthenticationError("no token")
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthenticationError(
                f"token of {len(token)} bytes is larger than the {MAX_TOKEN_BYTES} allowed"
            )
        try:
            status = await asyncio.to_thread(self.review, token, list(self.audiences))
        except Exception as err:
            # Fail-closed: no answer from the API server authenticates nobody.
            raise AuthenticationError(f"the TokenReview failed: {type(err).__name__}: {err}") from err
        return self.account_from(status)

    def account_from(self, status: dict[str, Any]) -> ServiceAccount:
        """The service account a TokenReview status proves; AuthenticationError saying why not."""
        if status.get("authenticated") is not True:
            reason = str(status.get("error") or "the API server did not authenticate it")
            raise AuthenticationError(f"token is not valid: {reason[:256]}")
        user = status.get("user")
        username = str(user.get("username") or "") if isinstance(user, dict) else ""
        answered = status.get("audiences")
        if isinstance(answered, list) and answered and not set(map(str, answered)) & set(self.audiences):
            raise AuthenticationError(f"token audience is not {' or '.join(self.audiences)}")
        try:
            return ServiceAccount.from_username(username)
        except ValueError as err:
            raise AuthenticationError(f"token is not a service account's: {err}") from err
