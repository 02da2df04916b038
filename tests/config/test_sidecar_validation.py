"""Sidecar and WorkloadGroup validation: Istio's own cases (pkg/config/validation/validation_test.go,
TestValidateSidecar and TestValidateWorkloadGroup), each as (spec, valid, warns), plus the field paths."""

from __future__ import annotations

from typing import Any

import pytest

from pilot.config import kinds
from pilot.config.parse import parse_text
from tests.config.helpers import problems

ALL = [{"hosts": ["*/*"]}]
HTTP90 = {"protocol": "http", "number": 90, "name": "foo"}
TCP90 = {"protocol": "tcp", "number": 90, "name": "foo"}
POOL = {
    "http": {
        "http1MaxPendingRequests": 1024,
        "http2MaxRequests": 1024,
        "maxRequestsPerConnection": 1024,
        "maxRetries": 1024,
    }
}
UDS = {"protocol": "http", "number": 0, "name": "uds"}
BAR = ["ns1/bar.com"]


def ingress(
    port: dict[str, Any] | None = None, endpoint: str = "127.0.0.1:9999", **more: Any
) -> dict[str, Any]:
    listener: dict[str, Any] = {"defaultEndpoint": endpoint, **more}
    if port is not None:
        listener["port"] = port
    return listener


def tls_case(**tls: Any) -> dict[str, Any]:
    return {"ingress": [ingress(TCP90, tls={"mode": "SIMPLE", **tls})]}


SIDECAR_CASES: list[tuple[str, dict[str, Any], bool, bool]] = [
    ("empty ingress and egress", {}, False, False),
    ("default", {"egress": ALL}, True, False),
    ("workload selector without labels", {"egress": ALL, "workloadSelector": {}}, True, True),
    ("import local namespace with wildcard", {"egress": [{"hosts": ["./*"]}]}, True, False),
    ("import local namespace with fqdn", {"egress": [{"hosts": ["./foo.com"]}]}, True, False),
    ("import nothing", {"egress": [{"hosts": ["~/*"]}]}, True, False),
    ("import all except a namespace", {"egress": [{"hosts": ["*/*", "~ns1/*"]}]}, True, False),
    ("import all except an exact host", {"egress": [{"hosts": ["*/*", "~/foo.com"]}]}, True, False),
    ("exclude with invalid namespace", {"egress": [{"hosts": ["*/*", "~Invalid_NS/*"]}]}, False, False),
    ("bad egress host 1", {"egress": [{"hosts": ["*"]}]}, False, False),
    ("bad egress host 2", {"egress": [{"hosts": ["/"]}]}, False, False),
    ("empty egress host", {"egress": [{"hosts": []}]}, False, False),
    ("multiple wildcard egress", {"egress": [{"hosts": ["*/foo.com"]}, {"hosts": BAR}]}, False, False),
    (
        "wildcard egress not in end",
        {
            "egress": [
                {"hosts": ["*/foo.com"]},
                {"port": {"protocol": "http", "number": 8080, "name": "h8080"}, "hosts": BAR},
            ]
        },
        False,
        False,
    ),
    (
        "invalid Port",
        {"egress": [{"port": {"protocol": "http1", "number": 1000000}, "hosts": BAR}]},
        False,
        False,
    ),
    (
        "Port without name",
        {"egress": [{"port": {"protocol": "http", "number": 8080}, "hosts": BAR}]},
        True,
        False,
    ),
    (
        "UDS bind in outbound",
        {"egress": [{"port": UDS, "hosts": BAR, "bind": "unix:///@foo/bar/com"}]},
        True,
        False,
    ),
    (
        "UDS bind in inbound",
        {"ingress": [ingress(UDS, "127.0.0.1:9999", bind="unix:///@foo/bar/com")]},
        False,
        False,
    ),
    (
        "UDS bind in outbound 2",
        {"egress": [{"port": UDS, "hosts": BAR, "bind": "unix:///foo/bar/com"}]},
        True,
        False,
    ),
    (
        "invalid bind",
        {"egress": [{"port": UDS, "hosts": BAR, "bind": "foobar:///@foo/bar/com"}]},
        False,
        False,
    ),
    (
        "invalid capture mode with uds bind",
        {"egress": [{"port": UDS, "hosts": BAR, "bind": "unix:///@foo/bar/com", "captureMode": "IPTABLES"}]},
        False,
        False,
    ),
    (
        "duplicate UDS bind",
        {"egress": [{"port": UDS, "hosts": BAR, "bind": "unix:///@foo/bar/com"}] * 2},
        False,
        False,
    ),
    (
        "duplicate ports",
        {
            "egress": [
                {"port": HTTP90, "hosts": BAR},
                {"port": {"protocol": "tcp", "number": 90, "name": "tcp"}, "hosts": ["ns2/bar.com"]},
            ]
        },
        False,
        False,
    ),
    ("ingress without port", {"ingress": [ingress(None, "127.0.0.1:110")], "egress": ALL}, False, False),
    (
        "ingress without port and with IPv6 endpoint",
        {"ingress": [ingress(None, "[::1]:110")], "egress": ALL},
        False,
        False,
    ),
    (
        "ingress with duplicate ports",
        {
            "ingress": [ingress(HTTP90, "127.0.0.1:110"), ingress({**TCP90, "name": "bar"}, "127.0.0.1:110")],
            "egress": ALL,
        },
        False,
        False,
    ),
    (
        "ingress with duplicate ports and IPv6 endpoint",
        {
            "ingress": [ingress(HTTP90, "[::1]:110"), ingress({**TCP90, "name": "bar"}, "[::1]:110")],
            "egress": ALL,
        },
        False,
        False,
    ),
    ("ingress without default endpoint", {"ingress": [{"port": HTTP90}], "egress": ALL}, True, False),
    (
        "ingress with invalid default endpoint in IPv4",
        {"ingress": [ingress(HTTP90, "1.1.1.1:90")]},
        False,
        False,
    ),
    (
        "ingress with invalid default endpoint in IPv6",
        {"ingress": [ingress(HTTP90, "[1:1:1:1:1:1:1:1]:90")]},
        False,
        False,
    ),
    (
        "ingress with invalid default endpoint uds",
        {"ingress": [ingress(HTTP90, "unix:///")], "egress": ALL},
        False,
        False,
    ),
    (
        "ingress with invalid default endpoint port in IPv4",
        {"ingress": [ingress(HTTP90, "127.0.0.1:hi")], "egress": ALL},
        False,
        False,
    ),
    (
        "ingress with invalid default endpoint port in IPv6",
        {"ingress": [ingress(HTTP90, "[::1]:hi")], "egress": ALL},
        False,
        False,
    ),
    ("valid ingress and egress in IPv4", {"ingress": [ingress(HTTP90)], "egress": ALL}, True, False),
    (
        "valid ingress and egress in IPv6",
        {"ingress": [ingress(HTTP90, "[::1]:9999")], "egress": ALL},
        True,
        False,
    ),
    ("valid ingress and empty egress in IPv4", {"ingress": [ingress(HTTP90)]}, True, False),
    ("valid ingress and empty egress in IPv6", {"ingress": [ingress(HTTP90, "[::1]:9999")]}, True, False),
    ("just outbound traffic policy", {"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}, True, False),
    (
        "empty protocol in IPv4",
        {"ingress": [ingress({"number": 90, "name": "foo"})], "egress": ALL},
        True,
        False,
    ),
    (
        "empty protocol in IPv6",
        {"ingress": [ingress({"number": 90, "name": "foo"}, "[::1]:9999")], "egress": ALL},
        True,
        False,
    ),
    (
        "ALLOW_ANY with no egress proxy",
        {"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}, "egress": ALL},
        True,
        False,
    ),
    (
        "egress proxy with REGISTRY_ONLY (default)",
        {
            "outboundTrafficPolicy": {
                "egressProxy": {"host": "foo.bar", "subset": "shiny", "port": {"number": 5000}}
            },
            "egress": ALL,
        },
        False,
        False,
    ),
    (
        "egress proxy with ALLOW_ANY",
        {
            "outboundTrafficPolicy": {
                "mode": "ALLOW_ANY",
                "egressProxy": {"host": "foo.bar", "subset": "shiny", "port": {"number": 5000}},
            },
            "egress": ALL,
        },
        True,
        False,
    ),
    (
        "egress proxy with ALLOW_ANY, invalid FQDN",
        {
            "outboundTrafficPolicy": {
                "mode": "ALLOW_ANY",
                "egressProxy": {"host": "foobar*123", "subset": "shiny", "port": {"number": 5000}},
            },
            "egress": ALL,
        },
        False,
        False,
    ),
    (
        "egress proxy without port with ALLOW_ANY",
        {
            "outboundTrafficPolicy": {
                "mode": "ALLOW_ANY",
                "egressProxy": {"host": "foo.bar", "subset": "shiny"},
            },
            "egress": ALL,
        },
        False,
        False,
    ),
    ("egress only one wildcarded", {"egress": [{"hosts": ["*/*", "test/a.com"]}]}, True, True),
    ("egress wildcarded ns", {"egress": [{"hosts": ["*/b.com", "test/a.com"]}]}, True, False),
    (
        "egress duplicated with wildcarded same namespace",
        {"egress": [{"hosts": ["test/*", "test/a.com"]}]},
        True,
        True,
    ),
    ("invalid partial wildcard", {"egress": [{"hosts": ["test/*a.com"]}]}, False, False),
    (
        "egress duplicated with wildcarded same namespace .",
        {"egress": [{"hosts": ["./*", "bar/a.com"]}]},
        True,
        True,
    ),
    ("ingress tls ISTIO_MUTUAL", {"ingress": [ingress(HTTP90, tls={"mode": "ISTIO_MUTUAL"})]}, False, False),
    (
        "ingress tls AUTO_PASSTHROUGH",
        {"ingress": [ingress(HTTP90, tls={"mode": "AUTO_PASSTHROUGH"})]},
        False,
        False,
    ),
    ("ingress tls invalid protocol", {"ingress": [ingress(TCP90, tls={"mode": "SIMPLE"})]}, False, False),
    ("ingress tls httpsRedirect", tls_case(httpsRedirect=True), False, False),
    ("ingress tls SAN entries", tls_case(subjectAltNames=["httpbin.com"]), False, False),
    ("ingress tls credentialName", tls_case(credentialName="secret-name"), False, False),
    ("valid inbound connection pool", {"inboundConnectionPool": POOL}, True, False),
    (
        "valid port-level connection pool with top level default",
        {"ingress": [{"port": HTTP90, "connectionPool": POOL}], "inboundConnectionPool": POOL},
        True,
        False,
    ),
    (
        "valid port-level connection pool without a top level default",
        {"ingress": [{"port": HTTP90, "connectionPool": POOL}]},
        True,
        False,
    ),
    (
        "warn http connection settings on tcp port",
        {"ingress": [{"port": TCP90, "connectionPool": POOL}]},
        True,
        True,
    ),
    ("invalid top level connection pool", {"inboundConnectionPool": {}}, False, False),
    (
        "invalid port-level connection pool",
        {"ingress": [{"port": TCP90, "connectionPool": {}}]},
        False,
        False,
    ),
    # pilot's own: a valid HTTPS ingress with certificates
    (
        "ingress tls SIMPLE on HTTPS",
        {
            "ingress": [
                ingress(
                    {"protocol": "HTTPS", "number": 443, "name": "https"},
                    tls={"mode": "SIMPLE", "serverCertificate": "/c.pem", "privateKey": "/k.pem"},
                )
            ]
        },
        True,
        False,
    ),
]


def severities(kind: str, spec: dict[str, Any], namespace: str = "bar") -> tuple[bool, bool]:
    """(valid, warns) as Istio's checkValidation sees them; pilot's not-yet-supported warnings aside."""
    found = problems(kind, spec, name="foo", namespace=namespace)
    errors = [p for p in found if p[0] == "error"]
    warnings = [p for p in found if p[0] == "warning" and "not yet supported by pilot" not in p[2]]
    return not errors, bool(warnings)


@pytest.mark.parametrize(
    ("spec", "valid", "warns"), [c[1:] for c in SIDECAR_CASES], ids=[c[0] for c in SIDECAR_CASES]
)
def test_sidecar_validation_follows_istio(spec: dict[str, Any], valid: bool, warns: bool) -> None:
    assert severities(kinds.SIDECAR, spec) == (valid, warns), problems(kinds.SIDECAR, spec, "foo", "bar")


def test_sidecar_errors_name_the_field() -> None:
    spec = {
        "workloadSelector": {"labels": {"app": "*"}},
        "ingress": [ingress(HTTP90, "1.1.1.1:90", bind="not-an-ip")],
        "egress": [
            {"hosts": ["*/foo.com"]},
            {"port": {"protocol": "http", "number": 8080, "targetPort": 9}, "hosts": ["nope"]},
        ],
    }
    errors = {
        (path, message) for severity, path, message in problems(kinds.SIDECAR, spec) if severity == "error"
    }
    assert errors == {
        ("spec.workloadSelector.labels", 'wildcard is not supported in selector: "app=*"'),
        ("spec.ingress[0].bind", "not-an-ip is not a valid IP"),
        (
            "spec.ingress[0].defaultEndpoint",
            "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,"
            "unix://filepath or unset",
        ),
        (
            "spec.egress[0]",
            "sidecar: the egress listener with empty port should be the last listener in the list",
        ),
        ("spec.egress[1].port.targetPort", "targetPort has no impact on Sidecars"),
        ("spec.egress[1].hosts[0]", "host must be of form namespace/dnsName"),
    }


def test_sidecar_error_names_file_line_and_object() -> None:
    text = (
        "apiVersion: networking.istio.io/v1beta1\nkind: Sidecar\nmetadata: {name: s, namespace: ns}\n"
        "spec:\n  egress:\n  - hosts:\n    - bad-host\n"
    )
    result = parse_text(text, "s.yaml")
    assert [str(e) for e in result.errors if e.severity == "error"] == [
        "s.yaml:7: Sidecar ns/s: spec.egress[0].hosts[0]: host must be of form namespace/dnsName"
    ]
    assert {k.kind for k in result.rejected} == {"Sidecar"}


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_sidecar_and_workload_group_are_served_at_every_version(version: str) -> None:
    for kind in (kinds.SIDECAR, kinds.WORKLOAD_GROUP):
        resolved = kinds.resolve(f"networking.istio.io/{version}", kind)
        assert resolved.info is not None and resolved.info.kind == kind
        assert not resolved.not_served


PROBE_PORT = {"port": 5}
WORKLOAD_GROUP_CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("valid", {"template": {}}, True),
    ("no template", {"metadata": {"labels": {"app": "a"}}}, False),
    ("invalid", {"template": {}, "metadata": {"labels": {".": "~"}}}, False),
    ("probe missing method", {"template": {}, "probe": {}}, False),
    ("probe http empty", {"template": {}, "probe": {"httpGet": {}}}, False),
    ("probe http valid", {"template": {}, "probe": {"httpGet": PROBE_PORT}}, True),
    ("probe http bad scheme", {"template": {}, "probe": {"httpGet": {**PROBE_PORT, "scheme": "FTP"}}}, False),
    (
        "probe http bad header",
        {"template": {}, "probe": {"httpGet": {**PROBE_PORT, "httpHeaders": [{"name": "a b"}]}}},
        False,
    ),
    ("probe tcp invalid", {"template": {}, "probe": {"tcpSocket": {}}}, False),
    ("probe tcp valid", {"template": {}, "probe": {"tcpSocket": PROBE_PORT}}, True),
    ("probe exec invalid", {"template": {}, "probe": {"exec": {}}}, False),
    ("probe exec valid", {"template": {}, "probe": {"exec": {"command": ["foo", "bar"]}}}, True),
    ("negative period", {"template": {}, "probe": {"periodSeconds": -1, "exec": {"command": ["x"]}}}, False),
    ("template port out of range", {"template": {"ports": {"http": 70000}}}, False),
    (
        "template unix address with ports",
        {"template": {"address": "unix:///sock", "ports": {"http": 80}}},
        False,
    ),
]


@pytest.mark.parametrize(
    ("spec", "valid"), [c[1:] for c in WORKLOAD_GROUP_CASES], ids=[c[0] for c in WORKLOAD_GROUP_CASES]
)
def test_workload_group_validation_follows_istio(spec: dict[str, Any], valid: bool) -> None:
    assert severities(kinds.WORKLOAD_GROUP, spec)[0] is valid, problems(kinds.WORKLOAD_GROUP, spec)


def test_workload_group_template_address_is_ignored_with_a_warning() -> None:
    found = problems(kinds.WORKLOAD_GROUP, {"template": {"address": "10.0.0.1"}})
    assert ("warning", "spec.template.address") in {(s, p) for s, p, _ in found}
    assert not [p for p in found if p[0] == "error"]


def test_workload_group_probe_errors_name_the_field() -> None:
    spec = {"template": {}, "probe": {"httpGet": {"port": 0, "httpHeaders": [{"name": ""}]}}}
    errors = {(p, m) for s, p, m in problems(kinds.WORKLOAD_GROUP, spec) if s == "error"}
    assert errors == {
        ("spec.probe.httpGet.port", "port number 0 must be in the range 1..65535"),
        ("spec.probe.httpGet.httpHeaders[0].name", "header name cannot be empty"),
    }
