"""The generated config API (pilot._gen) is up to date with protos/, and parses Istio's published config.

Every object of the shared Istio corpus (shared/corpus/istio/*.yaml) must parse into the message for its
kind with no unknown field: a failure here means protos/networking.proto is missing a field.
"""

from __future__ import annotations

import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from pilot._gen import networking_pb2

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "istio"
CORPUS_FILES = sorted(CORPUS.glob("*.yaml")) if CORPUS.is_dir() else []

KINDS: dict[str, type[Message]] = {
    "VirtualService": networking_pb2.VirtualService,
    "DestinationRule": networking_pb2.DestinationRule,
    "ServiceEntry": networking_pb2.ServiceEntry,
    "WorkloadEntry": networking_pb2.WorkloadEntry,
    "Gateway": networking_pb2.Gateway,
}

# --- Go-style durations → protobuf JSON durations (to move into pilot.config) ----------------------------

_DURATION_FULL_NAME = "google.protobuf.Duration"
_GO_UNIT_NANOS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 MICRO SIGN
    "μs": 1_000,  # U+03BC GREEK SMALL LETTER MU
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_GO_DURATION = re.compile(r"([+-]?)((?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)")
_GO_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def go_duration_to_json(text: str) -> str | None:
    """A Go ``time.ParseDuration`` string ("3m", "1h30m", "500ms", "0") as protobuf JSON ("180s").

    Returns None when ``text`` is not a Go duration, so the caller can leave it for the parser to reject.
    """
    text = text.strip()
    if text in ("0", "+0", "-0"):
        return "0s"
    m = _GO_DURATION.fullmatch(text)
    if m is None:
        return None
    nanos = Decimal(0)
    for number, unit in _GO_DURATION_PART.findall(m.group(2)):
        nanos += Decimal(number) * _GO_UNIT_NANOS[unit]
    total = int(nanos)  # Go truncates below a nanosecond
    sign = "-" if m.group(1) == "-" and total else ""
    seconds, frac = divmod(total, 1_000_000_000)
    if frac == 0:
        return f"{sign}{seconds}s"
    return f"{sign}{seconds}.{frac:09d}".rstrip("0") + "s"


def _field_for_key(descriptor: Descriptor, key: str) -> FieldDescriptor | None:
    field = descriptor.fields_by_name.get(key)
    if field is not None:
        return field
    for candidate in descriptor.fields:
        if candidate.json_name == key:
            return candidate
    return None


def _normalize_value(value: Any, field: FieldDescriptor) -> Any:
    message_type = field.message_type
    if message_type is None:
        return value
    if message_type.full_name == _DURATION_FULL_NAME:
        if isinstance(value, str):
            converted = go_duration_to_json(value)
            return value if converted is None else converted
        return value
    if isinstance(value, dict):
        return normalize_durations(value, message_type)
    return value


def normalize_durations(data: Any, descriptor: Descriptor) -> Any:
    """Copy of ``data`` (a dict parsed from YAML for message ``descriptor``) with every Duration field's
    Go-style string turned into protobuf JSON form. Walks repeated fields and map values; keys that are not
    fields of the message are kept as they are (the parser then reports them)."""
    if not isinstance(data, dict):
        return data
    out: dict[Any, Any] = {}
    for key, value in data.items():
        field = _field_for_key(descriptor, key) if isinstance(key, str) else None
        if field is None or field.message_type is None:
            out[key] = value
        elif field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[key] = (
                {k: _normalize_value(v, value_field) for k, v in value.items()}
                if isinstance(value, dict)
                else value
            )
        elif field.is_repeated:
            out[key] = [_normalize_value(v, field) for v in value] if isinstance(value, list) else value
        else:
            out[key] = _normalize_value(value, field)
    return out


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
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    assert docs, f"{path.name} holds no object"
    for doc in docs:
        kind = doc["kind"]
        assert kind in KINDS, f"{path.name}: no message for kind {kind}"
        name = doc.get("metadata", {}).get("name")
        try:
            parse_spec(kind, doc.get("spec"))
        except json_format.ParseError as e:
            pytest.fail(f"{path.name}: {kind} {name}: {e}")
