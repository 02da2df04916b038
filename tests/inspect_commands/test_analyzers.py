"""Each analyzer: one folder it accepts and one it flags with Istio's code (istio/istio
pkg/config/analysis/msg/messages.yaml)."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest

from pilot.config.parse import parse_text
from pilot.inspect import analyzers
from pilot.inspect.analyze import AnalyzeOptions, run
from pilot.inspect.analyzers import analyze
from pilot.inspect.mesh import Mesh

SERVICE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.1, labels: {app: reviews, version: v1}}
  - {address: 10.0.0.2, labels: {app: reviews, version: v2}}
---
"""

DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: %s, labels: {version: %s}}]
---
"""


def vs(name: str = "reviews", host: str = "reviews", subset: str = "v1", gateways: str = "[]") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [reviews]
  gateways: {gateways}
  http: [{{route: [{{destination: {{host: {host}, subset: {subset}}}}}]}}]
---
"""


def gateway(name: str, hosts: str = "[a.example.com]", port: int = 80) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: {port}, name: http, protocol: HTTP}}, hosts: {hosts}}}]
---
"""


GATEWAY_WORKLOAD = """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ingress, namespace: default}
spec: {address: 10.0.0.9, labels: {istio: ingressgateway}, ports: {http: 80}}
---
"""


def codes(text: str) -> list[str]:
    result = parse_text(text, "mesh.yaml")
    return [m.type.code for m in analyze(Mesh(result.objects, result.errors))]


def test_a_consistent_mesh_has_no_messages():
    assert codes(SERVICE + DR % ("v2", "v2") + vs() + gateway("gw") + GATEWAY_WORKLOAD) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SERVICE + DR % ("v2", "v2") + vs(gateways="[missing]"), "gateway"),
        (SERVICE + DR % ("v2", "v2") + vs(host="ratings"), "host"),
        (SERVICE + DR % ("v2", "v2") + vs(subset="v9"), "host+subset"),
    ],
)
def test_references_to_missing_resources_are_ist0101(text: str, expected: str):
    result = parse_text(text, "mesh.yaml")
    messages = analyzers.referenced_resources(Mesh(result.objects))
    assert [m.type.code for m in messages] == ["IST0101"]
    assert f"Referenced {expected} " in messages[0].text
    assert messages[0].type.level == "Error"


def test_a_subset_no_known_workload_has_is_ist0173():
    assert codes(SERVICE + DR % ("v3", "v3") + vs()) == ["IST0173"]


def test_a_subset_of_a_host_without_known_workloads_is_not_judged():
    no_endpoints = SERVICE.replace(
        "  - {address: 10.0.0.1, labels: {app: reviews, version: v1}}\n", ""
    ).replace("  - {address: 10.0.0.2, labels: {app: reviews, version: v2}}\n", "")
    no_endpoints = no_endpoints.replace("  endpoints:\n", "").replace("STATIC", "DNS")
    assert codes(no_endpoints + DR % ("v3", "v3") + vs()) == []


def test_a_gateway_port_its_workload_lacks_is_ist0104():
    assert codes(gateway("gw", port=8080) + GATEWAY_WORKLOAD) == ["IST0104"]


def test_pilot_validation_errors_are_ist0106_with_file_and_line():
    result = parse_text(vs(host="") + SERVICE, "mesh.yaml")
    messages = analyze(Mesh(result.objects, result.errors))
    assert [m.type.code for m in messages] == ["IST0106"]
    assert messages[0].line is not None and messages[0].origin == "mesh.yaml"


def test_two_mesh_virtual_services_for_one_host_are_ist0109():
    assert codes(SERVICE + DR % ("v2", "v2") + vs("a") + vs("b")) == ["IST0109", "IST0109"]
    assert codes(SERVICE + DR % ("v2", "v2") + vs("a") + vs("b", gateways="[gw]") + gateway("gw")) == []


TLS_DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tls, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    tls: {mode: SIMPLE%s}
    portLevelSettings: [{port: {number: 9080}, tls: {mode: MUTUAL%s}}]
---
"""


def test_tls_without_ca_certificates_is_ist0128_and_ist0129():
    assert codes(SERVICE + TLS_DR % ("", ", clientCertificate: /c, privateKey: /k")) == ["IST0128", "IST0129"]
    ca = ", caCertificates: /etc/ca.pem"
    assert codes(SERVICE + TLS_DR % (ca, ca + ", clientCertificate: /c, privateKey: /k")) == []


def test_gateways_sharing_selector_port_and_host_are_ist0145():
    assert codes(gateway("a") + gateway("b") + GATEWAY_WORKLOAD) == ["IST0145", "IST0145"]
    assert codes(gateway("a") + gateway("b", hosts="[b.example.com]") + GATEWAY_WORKLOAD) == []


def sidecar(name: str, selector: str | None) -> str:
    select = f"workloadSelector: {{labels: {selector}}}" if selector else ""
    return f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {name}, namespace: default}}
spec:
  {select}
  egress: [{{hosts: ["./*"]}}]
---
"""


def sidecar_codes(text: str) -> list[str]:
    # Only this analyzer: pilot warns (IST0106) of the Sidecar fields it does not serve yet.
    return [m.type.code for m in analyzers.sidecar_selectors(Mesh(parse_text(text, "mesh.yaml").objects))]


def test_sidecar_selector_conflicts_are_ist0110_and_ist0111():
    assert sidecar_codes(SERVICE + sidecar("a", None) + sidecar("b", None)) == ["IST0111", "IST0111"]
    conflicting = SERVICE + sidecar("a", "{app: reviews}") + sidecar("b", "{version: v1}")
    assert sidecar_codes(conflicting) == ["IST0110", "IST0110"]
    assert sidecar_codes(SERVICE + sidecar("a", "{version: v1}") + sidecar("b", "{version: v2}")) == []


def selected_dr(name: str, labels: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: default}}
spec:
  host: reviews
  workloadSelector: {{matchLabels: {labels}}}
---
"""


def test_destination_rules_selecting_one_workload_conflict():
    assert codes(SERVICE + selected_dr("a", "{app: reviews}") + selected_dr("b", "{version: v2}")) == [
        "PLT0001",
        "PLT0001",
    ]
    assert codes(SERVICE + selected_dr("a", "{version: v1}") + selected_dr("b", "{version: v2}")) == []


def test_the_command_exits_1_on_errors_and_prints_json(tmp_path: Path):
    (tmp_path / "good.yaml").write_text(SERVICE + DR % ("v2", "v2") + vs())
    out = StringIO()
    assert run(AnalyzeOptions((str(tmp_path),)), out) == 0
    assert "No validation issues" in out.getvalue()
    (tmp_path / "bad.yaml").write_text(vs("other", subset="v9"))
    out = StringIO()
    assert run(AnalyzeOptions((str(tmp_path),), "json"), out) == 1
    found = json.loads(out.getvalue())
    assert {m["code"] for m in found} == {"IST0101", "IST0109"}
    assert all(m["level"] == "Error" and m["reference"].endswith(".yaml") for m in found)
    # Each message has the line of its field: the subset of bad.yaml's one destination (line 8).
    [subset] = [m for m in found if m["code"] == "IST0101"]
    assert subset["reference"].endswith("bad.yaml") and subset["line"] == 8


def test_a_candidate_file_replaces_the_object_it_edits(tmp_path: Path) -> None:
    mesh = tmp_path / "mesh"
    mesh.mkdir()
    (mesh / "mesh.yaml").write_text(SERVICE + DR % ("v2", "v2") + vs())
    (tmp_path / "candidate.yaml").write_text(vs(subset="v9"))
    out = StringIO()
    assert run(AnalyzeOptions((str(mesh), str(tmp_path / "candidate.yaml"))), out) == 1
    # The edit's missing subset, and no IST0109: the candidate is the folder's object, edited.
    assert "IST0101" in out.getvalue() and "IST0109" not in out.getvalue(), out.getvalue()


def peer(name: str, namespace: str = "default", selector: str | None = None, created: str = "") -> str:
    stamp = f", creationTimestamp: '{created}'" if created else ""
    select = f"selector: {{matchLabels: {selector}}}, " if selector else ""
    return f"""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: {name}, namespace: {namespace}{stamp}}}
spec: {{{select}mtls: {{mode: STRICT}}}}
---
"""


def peer_messages(text: str) -> list[tuple[str, str, str]]:
    result = parse_text(text, "mesh.yaml")
    messages = analyzers.peer_authentications(Mesh(result.objects))
    return [(m.type.code, str(m.key), m.text) for m in messages]


def test_more_than_one_mesh_or_namespace_wide_peer_authentication_names_the_oldest():
    found = peer_messages(
        peer("newer", "istio-system", created="2024-02-01T00:00:00Z")
        + peer("older", "istio-system", created="2024-01-01T00:00:00Z")
        + peer("b")
        + peer("a")
        + peer("only", "other")
    )
    assert [(code, key) for code, key, _ in found] == [
        ("PLT0002", "PeerAuthentication default/b"),
        ("PLT0002", "PeerAuthentication istio-system/newer"),
    ]
    assert '(namespace-wide): Istio applies only the oldest, "a", and ignores "b"' in found[0][2]
    assert '(mesh-wide): Istio applies only the oldest, "older", and ignores "newer"' in found[1][2]


def test_peer_authentications_selecting_one_workload_name_the_one_that_applies():
    found = peer_messages(
        SERVICE
        + peer("v1", selector="{version: v1}", created="2024-02-01T00:00:00Z")
        + peer("app", selector="{app: reviews}", created="2024-01-01T00:00:00Z")
        + peer("v2", selector="{version: v2}", created="2024-03-01T00:00:00Z")
        + peer("mesh-selector", "istio-system", selector="{app: reviews}")
    )
    assert [(code, key) for code, key, _ in found] == [
        ("PLT0003", "PeerAuthentication default/v1"),
        ("PLT0003", "PeerAuthentication default/v2"),
    ]
    assert 'Istio applies the oldest, "app", to it and ignores "v1" there' in found[0][2]
    assert 'select the same workload "ServiceEntry default/reviews"' in found[0][2]
    # One policy per level: nothing to say.
    assert (
        peer_messages(SERVICE + peer("ns") + peer("v1", selector="{version: v1}") + peer("m", "istio-system"))
        == []
    )


def test_the_root_namespace_comes_from_the_mesh_config():
    mesh = """
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: "rootNamespace: mesh-root"
---
"""
    found = peer_messages(mesh + peer("a", "mesh-root") + peer("b", "mesh-root"))
    assert "(mesh-wide)" in found[0][2]
