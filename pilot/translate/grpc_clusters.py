"""CDS and EDS for proxyless gRPC: EDS clusters ``outbound|PORT|SUBSET|HOST`` with what gRPC honours.

Istio's grpcgen/cds.go: every cluster is an EDS cluster over ADS; of a DestinationRule's traffic
policy only the load balancer (round robin, least request, ring hash from a consistent hash) and
``http2MaxRequests`` as ``circuit_breakers.thresholds[0].max_requests`` (gRFC A32) are applied.
The subset selection and the endpoints are pilot's sidecar translation (``clusters.outbound_targets``,
``clusters.load_assignment``), so subsets and locality weights mean the same for both.

A DestinationRule's ``ISTIO_MUTUAL`` gives the cluster an UpstreamTlsContext naming the bootstrap's
certificate provider, the server checked against the destination's SPIFFE ids (pilot.translate.grpc_tls).
``SIMPLE`` and ``MUTUAL`` are not applied, as in grpcgen: gRPC takes certificates only from the
bootstrap's providers, not from the rule's files; pilot logs a warning.

Left out, because gRPC's xDS client ignores or rejects it: connect timeouts, HTTP protocol options,
TCP keepalive, panic thresholds, slow start, MAGLEV and RANDOM (gRPC NACKs an lb_policy it does not
implement: https://github.com/grpc/proposal/blob/master/A42-xds-ring-hash-lb-policy.md), and
outlier detection (gRPC implements only success-rate and failure-percentage ejection, gRFC A50,
which Istio's consecutive-error OutlierDetection does not express). Services resolved by DNS get
no cluster: gRPC resolves DNS only inside an aggregate cluster, which Istio does not send it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TypeAlias

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from pilot._gen import networking_pb2 as nw
from pilot.translate import cluster_tls, clusters, grpc_tls
from pilot.translate.clusters import ClusterTarget
from pilot.translate.context import PushContext
from pilot.translate.proxy import ProxyView
from pilot.translate.traffic_policy import TrafficPolicy

log = logging.getLogger("pilot.translate.grpc_clusters")

Cluster: TypeAlias = cluster_pb2.Cluster
LB = nw.LoadBalancerSettings
TlsMode = nw.ClientTLSSettings
_RING_SIZE_DEFAULT = 1024  # Istio's default minimum ring size
_RING_SIZE_MAX = 8 * 1024 * 1024  # gRPC NACKs a larger ring (gRFC A42)


def grpc_targets(view: ProxyView, context: PushContext) -> Iterator[ClusterTarget]:
    """The outbound targets gRPC can use: EDS ones (a service without a resolvable address gets EDS
    too, as for a gateway: gRPC cannot follow an original destination)."""
    scope = context.scope_of(view)
    for target in clusters.outbound_targets(scope, router=True):
        if target.eds:
            yield target
        else:
            log.debug("%s: not an EDS cluster; proxyless gRPC gets none", target.name)


def ads() -> config_source_pb2.ConfigSource:
    """gRPC requires EDS over ADS (or ``self``) and reads nothing else of the config source."""
    return config_source_pb2.ConfigSource(ads=config_source_pb2.AggregatedConfigSource())


def grpc_cluster(target: ClusterTarget, trust_domain: str) -> Cluster:
    cluster = Cluster(name=target.name, type=Cluster.EDS)
    cluster.eds_cluster_config.service_name = target.name
    cluster.eds_cluster_config.eds_config.CopyFrom(ads())
    _apply_tls(cluster, target, trust_domain)
    _apply_load_balancer(cluster, target.policy, target.name)
    _apply_max_requests(cluster, target.policy)
    return cluster


def _apply_tls(cluster: Cluster, target: ClusterTarget, trust_domain: str) -> None:
    """grpcgen's ``applyTLS``: ISTIO_MUTUAL only, the server checked against the service accounts of
    the destination's workloads (Istio's ``PushContext.ServiceAccounts``, the rule's own
    ``subjectAltNames`` and ``sni`` unread, as in grpcgen)."""
    tls = target.policy.tls
    if tls is None or tls.mode == TlsMode.DISABLE:
        return
    if tls.mode == TlsMode.ISTIO_MUTUAL:
        sans = cluster_tls.service_identities(target.service, trust_domain)
        cluster.transport_socket.CopyFrom(grpc_tls.upstream_socket(sans))
        return
    log.warning(
        "%s: proxyless gRPC takes certificates from its bootstrap only; tls mode %s is not applied",
        target.name,
        TlsMode.TLSmode.Name(tls.mode),
    )


def _apply_load_balancer(cluster: Cluster, policy: TrafficPolicy, name: str) -> None:
    """Istio's grpcgen applyLoadBalancing: round robin (gRPC's default) unless told otherwise."""
    lb = policy.load_balancer
    if lb is None:
        return
    if lb.HasField("consistent_hash"):
        hashing = lb.consistent_hash
        if hashing.HasField("maglev"):
            log.warning("%s: gRPC has no MAGLEV load balancer; using round robin", name)
            return
        cluster.lb_policy = Cluster.RING_HASH
        size = (
            hashing.ring_hash.minimum_ring_size
            if hashing.HasField("ring_hash")
            else hashing.minimum_ring_size
        )
        size = min(size or _RING_SIZE_DEFAULT, _RING_SIZE_MAX)
        cluster.ring_hash_lb_config.minimum_ring_size.value = size
        cluster.ring_hash_lb_config.hash_function = Cluster.RingHashLbConfig.XX_HASH
        return
    if lb.simple in (LB.LEAST_REQUEST, LB.LEAST_CONN):
        cluster.lb_policy = Cluster.LEAST_REQUEST
    elif lb.simple not in (LB.UNSPECIFIED, LB.ROUND_ROBIN):
        log.warning(
            "%s: gRPC cannot apply load balancer %s; using round robin", name, LB.SimpleLB.Name(lb.simple)
        )


def _apply_max_requests(cluster: Cluster, policy: TrafficPolicy) -> None:
    """gRFC A32: gRPC reads only ``max_requests`` of the first (default priority) threshold."""
    pool = policy.connection_pool
    if pool is None or not pool.HasField("http") or pool.http.http2_max_requests <= 0:
        return
    cluster.circuit_breakers.thresholds.add().max_requests.value = pool.http.http2_max_requests


def build_clusters(view: ProxyView, context: PushContext) -> list[tuple[str, Cluster]]:
    """Every EDS cluster of the view, subsets included; gRPC subscribes to the ones its routes name."""
    trust_domain = context.mesh.trust_domain
    return [(target.name, grpc_cluster(target, trust_domain)) for target in grpc_targets(view, context)]


def load_assignment(target: ClusterTarget, context: PushContext) -> endpoint_pb2.ClusterLoadAssignment:
    """The sidecar's assignment, with a locality on every group: gRPC NACKs a group without one
    (``endpoints[i].locality: field not present``) where Envoy takes the empty locality. Each group
    keeps the sum of its endpoints' weights: gRPC's weighted-target balancer ignores weight 0."""
    out = clusters.load_assignment(target, context)
    for group in out.endpoints:
        group.locality.SetInParent()
    return out


def build_load_assignments(
    view: ProxyView, context: PushContext
) -> list[tuple[str, endpoint_pb2.ClusterLoadAssignment]]:
    """The assignment of every cluster above."""
    return [(target.name, load_assignment(target, context)) for target in grpc_targets(view, context)]


__all__ = ["build_clusters", "build_load_assignments", "grpc_cluster", "grpc_targets", "load_assignment"]
