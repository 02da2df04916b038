"""Who is asking: a Proxy parsed from an Envoy node, and the ProxyView that decides its config.

Istio's node id is ``TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local`` with TYPE ``sidecar`` or
``router``. Everything that changes what a proxy is sent goes into its ``ProxyView``; proxies with
equal views share one translated, serialized snapshot. Per-proxy details (IP, pod) stay out of the
view on purpose, so they can never leak into shared config.
"""

from __future__ import annotations

import enum
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pilot.config.objects import DEFAULT_NAMESPACE, ConfigKey
from pilot.translate.targets import ServiceTarget

log = logging.getLogger("pilot.translate.proxy")

DEFAULT_DNS_DOMAIN = "cluster.local"
GRPC_GENERATOR = "grpc"  # node metadata GENERATOR of a proxyless gRPC application
# Node metadata that says the proxy's bootstrap has the ``sds-grpc`` cluster, an agent serving the mesh
# certificate (``default``) and root (``ROOTCA``): ``pilot agent`` sets it (``build_agent_bootstrap``), an
# Istio agent does with ``ISTIO_META_SDS=true`` (the key is Istio's own up to 1.5, ``SdsEnabled``).
# Only such a proxy is sent mTLS: an Envoy without ``sds-grpc`` rejects config that names it.
SDS_METADATA = "SDS"
# Node metadata VHDS: "true": the proxy (on delta ADS) gets its route configurations' virtual hosts
# over VHDS, one resource each, so an edit sends only the virtual hosts it changed
# (pilot.translate.virtual_hosts; docs/xds.md). Envoy accepts VHDS only over delta ADS.
VHDS_METADATA = "VHDS"


class NodeType(enum.StrEnum):
    SIDECAR = "sidecar"
    ROUTER = "router"


class InterceptionMode(enum.StrEnum):
    """How traffic reaches the proxy. NONE (the default here): outbound listeners bind their ports."""

    NONE = "NONE"
    REDIRECT = "REDIRECT"
    TPROXY = "TPROXY"


@dataclass(frozen=True, slots=True)
class ProxyView:
    """Everything that decides a proxy's config. Hashable: it keys the snapshot cache."""

    type: NodeType
    namespace: str
    interception_mode: InterceptionMode = InterceptionMode.NONE
    dns_domain: str = DEFAULT_DNS_DOMAIN
    # A router's labels (Gateways select it by them); a sidecar's only where some workload
    # selector names them (pilot.translate.views says why), so most sidecars share views.
    labels: tuple[tuple[str, str], ...] = ()
    # The ports of the services this proxy backs (sorted): its inbound listener's chains and clusters.
    targets: tuple[ServiceTarget, ...] = ()
    # The Sidecar that applies to a sidecar proxy (pilot.translate.sidecar_scope), None for the
    # default scope: what it imports decides the proxy's outbound config, its ingress the inbound.
    sidecar: ConfigKey | None = None
    # A proxyless gRPC application (node metadata GENERATOR: grpc): pilot.translate.grpc_* build its
    # config, in the shapes gRPC's xDS client accepts.
    proxyless_grpc: bool = False
    # Whether the proxy gets the mesh certificate over SDS (``SDS_METADATA``): it is sent ISTIO_MUTUAL.
    mesh_certificates: bool = False
    # Whether the proxy gets virtual hosts over VHDS (``VHDS_METADATA``) instead of inside RDS.
    virtual_host_discovery: bool = False

    def __str__(self) -> str:
        text = f"{self.type}/{self.namespace}/{self.interception_mode}"
        if self.proxyless_grpc:
            text += "/grpc"
        if self.labels:
            text += "/" + ",".join(f"{k}={v}" for k, v in self.labels)
        if self.targets:
            text += "/targets:" + ",".join(f"{t.hostname}:{t.port}" for t in self.targets)
        if self.sidecar is not None:
            text += f"/sidecar:{self.sidecar.namespace}/{self.sidecar.name}"
        if self.mesh_certificates:
            text += "/sds"
        if self.virtual_host_discovery:
            text += "/vhds"
        return text


@dataclass(frozen=True, slots=True)
class Proxy:
    """One connected Envoy as its node says (Istio's node metadata keys, ISTIO-SIDECAR-AND-SECURITY.md
    §1.1). Per-proxy: what decides its config is its ``ProxyView`` (pilot.translate.views)."""

    id: str
    type: NodeType
    ip: str
    pod_name: str
    namespace: str
    dns_domain: str
    interception_mode: InterceptionMode
    labels: Mapping[str, str]
    service_account: str = ""
    workload_name: str = ""
    istio_version: str = ""
    cluster_id: str = ""
    proxyless_grpc: bool = False
    mesh_certificates: bool = False
    virtual_host_discovery: bool = False

    @classmethod
    def from_node(cls, node_id: str, metadata: Mapping[str, Any] | None = None) -> Proxy:
        """Parse an Envoy node. Lenient: a plain id (``front-envoy``) is a sidecar in ``default``."""
        metadata = metadata or {}
        parts = node_id.split("~")
        if len(parts) == 4 and parts[0] in (NodeType.SIDECAR, NodeType.ROUTER):
            node_type = NodeType(parts[0])
            ip = parts[1]
            pod, _, pod_namespace = parts[2].partition(".")
            domain_namespace, _, dns_domain = parts[3].partition(".svc.")
        else:
            if len(parts) == 4:
                log.warning("node %r: unknown proxy type %r, treating it as a sidecar", node_id, parts[0])
            node_type, ip, pod, pod_namespace, domain_namespace, dns_domain = (
                NodeType.SIDECAR,
                "",
                node_id,
                "",
                "",
                "",
            )
        namespace = str(metadata.get("NAMESPACE") or pod_namespace or domain_namespace or DEFAULT_NAMESPACE)
        # Istio treats a missing INTERCEPTION_MODE as REDIRECT (its agent always captures); pilot's
        # proxies mostly bind their own ports, so a missing one stays NONE here.
        mode_text = str(metadata.get("INTERCEPTION_MODE") or InterceptionMode.NONE).upper()
        try:
            mode = InterceptionMode(mode_text)
        except ValueError:
            log.warning("node %r: unknown INTERCEPTION_MODE %r, using NONE", node_id, mode_text)
            mode = InterceptionMode.NONE
        # STATIC_LABELS (ISTIO_METAJSON_LABELS) are always merged over LABELS, as in Istio.
        labels = {**_labels(metadata.get("LABELS")), **_labels(metadata.get("STATIC_LABELS"))} or _NO_LABELS
        return cls(
            id=sys.intern(node_id),  # the ADS server's Connection holds the same string
            type=node_type,
            ip=ip,
            pod_name=pod,
            # Interned: shared by every proxy of a namespace (and by their views), not one copy each.
            namespace=sys.intern(namespace),
            dns_domain=sys.intern(dns_domain) if dns_domain else DEFAULT_DNS_DOMAIN,
            interception_mode=mode,
            labels=labels,
            service_account=str(metadata.get("SERVICE_ACCOUNT") or ""),
            workload_name=str(metadata.get("WORKLOAD_NAME") or ""),
            istio_version=str(metadata.get("ISTIO_VERSION") or ""),
            cluster_id=str(metadata.get("CLUSTER_ID") or ""),
            # Istio's Proxy.IsProxylessGrpc: the node's metadata names the grpc generator.
            proxyless_grpc=str(metadata.get("GENERATOR") or "") == GRPC_GENERATOR,
            mesh_certificates=str(metadata.get(SDS_METADATA, "")).lower() == "true",
            virtual_host_discovery=str(metadata.get(VHDS_METADATA, "")).lower() == "true",
        )

    def view(self) -> ProxyView:
        """The view from the node alone (no config): a sidecar's labels and targets need the push
        context, see ``pilot.translate.views.view_of``."""
        labels = tuple(sorted(self.labels.items())) if self.type is NodeType.ROUTER else ()
        return ProxyView(
            self.type,
            self.namespace,
            self.interception_mode,
            self.dns_domain,
            labels,
            proxyless_grpc=self.proxyless_grpc,
            mesh_certificates=self.mesh_certificates,
            virtual_host_discovery=self.virtual_host_discovery,
        )


_NO_LABELS: Mapping[str, str] = MappingProxyType({})  # one for every proxy without labels


def _labels(raw: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}
