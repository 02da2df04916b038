"""The generated config API (pilot._gen) is up to date with protos/, and parses Istio's published config.

Every object pilot serves in the shared Istio corpus (shared/corpus/istio/*.yaml, see tests/corpus.py)
must parse into the message for its kind with no unknown field: a failure here means
protos/networking.proto is missing a field.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from pilot._gen import networking_pb2
from pilot.config.durations import go_duration_to_json, normalize_durations
from tests.corpus import CORPUS, corpus_files, served_documents

ROOT = Path(__file__).resolve().parents[1]
CORPUS_FILES = corpus_files()

KINDS: dict[str, type[Message]] = {
    "VirtualService": networking_pb2.VirtualService,
    "DestinationRule": networking_pb2.DestinationRule,
    "ServiceEntry": networking_pb2.ServiceEntry,
    "WorkloadEntry": networking_pb2.WorkloadEntry,
    "Gateway": networking_pb2.Gateway,
}



def parse_spec(kind: str, spec: dict[str, Any] | None) -> Message:
    """The message for ``kind`` parsed from a YAML ``spec`` (strict: unknown fields are errors)."""
    message = KINDS[kind]()
    descriptor = cast(Descriptor, message.DESCRIPTOR)
    json_format.ParseDict(normalize_durations(spec or {}, descriptor), message)
    return message


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
    def json_name(message: type[Message], field: str) -> str:
        return message.DESCRIPTOR.fields_by_name[field].json_name

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
