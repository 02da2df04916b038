"""A gRPC service without protos for proxyless tests: ``/pilot.test.Echo/Who`` answers the
backend's name, so a test asserts which backend took each call.

Built on grpc's generic handlers (bytes in, bytes out). A call whose metadata has ``sleep-ms``
sleeps that long first (for timeouts); one whose ``fail-on`` names the backend fails with
UNAVAILABLE (for retries). ``/pilot.test.Echo/Peer`` answers the caller's SPIFFE id (over mTLS, from
grpc's auth context), ``plaintext`` without a client certificate.
"""

from __future__ import annotations

import time
from concurrent import futures
from typing import Any

import grpc

METHOD = "/pilot.test.Echo/Who"
PEER_METHOD = "/pilot.test.Echo/Peer"
SERVICE = "pilot.test.Echo"


def who_handler(name: str) -> grpc.RpcMethodHandler:
    def answer(request: bytes, context: Any) -> bytes:
        metadata = dict(context.invocation_metadata())
        if metadata.get("fail-on") == name:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{name} fails on request")
        sleep_ms = metadata.get("sleep-ms")
        if sleep_ms:
            time.sleep(int(sleep_ms) / 1000)
        return name.encode()

    return grpc.unary_unary_rpc_method_handler(answer)


def peer_handler() -> grpc.RpcMethodHandler:
    def answer(request: bytes, context: Any) -> bytes:
        # grpc-core's auth context of a TLS peer: ``peer_spiffe_id`` holds the certificate's SPIFFE
        # id (its one URI SAN); a plain-text peer has no such property.
        ids = context.auth_context().get("peer_spiffe_id") or []
        return b",".join(ids) or b"plaintext"

    return grpc.unary_unary_rpc_method_handler(answer)


def handlers(name: str) -> dict[str, grpc.RpcMethodHandler]:
    """The methods of the test service, answering as ``name``."""
    return {"Who": who_handler(name), "Peer": peer_handler()}


class EchoBackend:
    """One in-process gRPC server on 127.0.0.1 (a free port) answering its ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(SERVICE, handlers(name))
        self._server.add_generic_rpc_handlers((handler,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def start(self) -> EchoBackend:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None).wait(5)
