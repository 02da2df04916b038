"""A proxyless gRPC server in its own process: ``python -m tests.proxyless.xds_server NAME PORT``.

An xDS-enabled grpcio server (``grpc.server(xds=True)``) on 0.0.0.0:PORT answering NAME on
``/pilot.test.Echo/Who`` and the caller's SPIFFE id on ``/pilot.test.Echo/Peer``. Its port has xDS
credentials (gRFC A29): the listener pilot sends decides plain text or mTLS, with the certificates
of the bootstrap's certificate provider. It asks pilot for the listener
``xds.istio.io/grpc/lds/inbound/0.0.0.0:PORT`` and serves only once it has a valid one (gRFC
A36), so a call answered by NAME shows that pilot's server listener was accepted. Runs until
its standard input closes.
"""

from __future__ import annotations

import sys
from concurrent import futures

import grpc

from tests.proxyless.echo import SERVICE, handlers


def main(name: str, port: int) -> int:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), xds=True)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers(name)),))
    server.add_secure_port(f"0.0.0.0:{port}", grpc.xds_server_credentials(grpc.insecure_server_credentials()))
    server.start()
    sys.stdin.read()
    server.stop(grace=None).wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
