"""Istio's ``IstioCertificateService/CreateCertificate`` (istio/api security/v1alpha1/ca.proto) as a
grpc.aio servicer, so Istio's own agent can get its certificate from pilot.

One call (istio/istio security/pkg/server/ca/server.go CreateCertificate): authenticate the bearer
token of the ``authorization`` metadata, sign the CSR for the caller's identity, answer the chain
leaf first and root last. Refusals say why, with the status Istio uses where it has one:
UNAUTHENTICATED for a missing, malformed, expired, foreign or wrong-audience token; INVALID_ARGUMENT
for a CSR that does not parse, verify or fit (Istio's CSRError/TTLError); PERMISSION_DENIED for a CSR
naming someone other than the caller (Istio certifies the caller regardless: see
pilot.ca.workload_certificate). A refusal ends that call only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc

from pilot._gen import ca_pb2, ca_pb2_grpc
from pilot.ca import csr_metrics
from pilot.ca.authority import CertificateAuthority
from pilot.ca.bearer import bearer_token
from pilot.ca.identity import ServiceAccount
from pilot.ca.tokens import TokenAuthenticator
from pilot.ca.workload_certificate import issue_workload_certificate
from pilot.errors import AuthenticationError, CertificateRequestError, IdentityMismatchError

log = logging.getLogger("pilot.ca")

SERVICE = "istio.v1.auth.IstioCertificateService"


class CertificateService:
    """The servicer; ``add_to(server)`` registers it on a grpc.aio server."""

    def __init__(self, authority: CertificateAuthority, authenticator: TokenAuthenticator) -> None:
        self._authority = authority
        self._authenticator = authenticator

    def add_to(self, server: grpc.aio.Server) -> None:
        ca_pb2_grpc.add_IstioCertificateServiceServicer_to_server(self, server)

    async def CreateCertificate(  # noqa: N802 - the gRPC method name
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        csr_metrics.csr_requests.inc()
        peer = context.peer()
        try:
            caller: ServiceAccount = await self._authenticator.authenticate(
                bearer_token(context.invocation_metadata())
            )
        except AuthenticationError as err:
            csr_metrics.authentication_failures.inc()
            log.info("CSR from %s refused: %s", peer, err)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"authentication failed: {err}")
        try:
            # Signing (and verifying an RSA CSR) is CPU work: keep it off the event loop xDS shares.
            issued = await asyncio.to_thread(
                issue_workload_certificate, self._authority, request.csr, caller, request.validity_duration
            )
        except IdentityMismatchError as err:
            csr_metrics.sign_errors.labels("IDENTITY_MISMATCH").inc()
            log.warning("CSR from %s (%s) refused: %s", peer, caller, err)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(err))
        except CertificateRequestError as err:
            csr_metrics.sign_errors.labels("CSR_ERROR").inc()
            log.info("CSR from %s (%s) refused: %s", peer, caller, err)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"CSR refused: {err}")
        except Exception:
            csr_metrics.sign_errors.labels("CERT_GEN_ERROR").inc()
            log.exception("signing a CSR from %s (%s) failed", peer, caller)
            await context.abort(grpc.StatusCode.INTERNAL, "the CA could not sign the certificate")
        csr_metrics.issued.inc()
        log.info("issued %s to %s, valid until %s", caller, peer, issued.leaf.not_valid_after_utc)
        return ca_pb2.IstioCertificateResponse(cert_chain=list(issued.chain_pems))
