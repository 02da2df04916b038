"""``pilot validate --grpc``: a warning per VirtualService field proxyless gRPC clients cannot honour."""

from __future__ import annotations

import io
from pathlib import Path

from pilot import validate
from pilot.cli import build_parser, validate_options_from
from pilot.config import kinds
from pilot.config.parse import parse_text
from pilot.config.validation.grpc_clients import (
    FAILS,
    IGNORED,
    PLAIN_TEXT,
    grpc_client_warnings,
    grpc_tls_warnings,
)

VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  - match:
    - queryParams: {v: {exact: "2"}}
    redirect: {uri: /v2}
  - rewrite: {uri: /x}
    corsPolicy: {allowOrigins: [{exact: a.com}]}
    retries: {attempts: 2, perTryTimeout: 1s}
    route:
    - destination: {host: reviews.default.svc.cluster.local, subset: v1}
      weight: 80
      headers: {request: {set: {x: y}}}
    - destination: {host: reviews.default.svc.cluster.local, subset: v2}
      weight: 20
    fault: {abort: {httpStatus: 503, percentage: {value: 10}}}
    timeout: 3s
"""


def test_each_field_grpc_cannot_honour_is_named_once() -> None:
    (obj,) = parse_text(VS, "vs.yaml").objects
    assert kinds.VIRTUAL_SERVICE_INFO.holds(obj)
    warnings = {w.path: w.message for w in grpc_client_warnings(obj)}
    assert warnings == {
        "spec.http[0].match[0].queryParams": "proxyless gRPC clients never match it",
        "spec.http[0].redirect": FAILS,
        "spec.http[1].rewrite": IGNORED,
        "spec.http[1].corsPolicy": IGNORED,
        "spec.http[1].retries.perTryTimeout": IGNORED,
        "spec.http[1].route[0].headers": IGNORED,
    }  # weights, subsets, fault, timeout and retries themselves are honoured: no word about them
    assert all(w.severity == "warning" and w.origin == "vs.yaml" for w in grpc_client_warnings(obj))


def test_validate_warns_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "vs.yaml"
    path.write_text(VS)
    out = io.StringIO()
    args = build_parser().parse_args(["validate", "--grpc", str(path)])
    assert validate.run(validate_options_from(args), out=out) == 0  # warnings, not errors
    assert "6 warning(s)" in out.getvalue() and "spec.http[0].redirect" in out.getvalue()
    out = io.StringIO()
    assert (
        validate.run(validate_options_from(build_parser().parse_args(["validate", str(path)])), out=out) == 0
    )
    assert "0 warning(s)" in out.getvalue()


DR = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy:
    tls: {mode: SIMPLE}
    portLevelSettings:
    - port: {number: 9080}
      tls: {mode: ISTIO_MUTUAL}
    - port: {number: 9090}
      tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {tls: {mode: DISABLE}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {tls: {mode: SIMPLE}}
"""


def test_destination_rule_tls_grpc_cannot_apply_is_named() -> None:
    (obj,) = parse_text(DR, "dr.yaml").objects
    assert kinds.DESTINATION_RULE_INFO.holds(obj)
    warnings = {w.path: w.message for w in grpc_tls_warnings(obj)}
    assert warnings == {
        "spec.trafficPolicy.tls.mode": PLAIN_TEXT,
        "spec.trafficPolicy.portLevelSettings[1].tls.mode": PLAIN_TEXT,
        "spec.subsets[1].trafficPolicy.tls.mode": PLAIN_TEXT,
    }  # ISTIO_MUTUAL and DISABLE are applied as written


def test_validate_grpc_reads_destination_rules(tmp_path: Path) -> None:
    (tmp_path / "dr.yaml").write_text(DR)
    out = io.StringIO()
    args = build_parser().parse_args(["validate", "--grpc", str(tmp_path / "dr.yaml")])
    assert validate.run(validate_options_from(args), out=out) == 0
    assert "3 warning(s)" in out.getvalue() and "spec.subsets[1].trafficPolicy.tls.mode" in out.getvalue()
