"""DestinationRule checks, as Istio's ``ValidateDestinationRule`` (pkg/config/validation) does."""

from __future__ import annotations

import math

from pilot._gen import networking_pb2 as nw
from pilot.config.validation.common import (
    Report,
    at,
    check_duration,
    check_export_to,
    check_fqdn,
    check_ip,
    check_labels,
    check_percent,
    check_port,
    check_selector_labels,
    check_subset_name,
    check_wildcard_domain,
    item,
)
from pilot.config.validation.locality import check_locality_lb_setting


def validate_destination_rule(spec: nw.DestinationRule, namespace: str, path: str, report: Report) -> None:
    report.check(at(path, "host"), check_wildcard_domain(spec.host))
    if spec.HasField("traffic_policy"):
        validate_traffic_policy(spec.traffic_policy, at(path, "trafficPolicy"), report)
    names: set[str] = set()
    for index, subset in enumerate(spec.subsets):
        subset_path = item(at(path, "subsets"), index)
        if subset.name in names:
            report.error(at(subset_path, "name"), f"duplicate subset names: {subset.name}")
        names.add(subset.name)
        report.check(at(subset_path, "name"), check_subset_name(subset.name))
        report.check_all(at(subset_path, "labels"), check_labels(subset.labels))
        if subset.HasField("traffic_policy"):
            validate_traffic_policy(subset.traffic_policy, at(subset_path, "trafficPolicy"), report)
    has_selector = spec.HasField("workload_selector")
    report.check_all(at(path, "exportTo"), check_export_to(namespace, spec.export_to, False, has_selector))
    if has_selector:
        selector_path = at(path, "workloadSelector")
        report.check_all(
            at(selector_path, "matchLabels"), check_selector_labels(spec.workload_selector.match_labels)
        )
        if not len(spec.workload_selector.match_labels):
            report.warn(selector_path, "workload selector specified without labels")


_POLICY_FIELDS = ("outlier_detection", "connection_pool", "load_balancer", "tls", "tunnel", "proxy_protocol")


def validate_traffic_policy(policy: nw.TrafficPolicy, path: str, report: Report) -> None:
    if not len(policy.port_level_settings) and not any(policy.HasField(name) for name in _POLICY_FIELDS):
        report.error(path, "traffic policy must have at least one field")
        return
    if policy.HasField("tunnel") and policy.HasField("proxy_protocol"):
        report.error(path, "tunnel and proxyProtocol must not be set together")
        return
    _settings(policy, path, report)
    for index, port_policy in enumerate(policy.port_level_settings):
        port_path = item(at(path, "portLevelSettings"), index)
        if not port_policy.HasField("port"):
            report.error(port_path, "portTrafficPolicy must have valid port")
        elif port_policy.port.number != 0:
            report.check(at(port_path, "port.number"), check_port(port_policy.port.number))
        if not any(port_policy.HasField(name) for name in _POLICY_FIELDS[:4]):
            report.error(port_path, "port traffic policy must have at least one field")
        else:
            _settings(port_policy, port_path, report)
    if policy.HasField("tunnel"):
        _tunnel(policy.tunnel, at(path, "tunnel"), report)


def _settings(
    policy: nw.TrafficPolicy | nw.TrafficPolicy.PortTrafficPolicy, path: str, report: Report
) -> None:
    """The settings a policy and its port-level policies share."""
    if policy.HasField("outlier_detection"):
        _outlier_detection(policy.outlier_detection, at(path, "outlierDetection"), report)
    if policy.HasField("connection_pool"):
        validate_connection_pool(policy.connection_pool, at(path, "connectionPool"), report)
    if policy.HasField("load_balancer"):
        _load_balancer(
            policy.load_balancer, policy.HasField("outlier_detection"), at(path, "loadBalancer"), report
        )
    if policy.HasField("tls"):
        validate_client_tls(policy.tls, at(path, "tls"), report)


def _tunnel(tunnel: nw.TrafficPolicy.TunnelSettings, path: str, report: Report) -> None:
    if tunnel.protocol not in ("", "CONNECT", "POST"):
        report.error(at(path, "protocol"), 'tunnel protocol must be "CONNECT" or "POST"')
    fqdn_problem, ip_problem = check_fqdn(tunnel.target_host), check_ip(tunnel.target_host)
    if fqdn_problem is not None and ip_problem is not None:
        report.error(
            at(path, "targetHost"),
            f"tunnel target host must be valid FQDN or IP address: {fqdn_problem}; {ip_problem}",
        )
    if (problem := check_port(tunnel.target_port)) is not None:
        report.error(at(path, "targetPort"), f"tunnel target port is invalid: {problem}")


def _outlier_detection(outlier: nw.OutlierDetection, path: str, report: Report) -> None:
    if outlier.HasField("base_ejection_time"):
        report.check(at(path, "baseEjectionTime"), check_duration(outlier.base_ejection_time))
    if outlier.consecutive_errors != 0:
        report.warn(
            at(path, "consecutiveErrors"),
            "outlier detection consecutive errors is deprecated, use "
            "consecutiveGatewayErrors or consecutive5xxErrors instead",
        )
    if not outlier.split_external_local_origin_errors and outlier.consecutive_local_origin_failures.value > 0:
        report.error(
            at(path, "consecutiveLocalOriginFailures"),
            "outlier detection consecutive local origin "
            "failures is specified, but split external local origin errors is set to false",
        )
    if outlier.HasField("interval"):
        report.check(at(path, "interval"), check_duration(outlier.interval))
    report.check(at(path, "maxEjectionPercent"), check_percent(outlier.max_ejection_percent))
    report.check(at(path, "minHealthPercent"), check_percent(outlier.min_health_percent))


_NON_NEGATIVE_HTTP = (
    ("http1_max_pending_requests", "http1MaxPendingRequests", "http1 max pending requests"),
    ("http2_max_requests", "http2MaxRequests", "http2 max requests"),
    ("max_requests_per_connection", "maxRequestsPerConnection", "max requests per connection"),
    ("max_retries", "maxRetries", "max retries"),
    ("max_concurrent_streams", "maxConcurrentStreams", "max concurrent streams"),
)


def validate_connection_pool(pool: nw.ConnectionPoolSettings, path: str, report: Report) -> None:
    if not pool.HasField("http") and not pool.HasField("tcp"):
        report.error(path, "connection pool must have at least one field")
        return
    if pool.HasField("http"):
        settings, http_path = pool.http, at(path, "http")
        for field, name, words in _NON_NEGATIVE_HTTP:
            if getattr(settings, field) < 0:
                report.error(at(http_path, name), f"{words} must be non-negative")
        if settings.HasField("idle_timeout"):
            report.check(at(http_path, "idleTimeout"), check_duration(settings.idle_timeout))
        if settings.h2_upgrade_policy == settings.UPGRADE and settings.use_client_protocol:
            report.error(http_path, "use client protocol must not be true when H2UpgradePolicy is UPGRADE")
    if pool.HasField("tcp"):
        tcp, tcp_path = pool.tcp, at(path, "tcp")
        if tcp.max_connections < 0:
            report.error(at(tcp_path, "maxConnections"), "max connections must be non-negative")
        for field, name in (
            ("connect_timeout", "connectTimeout"),
            ("max_connection_duration", "maxConnectionDuration"),
            ("idle_timeout", "idleTimeout"),
        ):
            if tcp.HasField(field):
                report.check(at(tcp_path, name), check_duration(getattr(tcp, field)))
        if tcp.HasField("tcp_keepalive"):
            keepalive, keepalive_path = tcp.tcp_keepalive, at(tcp_path, "tcpKeepalive")
            for field in ("time", "interval"):
                if keepalive.HasField(field):
                    report.check(at(keepalive_path, field), check_duration(getattr(keepalive, field)))


def _load_balancer(balancer: nw.LoadBalancerSettings, has_outlier: bool, path: str, report: Report) -> None:
    if balancer.HasField("consistent_hash"):
        hashing, hash_path = balancer.consistent_hash, at(path, "consistentHash")
        key = hashing.WhichOneof("hash_key")
        if key is None:
            # Istio accepts it, but no hash policy can be built: every request hashes alike.
            report.warn(
                hash_path,
                "no hash key set: set one of httpHeaderName, httpCookie, useSourceIp or "
                "httpQueryParameterName",
            )
        elif key == "http_cookie" and not hashing.http_cookie.name:
            report.error(at(hash_path, "httpCookie.name"), "name required for HttpCookie")
        if hashing.minimum_ring_size != 0:
            report.warn(
                at(hash_path, "minimumRingSize"),
                "consistent hash MinimumRingSize is deprecated, use "
                "ConsistentHashLB's RingHash configuration instead",
            )
            if hashing.WhichOneof("hash_algorithm") is not None:
                report.error(hash_path, "only one of MinimumRingSize or Maglev/Ringhash can be specified")
        if hashing.HasField("maglev"):
            size, maglev_path = hashing.maglev.table_size, at(hash_path, "maglev.tableSize")
            if size == 0:
                report.error(maglev_path, "tableSize must be set for maglev")
            if size >= 5000011:
                report.error(maglev_path, "tableSize must be less than 5000011 for maglev")
            if not _is_prime(size):
                report.error(maglev_path, "tableSize must be a prime number for maglev")
    if balancer.HasField("locality_lb_setting"):
        check_locality_lb_setting(
            balancer.locality_lb_setting, has_outlier, at(path, "localityLbSetting"), report
        )
    if balancer.HasField("warmup_duration_secs"):
        report.check(at(path, "warmupDurationSecs"), check_duration(balancer.warmup_duration_secs))


def _is_prime(x: int) -> bool:
    # Envoy's (and so Istio's) primality test, including its answer for 0.
    if x != 0 and x < 4:
        return True
    if x & 1 == 0:
        return False
    return all(x % factor for factor in range(3, math.isqrt(x) + 1, 2))


def validate_client_tls(tls: nw.ClientTLSSettings, path: str, report: Report) -> None:
    """Istio's ``agent.ValidateTLS`` for upstream (client) TLS settings."""
    simple, mutual = tls.mode == tls.SIMPLE, tls.mode == tls.MUTUAL
    if tls.insecure_skip_verify.value:
        if simple and (tls.ca_certificates or tls.credential_name or len(tls.subject_alt_names)):
            report.error(
                path,
                "cannot specify CaCertificates or CredentialName or SubjectAltNames when "
                "InsecureSkipVerify is set true",
            )
        if mutual and (tls.ca_certificates or len(tls.subject_alt_names)):
            report.error(
                path, "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true"
            )
    if (simple or mutual) and tls.credential_name:
        if tls.client_certificate or tls.ca_certificates or tls.private_key or tls.ca_crl:
            report.error(
                path,
                "cannot specify client certificates or CA certificate or CA CRL If credentialName is set",
            )
        return
    if mutual:
        if not tls.client_certificate:
            report.error(at(path, "clientCertificate"), "client certificate required for mutual tls")
        if not tls.private_key:
            report.error(at(path, "privateKey"), "private key required for mutual tls")
