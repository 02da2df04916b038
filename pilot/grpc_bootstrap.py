"""The gRPC xDS bootstrap: what a proxyless gRPC application names in ``GRPC_XDS_BOOTSTRAP``.

gRPC's xDS client reads its control plane and its node from a JSON file (gRFC A27, "xDS
bootstrap"; Istio's agent writes it in pkg/istio-agent/grpcxds/grpc_bootstrap.go):

- ``xds_servers``: pilot's ADS address with insecure channel credentials, and ``server_features``
  ``["xds_v3"]`` (the v3 transport; gRPC speaks state of the world only, never delta);
- ``node``: the id and Istio's node metadata, with ``GENERATOR: grpc`` (what makes pilot answer
  in the shapes gRPC accepts, Istio's ``Proxy.IsProxylessGrpc``), ``NAMESPACE`` and ``LABELS``;
- ``server_listener_resource_name_template``: the listener name an xDS-enabled gRPC server asks
  for, ``xds.istio.io/grpc/lds/inbound/ADDRESS:PORT`` as Istio names it.

``certificate_providers`` (the ``file_watcher`` plugin reading the workload certificate for xDS
credentials) is not written: pilot's proxyless listeners and clusters carry no TLS yet.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any, Final, Protocol

from pilot.bootstrap import parse_address
from pilot.translate.proxy import GRPC_GENERATOR, Proxy

__all__ = ["SERVER_LISTENER_TEMPLATE", "build_grpc_bootstrap", "run"]

SERVER_LISTENER_TEMPLATE: Final = "xds.istio.io/grpc/lds/inbound/%s"


def build_grpc_bootstrap(
    node_id: str,
    xds_host: str,
    xds_port: int,
    *,
    labels: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The bootstrap as a dict (``json.dumps`` it). ``metadata`` goes into the node as given,
    under ``GENERATOR``, ``NAMESPACE`` (from the node id unless given) and ``LABELS``."""
    node_metadata: dict[str, Any] = dict(metadata or {})
    node_metadata["GENERATOR"] = GRPC_GENERATOR
    node_metadata.setdefault("NAMESPACE", Proxy.from_node(node_id, node_metadata).namespace)
    if labels:
        node_metadata["LABELS"] = dict(labels)
    host = f"[{xds_host}]" if ":" in xds_host else xds_host
    return {
        "xds_servers": [
            {
                "server_uri": f"{host}:{xds_port}",
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
        ],
        "node": {"id": node_id, "metadata": node_metadata, "locality": {}},
        "server_listener_resource_name_template": SERVER_LISTENER_TEMPLATE,
    }


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
        args.node_id, host, port, labels=dict(args.label), metadata=dict(args.metadata)
    )
    sys.stdout.write(json.dumps(bootstrap, indent=2) + "\n")
    return 0
