"""Settings: every tunable of a running pilot, documented once, frozen, passed in (never global)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pilot.errors import SettingsError

# Istio's MAX_WORKLOAD_CERT_TTL (90 days): no workload certificate lives longer.
MAX_WORKLOAD_CERT_TTL = 90 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Settings:
    # Folder of Istio YAML watched recursively (*.yaml, *.yml, *.json); None: no folder source.
    config_dir: Path | None = None
    # Address and port of the ADS gRPC server (Istio's 15010, plaintext); port None: not served.
    xds_host: str = "0.0.0.0"
    xds_port: int | None = 15010
    # The mesh CA's directory: Istio's cacerts layout, or a self-signed root created there on first
    # start (pilot.ca.authority). None: no CA, and no secure port.
    ca_dir: Path | None = None
    # The SPIFFE trust domain of workload certificates (spiffe://TRUST_DOMAIN/ns/NS/sa/SA).
    trust_domain: str = "cluster.local"
    # Lifetime of a workload certificate when its CSR asks for none (Istio's DEFAULT_WORKLOAD_CERT_TTL).
    workload_cert_ttl: float = 24 * 3600.0
    # Port of the secure gRPC server (Istio's 15012, on xds_host): TLS with a certificate from the
    # mesh CA, ADS for callers with a bearer token and the CSR service. None: not served. Needs ca_dir.
    xds_tls_port: int | None = 15012
    # Names the secure port's certificate carries besides istiod.istio-system.svc and
    # istiod.<pilot_namespace>.svc (DNS names or IP addresses clients dial).
    xds_tls_hosts: tuple[str, ...] = ()
    # Address and port of /ready, /metrics and /debug/* (Istio's monitoring port 15014).
    http_host: str = "0.0.0.0"
    http_port: int = 15014
    # Debounce: push after this much quiet (PILOT_DEBOUNCE_AFTER, 100 ms) ...
    debounce_after: float = 0.1
    # ... or this long after the first change of a burst at the latest (PILOT_DEBOUNCE_MAX, 10 s).
    debounce_max: float = 10.0
    # At most this many proxies are sent a push at the same time (PILOT_PUSH_THROTTLE).
    push_concurrency: int = 100
    # A send that takes longer than this gives up its fan-out slot so others are not stalled.
    send_timeout: float = 5.0
    # Grace period for streams on shutdown.
    shutdown_grace: float = 5.0
    # Read Istio config, Services/EndpointSlices/Pods and the mesh ConfigMap from Kubernetes (KubeSource).
    kube: bool = False
    # Namespaces whose objects are read (None: all); the mesh ConfigMap is read from pilot_namespace.
    watch_namespaces: tuple[str, ...] | None = None
    # The namespace pilot runs in: where the ConfigMap "istio" (key "mesh") is read.
    pilot_namespace: str = "pilot-system"
    # kubeconfig file; None: the in-cluster service account, else $KUBECONFIG or ~/.kube/config.
    kubeconfig: Path | None = None
    # DNS suffix of Kubernetes Services: NAME.NAMESPACE.svc.<cluster_domain>.
    cluster_domain: str = "cluster.local"
    # With kube: write each object's status (Gateway API conditions, Istio's Reconciled condition and
    # validation messages) at most once per this many seconds per object; None: never write statuses.
    status_write_interval: float | None = 5.0
    # Validating admission webhook (HTTPS, POST /validate); None: not served. Needs webhook_cert/_key.
    webhook_host: str = "0.0.0.0"
    webhook_port: int | None = None
    webhook_cert: Path | None = None
    webhook_key: Path | None = None
    # Close each xDS connection after this long (GOAWAY, then a 10 s grace), so proxies reconnect and
    # spread over replicas added since (Istio's keepaliveMaxServerConnectionAge, 30 m in its charts).
    # gRPC core adds +/-10% jitter so that proxies connected together do not reconnect together.
    # None: never.
    max_connection_age: float | None = 1800.0
    # What one config file may hold (pilot.config.limits.ParseLimits, which has the same defaults);
    # past a limit the file, or the object, is refused with an error naming the file.
    max_file_bytes: int = 10 * 1024 * 1024
    max_objects_per_file: int = 10_000
    max_hosts_per_object: int = 10_000
    max_routes_per_object: int = 10_000
    max_yaml_depth: int = 100
    # The HTTP port: a request must arrive whole (line, headers and body) within this long of the
    # connection opening or of the previous response, or the connection is closed ...
    http_request_timeout: float = 10.0
    # ... and at most this many connections are open at once; more are closed on accept.
    http_max_connections: int = 256
    # New xDS streams per second, all proxies together (burst 1); a stream that gets no turn
    # within a second ends with RESOURCE_EXHAUSTED (Istio's PILOT_MAX_REQUESTS_PER_SECOND, whose
    # default scales with the CPUs). 0: no limit.
    max_requests_per_second: float = field(default_factory=lambda: istio_request_rate(os.cpu_count()))
    # Requests per second of one xDS stream beyond a burst; past it the stream's next request is
    # read later, so one proxy's flood cannot starve the others. 0: no limit.
    max_stream_requests_per_second: float = 100.0
    stream_request_burst: int = 100
    # One stream's NACKs are logged: the first, then at most one per this many seconds.
    nack_log_interval: float = 10.0

    def __post_init__(self) -> None:
        """Every bound of every setting, checked once here (the CLI and the debouncer rely on it)."""
        check_debounce(self.debounce_after, self.debounce_max)
        for name, port in (("xds_port", self.xds_port), ("http_port", self.http_port)):
            if port is not None:
                _check_port(name, port)
        if self.xds_tls_port is not None:
            _check_port("xds_tls_port", self.xds_tls_port)
        if not 0 < self.workload_cert_ttl <= MAX_WORKLOAD_CERT_TTL:
            raise SettingsError(
                f"workload_cert_ttl must be positive and at most {MAX_WORKLOAD_CERT_TTL:.0f}s (90 days), "
                f"got {self.workload_cert_ttl}"
            )
        if self.webhook_port is not None:
            _check_port("webhook_port", self.webhook_port)
        if self.push_concurrency < 1:
            raise SettingsError(f"push_concurrency must be at least 1, got {self.push_concurrency}")
        for name, seconds in (("send_timeout", self.send_timeout), ("shutdown_grace", self.shutdown_grace)):
            if seconds < 0:
                raise SettingsError(f"{name} must not be negative, got {seconds}")
        if self.webhook_port is not None and (self.webhook_cert is None or self.webhook_key is None):
            raise SettingsError("the webhook needs webhook_cert and webhook_key")
        if self.watch_namespaces is not None and not self.kube:
            raise SettingsError("watch_namespaces needs kube")
        if self.status_write_interval is not None and self.status_write_interval < 0:
            interval = self.status_write_interval
            raise SettingsError(f"status_write_interval must not be negative, got {interval}")
        if self.max_connection_age is not None and self.max_connection_age <= 0:
            raise SettingsError(f"max_connection_age must be positive, got {self.max_connection_age}")
        limits = (
            self.max_file_bytes,
            self.max_objects_per_file,
            self.max_hosts_per_object,
            self.max_routes_per_object,
            self.max_yaml_depth,
            self.http_max_connections,
        )
        if min(limits) < 1 or self.http_request_timeout <= 0:
            raise SettingsError("config and HTTP limits must be positive")
        rates = (self.max_requests_per_second, self.max_stream_requests_per_second, self.nack_log_interval)
        if min(rates) < 0 or self.stream_request_burst < 1:
            raise SettingsError(
                "request rates and the NACK log interval must not be negative, the burst positive"
            )


def istio_request_rate(cpus: int | None) -> float:
    """istiod's default PILOT_MAX_REQUESTS_PER_SECOND since 1.21: ``min(15 + 5 * cpus, 100)``."""
    return float(min(15 + 5 * (cpus or 1), 100))


def check_debounce(after: float, max_wait: float) -> None:
    """The bounds of Istio's push debounce: ``0 <= after <= max_wait`` (a burst can never be
    pushed later than ``max_wait`` if a quiet ``after`` already exceeds it). SettingsError if not."""
    if after < 0:
        raise SettingsError(f"debounce_after must not be negative, got {after}")
    if max_wait < after:
        raise SettingsError(f"debounce_max ({max_wait}) must be at least debounce_after ({after})")


def _check_port(name: str, port: int) -> None:
    """0 is allowed: bind any free port."""
    if not 0 <= port <= 65535:
        raise SettingsError(f"{name} is not a port: {port}")
