"""PeerAuthentication checks, as Istio's ``ValidatePeerAuthentication`` (pkg/config/validation/validation.go)
does: the selector's labels (no empty key, no wildcard; a warning when it has none), ``portLevelMtls``
only with a selector (a mesh- or namespace-wide policy has no workload ports), each port in 1..65535.

What one object cannot tell is left to translation (pilot/translate/peer_authentication.py): of several
mesh-wide (or namespace-wide) policies only the oldest is honoured, and a selector in the root namespace
applies to nothing; istiod logs both, pilot too.
"""

from __future__ import annotations

from pilot._gen import security_pb2 as sec
from pilot.config.validation.common import Report, at, item
from pilot.config.validation.policy_target import check_policy_scope

MAX_PORT = 65535


def validate_peer_authentication(
    spec: sec.PeerAuthentication, namespace: str, path: str, report: Report
) -> None:
    selector = spec.selector if spec.HasField("selector") else None
    check_policy_scope(selector, (), path, report)
    if selector is not None and not len(selector.match_labels):
        report.warn(at(path, "selector"), "workload selector specified without labels")
    ports = at(path, "portLevelMtls")
    if len(spec.port_level_mtls) and (selector is None or not len(selector.match_labels)):
        report.error(ports, "mesh/namespace peer authentication cannot have port level mTLS")
    for port in sorted(spec.port_level_mtls):
        if not 1 <= port <= MAX_PORT:
            report.error(item(ports, port), f"port must be in range 1..{MAX_PORT}, was {port}")
