"""A stand-in for pilot's secure port: the real CSR service and a small ADS, over TLS from the mesh CA.

The ADS answers each type's first request with the resources it was given (state of the world,
one nonce per response) and checks the bearer token as the secure port does; a request for
``ABORT_TYPE`` ends the stream with PERMISSION_DENIED, as a node claiming another namespace is.
"""

from __future__ import annotations

import asyncio
import datetime
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from pilot.ca.authority import CaSettings, CertificateAuthority, load_or_create
from pilot.ca.csr_service import CertificateService, bearer_token
from pilot.ca.identity import ServiceAccount
from pilot.ca.server_credentials import istiod_server_credentials
from pilot.ca.tokens import FolderTokenAuthenticator, issue_token, load_or_create_signing_key
from pilot.errors import AuthenticationError

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
ABORT_TYPE = "type.googleapis.com/test.Abort"


def pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


@dataclass
class FakePilot:
    ca_dir: Path
    authority: CertificateAuthority
    port: int = 0
    resources: dict[str, list[any_pb2.Any]] = field(default_factory=dict)
    callers: list[ServiceAccount] = field(default_factory=list)  # one per authenticated ADS stream
    requests: list[discovery_pb2.DiscoveryRequest] = field(default_factory=list)
    _server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def root_pem(self) -> bytes:
        return self.authority.roots_pem.encode()

    def token(
        self,
        account: ServiceAccount,
        lifetime: datetime.timedelta = datetime.timedelta(hours=1),
        issued_at: datetime.datetime | None = None,
    ) -> str:
        return issue_token(load_or_create_signing_key(self.ca_dir), account, lifetime, issued_at=issued_at)

    async def start(self) -> FakePilot:
        authenticator = FolderTokenAuthenticator.from_ca_dir(self.ca_dir)
        server = grpc.aio.server()
        CertificateService(self.authority, authenticator).add_to(server)
        handler = grpc.stream_stream_rpc_method_handler(
            self._ads(authenticator),
            request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
            response_serializer=discovery_pb2.DiscoveryResponse.SerializeToString,
        )
        delta = grpc.stream_stream_rpc_method_handler(
            self._delta_ads(authenticator),
            request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
            response_serializer=discovery_pb2.DeltaDiscoveryResponse.SerializeToString,
        )
        methods = {"StreamAggregatedResources": handler, "DeltaAggregatedResources": delta}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(ADS_SERVICE, methods),))
        self.port = server.add_secure_port(
            f"127.0.0.1:{self.port}", istiod_server_credentials(self.authority)
        )
        await server.start()
        self._server = server
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(None)
            self._server = None

    async def _authenticate(
        self, authenticator: FolderTokenAuthenticator, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ServiceAccount:
        """The caller the stream's bearer token proves (recorded), or the stream ends UNAUTHENTICATED."""
        try:
            caller = authenticator.verify(bearer_token(context.invocation_metadata()))
        except AuthenticationError as err:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(err))
        self.callers.append(caller)
        return caller

    def _ads(self, authenticator: FolderTokenAuthenticator) -> Any:
        async def stream(
            requests: AsyncIterator[discovery_pb2.DiscoveryRequest],
            context: grpc.aio.ServicerContext[Any, Any],
        ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
            caller = await self._authenticate(authenticator, context)
            sent: set[str] = set()
            nonce = 0
            async for request in requests:
                self.requests.append(request)
                if request.type_url == ABORT_TYPE:
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{caller} may not ask for that")
                if request.type_url in sent or request.type_url not in self.resources:
                    continue
                sent.add(request.type_url)
                nonce += 1
                yield discovery_pb2.DiscoveryResponse(
                    version_info="1",
                    type_url=request.type_url,
                    nonce=str(nonce),
                    resources=self.resources[request.type_url],
                )

        return stream

    def _delta_ads(self, authenticator: FolderTokenAuthenticator) -> Any:
        """Delta ADS: each type's first request gets every resource of that type, named ``r<i>``."""

        async def stream(
            requests: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
            context: grpc.aio.ServicerContext[Any, Any],
        ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
            await self._authenticate(authenticator, context)
            sent: set[str] = set()
            async for request in requests:
                if request.type_url in sent or request.type_url not in self.resources:
                    continue
                sent.add(request.type_url)
                yield discovery_pb2.DeltaDiscoveryResponse(
                    type_url=request.type_url,
                    nonce=f"delta-{len(sent)}",
                    resources=[
                        discovery_pb2.Resource(name=f"r{i}", version="1", resource=resource)
                        for i, resource in enumerate(self.resources[request.type_url])
                    ],
                )

        return stream


async def start_fake_pilot(
    ca_dir: Path, resources: Mapping[str, Sequence[any_pb2.Any]] | None = None, port: int = 0
) -> FakePilot:
    authority = load_or_create(ca_dir, CaSettings())
    pilot = FakePilot(ca_dir, authority, port, {k: list(v) for k, v in (resources or {}).items()})
    return await pilot.start()


class FakePilotThread:
    """A FakePilot on its own event loop in a thread, for tests that block (a real Envoy, HTTP)."""

    def __init__(self, ca_dir: Path, resources: Mapping[str, Sequence[any_pb2.Any]] | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-pilot", daemon=True)
        self._thread.start()
        self.pilot: FakePilot = self._call(start_fake_pilot(ca_dir, resources))

    @staticmethod
    def root_only(ca_dir: Path) -> bytes:
        """The root of a CA in ``ca_dir`` (made if missing), with no server: for an unreachable pilot."""
        return load_or_create(ca_dir, CaSettings()).roots_pem.encode()

    def _call(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=30)

    def close(self) -> None:
        try:
            self._call(self.pilot.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
