"""Envoy bootstrap for a proxy that gets all of its config from pilot over ADS.

The bootstrap is the only static config an Envoy needs: who it is (the node), where the control
plane is (the static ``xds-grpc`` cluster, HTTP/2 because xDS is gRPC) and that listeners and
clusters come over one aggregated stream (ADS). Everything else (routes, endpoints) is named by
those and fetched over the same stream, as Istio's sidecar bootstrap does. An Envoy run by
``pilot agent`` (``build_agent_bootstrap``) reaches both ``xds-grpc`` and ``sds-grpc`` over the
agent's Unix sockets instead.
See https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#aggregated-discovery-service
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any, Final, Protocol

import yaml

from pilot.config.addresses import is_ip

__all__ = [
    "SDS_CLUSTER",
    "XDS_CLUSTER",
    "build_agent_bootstrap",
    "build_bootstrap",
    "istio_node_metadata",
    "parse_address",
    "run",
]

XDS_CLUSTER: Final = "xds-grpc"
# The cluster Istio's bootstrap names for the agent's SDS socket; the SDS references pilot
# writes into listeners and clusters name it (tools/packaging/common/envoy_bootstrap.json).
SDS_CLUSTER: Final = "sds-grpc"
_HTTP_PROTOCOL_OPTIONS: Final = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_DOWNSTREAM_CONNECTIONS: Final = (
    "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"
)


def _duration(seconds: float) -> str:
    """Protobuf JSON Duration ("0.250s")."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` → (host, port); ValueError with a readable message otherwise."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in {text!r}")
    return host, port


def _xds_cluster(host: str, port: int) -> dict[str, Any]:
    return _grpc_cluster(
        XDS_CLUSTER,
        {"socket_address": {"address": host, "port_value": port}},
        # A literal address needs no resolver; a name (a Kubernetes Service, "localhost") is
        # re-resolved so the control plane can move.
        "STATIC" if is_ip(host) else "STRICT_DNS",
        # AUTO prefers IPv6 and "localhost" would then miss a control plane bound to 0.0.0.0.
        {} if is_ip(host) else {"dns_lookup_family": "V4_PREFERRED"},
    )


def _pipe_cluster(name: str, path: str) -> dict[str, Any]:
    """A gRPC cluster on a Unix socket of the agent (Istio's ``pipe`` endpoints of xds-grpc and sds-grpc)."""
    return _grpc_cluster(name, {"pipe": {"path": path}}, "STATIC", {})


def _grpc_cluster(
    name: str, address: dict[str, Any], discovery_type: str, extra: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "type": discovery_type,
        **extra,
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
        # xDS is a gRPC service, so the upstream connection must speak HTTP/2.
        "typed_extension_protocol_options": {
            _HTTP_PROTOCOL_OPTIONS: {
                "@type": f"type.googleapis.com/{_HTTP_PROTOCOL_OPTIONS}",
                "explicit_http_config": {
                    "http2_protocol_options": {
                        # Notice a silently dead control plane (no FIN, e.g. a host gone) and
                        # reconnect instead of waiting forever on a half-open stream.
                        "connection_keepalive": {"interval": "30s", "timeout": "10s"},
                    }
                },
            }
        },
    }


def build_bootstrap(
    node_id: str,
    xds_host: str,
    xds_port: int,
    *,
    delta: bool = False,
    admin_port: int | None = None,
    cluster: str = "pilot-xds",
    metadata: Mapping[str, Any] | None = None,
    retry_base: float = 0.5,
    retry_max: float = 5.0,
    max_connections: int = 1_000_000,
) -> dict[str, Any]:
    """An Envoy v3 bootstrap (as a JSON-ready dict) that takes listeners and clusters from pilot.

    ``admin_port`` 0 lets the kernel pick (read it back with ``--admin-address-path``); None
    leaves the admin interface off. ``retry_base``/``retry_max`` bound the jittered backoff between
    attempts to re-open the ADS stream after the control plane goes away; ``max_connections``
    caps downstream connections across all listeners.
    """
    if not 0 < xds_port < 65536:
        raise ValueError(f"xds_port out of range: {xds_port}")
    return _assemble(
        node_id,
        [_xds_cluster(xds_host, xds_port)],
        delta=delta,
        admin_port=admin_port,
        cluster=cluster,
        metadata=metadata,
        retry_base=retry_base,
        retry_max=retry_max,
        max_connections=max_connections,
    )


def build_agent_bootstrap(
    node_id: str,
    xds_socket: str,
    sds_socket: str,
    *,
    delta: bool = False,
    admin_port: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    retry_base: float = 0.5,
    retry_max: float = 5.0,
) -> dict[str, Any]:
    """The bootstrap of an Envoy beside ``pilot agent``: ADS and SDS both go to the agent's Unix sockets.

    As Istio's sidecar bootstrap (tools/packaging/common/envoy_bootstrap.json): ``xds-grpc`` is the
    agent's xDS proxy (Istio's ``./etc/istio/proxy/XDS``), ``sds-grpc`` its SDS server (Istio's
    ``./var/run/secrets/workload-spiffe-uds/socket``); the listeners and clusters pilot sends name
    ``sds-grpc`` for the ``default`` and ``ROOTCA`` secrets. Envoy never dials pilot itself. The node
    metadata says so (``SDS: "true"``, pilot.translate.proxy ``SDS_METADATA``): pilot sends mTLS only
    to a proxy whose bootstrap has ``sds-grpc``.
    """
    return _assemble(
        node_id,
        [_pipe_cluster(XDS_CLUSTER, xds_socket), _pipe_cluster(SDS_CLUSTER, sds_socket)],
        delta=delta,
        admin_port=admin_port,
        cluster="pilot-xds",
        metadata={**(metadata or {}), "SDS": "true"},
        retry_base=retry_base,
        retry_max=retry_max,
        max_connections=1_000_000,
    )


def istio_node_metadata(
    *,
    namespace: str | None = None,
    service_account: str | None = None,
    labels: Mapping[str, str] | None = None,
    interception: str | None = None,
    instance_ips: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Node metadata under Istio's keys, as istio-agent writes them from ``ISTIO_META_*``
    (pkg/bootstrap/config.go): ``NAMESPACE``, ``SERVICE_ACCOUNT``, ``LABELS`` (a map),
    ``INTERCEPTION_MODE``, ``INSTANCE_IPS`` (comma-separated); absent values are left out."""
    metadata: dict[str, Any] = {}
    if namespace:
        metadata["NAMESPACE"] = namespace
    if service_account:
        metadata["SERVICE_ACCOUNT"] = service_account
    if labels:
        metadata["LABELS"] = dict(labels)
    if interception:
        metadata["INTERCEPTION_MODE"] = interception
    if instance_ips:
        metadata["INSTANCE_IPS"] = ",".join(instance_ips)
    return metadata


def _assemble(
    node_id: str,
    static_clusters: list[dict[str, Any]],
    *,
    delta: bool,
    admin_port: int | None,
    cluster: str,
    metadata: Mapping[str, Any] | None,
    retry_base: float,
    retry_max: float,
    max_connections: int,
) -> dict[str, Any]:
    if not node_id:
        raise ValueError("node_id must not be empty")
    if not 0 < retry_base <= retry_max:
        raise ValueError("need 0 < retry_base <= retry_max")
    node: dict[str, Any] = {"id": node_id, "cluster": cluster}
    if metadata:
        node["metadata"] = dict(metadata)
    bootstrap: dict[str, Any] = {
        "node": node,
        "dynamic_resources": {
            # One ordered stream for every type, so Envoy never sees a route before the cluster
            # it names. https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#eventual-consistency-considerations
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                # The node goes on the first request of a stream only; the server remembers it.
                # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#resource-hints
                "set_node_on_first_message_only": True,
                "grpc_services": [
                    {
                        "envoy_grpc": {
                            "cluster_name": XDS_CLUSTER,
                            # Backoff between attempts to re-open the stream (Envoy's default
                            # caps at 30 s, a long time to follow a restarted control plane).
                            "retry_policy": {
                                "retry_back_off": {
                                    "base_interval": _duration(retry_base),
                                    "max_interval": _duration(retry_max),
                                }
                            },
                        }
                    }
                ],
            },
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": static_clusters},
        # Without a limit on downstream connections Envoy warns on every start; set a generous
        # one explicitly (the overload manager's monitor replaced Istio's runtime key).
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": f"type.googleapis.com/{_DOWNSTREAM_CONNECTIONS}",
                        "max_active_downstream_connections": max_connections,
                    },
                }
            ]
        },
    }
    if admin_port is not None:
        if not 0 <= admin_port < 65536:
            raise ValueError(f"admin_port out of range: {admin_port}")
        bootstrap["admin"] = {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}},
        }
    return bootstrap


class BootstrapArgs(Protocol):
    """The ``bootstrap`` subcommand's options (pilot.cli.bootstrap.BootstrapOptions); the others are
    optional."""

    @property
    def node_id(self) -> str: ...

    @property
    def xds_address(self) -> str: ...


def run(args: BootstrapArgs) -> int:
    """``pilot bootstrap``: print a bootstrap for ``args.node_id`` pointing at ``args.xds_address``.

    Reads ``node_id``, ``xds_address`` (HOST:PORT), ``delta``, ``vhds``, ``admin_port``, ``label`` and
    ``metadata`` (lists of (key, value)), ``service_account``, ``interception`` and ``output``
    ("json", the default, or "yaml"). Labels, service account and interception mode go under
    Istio's node metadata keys (``LABELS``, ``SERVICE_ACCOUNT``, ``INTERCEPTION_MODE``), as
    istio-agent writes them from ``ISTIO_META_*``.
    """
    metadata: dict[str, Any] = dict(getattr(args, "metadata", None) or [])
    if getattr(args, "vhds", False):
        # Envoy refuses a route configuration with vhds unless ADS is delta (router/vhds.cc).
        if not getattr(args, "delta", False):
            print(
                "pilot bootstrap: --vhds needs --delta (Envoy takes VHDS over delta ADS only)",
                file=sys.stderr,
            )
            return 2
        metadata["VHDS"] = "true"
    metadata.update(
        istio_node_metadata(
            service_account=getattr(args, "service_account", None),
            labels=dict(getattr(args, "label", None) or []),
            interception=getattr(args, "interception", None),
        )
    )
    try:
        host, port = parse_address(str(args.xds_address))
        bootstrap = build_bootstrap(
            str(args.node_id),
            host,
            port,
            delta=bool(getattr(args, "delta", False)),
            admin_port=getattr(args, "admin_port", None),
            metadata=metadata or None,
        )
    except ValueError as err:
        print(f"pilot bootstrap: {err}", file=sys.stderr)
        return 2
    if getattr(args, "output", "json") == "yaml":
        sys.stdout.write(yaml.safe_dump(bootstrap, sort_keys=False))
    else:
        sys.stdout.write(json.dumps(bootstrap, indent=2) + "\n")
    return 0
