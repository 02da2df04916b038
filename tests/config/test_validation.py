"""DestinationRule, ServiceEntry, WorkloadEntry, Gateway and mesh validation, as Istio's webhook has it,
and the table of fields pilot does not translate yet."""

from __future__ import annotations

from typing import Any, cast

import pytest
import yaml
from google.protobuf.descriptor import Descriptor

from pilot._gen import networking_pb2 as nw
from pilot.config import kinds
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.config.parse import parse_text
from pilot.config.validation import validate
from pilot.config.validation.support import (
    NOT_YET_SUPPORTED,
    NOT_YET_SUPPORTED_MESSAGE,
    field_by_json_name,
)
from tests.config.helpers import errors, problems, vs, warnings

# --- DestinationRule --------------------------------------------------------------------------------------

DR_ERRORS: list[tuple[dict[str, Any], tuple[str, str]]] = [
    ({}, ("spec.host", "empty domain name not allowed")),
    (
        {"host": "r", "trafficPolicy": {}},
        ("spec.trafficPolicy", "traffic policy must have at least one field"),
    ),
    (
        {
            "host": "r",
            "trafficPolicy": {"tunnel": {"targetHost": "a.com", "targetPort": 80}, "proxyProtocol": {}},
        },
        ("spec.trafficPolicy", "tunnel and proxyProtocol must not be set together"),
    ),
    (
        {
            "host": "r",
            "trafficPolicy": {"tunnel": {"protocol": "GET", "targetHost": "a.com", "targetPort": 80}},
        },
        ("spec.trafficPolicy.tunnel.protocol", 'tunnel protocol must be "CONNECT" or "POST"'),
    ),
    (
        {"host": "r", "trafficPolicy": {"connectionPool": {}}},
        ("spec.trafficPolicy.connectionPool", "connection pool must have at least one field"),
    ),
    (
        {"host": "r", "trafficPolicy": {"connectionPool": {"http": {"http2MaxRequests": -1}}}},
        (
            "spec.trafficPolicy.connectionPool.http.http2MaxRequests",
            "http2 max requests must be non-negative",
        ),
    ),
    (
        {
            "host": "r",
            "trafficPolicy": {
                "connectionPool": {"http": {"h2UpgradePolicy": "UPGRADE", "useClientProtocol": True}}
            },
        },
        (
            "spec.trafficPolicy.connectionPool.http",
            "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
        ),
    ),
    (
        {"host": "r", "trafficPolicy": {"connectionPool": {"tcp": {"connectTimeout": "0s"}}}},
        ("spec.trafficPolicy.connectionPool.tcp.connectTimeout", "duration must be greater than 1ms"),
    ),
    (
        {"host": "r", "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpCookie": {"ttl": "0s"}}}}},
        ("spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name", "name required for HttpCookie"),
    ),
    (
        {
            "host": "r",
            "trafficPolicy": {
                "loadBalancer": {"consistentHash": {"useSourceIp": True, "maglev": {"tableSize": 10}}}
            },
        },
        (
            "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
            "tableSize must be a prime number for maglev",
        ),
    ),
    (
        {
            "host": "r",
            "trafficPolicy": {
                "loadBalancer": {"consistentHash": {"useSourceIp": True, "httpHeaderName": "x"}}
            },
        },
        (
            "spec.trafficPolicy.loadBalancer.consistentHash.useSourceIp",  # the later one in the YAML
            'only one of "httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName" may be set',
        ),
    ),
    (
        {
            "host": "r",
            "trafficPolicy": {
                "loadBalancer": {"localityLbSetting": {"distribute": [{"from": "a/*", "to": {"b/*": 60}}]}}
            },
        },
        (
            "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to",
            "total locality weight 60 != 100",
        ),
    ),
    (
        {
            "host": "r",
            "trafficPolicy": {
                "loadBalancer": {"localityLbSetting": {"failover": [{"from": "a", "to": "a"}]}},
                "outlierDetection": {"interval": "1s"},
            },
        },
        (
            "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]",
            "locality lb failover settings must specify different regions",
        ),
    ),
    (
        {"host": "r", "trafficPolicy": {"outlierDetection": {"consecutiveLocalOriginFailures": 3}}},
        (
            "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures",
            "outlier detection consecutive local "
            "origin failures is specified, but split external local origin errors is set to false",
        ),
    ),
    (
        {"host": "r", "trafficPolicy": {"outlierDetection": {"minHealthPercent": -1}}},
        ("spec.trafficPolicy.outlierDetection.minHealthPercent", "percentage -1 is not in range 0..100"),
    ),
    (
        {
            "host": "r",
            "trafficPolicy": {"tls": {"mode": "SIMPLE", "insecureSkipVerify": True, "caCertificates": "/ca"}},
        },
        (
            "spec.trafficPolicy.tls",
            "cannot specify CaCertificates or CredentialName or SubjectAltNames when "
            "InsecureSkipVerify is set true",
        ),
    ),
    (
        {
            "host": "r",
            "trafficPolicy": {"tls": {"mode": "MUTUAL", "credentialName": "c", "privateKey": "/k"}},
        },
        (
            "spec.trafficPolicy.tls",
            "cannot specify client certificates or CA certificate or CA CRL If credentialName is set",
        ),
    ),
    (
        {"host": "r", "subsets": [{"name": "v1", "labels": {"version/x/y": "1"}}]},
        ("spec.subsets[0].labels", 'invalid tag key: "version/x/y"'),
    ),
    (
        {"host": "r", "subsets": [{"name": "", "labels": {"a": "b"}}]},
        ("spec.subsets[0].name", "subset name cannot be empty"),
    ),
    (
        {"host": "r", "subsets": [{"name": "v1", "trafficPolicy": {}}]},
        ("spec.subsets[0].trafficPolicy", "traffic policy must have at least one field"),
    ),
    (
        {"host": "r", "workloadSelector": {"matchLabels": {"app": "a"}}, "exportTo": ["other"]},
        (
            "spec.exportTo",
            "destination rule with workload selector cannot have exportTo beyond current namespace",
        ),
    ),
    (
        {"host": "r", "workloadSelector": {"matchLabels": {"app": "*"}}},
        ("spec.workloadSelector.matchLabels", 'wildcard is not supported in selector: "app=*"'),
    ),
]


@pytest.mark.parametrize(("spec", "expected"), DR_ERRORS, ids=[e[1][1][:60] for e in DR_ERRORS])
def test_destination_rule_errors(spec: dict[str, Any], expected: tuple[str, str]) -> None:
    assert expected in errors("DestinationRule", spec)


def test_consistent_hash_without_a_key_is_a_warning() -> None:
    spec = {"host": "r", "trafficPolicy": {"loadBalancer": {"consistentHash": {"minimumRingSize": 1024}}}}
    assert errors("DestinationRule", spec) == set()
    found = {path for path, _ in warnings("DestinationRule", spec)}
    assert {
        "spec.trafficPolicy.loadBalancer.consistentHash",
        "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize",
    } <= found


def test_failover_without_outlier_detection_warns() -> None:
    spec = {
        "host": "r",
        "trafficPolicy": {"loadBalancer": {"localityLbSetting": {"failover": [{"from": "a", "to": "b"}]}}},
    }
    assert (
        "spec.trafficPolicy.loadBalancer.localityLbSetting",
        "outlier detection policy must be provided for failover",
    ) in warnings("DestinationRule", spec)


# --- ServiceEntry and WorkloadEntry -----------------------------------------------------------------------

PORT = {"number": 80, "name": "http", "protocol": "HTTP"}

SE_ERRORS: list[tuple[dict[str, Any], tuple[str, str]]] = [
    ({"hosts": ["*"], "ports": [PORT]}, ("spec.hosts[0]", "invalid host *")),
    (
        {"hosts": ["a.com"], "addresses": ["10.0.0.0/8"], "ports": [PORT], "resolution": "DNS"},
        ("spec.addresses", "CIDR addresses are allowed only for NONE/STATIC resolution types"),
    ),
    (
        {"hosts": ["a.com"], "addresses": ["10.0.0.300"], "ports": [PORT]},
        ("spec.addresses[0]", "10.0.0.300 is not a valid IP"),
    ),
    (
        {
            "hosts": ["a.com"],
            "ports": [PORT],
            "resolution": "DNS_ROUND_ROBIN",
            "endpoints": [{"address": "a.com"}, {"address": "b.com"}],
        },
        ("spec.endpoints", "there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN"),
    ),
    (
        {"hosts": ["a.com"], "ports": [PORT], "resolution": "DNS", "endpoints": [{"address": "bad_host"}]},
        ("spec.endpoints[0].address", 'endpoint address "bad_host" is not a valid FQDN or an IP address'),
    ),
    (
        {
            "hosts": ["a.com"],
            "ports": [PORT, {"number": 81, "name": "b", "protocol": "HTTP"}],
            "resolution": "STATIC",
            "endpoints": [{"address": "unix:///var/run/a.sock"}],
        },
        ("spec.endpoints[0]", "exactly 1 service port required for unix endpoints"),
    ),
    (
        {
            "hosts": ["a.com"],
            "ports": [PORT],
            "resolution": "STATIC",
            "endpoints": [{"address": "unix://relative"}],
        },
        ("spec.endpoints[0].address", "relative is not an absolute path to a file"),
    ),
    (
        {
            "hosts": ["a.com"],
            "ports": [PORT],
            "resolution": "STATIC",
            "workloadSelector": {"labels": {"a": "b"}},
            "endpoints": [{"address": "10.0.0.1"}],
        },
        ("spec", "only one of WorkloadSelector or Endpoints is allowed in Service Entry"),
    ),
    (
        {"hosts": ["a.com"], "ports": [{"number": 0, "name": "Bad_Name"}]},
        ("spec.ports[0].name", "invalid port name: Bad_Name"),
    ),
    (
        {"hosts": ["a.com"], "ports": [{"number": 0, "name": "p"}]},
        ("spec.ports[0].number", "port number 0 must be in the range 1..65535"),
    ),
    (
        {"hosts": ["a.com"], "ports": [{**PORT, "targetPort": 70000}]},
        ("spec.ports[0].targetPort", "port number 70000 must be in the range 1..65535"),
    ),
    (
        {"hosts": ["a.com"], "ports": [PORT], "exportTo": ["~", "a"]},
        ("spec.exportTo", "cannot export service entry to no one (~) and someone"),
    ),
]


@pytest.mark.parametrize(("spec", "expected"), SE_ERRORS, ids=[e[1][1][:60] for e in SE_ERRORS])
def test_service_entry_errors(spec: dict[str, Any], expected: tuple[str, str]) -> None:
    assert expected in errors("ServiceEntry", spec)


@pytest.mark.parametrize(
    "spec",
    [
        {"hosts": ["a.com"], "ports": [PORT], "resolution": "DNS", "endpoints": [{"address": "b.com"}]},
        {"hosts": ["*.a.com"], "ports": [PORT], "resolution": "NONE"},
        {"hosts": ["a.com"], "ports": [PORT], "exportTo": ["~"]},
        {
            "hosts": ["a.com", "b.com"],
            "ports": [PORT, {"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "DNS",
        },
        {
            "hosts": ["a.com"],
            "ports": [PORT],
            "resolution": "STATIC",
            "workloadSelector": {"labels": {"app": "a"}},
        },
    ],
)
def test_service_entry_accepted(spec: dict[str, Any]) -> None:
    assert errors("ServiceEntry", spec) == set()


def test_partial_wildcard_host_is_an_error_and_a_warning() -> None:
    spec = {"hosts": ["foo*.com"], "ports": [PORT], "resolution": "NONE"}
    assert ("spec.hosts[0]", 'domain name "foo*.com" invalid (label "foo*" invalid)') in errors(
        "ServiceEntry", spec
    )
    assert ("spec.hosts[0]", 'partial wildcard "foo*.com" not allowed') in warnings("ServiceEntry", spec)


def test_static_without_endpoints_warns() -> None:
    spec = {"hosts": ["a.com"], "ports": [PORT], "resolution": "STATIC"}
    assert errors("ServiceEntry", spec) == set()
    assert (
        "spec",
        "resolution STATIC with neither endpoints nor a workloadSelector: no endpoints",
    ) in warnings("ServiceEntry", spec)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, ("spec.address", "address is required")),
        (
            {"address": "not a host"},
            ("spec.address", 'endpoint address "not a host" is not a valid FQDN or an IP address'),
        ),
        (
            {"address": "10.0.0.1", "ports": {"http": 0}},
            ("spec.ports[http]", "port number 0 must be in the range 1..65535"),
        ),
    ],
)
def test_workload_entry_errors(spec: dict[str, Any], expected: tuple[str, str]) -> None:
    assert expected in errors("WorkloadEntry", spec)


def test_workload_entry_may_have_a_hostname() -> None:
    assert errors("WorkloadEntry", {"address": "vm1.example.com", "ports": {"http": 8080}}) == set()


# --- Gateway ----------------------------------------------------------------------------------------------


def server(**fields: Any) -> dict[str, Any]:
    return {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*.example.com"], **fields}


GATEWAY_ERRORS: list[tuple[dict[str, Any], tuple[str, str]]] = [
    (
        {"servers": [server(tls={"mode": "SIMPLE", "serverCertificate": "/c", "privateKey": "/k"})]},
        ("spec.servers[0].tls", "server cannot have TLS settings for plain text HTTP ports"),
    ),
    (
        {
            "servers": [
                server(
                    port={"number": 27017, "name": "mongo", "protocol": "MONGO"}, tls={"httpsRedirect": True}
                )
            ]
        },
        ("spec.servers[0].tls", "server cannot have TLS settings for non HTTPS/TLS ports"),
    ),
    (
        {
            "servers": [
                server(
                    port={"number": 443, "name": "https", "protocol": "HTTPS"},
                    tls={"mode": "ISTIO_MUTUAL", "credentialName": "c"},
                )
            ]
        },
        ("spec.servers[0].tls.credentialName", "ISTIO_MUTUAL TLS cannot have associated credentialName"),
    ),
    (
        {
            "servers": [
                server(
                    port={"number": 443, "name": "https", "protocol": "HTTPS"},
                    tls={"mode": "MUTUAL", "serverCertificate": "/c", "privateKey": "/k"},
                )
            ]
        },
        ("spec.servers[0].tls.caCertificates", "MUTUAL TLS requires a client CA bundle"),
    ),
    (
        {"servers": [server(port={"number": 80, "name": "p", "protocol": "FOO"})]},
        (
            "spec.servers[0].port.protocol",
            'invalid protocol "FOO", supported protocols are HTTP, HTTP2, GRPC, '
            "GRPC-WEB, MONGO, REDIS, MYSQL, TCP",
        ),
    ),
    (
        {"servers": [server(port={"number": 80, "protocol": "HTTP"})]},
        ("spec.servers[0].port.name", "port name must be set"),
    ),
    (
        {"servers": [server(port={"number": 80, "name": "p", "protocol": "HTTP", "targetPort": 8080})]},
        ("spec.servers[0].port.targetPort", "targetPort has no impact on Gateways"),
    ),
    (
        {"servers": [server(bind="unix:///var/run/gw.sock")]},
        ("spec.servers[0].port.number", "port number must be 0 for unix domain socket"),
    ),
    ({"servers": [server(bind="not-an-ip")]}, ("spec.servers[0].bind", "not-an-ip is not a valid IP")),
    (
        {"servers": [server(hosts=["bad_ns/a.example.com"])]},
        ("spec.servers[0].hosts[0]", 'invalid namespace value "bad_ns" in gateway'),
    ),
    (
        {"servers": [server(hosts=["ns/*foo.example.com"])]},
        ("spec.servers[0].hosts[0]", 'partial wildcard "*foo.example.com" not allowed'),
    ),
    (
        {"servers": [server(hosts=[])]},
        ("spec.servers[0].hosts", "server config must contain at least one host"),
    ),
    ({"servers": [{"hosts": ["a.example.com"]}]}, ("spec.servers[0].port", "port is required")),
]


@pytest.mark.parametrize(("spec", "expected"), GATEWAY_ERRORS, ids=[e[1][1][:60] for e in GATEWAY_ERRORS])
def test_gateway_errors(spec: dict[str, Any], expected: tuple[str, str]) -> None:
    assert expected in errors("Gateway", spec)


def test_gateway_name_must_be_a_dns_label() -> None:
    assert ("metadata.name", 'invalid gateway name: "my.gateway"') in errors(
        "Gateway", {"servers": [server()]}, name="my.gateway"
    )


@pytest.mark.parametrize(
    "spec",
    [
        {"servers": [server(tls={"httpsRedirect": True})]},
        {
            "servers": [
                server(hosts=["*", "ns/a.example.com", "./b.example.com", "*/c.example.com", "10.0.0.1"])
            ]
        },
        {
            "servers": [
                server(
                    port={"number": 443, "name": "https", "protocol": "HTTPS"},
                    tls={"mode": "SIMPLE", "credentialName": "cert"},
                )
            ]
        },
        {
            "servers": [
                server(port={"number": 0, "name": "uds", "protocol": "HTTP"}, bind="unix:///var/run/a.sock")
            ]
        },
    ],
)
def test_gateway_accepted(spec: dict[str, Any]) -> None:
    assert errors("Gateway", spec) == set()


# --- MeshConfig -------------------------------------------------------------------------------------------


def mesh_problems(mesh: dict[str, Any]) -> set[tuple[str, str, str]]:
    document = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "istio"},
        "data": {"mesh": yaml.safe_dump(mesh)},
    }
    return {(e.severity, e.path, e.message) for e in parse_text(yaml.safe_dump(document), "m.yaml").errors}


def test_mesh_config_connect_timeout_range() -> None:
    assert (
        "error",
        "data.mesh.connectTimeout",
        "invalid connect timeout: time 7200s must be >1ms and <1h0m0s",
    ) in (mesh_problems({"connectTimeout": "2h"}))


def test_mesh_config_trust_domain() -> None:
    assert (
        "error",
        "data.mesh.trustDomain",
        'trustDomain: trust domain name "a..b" invalid',
    ) in mesh_problems({"trustDomain": "a..b"})


# --- fields pilot does not translate yet ------------------------------------------------------------------


def _pattern_resolves(descriptor: Descriptor, steps: list[str]) -> bool:
    for index, step in enumerate(steps):
        field = field_by_json_name(descriptor, step.removesuffix("[]"))
        leaf = index == len(steps) - 1
        if field is None or step.endswith("[]") != (field.is_repeated and not leaf):
            return False
        if field.message_type is not None:
            descriptor = field.message_type
    return True


@pytest.mark.parametrize("kind", sorted(NOT_YET_SUPPORTED))
def test_not_yet_supported_table_names_real_fields(kind: str) -> None:
    descriptor = cast(Descriptor, kinds.KINDS[kind].message.DESCRIPTOR)
    for pattern in NOT_YET_SUPPORTED[kind]:
        assert _pattern_resolves(descriptor, pattern.split(".")), f"{kind}: {pattern}"


def test_not_yet_supported_fields_warn_only_where_set() -> None:
    spec = {
        "host": "r",
        "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}},
        "subsets": [
            {"name": "a", "labels": {"v": "a"}},
            {
                "name": "b",
                "labels": {"v": "b"},
                "trafficPolicy": {"loadBalancer": {"simple": "RANDOM", "warmup": {"aggression": 2}}},
            },
        ],
    }
    assert errors("DestinationRule", spec) == set()
    assert warnings("DestinationRule", spec) == {
        ("spec.subsets[1].trafficPolicy.loadBalancer.warmup.aggression", NOT_YET_SUPPORTED_MESSAGE),
    }


def test_partly_translated_fields_warn_with_their_reason() -> None:
    rule = {
        "host": "r",
        "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},  # honoured for proxies with mesh certificates
        "subsets": [{"name": "a", "labels": {"v": "a"}, "trafficPolicy": {"tls": {"mode": "SIMPLE"}}}],
    }
    assert warnings("DestinationRule", rule) == set()
    labelled = vs(match=[{"sourceLabels": {"app": "x"}}, {"sourceLabels": {"app": "y"}, "gateways": ["gw"]}])
    # sourceLabels apply to sidecars too (their views carry the labels selectors name).
    assert warnings("VirtualService", labelled) == set()


def test_translated_fields_do_not_warn() -> None:
    spec = vs(
        match=[
            {"uri": {"prefix": "/"}, "headers": {"x": {"exact": "y"}}, "queryParams": {"q": {"exact": "1"}}}
        ],
        timeout="5s",
        retries={"attempts": 2, "perTryTimeout": "1s"},
        headers={"request": {"set": {"a": "b"}}},
    )
    assert problems("VirtualService", spec) == set()


def test_validate_ignores_kinds_it_does_not_know() -> None:
    obj = ConfigObject(
        ConfigKey("EnvoyFilter", "default", "x"), "networking.istio.io/v1", nw.VirtualService(), "o"
    )
    assert validate(obj) == []


def test_validate_fills_origin_key_and_path() -> None:
    spec = nw.VirtualService(hosts=["r"])
    obj = ConfigObject(ConfigKey("VirtualService", "ns", "x"), "networking.istio.io/v1", spec, "file.yaml")
    (error,) = validate(obj)
    assert (error.origin, error.key, error.path, error.line) == ("file.yaml", obj.key, "spec", None)
    assert error.message == "http, tcp or tls must be provided in virtual service"
