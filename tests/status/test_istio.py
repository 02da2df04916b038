"""An Istio object's status: Istio's Reconciled condition, its validation messages, a proxy's rejection."""

from __future__ import annotations

from pilot.config.objects import ConfigKey
from pilot.inspect.messages import (
    CONFLICTING_DR_SELECTORS,
    REFERENCED_RESOURCE_NOT_FOUND,
    SCHEMA_VALIDATION_ERROR,
    Message,
    MessageType,
)
from pilot.push.holds import ObjectRejection
from pilot.status.distribution import Progress
from pilot.status.istio import istio_status

KEY = ConfigKey("VirtualService", "apps", "reviews")


def rejected(proxy: str) -> ObjectRejection:
    type_url = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
    return ObjectRejection(KEY, "kube:x", "view", proxy, type_url, "9080", "bad regex", 0.0, 3, None)


def test_reconciled_is_true_only_when_every_proxy_is_up_to_date():
    assert istio_status(Progress(3, 3), []) == {
        "conditions": [{"type": "Reconciled", "status": "True", "message": "3/3 proxies up to date."}]
    }
    (condition,) = istio_status(Progress(1, 2), [])["conditions"]
    assert (condition["status"], condition["message"]) == ("False", "1/2 proxies up to date.")


def test_validation_messages_carry_istio_codes_levels_and_pages_once_each():
    warning = MessageType(SCHEMA_VALIDATION_ERROR.code, SCHEMA_VALIDATION_ERROR.name, "Warning")
    messages = [
        Message(REFERENCED_RESOURCE_NOT_FOUND, "no gateway infra/missing", KEY),
        Message(REFERENCED_RESOURCE_NOT_FOUND, "no host ratings", KEY),
        Message(warning, "Schema validation error: spec.http[0].mirrorPercent: deprecated", KEY),
        Message(CONFLICTING_DR_SELECTORS, "pilot's own", KEY),
    ]
    assert istio_status(Progress(0, 0), messages)["validationMessages"] == [
        {
            "type": {"name": "ReferencedResourceNotFound", "code": "IST0101"},
            "level": "ERROR",
            "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0101/?ref=status-controller",
        },
        {
            "type": {"name": "SchemaValidationError", "code": "IST0106"},
            "level": "WARNING",
            "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0106/?ref=status-controller",
        },
        {
            "type": {"name": "ConflictingDestinationRuleWorkloadSelectors", "code": "PLT0001"},
            "level": "ERROR",
        },
    ]


def test_a_rejection_makes_reconciled_false_with_the_proxy_and_its_error():
    rejections = [rejected("sidecar~a"), rejected("sidecar~b")]
    (condition,) = istio_status(Progress(2, 2), [], rejections)["conditions"]
    assert condition == {
        "type": "Reconciled",
        "status": "False",
        "reason": "ProxyRejected",
        "message": "2/2 proxies up to date. Rejected by proxy sidecar~a (and 1 more proxies) in "
        "RouteConfiguration 9080: bad regex",
    }
