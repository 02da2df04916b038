"""CDS: ``outbound|N||HOST`` and ``outbound|N|SUBSET|HOST`` per visible service port, plus
BlackHoleCluster and PassthroughCluster.

Istio's cluster.go (``buildOutboundClusters``, ``convertResolution``), cluster_builder.go
(``buildCluster``, ``buildSubsetCluster``, passthrough and blackhole clusters) and
cluster_traffic_policy.go (connection pool, outlier detection, load balancer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf import duration_pb2

from pilot._gen import networking_pb2 as nw
from pilot.translate import cluster_tls, endpoints, locality, peer_authentication
from pilot.translate import traffic_policy as policy
from pilot.translate.context import (
    DestinationRuleEntry,
    Protocol,
    PushContext,
    Resolution,
    Scope,
    Service,
    ServicePort,
)
from pilot.translate.proxy import NodeType, ProxyView
from pilot.translate.traffic_policy import TrafficPolicy
from pilot.xds import names

log = logging.getLogger("pilot.translate.clusters")

Cluster: TypeAlias = cluster_pb2.Cluster
ClusterLoadAssignment: TypeAlias = endpoint_pb2.ClusterLoadAssignment

# Istio's convertResolution. A gateway cannot follow the original destination, so it uses EDS.
_DISCOVERY = {
    Resolution.STATIC: Cluster.EDS,
    Resolution.DNS: Cluster.STRICT_DNS,
    Resolution.DNS_ROUND_ROBIN: Cluster.LOGICAL_DNS,
    Resolution.NONE: Cluster.ORIGINAL_DST,
}


@dataclass(frozen=True, slots=True)
class ClusterTarget:
    """One outbound cluster to build: a service port, optionally narrowed to a subset."""

    name: str
    service: Service
    port: ServicePort
    subset: str
    labels: tuple[tuple[str, str], ...]
    policy: TrafficPolicy
    rule: DestinationRuleEntry | None
    discovery: int

    @property
    def eds(self) -> bool:
        return bool(self.discovery == Cluster.EDS)


def discovery_type(service: Service, traffic: TrafficPolicy, router: bool) -> int:
    lb = traffic.load_balancer
    if lb is not None and lb.simple == nw.LoadBalancerSettings.PASSTHROUGH:
        return int(Cluster.ORIGINAL_DST)
    if router and service.resolution is Resolution.NONE:
        return int(Cluster.EDS)
    return int(_DISCOVERY[service.resolution])


def outbound_targets(scope: Scope, router: bool = False) -> tuple[ClusterTarget, ...]:
    """Every outbound cluster of the scope, services by hostname, ports and subsets in order (made
    once per scope, shared by CDS and EDS)."""
    return scope.derived(("cluster-targets", router), lambda: tuple(_outbound_targets(scope, router)))


def _outbound_targets(scope: Scope, router: bool) -> Iterator[ClusterTarget]:
    for service in scope.services:
        rule = scope.destination_rule(service.hostname)
        top = rule.spec.traffic_policy if rule is not None and rule.spec.HasField("traffic_policy") else None
        for port in service.ports:
            if port.protocol is Protocol.UDP:
                continue
            base = policy.for_port(top, port.number)
            name = names.outbound_cluster(service.hostname, port.number)
            kind = discovery_type(service, base, router)
            yield ClusterTarget(name, service, port, "", (), base, rule, kind)
            seen: set[str] = set()
            for subset in rule.spec.subsets if rule is not None else ():
                if subset.name in seen:
                    continue
                seen.add(subset.name)
                own = subset.traffic_policy if subset.HasField("traffic_policy") else None
                sub = policy.for_subset(base, own, port.number)
                yield ClusterTarget(
                    names.outbound_cluster(service.hostname, port.number, subset.name),
                    service,
                    port,
                    subset.name,
                    tuple(sorted(subset.labels.items())),
                    sub,
                    rule,
                    discovery_type(service, sub, router),
                )


def duration(seconds: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromNanoseconds(round(seconds * 1e9))
    return out


def ads_config_source() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        initial_fetch_timeout=duration_pb2.Duration(),
        resource_api_version=config_source_pb2.V3,
    )


@dataclass(frozen=True, slots=True)
class PolicyTemplate:
    """A cluster without inline endpoints, before its own fields (``OWN_FIELDS``): what its traffic
    policy, port protocol and discovery type make of it. ``encoded``: its bytes, when no own field
    of a cluster can collide with a field it sets (pilot.translate.templated), else None."""

    message: Cluster
    policy: TrafficPolicy  # held: the key holds its components' ids
    http2: bool
    encoded: bytes | None


# The fields build_cluster sets on a copy of the template, per cluster (``_own_fields``).
# eds_cluster_config is not one: a message, its eds_config (template) and service_name (own) merge.
OWN_FIELDS = frozenset({"name", "metadata", "transport_socket", "transport_socket_matches"})

# Keyed by discovery type, protocol, subject alt names, mesh certificates and the policy's
# components by identity.
PolicyTemplates = dict[tuple[object, ...], PolicyTemplate]


def policy_template(
    target: ClusterTarget, context: PushContext, mesh_certificates: bool, templates: PolicyTemplates | None
) -> PolicyTemplate:
    """The cluster ``policy.apply`` makes for the target's policy, port protocol and discovery type,
    without name: made once per distinct such tuple and copied (``apply`` reads neither the name
    nor the EDS service name, so a copy renamed is what building it again would give)."""
    traffic = target.policy
    key = (
        target.discovery,
        target.port.protocol,
        target.service.subject_alt_names,
        mesh_certificates,
        *(id(getattr(traffic, name)) for name in policy.COMPONENTS),
    )
    entry = templates.get(key) if templates is not None else None
    if entry is None:
        mesh = context.mesh
        made = Cluster(type=target.discovery, common_lb_config=Cluster.CommonLbConfig())
        made.connect_timeout.FromTimedelta(mesh.connect_timeout)
        if target.eds:
            made.eds_cluster_config.eds_config.CopyFrom(ads_config_source())
        policy.apply(
            made, traffic, target.port, mesh, target.service.subject_alt_names, sds=mesh_certificates
        )
        clash = any(field.name in OWN_FIELDS for field, _ in made.ListFields())
        encoded = None if clash else made.SerializeToString(deterministic=True)
        entry = PolicyTemplate(made, traffic, cluster_tls.uses_http2(made), encoded)
        if templates is not None:
            templates[key] = entry
    return entry


def build_cluster(
    target: ClusterTarget,
    context: PushContext,
    mesh_certificates: bool = False,
    templates: PolicyTemplates | None = None,
) -> Cluster | None:
    """The Envoy cluster for ``target``; None for a DNS cluster without endpoints (Istio drops it).
    ``mesh_certificates``: the proxy has the agent's SDS, so ISTIO_MUTUAL applies (cluster_tls.py).
    ``templates``: policy templates shared by the clusters of one build (``policy_template``)."""
    mesh = context.mesh
    if target.discovery in (Cluster.STRICT_DNS, Cluster.LOGICAL_DNS):
        authn = peer_authentication.index_of(mesh.root_namespace, context.peer_authentications)
        cluster = Cluster(name=target.name, type=target.discovery, common_lb_config=Cluster.CommonLbConfig())
        cluster.connect_timeout.FromTimedelta(mesh.connect_timeout)
        if not _inline_endpoints(cluster, target, authn.plaintext_only(target.service.namespace)):
            log.debug("cluster %s: no endpoints; not sent", target.name)
            return None
        cluster.dns_lookup_family = Cluster.V4_ONLY
        cluster.respect_dns_ttl = True
        cluster.dns_refresh_rate.FromTimedelta(mesh.dns_refresh_rate)
        policy.apply(
            cluster, target.policy, target.port, mesh, target.service.subject_alt_names, sds=mesh_certificates
        )
        own_fields(cluster, target, context, mesh_certificates, cluster_tls.uses_http2(cluster))
        return cluster
    template = policy_template(target, context, mesh_certificates, templates)
    cluster = Cluster()
    cluster.CopyFrom(template.message)
    own_fields(cluster, target, context, mesh_certificates, template.http2)
    return cluster


def own_fields(
    cluster: Cluster, target: ClusterTarget, context: PushContext, mesh_certificates: bool, http2: bool
) -> None:
    """What differs between the clusters of one policy template (``OWN_FIELDS``): the name, the EDS
    service name, the mesh's mTLS (its SNI names the cluster) and Istio's metadata."""
    cluster.name = target.name
    if target.eds:
        cluster.eds_cluster_config.service_name = target.name
    if mesh_certificates:
        mesh = context.mesh
        authn = peer_authentication.index_of(mesh.root_namespace, context.peer_authentications)
        # Istio's BestEffortInferServiceMTLSMode: no auto mTLS to a namespace (or mesh) whose
        # PeerAuthentication is DISABLE; a DestinationRule's own TLS still wins (cluster_tls.py).
        cluster_tls.apply_mesh_mtls(
            cluster,
            target.service,
            target.port.number,
            target.subset,
            target.policy.tls,
            target.policy.proxy_protocol,
            trust_domain=mesh.trust_domain,
            auto=mesh.auto_mtls and authn.auto_mtls_to(target.service.namespace),
            http2=http2,
        )
    _add_metadata(cluster, target)


def load_assignment(
    target: ClusterTarget, context: PushContext, made: endpoints.LbEndpoints | None = None
) -> ClusterLoadAssignment:
    """The EDS assignment of an EDS cluster, with the locality settings of its traffic policy.
    ``made``: the endpoint messages of one build, shared by the clusters of a service port."""
    authn = peer_authentication.index_of(context.mesh.root_namespace, context.peer_authentications)
    out = endpoints.load_assignment(
        target.name,
        target.service,
        target.port,
        dict(target.labels),
        ip_only=True,
        plaintext_only=authn.plaintext_only(target.service.namespace),
        made=made,
    )
    lb_setting = policy.locality_setting(target.policy, context.mesh)
    locality.apply(out, lb_setting, failover=target.policy.outlier_detection is not None)
    return out


def _inline_endpoints(
    cluster: Cluster, target: ClusterTarget, plaintext_only: endpoints.PlaintextOnly | None
) -> bool:
    selected = endpoints.selected_endpoints(target.service, dict(target.labels), ip_only=False)
    if cluster.type == Cluster.LOGICAL_DNS:
        selected = selected[:1]  # Envoy: a LOGICAL_DNS cluster has exactly one host
    if not selected:
        return False
    cluster.load_assignment.cluster_name = target.name
    cluster.load_assignment.endpoints.extend(
        endpoints.locality_lb_endpoints(selected, target.port, plaintext_only)
    )
    return True


def _add_metadata(cluster: Cluster, target: ClusterTarget) -> None:
    """Istio's ``filter_metadata.istio``: which service (and DestinationRule, subset) made the cluster.
    Set field by field (``Struct.update`` is pure Python), in the order ``update`` would insert them."""
    service = target.service
    istio = cluster.metadata.filter_metadata["istio"].fields
    entry = istio["services"].list_value.values.add().struct_value.fields
    entry["host"].string_value = service.hostname
    entry["name"].string_value = service.hostname
    entry["namespace"].string_value = service.namespace
    if target.rule is not None:
        key = target.rule.key
        istio[
            "config"
        ].string_value = (
            f"/apis/networking.istio.io/v1/namespaces/{key.namespace}/destination-rule/{key.name}"
        )
    if target.subset:
        istio["subset"].string_value = target.subset
    if service.mesh_external:
        istio["external"].bool_value = True


def blackhole_cluster(context: PushContext) -> Cluster:
    cluster = Cluster(name=names.BLACKHOLE_CLUSTER, type=Cluster.STATIC, lb_policy=Cluster.ROUND_ROBIN)
    cluster.connect_timeout.FromTimedelta(context.mesh.connect_timeout)
    return cluster


def passthrough_cluster(context: PushContext) -> Cluster:
    cluster = Cluster(
        name=names.PASSTHROUGH_CLUSTER, type=Cluster.ORIGINAL_DST, lb_policy=Cluster.CLUSTER_PROVIDED
    )
    cluster.connect_timeout.FromTimedelta(context.mesh.connect_timeout)
    policy.apply_passthrough(cluster)
    return cluster


T = TypeVar("T")
# Makes one outbound cluster (build_cluster, or pilot.translate.cluster_encoding.encode_cluster).
ClusterMaker = Callable[[ClusterTarget, PushContext, bool, PolicyTemplates], T | None]


def build_clusters(view: ProxyView, context: PushContext) -> list[tuple[str, Cluster]]:
    return make_clusters(view, context, build_cluster)


def make_clusters(
    view: ProxyView, context: PushContext, make: ClusterMaker[T]
) -> list[tuple[str, T | Cluster]]:
    """The outbound clusters, each made by ``make``, then BlackHoleCluster and PassthroughCluster."""
    scope = context.scope_of(view)
    out: list[tuple[str, T | Cluster]] = []
    plaintext_mutual = 0
    templates: PolicyTemplates = {}
    for target in outbound_targets(scope, router=view.type is NodeType.ROUTER):
        cluster = make(target, context, view.mesh_certificates, templates)
        if cluster is not None:
            out.append((target.name, cluster))
            tls = target.policy.tls
            plaintext_mutual += tls is not None and tls.mode == nw.ClientTLSSettings.ISTIO_MUTUAL
    if plaintext_mutual and not view.mesh_certificates:
        log.warning(
            "%s: %d clusters ask for ISTIO_MUTUAL, but the proxy has no mesh certificate (it runs without "
            "pilot agent, node metadata SDS): they stay plaintext",
            view,
            plaintext_mutual,
        )
    for special in (blackhole_cluster(context), passthrough_cluster(context)):
        out.append((special.name, special))
    return out
