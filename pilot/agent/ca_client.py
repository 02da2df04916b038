"""CreateCertificate against pilot's CA (Istio's citadel CA client, security/pkg/nodeagent/caclient).

One call per certificate: a fresh key and CSR, the token as it is now, the lifetime asked for
(Istio's SECRET_TTL). A refusal (UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT) is final
for that call and says why; a pilot that cannot be reached is ``CaUnavailableError``, which the
caller retries.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc

from pilot._gen import ca_pb2, ca_pb2_grpc
from pilot.agent.control_plane import bearer_metadata
from pilot.agent.workload_key import WorkloadSecret, certificate_request, new_key, secret_from_chain
from pilot.ca.authority import now
from pilot.ca.identity import ServiceAccount
from pilot.errors import AuthenticationError, PilotError

log = logging.getLogger("pilot.agent")

# Statuses that mean "try again later", not "no".
_TRANSIENT = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)
CALL_TIMEOUT = 10.0


class CertificateRefusedError(PilotError):
    """The CA answered no (or the agent has no token to ask with); retrying the same call will not help."""


class CaUnavailableError(PilotError):
    """The CA could not be reached or did not answer in time."""


@dataclass(frozen=True, slots=True)
class CaClient:
    """Asks pilot's CA for ``account``'s certificate over ``channel``."""

    channel: grpc.aio.Channel
    token_file: Path
    account: ServiceAccount
    trust_domain: str
    ttl: datetime.timedelta

    async def fetch(self) -> WorkloadSecret:
        key = new_key()
        request = ca_pb2.IstioCertificateRequest(
            csr=certificate_request(key, self.account, self.trust_domain),
            validity_duration=int(self.ttl.total_seconds()),
        )
        try:
            metadata = bearer_metadata(self.token_file)
        except AuthenticationError as err:
            raise CertificateRefusedError(str(err)) from err
        stub = ca_pb2_grpc.IstioCertificateServiceStub(self.channel)
        try:
            response = await stub.CreateCertificate(request, metadata=metadata, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as err:
            message = f"CreateCertificate: {err.code().name}: {err.details()}"
            if err.code() in _TRANSIENT:
                raise CaUnavailableError(message) from err
            raise CertificateRefusedError(message) from err
        secret = secret_from_chain(key, list(response.cert_chain), now())
        log.info(
            "certificate serial %x for %s, valid until %s", secret.serial, self.account, secret.not_after
        )
        return secret
