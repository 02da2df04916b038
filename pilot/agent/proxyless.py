"""The agent beside a proxyless gRPC application: its gRPC xDS bootstrap instead of Envoy's.

Istio's agent with ``GRPC_XDS_BOOTSTRAP`` and ``DISABLE_ENVOY`` (pkg/istio-agent/agent.go
``generateGRPCBootstrap``; the ``grpc-agent`` injection template) runs no Envoy and no SDS server:
it gets the workload certificate, writes it with the key and the root to its certificate folder
(Istio's ``OUTPUT_CERTS``), renews them there, proxies the application's xDS to the control plane,
and writes the bootstrap the application's gRPC reads:

- ``xds_servers``: the agent's xDS socket (``unix://.../etc/istio/proxy/XDS``), insecure: the agent
  adds the token on its way to pilot's secure port, as for Envoy;
- ``node``: the agent's node id and metadata with ``GENERATOR: grpc``;
- ``certificate_providers``: ``default``, gRPC's ``file_watcher`` over the certificate folder,
  what pilot's proxyless TLS contexts name (pilot.grpc_bootstrap).

The bootstrap is written last, once the certificate files and the xDS socket are there, so an
application started when it appears finds everything it names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pilot.agent.workload_key import PUBLIC, write_file
from pilot.grpc_bootstrap import build_grpc_bootstrap, unix_server_uri

__all__ = ["write_grpc_bootstrap"]


def write_grpc_bootstrap(
    path: Path, node_id: str, xds_socket: Path, cert_dir: Path, metadata: Mapping[str, Any]
) -> dict[str, Any]:
    """Write (atomically) and return the gRPC bootstrap of a proxyless workload."""
    bootstrap = build_grpc_bootstrap(
        node_id, unix_server_uri(xds_socket), metadata=metadata, cert_dir=cert_dir
    )
    write_file(path, json.dumps(bootstrap, indent=2).encode(), PUBLIC)
    return bootstrap
