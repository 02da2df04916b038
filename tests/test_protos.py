"""The generated config API (pilot._gen) is up to date with protos/, and parses Istio's published config.

Every object of the shared Istio corpus (shared/corpus/istio/*.yaml) of a kind pilot serves, and every
Sidecar, WorkloadGroup, PeerAuthentication, AuthorizationPolicy and RequestAuthentication, must parse into
the message for its kind with no unknown field: a failure here means protos/networking.proto or
protos/security.proto is missing a field. The CA API (protos/ca.proto) answers at Istio's method path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from pilot._gen import ca_pb2, ca_pb2_grpc, networking_pb2, security_pb2
from pilot.config.durations import go_duration_to_json, normalize_durations
from pilot.config.kinds import split_api_version
from tests import corpus
from tests.corpus import CORPUS, served_documents, served_files

ROOT = Path(__file__).resolve().parents[1]
CORPUS_FILES = served_files()  # the other kinds: WORKLOAD_AND_SECURITY_FILES below

KINDS: dict[str, type[Message]] = {
    "VirtualService": networking_pb2.VirtualService,
    "DestinationRule": networking_pb2.DestinationRule,
    "ServiceEntry": networking_pb2.ServiceEntry,
    "WorkloadEntry": networking_pb2.WorkloadEntry,
    "Gateway": networking_pb2.Gateway,
    "Sidecar": networking_pb2.Sidecar,
    "WorkloadGroup": networking_pb2.WorkloadGroup,
    "PeerAuthentication": security_pb2.PeerAuthentication,
    "AuthorizationPolicy": security_pb2.AuthorizationPolicy,
    "RequestAuthentication": security_pb2.RequestAuthentication,
}

# The kinds of the workload-identity and security issues, by (group, kind): the group keeps Istio's
# Gateway and the Gateway API's Gateway apart, and a kind name alone never picks a message.
NETWORKING_GROUP = "networking.istio.io"
SECURITY_GROUP = "security.istio.io"
WORKLOAD_AND_SECURITY_KINDS: dict[tuple[str, str], type[Message]] = {
    (NETWORKING_GROUP, "Sidecar"): networking_pb2.Sidecar,
    (NETWORKING_GROUP, "WorkloadGroup"): networking_pb2.WorkloadGroup,
    (SECURITY_GROUP, "PeerAuthentication"): security_pb2.PeerAuthentication,
    (SECURITY_GROUP, "AuthorizationPolicy"): security_pb2.AuthorizationPolicy,
    (SECURITY_GROUP, "RequestAuthentication"): security_pb2.RequestAuthentication,
}
# The versions Istio serves these kinds at, all with one schema.
ISTIO_VERSIONS = {NETWORKING_GROUP: ("v1", "v1beta1", "v1alpha3"), SECURITY_GROUP: ("v1", "v1beta1")}

CA_SERVICE = "istio.v1.auth.IstioCertificateService"
CA_METHOD = f"/{CA_SERVICE}/CreateCertificate"


def group_kind(document: dict[str, Any]) -> tuple[str, str]:
    group, _ = split_api_version(str(document.get("apiVersion", "")))
    return group, str(document.get("kind", ""))


def is_workload_or_security(document: dict[str, Any]) -> bool:
    return group_kind(document) in WORKLOAD_AND_SECURITY_KINDS


WORKLOAD_AND_SECURITY_FILES = [
    path for path in corpus.all_files() if any(map(is_workload_or_security, corpus.documents(path)))
]


def parse_message(message_type: type[Message], spec: dict[str, Any] | None) -> Message:
    """A ``message_type`` parsed from a YAML ``spec`` (strict: unknown fields are errors)."""
    message = message_type()
    descriptor = cast(Descriptor, message.DESCRIPTOR)
    json_format.ParseDict(normalize_durations(spec or {}, descriptor), message)
    return message


def json_name(message: type[Message], field: str) -> str:
    return message.DESCRIPTOR.fields_by_name[field].json_name


def parse_spec(kind: str, spec: dict[str, Any] | None) -> Message:
    """The message for served ``kind`` parsed from a YAML ``spec`` (strict: unknown fields are errors)."""
    return parse_message(KINDS[kind], spec)


# --- tests -----------------------------------------------------------------------------------------------


def test_generated_code_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"pilot/_gen is stale:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3m", "180s"),
        ("1h30m", "5400s"),
        ("500ms", "0.5s"),
        ("0.5s", "0.5s"),
        ("2s", "2s"),
        ("1.5h", "5400s"),
        ("250us", "0.00025s"),
        ("1ns", "0.000000001s"),
        ("-1m30s", "-90s"),
        ("0", "0s"),
        ("0s", "0s"),
        ("24h", "86400s"),
    ],
)
def test_go_duration_to_json(text: str, expected: str) -> None:
    assert go_duration_to_json(text) == expected


@pytest.mark.parametrize("text", ["", "5", "s", "1d", "1.2.3s", "10 s", "abc"])
def test_go_duration_to_json_rejects(text: str) -> None:
    assert go_duration_to_json(text) is None


def test_normalize_durations_walks_nested_repeated_and_oneof_fields() -> None:
    spec: dict[str, Any] = {
        "hosts": ["reviews"],
        "http": [
            {
                "timeout": "1h30m",
                "retries": {"attempts": 3, "per_try_timeout": "500ms"},
                "fault": {"delay": {"fixedDelay": "7s", "percent": 100}},
                "corsPolicy": {"maxAge": "24h"},
            }
        ],
    }
    msg = parse_spec("VirtualService", spec)
    route = msg.http[0]  # type: ignore[attr-defined]
    assert route.timeout.seconds == 5400
    assert route.retries.per_try_timeout.ToMilliseconds() == 500
    assert route.fault.delay.fixed_delay.seconds == 7
    assert route.cors_policy.max_age.seconds == 86400
    assert spec["http"][0]["timeout"] == "1h30m"  # the input is not modified


def test_unknown_field_is_an_error() -> None:
    with pytest.raises(json_format.ParseError):
        parse_spec("VirtualService", {"hosts": ["a"], "notAField": 1})


def test_json_names_are_istio_yaml_names() -> None:
    assert json_name(networking_pb2.VirtualService, "export_to") == "exportTo"
    assert json_name(networking_pb2.OutlierDetection, "consecutive_5xx_errors") == "consecutive5xxErrors"
    assert json_name(networking_pb2.HTTPRoute, "mirror_percent") == "mirrorPercent"
    assert json_name(networking_pb2.ConnectionPoolSettings.HTTPSettings, "http1_max_pending_requests") == (
        "http1MaxPendingRequests"
    )
    assert json_name(networking_pb2.MeshConfig, "default_http_retry_policy") == "defaultHttpRetryPolicy"
    assert networking_pb2.MeshConfig.OutboundTrafficPolicy.Mode.Value("REGISTRY_ONLY") == 0
    assert networking_pb2.MeshConfig.OutboundTrafficPolicy.Mode.Value("ALLOW_ANY") == 1


def test_mesh_config_parses() -> None:
    mesh = networking_pb2.MeshConfig()
    data: dict[str, Any] = {
        "rootNamespace": "istio-system",
        "connectTimeout": "10s",
        "protocolDetectionTimeout": "0s",
        "enableAutoMtls": True,
        "accessLogFile": "/dev/stdout",
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        "defaultHttpRetryPolicy": {"attempts": 2, "retryOn": "connect-failure"},
        "defaultServiceExportTo": ["*"],
        "trustDomain": "cluster.local",
    }
    json_format.ParseDict(normalize_durations(data, cast(Descriptor, mesh.DESCRIPTOR)), mesh)
    assert mesh.outbound_traffic_policy.mode == networking_pb2.MeshConfig.OutboundTrafficPolicy.REGISTRY_ONLY
    assert mesh.enable_auto_mtls.value is True
    assert mesh.default_http_retry_policy.attempts == 2


@pytest.mark.skipif(not CORPUS_FILES, reason=f"Istio corpus not found at {CORPUS}")
@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.name for p in CORPUS_FILES])
def test_corpus_object_parses(path: Path) -> None:
    docs = served_documents(path)
    assert docs, f"{path.name} holds no object"
    for doc in docs:
        kind = doc["kind"]
        assert kind in KINDS, f"{path.name}: no message for kind {kind}"
        name = doc.get("metadata", {}).get("name")
        try:
            parse_spec(kind, doc.get("spec"))
        except json_format.ParseError as e:
            pytest.fail(f"{path.name}: {kind} {name}: {e}")


@pytest.mark.skipif(not WORKLOAD_AND_SECURITY_FILES, reason=f"Istio corpus not found at {CORPUS}")
@pytest.mark.parametrize(
    "path", WORKLOAD_AND_SECURITY_FILES, ids=[p.name for p in WORKLOAD_AND_SECURITY_FILES]
)
def test_corpus_workload_and_security_object_parses(path: Path) -> None:
    documents = [d for d in corpus.documents(path) if is_workload_or_security(d)]
    assert documents, f"{path.name} holds no Sidecar, WorkloadGroup or security object"
    for doc in documents:
        group, kind = group_kind(doc)
        _, version = split_api_version(doc["apiVersion"])
        name = doc.get("metadata", {}).get("name")
        assert version in ISTIO_VERSIONS[group], (
            f"{path.name}: {kind} {name}: Istio has no {doc['apiVersion']}"
        )
        try:
            parse_message(WORKLOAD_AND_SECURITY_KINDS[group, kind], doc.get("spec"))
        except json_format.ParseError as e:
            pytest.fail(f"{path.name}: {kind} {name}: {e}")


@pytest.mark.skipif(not WORKLOAD_AND_SECURITY_FILES, reason=f"Istio corpus not found at {CORPUS}")
def test_corpus_holds_every_workload_and_security_kind() -> None:
    found = {group_kind(d) for path in WORKLOAD_AND_SECURITY_FILES for d in corpus.documents(path)}
    assert set(WORKLOAD_AND_SECURITY_KINDS) <= found


def test_gateway_api_kinds_do_not_pick_an_istio_message() -> None:
    assert not is_workload_or_security({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway"})
    assert not is_workload_or_security({"apiVersion": "networking.istio.io/v1", "kind": "Gateway"})
    assert not is_workload_or_security({"apiVersion": "networking.istio.io/v1", "kind": "PeerAuthentication"})
    assert is_workload_or_security({"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication"})


def test_security_json_names_are_istio_yaml_names() -> None:
    assert json_name(security_pb2.PeerAuthentication, "port_level_mtls") == "portLevelMtls"
    assert json_name(security_pb2.AuthorizationPolicy, "targetRef") == "targetRef"
    assert json_name(security_pb2.AuthorizationPolicy, "targetRefs") == "targetRefs"
    assert json_name(security_pb2.Source, "not_remote_ip_blocks") == "notRemoteIpBlocks"
    assert json_name(security_pb2.JWTRule, "jwks_uri") == "jwksUri"
    assert json_name(security_pb2.JWTRule, "output_claim_to_headers") == "outputClaimToHeaders"
    assert json_name(networking_pb2.Sidecar, "inbound_connection_pool") == "inboundConnectionPool"
    assert json_name(networking_pb2.ReadinessProbe, "http_get") == "httpGet"
    assert security_pb2.PeerAuthentication.MutualTLS.Mode.Value("STRICT") == 3
    assert security_pb2.AuthorizationPolicy.Action.Value("CUSTOM") == 3
    assert networking_pb2.OutboundTrafficPolicy.Mode.Value("ALLOW_ANY") == 1


def test_security_policy_parses_with_go_durations() -> None:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "httpbin"}},
        "jwtRules": [
            {"issuer": "https://issuer.example", "jwksUri": "https://issuer.example/jwks", "timeout": "1m"}
        ],
    }
    msg = parse_message(security_pb2.RequestAuthentication, spec)
    assert msg.jwt_rules[0].timeout.seconds == 60  # type: ignore[attr-defined]
    assert dict(msg.selector.match_labels) == {"app": "httpbin"}  # type: ignore[attr-defined]
    with pytest.raises(json_format.ParseError):
        parse_message(security_pb2.PeerAuthentication, {"mtls": {"mode": "STRICT"}, "notAField": 1})


class _RecordingChannel:
    """Stands in for a grpc.Channel and records the method paths a stub binds."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def unary_unary(self, path: str, **_: Any) -> object:
        self.paths.append(path)
        return object()


def test_ca_stub_binds_istio_method_path() -> None:
    channel = _RecordingChannel()
    ca_pb2_grpc.IstioCertificateServiceStub(channel)
    assert channel.paths == [CA_METHOD]
    service = ca_pb2.DESCRIPTOR.services_by_name["IstioCertificateService"]
    assert service.full_name == CA_SERVICE
    assert [m.name for m in service.methods] == ["CreateCertificate"]


async def test_ca_servicer_answers_at_istio_method_path() -> None:
    """A client that knows only Istio's method path (as Istio's agent does) reaches the servicer."""

    class Signer(ca_pb2_grpc.IstioCertificateServiceServicer):
        async def CreateCertificate(  # noqa: N802 - the gRPC method name
            self, request: ca_pb2.IstioCertificateRequest, context: grpc.aio.ServicerContext[Any, Any]
        ) -> ca_pb2.IstioCertificateResponse:
            return ca_pb2.IstioCertificateResponse(cert_chain=[f"signed {request.csr}", "root"])

    server = grpc.aio.server()
    ca_pb2_grpc.add_IstioCertificateServiceServicer_to_server(Signer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(
                CA_METHOD,
                request_serializer=ca_pb2.IstioCertificateRequest.SerializeToString,
                response_deserializer=ca_pb2.IstioCertificateResponse.FromString,
            )
            response = await call(
                ca_pb2.IstioCertificateRequest(csr="CSR", validity_duration=3600), timeout=10
            )
    finally:
        await server.stop(None)
    assert list(response.cert_chain) == ["signed CSR", "root"]
