"""The gRPC xDS bootstrap: what a proxyless gRPC application names in ``GRPC_XDS_BOOTSTRAP``.

gRPC's xDS client reads its control plane and its node from a JSON file (gRFC A27, "xDS
bootstrap"; Istio's agent writes it in pkg/istio-agent/grpcxds/grpc_bootstrap.go):

- ``xds_servers``: pilot's ADS address with insecure channel credentials, and ``server_features``
  ``["xds_v3"]`` (the v3 transport; gRPC speaks state of the world only, never delta);
- ``node``: the id and Istio's node metadata, with ``GENERATOR: grpc`` (what makes pilot answer
  in the shapes gRPC accepts, Istio's ``Proxy.IsProxylessGrpc``), ``NAMESPACE`` and ``LABELS``;
- ``server_listener_resource_name_template``: the listener name an xDS-enabled gRPC server asks
  for, ``xds.istio.io/grpc/lds/inbound/ADDRESS:PORT`` as Istio names it;
- with a certificate directory, ``certificate_providers``: the instance ``default`` that pilot's
  TLS contexts name (pilot.translate.grpc_tls), gRPC's ``file_watcher`` plugin over the files
  Istio's agent writes there (``cert-chain.pem``, ``key.pem``, ``root-cert.pem``; ``pilot agent
  --proxyless`` keeps them current), read again every ``refresh_interval`` (Istio: 15 minutes).
  A channel or server made with xDS credentials (gRFC A29) takes its certificates from it.
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Protocol

from pilot.bootstrap import parse_address
from pilot.translate.grpc_tls import PROVIDER_INSTANCE  # the instance pilot's TLS contexts name
from pilot.translate.proxy import GRPC_GENERATOR, Proxy

__all__ = [
    "CERTIFICATE_FILES",
    "PROVIDER_INSTANCE",
    "REFRESH_INTERVAL",
    "SERVER_LISTENER_TEMPLATE",
    "build_grpc_bootstrap",
    "certificate_providers",
    "run",
    "tcp_server_uri",
    "unix_server_uri",
]

SERVER_LISTENER_TEMPLATE: Final = "xds.istio.io/grpc/lds/inbound/%s"
# Istio's OUTPUT_CERTS names (pkg/istio-agent/grpcxds GenerateBootstrap), as pilot agent writes them.
CERTIFICATE_FILES: Final = {
    "certificate_file": "cert-chain.pem",
    "private_key_file": "key.pem",
    "ca_certificate_file": "root-cert.pem",
}
# Istio's refresh interval for the file_watcher plugin ("TODO use a more appropriate interval").
REFRESH_INTERVAL: Final = datetime.timedelta(minutes=15)


def tcp_server_uri(host: str, port: int) -> str:
    """pilot's plain xDS port as a gRPC target."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def unix_server_uri(socket: Path) -> str:
    """A Unix socket as a gRPC target (``pilot agent --proxyless``'s xDS proxy), as Istio's agent
    names its ``XDS`` socket."""
    return f"unix://{socket.absolute()}"


def certificate_providers(cert_dir: Path, refresh: datetime.timedelta = REFRESH_INTERVAL) -> dict[str, Any]:
    """``certificate_providers`` with gRPC's ``file_watcher`` plugin over ``cert_dir``'s files; the
    interval as a protobuf JSON duration (Istio marshals a Duration)."""
    folder = cert_dir.absolute()
    config: dict[str, Any] = {key: str(folder / name) for key, name in CERTIFICATE_FILES.items()}
    config["refresh_interval"] = f"{refresh.total_seconds():g}s"
    return {PROVIDER_INSTANCE: {"plugin_name": "file_watcher", "config": config}}


def build_grpc_bootstrap(
    node_id: str,
    server_uri: str,
    *,
    labels: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    cert_dir: Path | None = None,
    refresh: datetime.timedelta = REFRESH_INTERVAL,
) -> dict[str, Any]:
    """The bootstrap as a dict (``json.dumps`` it). ``metadata`` goes into the node as given,
    under ``GENERATOR``, ``NAMESPACE`` (from the node id unless given) and ``LABELS``; with
    ``cert_dir``, the ``certificate_providers`` reading the workload certificate there."""
    node_metadata: dict[str, Any] = dict(metadata or {})
    node_metadata["GENERATOR"] = GRPC_GENERATOR
    node_metadata.setdefault("NAMESPACE", Proxy.from_node(node_id, node_metadata).namespace)
    if labels:
        node_metadata["LABELS"] = dict(labels)
    bootstrap: dict[str, Any] = {
        "xds_servers": [
            {
                "server_uri": server_uri,
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
        ],
        "node": {"id": node_id, "metadata": node_metadata, "locality": {}},
        "server_listener_resource_name_template": SERVER_LISTENER_TEMPLATE,
    }
    if cert_dir is not None:
        bootstrap["certificate_providers"] = certificate_providers(cert_dir, refresh)
    return bootstrap


class GrpcBootstrapArgs(Protocol):
    """What ``run`` reads of ``pilot bootstrap --grpc``'s options."""

    @property
    def node_id(self) -> str: ...
    @property
    def xds_address(self) -> str: ...
    @property
    def label(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def metadata(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def delta(self) -> bool: ...
    @property
    def cert_dir(self) -> Path | None: ...


def run(args: GrpcBootstrapArgs) -> int:
    """``pilot bootstrap --grpc``: print the gRPC xDS bootstrap JSON."""
    if args.delta:
        print("pilot bootstrap: --delta: gRPC's xDS client speaks state of the world only", file=sys.stderr)
        return 2
    try:
        host, port = parse_address(args.xds_address)
    except ValueError as err:
        print(f"pilot bootstrap: {err}", file=sys.stderr)
        return 2
    bootstrap = build_grpc_bootstrap(
        args.node_id,
        tcp_server_uri(host, port),
        labels=dict(args.label),
        metadata=dict(args.metadata),
        cert_dir=args.cert_dir,
    )
    sys.stdout.write(json.dumps(bootstrap, indent=2) + "\n")
    return 0
