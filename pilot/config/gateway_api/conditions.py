"""Status conditions as the Gateway API defines them (apis/v1/shared_types.go, gateway_types.go):
the types, the reasons, and the status mappings pilot computes during conversion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CONTROLLER_NAME = "istio.io/gateway-controller"

ACCEPTED = "Accepted"
PROGRAMMED = "Programmed"
RESOLVED_REFS = "ResolvedRefs"

# Route reasons (RouteConditionReason).
NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"
NO_MATCHING_LISTENER_HOSTNAME = "NoMatchingListenerHostname"
NO_MATCHING_PARENT = "NoMatchingParent"
UNSUPPORTED_VALUE = "UnsupportedValue"
REF_NOT_PERMITTED = "RefNotPermitted"
INVALID_KIND = "InvalidKind"
BACKEND_NOT_FOUND = "BackendNotFound"
# Listener and gateway reasons.
UNSUPPORTED_PROTOCOL = "UnsupportedProtocol"
INVALID_CERTIFICATE_REF = "InvalidCertificateRef"
INVALID = "Invalid"
INVALID_ROUTE_KINDS = "InvalidRouteKinds"


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    ok: bool
    reason: str
    message: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": "True" if self.ok else "False",
            "reason": self.reason,
            "message": self.message,
        }


def accepted(message: str = "") -> Condition:
    return Condition(ACCEPTED, True, ACCEPTED, message)


def resolved(message: str = "") -> Condition:
    return Condition(RESOLVED_REFS, True, RESOLVED_REFS, message)


def programmed(message: str = "") -> Condition:
    return Condition(PROGRAMMED, True, PROGRAMMED, message)
