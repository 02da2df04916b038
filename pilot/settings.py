"""Settings: every tunable of a running pilot, documented once, frozen, passed in (never global)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Settings:
    # Folder of Istio YAML watched recursively (*.yaml, *.yml, *.json); None: no folder source.
    config_dir: Path | None = None
    # Address and port of the ADS gRPC server (Istio's 15010, plaintext).
    xds_host: str = "0.0.0.0"
    xds_port: int = 15010
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

    def __post_init__(self) -> None:
        if self.debounce_after < 0 or self.debounce_max < self.debounce_after:
            raise ValueError("need 0 <= debounce_after <= debounce_max")
        if self.push_concurrency < 1:
            raise ValueError("push_concurrency must be at least 1")
        if self.webhook_port is not None and (self.webhook_cert is None or self.webhook_key is None):
            raise ValueError("the webhook needs webhook_cert and webhook_key")
        if self.watch_namespaces is not None and not self.kube:
            raise ValueError("watch_namespaces needs kube")
        if self.max_connection_age is not None and self.max_connection_age <= 0:
            raise ValueError("max_connection_age must be positive")
        limits = (self.max_file_bytes, self.max_objects_per_file, self.max_hosts_per_object,
                  self.max_routes_per_object, self.max_yaml_depth, self.http_max_connections)
        if min(limits) < 1 or self.http_request_timeout <= 0:
            raise ValueError("config and HTTP limits must be positive")
