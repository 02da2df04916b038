"""PeerAuthentication checks, as Istio's ``ValidatePeerAuthentication`` (pkg/config/validation) does."""

from __future__ import annotations

from pilot._gen import security_pb2 as sec
from pilot.config.validation.common import Report, at, item
from pilot.config.validation.policy_target import check_policy_scope


def validate_peer_authentication(
    spec: sec.PeerAuthentication, namespace: str, path: str, report: Report
) -> None:
    selector = spec.selector if spec.HasField("selector") else None
    # Until its translator lands the policy is read, checked and not applied: say so on every object.
    report.warn(
        path, "PeerAuthentication is not enforced by pilot yet: its proxies are configured as without it"
    )
    check_policy_scope(selector, (), namespace, path, report)
    if len(spec.port_level_mtls) and (selector is None or not len(selector.match_labels)):
        report.error(at(path, "portLevelMtls"), "portLevelMtls requires selector")
    for port in sorted(spec.port_level_mtls):
        if port == 0:
            report.error(item(at(path, "portLevelMtls"), port), "port must be in range 1..65535")
