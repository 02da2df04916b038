"""A DestinationRule's traffic policy applied to an outbound cluster.

Istio's cluster_traffic_policy.go: connection pool → circuit breakers (every threshold MaxUint32 by
default, with ``track_remaining``), connect timeout, keepalive and HTTP protocol options; outlier
detection; load balancer (LEAST_REQUEST by default) with slow start and locality settings; client TLS
and upstream PROXY protocol (cluster_tls.py). Port-level settings and subset policies are merged as
``util.GetPortLevelTrafficPolicy`` / ``MergeSubsetTrafficPolicy`` do: a component set at the narrower
level replaces the one inherited (port-level settings have no ``proxyProtocol`` or ``tunnel``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypeAlias

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as upstream_http
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from pilot._gen import networking_pb2 as nw
from pilot.translate import cluster_tls, locality
from pilot.translate.context import MeshSettings, ServicePort

Cluster: TypeAlias = cluster_pb2.Cluster
HttpProtocolOptions: TypeAlias = upstream_http.HttpProtocolOptions

HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
MAX_UINT32 = 2**32 - 1
COMPONENTS = ("connection_pool", "load_balancer", "outlier_detection", "tls", "proxy_protocol", "tunnel")
LB = nw.LoadBalancerSettings
H2Upgrade = nw.ConnectionPoolSettings.HTTPSettings


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    """The parts of a TrafficPolicy that apply to one cluster (proto messages, never mutated)."""

    connection_pool: nw.ConnectionPoolSettings | None = None
    load_balancer: nw.LoadBalancerSettings | None = None
    outlier_detection: nw.OutlierDetection | None = None
    tls: nw.ClientTLSSettings | None = None
    proxy_protocol: nw.TrafficPolicy.ProxyProtocol | None = None
    tunnel: nw.TrafficPolicy.TunnelSettings | None = None


def _override(
    base: TrafficPolicy, message: nw.TrafficPolicy | nw.TrafficPolicy.PortTrafficPolicy
) -> TrafficPolicy:
    fields = message.DESCRIPTOR.fields_by_name
    changes = {
        name: getattr(message, name) for name in COMPONENTS if name in fields and message.HasField(name)
    }
    return replace(base, **changes) if changes else base


def _with_port_level(merged: TrafficPolicy, message: nw.TrafficPolicy, port: int) -> TrafficPolicy:
    for setting in message.port_level_settings:
        if setting.HasField("port") and setting.port.number == port:
            return _override(merged, setting)
    return merged


def for_port(top: nw.TrafficPolicy | None, port: int) -> TrafficPolicy:
    """The DestinationRule's top-level policy for ``port`` (its port-level settings win)."""
    if top is None:
        return TrafficPolicy()
    return _with_port_level(_override(TrafficPolicy(), top), top, port)


def for_subset(base: TrafficPolicy, subset_policy: nw.TrafficPolicy | None, port: int) -> TrafficPolicy:
    """A subset's policy over the rule's: each component the subset sets replaces the rule's."""
    if subset_policy is None:
        return base
    return _with_port_level(_override(base, subset_policy), subset_policy, port)


def default_thresholds() -> circuit_breaker_pb2.CircuitBreakers.Thresholds:
    limit = wrappers_pb2.UInt32Value(value=MAX_UINT32)
    return circuit_breaker_pb2.CircuitBreakers.Thresholds(
        max_connections=limit,
        max_pending_requests=limit,
        max_requests=limit,
        max_retries=limit,
        track_remaining=True,
    )


def apply(
    cluster: Cluster,
    policy: TrafficPolicy,
    port: ServicePort,
    mesh: MeshSettings,
    service_sans: Sequence[str] = (),
    *,
    sds: bool = False,
) -> None:
    """Istio's applyTrafficPolicy for an outbound cluster, in Istio's order. ``service_sans`` are the
    ServiceEntry's ``subjectAltNames`` (used when the TLS settings name none); ``sds``: the proxy has
    the agent's SDS, so certificate files go as its ``file-cert:`` / ``file-root:`` secrets."""
    options = HttpProtocolOptions()
    if port.protocol.is_http2:
        _set_h2(options)
    if mesh.tcp_keepalive is not None:  # Istio's applyTCPKeepalive: the mesh's, then the rule's on top
        _apply_keepalive(cluster, mesh.tcp_keepalive)
    _apply_connection_pool(cluster, policy.connection_pool, options)
    if _should_h2_upgrade(port, mesh.h2_upgrade, policy.connection_pool):
        _set_h2(options)
    pool = policy.connection_pool
    streams = pool.http.max_concurrent_streams if pool is not None and pool.HasField("http") else 0
    http2 = options.explicit_http_config.HasField("http2_protocol_options")
    if streams > 0 and http2:
        options.explicit_http_config.http2_protocol_options.max_concurrent_streams.value = streams
    _apply_outlier_detection(cluster, policy.outlier_detection)
    _apply_load_balancer(cluster, policy.load_balancer)
    _apply_locality(cluster, policy, mesh)
    tls_context = None
    if policy.tls is not None:
        tls_context = cluster_tls.upstream_tls_context(policy.tls, http2, options, service_sans, sds=sds)
    socket = cluster_tls.transport_socket(tls_context, policy.proxy_protocol)
    if socket is not None:
        cluster.transport_socket.CopyFrom(socket)
    _pack_protocol_options(cluster, options)


def locality_setting(policy: TrafficPolicy, mesh: MeshSettings) -> nw.LocalityLoadBalancerSetting | None:
    lb = policy.load_balancer
    own = lb.locality_lb_setting if lb is not None and lb.HasField("locality_lb_setting") else None
    return locality.setting(mesh.locality_lb_setting, own)


def _apply_locality(cluster: Cluster, policy: TrafficPolicy, mesh: MeshSettings) -> None:
    """Istio's applyLocalityLoadBalancer: failover only with outlier detection (Envoy never fails
    over without it); an inline (DNS) load assignment is re-weighted here, EDS ones in clusters.py."""
    lb_setting = locality_setting(policy, mesh)
    failover = policy.outlier_detection is not None
    if locality.uses_weighted_config(lb_setting, failover):
        cluster.common_lb_config.locality_weighted_lb_config.SetInParent()
    if cluster.HasField("load_assignment"):
        locality.apply(cluster.load_assignment, lb_setting, failover)


def apply_passthrough(cluster: Cluster) -> None:
    """PassthroughCluster: default circuit breakers, and the client's HTTP version upstream."""
    cluster.circuit_breakers.thresholds.append(default_thresholds())
    options = HttpProtocolOptions()
    options.common_http_protocol_options.idle_timeout.FromSeconds(300)
    _set_downstream_protocol(options)
    _pack_protocol_options(cluster, options)


def apply_inbound(cluster: Cluster, pool: nw.ConnectionPoolSettings | None, http2: bool) -> None:
    """An inbound cluster's connection pool: a Sidecar's ``ingress[].connectionPool`` or
    ``inboundConnectionPool`` (Istio's InboundConnectionPoolForPort), else the defaults."""
    options = HttpProtocolOptions()
    if http2:
        _set_h2(options)
    _apply_connection_pool(cluster, pool, options)
    _pack_protocol_options(cluster, options)


def _set_h2(options: HttpProtocolOptions) -> None:
    options.explicit_http_config.http2_protocol_options.SetInParent()


def _set_downstream_protocol(options: HttpProtocolOptions) -> None:
    options.use_downstream_protocol_config.http_protocol_options.SetInParent()
    options.use_downstream_protocol_config.http2_protocol_options.SetInParent()


def _should_h2_upgrade(
    port: ServicePort, mesh_h2_upgrade: bool, pool: nw.ConnectionPoolSettings | None
) -> bool:
    if pool is not None and pool.HasField("http"):
        if pool.http.h2_upgrade_policy == H2Upgrade.UPGRADE:
            return True
        if pool.http.h2_upgrade_policy == H2Upgrade.DO_NOT_UPGRADE:
            return False
    return port.protocol.is_http and mesh_h2_upgrade


def _apply_connection_pool(
    cluster: Cluster, pool: nw.ConnectionPoolSettings | None, options: HttpProtocolOptions
) -> None:
    threshold = default_thresholds()
    common = options.common_http_protocol_options
    idle_timeout: duration_pb2.Duration | None = None
    if pool is not None and pool.HasField("http"):
        http = pool.http
        if http.http2_max_requests > 0:
            threshold.max_requests.value = http.http2_max_requests
        if http.http1_max_pending_requests > 0:
            threshold.max_pending_requests.value = http.http1_max_pending_requests
        if http.max_retries > 0:
            threshold.max_retries.value = http.max_retries
        if http.HasField("idle_timeout"):
            idle_timeout = http.idle_timeout
        if http.max_requests_per_connection > 0:
            common.max_requests_per_connection.value = http.max_requests_per_connection
        if http.use_client_protocol:
            _set_downstream_protocol(options)
    if pool is not None and pool.HasField("tcp"):
        tcp = pool.tcp
        if tcp.HasField("connect_timeout"):
            cluster.connect_timeout.CopyFrom(tcp.connect_timeout)
        if tcp.max_connections > 0:
            threshold.max_connections.value = tcp.max_connections
        if tcp.HasField("max_connection_duration"):
            common.max_connection_duration.CopyFrom(tcp.max_connection_duration)
        if idle_timeout is None and tcp.HasField("idle_timeout"):
            idle_timeout = tcp.idle_timeout
        if tcp.HasField("tcp_keepalive"):
            _apply_keepalive(cluster, tcp.tcp_keepalive)
    if idle_timeout is not None:
        common.idle_timeout.CopyFrom(idle_timeout)
    cluster.circuit_breakers.thresholds.append(threshold)


def _apply_keepalive(cluster: Cluster, keepalive: nw.ConnectionPoolSettings.TCPSettings.TcpKeepalive) -> None:
    out = cluster.upstream_connection_options.tcp_keepalive
    out.SetInParent()
    if keepalive.probes > 0:
        out.keepalive_probes.value = keepalive.probes
    if keepalive.HasField("time"):
        out.keepalive_time.value = keepalive.time.seconds
    if keepalive.HasField("interval"):
        out.keepalive_interval.value = keepalive.interval.seconds


def _apply_outlier_detection(cluster: Cluster, outlier: nw.OutlierDetection | None) -> None:
    if outlier is None:
        return
    out = outlier_detection_pb2.OutlierDetection(enforcing_success_rate=wrappers_pb2.UInt32Value(value=0))
    if outlier.HasField("consecutive_5xx_errors"):
        value = outlier.consecutive_5xx_errors.value
        out.consecutive_5xx.value = value
        out.enforcing_consecutive_5xx.value = 100 if value > 0 else 0
    if outlier.HasField("consecutive_gateway_errors"):
        value = outlier.consecutive_gateway_errors.value
        out.consecutive_gateway_failure.value = value
        out.enforcing_consecutive_gateway_failure.value = 100 if value > 0 else 0
    elif outlier.consecutive_errors > 0 and not outlier.HasField("consecutive_5xx_errors"):
        # Deprecated consecutiveErrors meant gateway errors only (istio/api#617).
        out.consecutive_gateway_failure.value = outlier.consecutive_errors
        out.enforcing_consecutive_gateway_failure.value = 100
        out.enforcing_consecutive_5xx.value = 0
    if outlier.HasField("interval"):
        out.interval.CopyFrom(outlier.interval)
    if outlier.HasField("base_ejection_time"):
        out.base_ejection_time.CopyFrom(outlier.base_ejection_time)
    if outlier.max_ejection_percent > 0:
        out.max_ejection_percent.value = outlier.max_ejection_percent
    if outlier.split_external_local_origin_errors:
        out.split_external_local_origin_errors = True
        if outlier.consecutive_local_origin_failures.value > 0:
            out.consecutive_local_origin_failure.value = outlier.consecutive_local_origin_failures.value
            out.enforcing_consecutive_local_origin_failure.value = 100
        out.enforcing_local_origin_success_rate.value = 0
    cluster.outlier_detection.CopyFrom(out)
    # Istio disables the panic threshold unless minHealthPercent says otherwise.
    cluster.common_lb_config.healthy_panic_threshold.CopyFrom(
        percent_pb2.Percent(value=float(max(outlier.min_health_percent, 0)))
    )


def _warmup(lb: nw.LoadBalancerSettings | None) -> duration_pb2.Duration | None:
    if lb is None:
        return None
    if lb.HasField("warmup_duration_secs"):
        return lb.warmup_duration_secs
    if lb.HasField("warmup") and lb.warmup.HasField("duration"):
        return lb.warmup.duration
    return None


def _apply_load_balancer(cluster: Cluster, lb: nw.LoadBalancerSettings | None) -> None:
    if cluster.type == Cluster.ORIGINAL_DST:
        cluster.lb_policy = Cluster.CLUSTER_PROVIDED
        return
    simple = lb.simple if lb is not None else LB.UNSPECIFIED
    warmup = _warmup(lb)
    if simple == LB.RANDOM:
        cluster.lb_policy = Cluster.RANDOM
    elif simple == LB.ROUND_ROBIN:
        cluster.lb_policy = Cluster.ROUND_ROBIN
        if warmup is not None:
            cluster.round_robin_lb_config.slow_start_config.slow_start_window.CopyFrom(warmup)
    else:  # LEAST_REQUEST, LEAST_CONN (its old name) and unset: Istio's default
        cluster.lb_policy = Cluster.LEAST_REQUEST
        if warmup is not None:
            cluster.least_request_lb_config.slow_start_config.slow_start_window.CopyFrom(warmup)
    if lb is not None and lb.HasField("consistent_hash"):
        _apply_consistent_hash(cluster, lb.consistent_hash)


def _apply_consistent_hash(cluster: Cluster, hashing: nw.LoadBalancerSettings.ConsistentHashLB) -> None:
    if hashing.HasField("maglev"):
        cluster.lb_policy = Cluster.MAGLEV
        if hashing.maglev.table_size:
            cluster.maglev_lb_config.table_size.value = hashing.maglev.table_size
        else:
            cluster.ClearField("lb_config")
        return
    cluster.lb_policy = Cluster.RING_HASH
    size = hashing.ring_hash.minimum_ring_size if hashing.HasField("ring_hash") else hashing.minimum_ring_size
    if hashing.HasField("ring_hash") and not size:
        cluster.ClearField("lb_config")
        return
    cluster.ring_hash_lb_config.minimum_ring_size.value = size or 1024


def _pack_protocol_options(cluster: Cluster, options: HttpProtocolOptions) -> None:
    if options.ByteSize() == 0:
        return
    if options.WhichOneof("upstream_protocol_options") is None:
        options.explicit_http_config.http_protocol_options.SetInParent()
    packed = any_pb2.Any()
    packed.Pack(options)
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(packed)


__all__ = [
    "COMPONENTS",
    "TrafficPolicy",
    "apply",
    "apply_inbound",
    "apply_passthrough",
    "default_thresholds",
    "for_port",
    "for_subset",
    "locality_setting",
]
