"""Every Prometheus metric of pilot, defined once (Istio's names where Istio has one).

A leaf: anyone may import it; debug/ renders it. Metrics live in their own registry so that tests
and several in-process servers do not collide with the global default registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

xds_clients = Gauge("pilot_xds", "Number of connected xDS streams.", registry=REGISTRY)

xds_pushes = Counter(
    "pilot_xds_pushes",
    "xDS responses sent, by type (cds, eds, lds, rds) and, for failures, type_senderr.",
    ["type"],
    registry=REGISTRY,
)

xds_push_bytes = Counter(
    "pilot_xds_push_bytes", "Bytes of xDS responses sent, by type.", ["type"], registry=REGISTRY
)

xds_oversized_responses = Counter(
    "pilot_xds_oversized_responses",
    "xDS responses past gRPC's default 4 MiB receive limit (warned about, still sent), by type.",
    ["type"],
    registry=REGISTRY,
)

xds_rejects = Counter(
    "pilot_total_xds_rejects", "NACKs received from proxies, by type.", ["type"], registry=REGISTRY
)

xds_invalid_node_ids = Counter(
    "pilot_xds_invalid_node_id", "ADS streams refused for their node id.", registry=REGISTRY
)

xds_rate_limited = Counter(
    "pilot_xds_rate_limited",
    "ADS streams refused (scope stream) and requests held back (scope request) by a rate limit.",
    ["scope"],
    registry=REGISTRY,
)

xds_expired_nonce = Counter(
    "pilot_xds_expired_nonce", "Requests carrying a stale nonce, by type.", ["type"], registry=REGISTRY
)

xds_send_timeouts = Counter(
    "pilot_xds_write_timeout", "Sends that exceeded the send timeout.", registry=REGISTRY
)

push_triggers = Counter(
    "pilot_push_triggers", "Pushes started, by reason (config, endpoint, proxy).", ["type"], registry=REGISTRY
)

push_time = Histogram(
    "pilot_xds_push_time",
    "Seconds from the end of debounce to every affected view's snapshot being set.",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 3, 5, 10),
    registry=REGISTRY,
)

debounce_time = Histogram(
    "pilot_debounce_time",
    "Seconds from the first change of a burst to the start of its push.",
    buckets=(0.01, 0.05, 0.1, 0.2, 0.5, 1, 3, 5, 10, 20),
    registry=REGISTRY,
)

proxy_convergence_time = Histogram(
    "pilot_proxy_convergence_time",
    "Seconds from a snapshot being set to the proxy's ACK of it.",
    buckets=(0.1, 0.5, 1, 3, 5, 10, 20, 30),
    registry=REGISTRY,
)

config_errors = Gauge(
    "pilot_config_errors", "Config problems currently reported, by severity.", ["severity"], registry=REGISTRY
)

config_rejected_objects = Gauge(
    "pilot_config_rejected_objects",
    "Config objects held back for some proxy view because a proxy rejected what they produced.",
    registry=REGISTRY,
)

config_rejections = Counter(
    "pilot_config_rejections",
    "NACKs traced to a config object (pilot.push.holds), by the object's kind: one per object and NACK.",
    ["kind"],
    registry=REGISTRY,
)

translation_failures = Counter(
    "pilot_translation_failures",
    "Config objects validation passed and translation could not take, by kind: one per object and push "
    "context that translated a view it applies to (an AuthorizationPolicy: its workloads deny all).",
    ["kind"],
    registry=REGISTRY,
)

kube_status_writes = Counter(
    "pilot_kube_status_writes_total",
    "Status subresource writes to the Kubernetes API server, by outcome (written, conflict, failed, gone).",
    ["outcome"],
    registry=REGISTRY,
)

config_objects = Gauge(
    "pilot_config_objects", "Config objects in the store, by kind.", ["kind"], registry=REGISTRY
)

# istiod's names (pilot/pkg/model/jwks_resolver.go): every HTTP fetch of a JWKS or an OpenID
# discovery document, by outcome; and the key sets that never fetched, so their rules fail closed.
jwks_fetch_success = Counter(
    "pilot_jwks_resolver_network_fetch_success",
    "Successful fetches of a JWKS or OpenID discovery document.",
    registry=REGISTRY,
)
jwks_fetch_fail = Counter(
    "pilot_jwks_resolver_network_fetch_fail",
    "Failed fetches of a JWKS or OpenID discovery document.",
    registry=REGISTRY,
)
jwks_unresolved = Gauge(
    "pilot_jwks_unresolved",
    "JWKS of RequestAuthentication rules never fetched: their tokens are all rejected (fail closed).",
    registry=REGISTRY,
)

translation_errors = Counter(
    "pilot_total_xds_internal_errors", "Translations that failed (a bug in pilot).", registry=REGISTRY
)
