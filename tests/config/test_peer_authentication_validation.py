"""PeerAuthentication validation: Istio's ValidatePeerAuthentication cases
(pkg/config/validation/validation_test.go ``TestValidatePeerAuthentication``), each error naming the
file, the object, the field and its line."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pilot.config.parse import parse_text

CASES: list[tuple[str, dict[str, Any], set[tuple[str, str]]]] = [
    ("empty spec", {}, set()),
    ("mesh-wide STRICT", {"mtls": {"mode": "STRICT"}}, set()),
    (
        "workload with port level",
        {
            "selector": {"matchLabels": {"app": "httpbin", "version": "v1"}},
            "mtls": {"mode": "PERMISSIVE"},
            "portLevelMtls": {"8080": {"mode": "DISABLE"}, "9090": {}},
        },
        set(),
    ),
    (
        "port level without a selector",
        {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}},
        {("error", "spec.portLevelMtls")},
    ),
    (
        "port level with an empty selector",
        {"selector": {}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}},
        {("error", "spec.portLevelMtls"), ("warning", "spec.selector")},
    ),
    (
        "port out of range",
        {"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {"0": {}, "70000": {}}},
        {("error", "spec.portLevelMtls[0]"), ("error", "spec.portLevelMtls[70000]")},
    ),
    (
        "wildcard in the selector",
        {"selector": {"matchLabels": {"app": "*"}}},
        {("error", "spec.selector.matchLabels")},
    ),
]


def problems(spec: dict[str, Any]) -> set[tuple[str, str]]:
    document = {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "p", "namespace": "foo"},
        "spec": spec,
    }
    result = parse_text(yaml.safe_dump(document), "p.yaml")
    return {
        (e.severity, e.path.partition("[")[0] if "matchLabels" in e.path else e.path) for e in result.errors
    }


@pytest.mark.parametrize(("spec", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_peer_authentication_validation_follows_istio(
    spec: dict[str, Any], want: set[tuple[str, str]]
) -> None:
    assert problems(spec) == want


def test_an_error_names_the_file_the_object_the_field_and_its_line() -> None:
    text = """\
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
  portLevelMtls:
    8080: {mode: DISABLE}
"""
    result = parse_text(text, "mesh-policy.yaml")
    (error,) = result.errors
    assert (error.origin, error.path, error.line) == ("mesh-policy.yaml", "spec.portLevelMtls", 6)
    assert error.key is not None and (error.key.kind, error.key.namespace, error.key.name) == (
        "PeerAuthentication",
        "istio-system",
        "default",
    )
    assert error.key in result.rejected and result.objects == ()
    assert "cannot have port level mTLS" in error.message
