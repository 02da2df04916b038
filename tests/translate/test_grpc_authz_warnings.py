"""``pilot validate --grpc`` on AuthorizationPolicies: each field a proxyless gRPC server cannot
evaluate is named (file, object, field) with what it does to the rule, and CUSTOM, AUDIT and dry-run
policies are named once as not enforced; what gRPC evaluates draws no word."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilot.cli import main
from pilot.config.parse import parse_text
from pilot.translate.grpc_authz_warnings import grpc_authorization_warnings

POLICIES = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-jwt, namespace: default}
spec:
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/default/sa/client]
        requestPrincipals: [issuer/subject]
    - source: {namespaces: [default], ipBlocks: [10.0.0.0/8]}
    to:
    - operation: {paths: ["/{*}/Who"], methods: [POST], ports: ["9080"], hosts: [details]}
    when:
    - key: connection.sni
      values: [details]
    - key: request.headers[grpc-trace-bin]
      values: ["1"]
    - key: request.headers[x-user]
      values: [me]
    - key: request.auth.claims[groups]
      values: [admin]
    - key: source.ip
      values: [10.0.0.1]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-anonymous, namespace: default}
spec:
  action: DENY
  rules:
  - from:
    - source: {notRequestPrincipals: ["*"]}
    to:
    - operation: {paths: [/pilot.test.Echo/Peer]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: default}
spec:
  action: CUSTOM
  provider: {name: opa}
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: default}
spec:
  action: AUDIT
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: trial
  namespace: default
  annotations: {istio.io/dry-run: "true"}
spec:
  action: DENY
  rules:
  - when:
    - key: connection.sni
      values: [x]
"""

ALLOW_DROPPED = "so the ALLOW rule is dropped on them (it allows no call)"
DENY_WIDENED = "so the DENY rule applies on them without it (it denies more calls)"


def warnings() -> dict[tuple[str, str], str]:
    out = {}
    for obj in parse_text(POLICIES, "authz.yaml").objects:
        for warning in grpc_authorization_warnings(obj):
            assert warning.severity == "warning" and warning.origin == "authz.yaml"
            assert warning.key == obj.key
            out[obj.name, warning.path] = warning.message
    return out


def test_each_field_grpc_cannot_evaluate_is_named_with_what_it_does() -> None:
    found = warnings()
    allow = {path: message for (name, path), message in found.items() if name == "allow-jwt"}
    assert sorted(allow) == [
        "spec.rules[0].from[0].source.requestPrincipals",
        "spec.rules[0].when[0]",
        "spec.rules[0].when[1]",
        "spec.rules[0].when[3]",
    ]  # principals, namespaces, ipBlocks, paths (a template), methods, ports, hosts, x-user, source.ip
    assert all(message.endswith(ALLOW_DROPPED) for message in allow.values())
    assert '"connection.sni" is not evaluated by gRPC servers' in allow["spec.rules[0].when[0]"]
    assert "header 'grpc-trace-bin'" in allow["spec.rules[0].when[1]"]
    assert '"request.auth.claims[groups]"' in allow["spec.rules[0].when[3]"]
    deny = found["deny-anonymous", "spec.rules[0].from[0].source.notRequestPrincipals"]
    assert deny.startswith('"request.auth.principal" is not evaluated') and deny.endswith(DENY_WIDENED)


def test_custom_audit_and_dry_run_are_named_once_as_not_enforced() -> None:
    found = warnings()
    assert "CUSTOM is not enforced on proxyless gRPC servers" in found["ext", "spec.action"]
    assert "AUDIT is not enforced on proxyless gRPC servers" in found["audit", "spec.action"]
    assert (
        "not evaluated on proxyless gRPC servers" in found["trial", "metadata.annotations[istio.io/dry-run]"]
    )
    # Not also their rules' conditions: the policy as a whole is what gRPC does not enforce.
    assert [name for name, _ in found].count("trial") == 1
    assert len(found) == 8


def test_pilot_validate_grpc_prints_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "authz.yaml").write_text(POLICIES)
    assert main(["validate", "--grpc", str(tmp_path / "authz.yaml")]) == 0  # warnings, not errors
    out = capsys.readouterr().out
    assert (
        f"warning: {tmp_path / 'authz.yaml'}: AuthorizationPolicy default/allow-jwt: "
        "spec.rules[0].when[0]: " in out
    )
    assert "spec.action: CUSTOM is not enforced" in out
    # 8 of gRPC, and validation's own (a DENY of HTTP attributes only, on TCP ports)
    assert "0 error(s), 9 warning(s)" in out
    assert main(["validate", str(tmp_path / "authz.yaml")]) == 0
    assert "0 error(s), 1 warning(s)" in capsys.readouterr().out
