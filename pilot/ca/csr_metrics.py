"""The CA's Prometheus counters, with istiod's names (security/pkg/server/ca/monitoring.go), in
pilot's one registry (pilot.metrics.REGISTRY)."""

from __future__ import annotations

from prometheus_client import Counter

from pilot.metrics import REGISTRY

csr_requests = Counter("citadel_server_csr_count", "CreateCertificate calls received.", registry=REGISTRY)

authentication_failures = Counter(
    "citadel_server_authentication_failure_count",
    "CreateCertificate calls refused because the caller's token did not authenticate.",
    registry=REGISTRY,
)

sign_errors = Counter(
    "citadel_server_csr_sign_error_count",
    "CreateCertificate calls refused or failed after authentication, by error_type "
    "(CSR_ERROR, IDENTITY_MISMATCH, CERT_GEN_ERROR).",
    ["error_type"],
    registry=REGISTRY,
)

issued = Counter(
    "citadel_server_success_cert_issuance_count", "Workload certificates issued.", registry=REGISTRY
)
