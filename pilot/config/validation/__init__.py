"""Semantic validation of parsed config objects, following Istio's validating webhook.

``validate(obj)`` returns every problem as a ``FieldError`` naming the field path (its ``line`` is left
for the parser to fill in). Errors make the parser reject the object; warnings, including the fields
pilot does not translate (``support.NOT_YET_SUPPORTED``), do not.
"""

from __future__ import annotations

from pilot.config import kinds
from pilot.config.objects import ConfigObject, FieldError
from pilot.config.validation.authorization_policy import validate_authorization_policy
from pilot.config.validation.common import Report
from pilot.config.validation.destination_rule import validate_destination_rule
from pilot.config.validation.gateway import validate_gateway
from pilot.config.validation.mesh import validate_mesh_config
from pilot.config.validation.peer_authentication import validate_peer_authentication
from pilot.config.validation.request_authentication import validate_request_authentication
from pilot.config.validation.service_entry import validate_service_entry, validate_workload_entry
from pilot.config.validation.sidecar import validate_sidecar
from pilot.config.validation.support import report_not_yet_supported
from pilot.config.validation.virtual_service import validate_virtual_service
from pilot.config.validation.workload_group import validate_workload_group

__all__ = ["validate"]


def validate(obj: ConfigObject) -> list[FieldError]:
    """Every error and warning in ``obj``'s spec, in Istio's words, with the field path of each."""
    report = Report()
    info = kinds.KINDS.get(obj.kind)
    if info is None:
        return []
    path = info.spec_path
    _annotations(obj, report)
    if kinds.VIRTUAL_SERVICE_INFO.holds(obj):
        validate_virtual_service(obj.spec, obj.namespace, path, report)
    elif kinds.DESTINATION_RULE_INFO.holds(obj):
        validate_destination_rule(obj.spec, obj.namespace, path, report)
    elif kinds.SERVICE_ENTRY_INFO.holds(obj):
        validate_service_entry(obj.spec, obj.namespace, path, report)
    elif kinds.GATEWAY_INFO.holds(obj):
        validate_gateway(obj.spec, obj.name, path, report)
    elif kinds.WORKLOAD_ENTRY_INFO.holds(obj):
        validate_workload_entry(obj.spec, None, True, path, report)
    elif kinds.SIDECAR_INFO.holds(obj):
        validate_sidecar(obj.spec, obj.namespace, path, report)
    elif kinds.WORKLOAD_GROUP_INFO.holds(obj):
        validate_workload_group(obj.spec, path, report)
    elif kinds.MESH_CONFIG_INFO.holds(obj):
        validate_mesh_config(obj.spec, path, report)
    elif kinds.PEER_AUTHENTICATION_INFO.holds(obj):
        validate_peer_authentication(obj.spec, obj.namespace, path, report)
    elif kinds.AUTHORIZATION_POLICY_INFO.holds(obj):
        validate_authorization_policy(obj.spec, obj.namespace, path, report)
    elif kinds.REQUEST_AUTHENTICATION_INFO.holds(obj):
        validate_request_authentication(obj.spec, obj.namespace, path, report)
    report_not_yet_supported(obj.kind, obj.spec, path, report)
    return [
        FieldError(obj.origin, message, obj.key, where, None, severity)
        for where, message, severity in report.items
    ]


# Istio's validateMetadata: annotations that make the webhook reject any networking object.
DRY_RUN_ANNOTATION = "istio.io/dry-run"
ALWAYS_REJECT_ANNOTATION = "istio.io/alwaysReject"


def _annotations(obj: ConfigObject, report: Report) -> None:
    annotations = dict(obj.annotations)
    # Only an AuthorizationPolicy may be a dry run (its rules then only log: Istio's shadow rules).
    if DRY_RUN_ANNOTATION in annotations and obj.kind != kinds.AUTHORIZATION_POLICY:
        report.error(
            f"metadata.annotations[{DRY_RUN_ANNOTATION}]",
            f"{obj.namespace}/{obj.name} has unsupported annotation {DRY_RUN_ANNOTATION}, please remove the "
            "annotation",
        )
    if ALWAYS_REJECT_ANNOTATION in annotations:
        report.error(
            f"metadata.annotations[{ALWAYS_REJECT_ANNOTATION}]",
            f'"{ALWAYS_REJECT_ANNOTATION}" annotation found, rejecting',
        )
