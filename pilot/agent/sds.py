"""The SDS server Envoy reads its workload certificate from (Istio's security/pkg/nodeagent/sds).

Envoy opens ``SecretDiscoveryService/StreamSecrets`` on the agent's Unix socket for each secret a
listener or cluster names with ``sds_config`` ``sds-grpc``: state-of-the-world SDS, since pilot
writes ``api_type: GRPC`` there as istiod does (delta SDS and FetchSecrets answer UNIMPLEMENTED).
Istio's names are served: ``default`` (``tls_certificate``: the chain and the key), ``ROOTCA``
(``validation_context``: the mesh roots), and certificates read from files, ``file-cert:CERT~KEY``
and ``file-root:CA`` (pilot.agent.file_secrets). Other names (``kubernetes://``) and file resources
whose files cannot be read are logged and left unanswered: Envoy keeps that listener or cluster
warming rather than take an empty answer, which it would NACK ("Missing SDS resources").

Per stream, the xDS rules (https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#ack-and-nack-semantics):
a request whose ``response_nonce`` is not the latest nonce sent is stale and ignored; one with
``error_detail`` is a NACK of that response (logged, not resent: the same bytes would fail again);
one that names other resources is answered with them; otherwise it is an ACK. A rotated secret is
pushed to every stream that asked for it, as a new response with a new version and nonce.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from google.protobuf import any_pb2

from pilot.agent.file_secrets import FileSecrets, ServedSecret
from pilot.agent.secret_cache import SecretCache
from pilot.agent.workload_key import WorkloadSecret

log = logging.getLogger("pilot.agent.sds")

SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
# Istio's security.WorkloadKeyCertResourceName and security.RootCertReqResourceName.
WORKLOAD_SECRET = "default"
ROOT_SECRET = "ROOTCA"


def served_secrets(secret: WorkloadSecret) -> dict[str, ServedSecret]:
    """``default`` and ``ROOTCA`` of ``secret`` as SDS resources."""
    workload = secret_pb2.Secret(
        name=WORKLOAD_SECRET,
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=secret.chain_pem),
            private_key=base_pb2.DataSource(inline_bytes=secret.key_pem),
        ),
    )
    root = secret_pb2.Secret(
        name=ROOT_SECRET,
        validation_context=common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(inline_bytes=secret.root_pem)
        ),
    )
    served = {}
    for message, version in ((workload, f"{secret.serial:x}"), (root, _digest(secret.root_pem))):
        packed = any_pb2.Any()
        packed.Pack(message)
        served[message.name] = ServedSecret(version, packed)
    return served


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass(slots=True)
class SdsStream:
    """One StreamSecrets stream's state: what Envoy asked for, what it was sent, the latest nonce."""

    stream_id: int
    names: frozenset[str] | None = None  # None until the first request
    sent: dict[str, str] = field(default_factory=dict)  # name → version sent
    nonce: str = ""
    _nonces: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    nacks: int = 0

    def on_request(
        self, request: discovery_pb2.DiscoveryRequest, secrets: Mapping[str, ServedSecret]
    ) -> discovery_pb2.DiscoveryResponse | None:
        """The response a request calls for, or None (ACK, NACK, stale)."""
        if request.type_url and request.type_url != SECRET_TYPE:
            log.warning("SDS stream %d: request for %s ignored", self.stream_id, request.type_url)
            return None
        if request.response_nonce and request.response_nonce != self.nonce:
            return None  # answers an older response; the latest one is still to be ACKed or NACKed
        names = frozenset(request.resource_names)
        if request.HasField("error_detail"):
            self.nacks += 1
            log.warning(
                "SDS stream %d: Envoy rejected %s version %s: %s",
                self.stream_id,
                ", ".join(sorted(names)),
                request.version_info or "(none)",
                request.error_detail.message,
            )
            self.names = names
            return None
        if names == self.names:
            return None  # ACK
        self.names = names
        self.sent = {name: version for name, version in self.sent.items() if name in names}
        unknown = sorted(names - secrets.keys())
        if unknown:
            log.warning(
                "SDS stream %d: no secret named %s (served: %s)",
                self.stream_id,
                ", ".join(unknown),
                ", ".join(sorted(secrets)),
            )
        return self._respond(secrets)

    def on_change(self, secrets: Mapping[str, ServedSecret]) -> discovery_pb2.DiscoveryResponse | None:
        """A push of the requested secrets whose content changed since they were sent, or None."""
        if not self.names:
            return None
        if all(self.sent.get(name) == secrets[name].version for name in self.names & secrets.keys()):
            return None
        return self._respond(secrets)

    def _respond(self, secrets: Mapping[str, ServedSecret]) -> discovery_pb2.DiscoveryResponse | None:
        wanted = sorted((self.names or frozenset()) & secrets.keys())
        if not wanted:
            return None
        self.nonce = str(next(self._nonces))
        self.sent.update({name: secrets[name].version for name in wanted})
        return discovery_pb2.DiscoveryResponse(
            version_info="/".join(secrets[name].version for name in wanted),
            resources=[secrets[name].resource for name in wanted],
            type_url=SECRET_TYPE,
            nonce=self.nonce,
        )


class SecretDiscoveryServer(sds_pb2_grpc.SecretDiscoveryServiceServicer):  # type: ignore[misc]
    """The SDS servicer over a SecretCache and the file resources; ``add_to(server)`` registers it.
    ``files`` is polled by whoever runs ``files.poll_forever()`` (the agent)."""

    def __init__(self, cache: SecretCache, files: FileSecrets | None = None) -> None:
        self._cache = cache
        self._files = files if files is not None else FileSecrets()
        self._stream_ids = itertools.count(1)
        self.pushes = 0

    def add_to(self, server: grpc.aio.Server) -> None:
        sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server(self, server)

    def _secrets(self) -> dict[str, ServedSecret]:
        return {**self._files.served(), **served_secrets(self._cache.secret)}

    async def DeltaSecrets(  # noqa: N802 - the gRPC method name
        self, request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest], context: Any
    ) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "DeltaSecrets not implemented: use StreamSecrets")

    async def FetchSecrets(  # noqa: N802 - the gRPC method name
        self, request: discovery_pb2.DiscoveryRequest, context: Any
    ) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "FetchSecrets not implemented: use StreamSecrets")

    async def StreamSecrets(  # noqa: N802 - the gRPC method name
        self, request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest], context: Any
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        stream = SdsStream(next(self._stream_ids))
        generation = self._cache.generation
        file_generation = self._files.generation
        requests = aiter(request_iterator)
        next_request: asyncio.Future[discovery_pb2.DiscoveryRequest] = asyncio.ensure_future(anext(requests))
        next_change: asyncio.Future[int] = asyncio.ensure_future(self._cache.wait_newer(generation))
        next_file_change: asyncio.Future[int] = asyncio.ensure_future(self._files.wait_newer(file_generation))
        try:
            while True:
                done, _ = await asyncio.wait(
                    {next_request, next_change, next_file_change}, return_when=asyncio.FIRST_COMPLETED
                )
                if next_change in done or next_file_change in done:
                    if next_change in done:
                        generation = next_change.result()
                        next_change = asyncio.ensure_future(self._cache.wait_newer(generation))
                    if next_file_change in done:
                        file_generation = next_file_change.result()
                        next_file_change = asyncio.ensure_future(self._files.wait_newer(file_generation))
                    response = stream.on_change(self._secrets())
                    if response is not None:
                        self.pushes += 1
                        yield response
                if next_request in done:
                    try:
                        request = next_request.result()
                    except StopAsyncIteration:
                        return
                    next_request = asyncio.ensure_future(anext(requests))
                    self._files.watch(request.resource_names)
                    response = stream.on_request(request, self._secrets())
                    if response is not None:
                        yield response
        finally:
            for pending in (next_request, next_change, next_file_change):
                pending.cancel()
