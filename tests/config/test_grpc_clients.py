"""``pilot validate --grpc``: a warning per VirtualService field proxyless gRPC clients cannot honour."""

from __future__ import annotations

import io
from pathlib import Path

from pilot import validate
from pilot.cli import build_parser, validate_options_from
from pilot.config import kinds
from pilot.config.parse import parse_text
from pilot.config.validation.grpc_clients import FAILS, IGNORED, grpc_client_warnings

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
