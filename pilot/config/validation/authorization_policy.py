"""AuthorizationPolicy checks, as Istio's ``ValidateAuthorizationPolicy`` (pkg/config/validation) does."""

from __future__ import annotations

from pilot._gen import security_pb2 as sec
from pilot.config.validation.common import Report
from pilot.config.validation.policy_target import check_policy_scope, target_refs_of


def validate_authorization_policy(
    spec: sec.AuthorizationPolicy, namespace: str, path: str, report: Report
) -> None:
    selector = spec.selector if spec.HasField("selector") else None
    # Until its translator lands the policy is read, checked and not applied: say so on every object.
    report.warn(
        path, "AuthorizationPolicy is not enforced by pilot yet: its proxies are configured as without it"
    )
    check_policy_scope(selector, target_refs_of(spec, path), namespace, path, report)
