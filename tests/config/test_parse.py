"""parse_text: YAML text → validated ConfigObjects; every problem a FieldError (file:line, object, path).

Bad fixtures live in testdata/config/bad/; ``X.yaml`` has the exact errors it must produce in
``X.expected`` (warnings left out). Regenerate them after a deliberate change with
``PILOT_REGENERATE=1`` and review the diff.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from google.protobuf.descriptor import Descriptor

from pilot._gen import networking_pb2 as nw
from pilot.config import kinds
from pilot.config.durations import go_duration_to_json, normalize_durations
from pilot.config.objects import ConfigKey, ParseResult
from pilot.config.parse import parse_text
from tests import corpus
from tests.config.helpers import BAD_FILES, CORPUS, CORPUS_FILES, GOOD_FILES, TESTDATA, VS, errors_of, parse

# --- fixtures and the Istio corpus -------------------------------------------------------------------------


@pytest.mark.skipif(not CORPUS_FILES, reason=f"Istio corpus not found at {CORPUS}")
@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.name for p in CORPUS_FILES])
def test_every_corpus_file_parses_without_errors(path: Path) -> None:
    result = parse_text(path.read_text(encoding="utf-8"), path.name)
    assert not result.fatal
    assert errors_of(result) == []
    assert not result.rejected
    # Every object of a served kind is read; every Istio or Gateway API kind pilot does not serve is
    # skipped with a warning naming it; only other Kubernetes kinds (Service, Deployment) go unmentioned.
    documents = corpus.documents(path)
    assert len(result.objects) == sum(map(corpus.is_served, documents))
    warnings = [e.message for e in result.errors if e.severity == "warning" and "not served" in e.message]
    skipped = [d for d in documents if corpus.is_not_served(d)]
    assert len(warnings) == len(skipped)
    for document, warning in zip(skipped, warnings, strict=True):
        assert warning.startswith(f"{document['kind']} "), warning


@pytest.mark.parametrize("path", GOOD_FILES, ids=[p.name for p in GOOD_FILES])
def test_good_fixture_parses_without_errors(path: Path) -> None:
    result = parse_text(path.read_text(encoding="utf-8"), path.name)
    assert not result.fatal
    assert errors_of(result) == []
    assert result.objects and not result.rejected


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.name for p in BAD_FILES])
def test_bad_fixture_reports_expected_errors(path: Path) -> None:
    result = parse_text(path.read_text(encoding="utf-8"), path.name)
    got = [str(e) for e in errors_of(result)]
    expected_file = path.with_suffix(".expected")
    if os.environ.get("PILOT_REGENERATE"):
        expected_file.write_text("".join(f"{line}\n" for line in got), encoding="utf-8")
    expected = expected_file.read_text(encoding="utf-8").splitlines()
    assert got == expected
    # Every recognised object with an error is rejected (the store keeps its last good version), never served.
    served = {obj.key for obj in result.objects}
    for error in errors_of(result):
        if error.key is not None:
            assert error.key not in served
            assert result.fatal or error.key in result.rejected


def test_error_names_file_line_object_and_field() -> None:
    text = (TESTDATA / "bad" / "vs-route-errors.yaml").read_text()
    result = parse_text(text, "bad.yaml")
    assert "bad.yaml:14: VirtualService default/reviews: spec.http[0].route[0].weight: weight -5 < 0" in [
        str(e) for e in result.errors
    ]
    assert result.rejected == {ConfigKey("VirtualService", "default", "reviews")}
    assert result.objects == ()


# --- documents --------------------------------------------------------------------------------------------


def test_multi_document_text_gives_every_object() -> None:
    result = parse("---\n" + VS.format(name="a") + "---\n---\n# just a comment\n---\n" + VS.format(name="b"))
    assert [obj.key.name for obj in result.objects] == ["a", "b"]
    assert result.errors == ()


def test_object_fields() -> None:
    text = VS.format(name="a").replace(
        "  name: a\n",
        "  name: a\n  namespace: prod\n  labels: {z: '1', a: '2'}\n  annotations: {x.io/y: v}\n",
    )
    (obj,) = parse(text, "dir/a.yaml").objects
    assert obj.key == ConfigKey("VirtualService", "prod", "a")
    assert obj.api_version == "networking.istio.io/v1"
    assert obj.origin == "dir/a.yaml"
    assert obj.labels == (("a", "2"), ("z", "1"))
    assert obj.annotations == (("x.io/y", "v"),)
    assert isinstance(obj.spec, nw.VirtualService)
    assert obj.spec.http[0].route[0].destination.host == "a"


def test_namespace_defaults_to_default() -> None:
    (obj,) = parse(VS.format(name="a")).objects
    assert obj.namespace == "default"


@pytest.mark.parametrize("version", kinds.NETWORKING_VERSIONS)
def test_every_networking_version_is_served(version: str) -> None:
    result = parse(
        VS.format(name="a").replace("networking.istio.io/v1\n", f"networking.istio.io/{version}\n")
    )
    assert [obj.api_version for obj in result.objects] == [f"networking.istio.io/{version}"]


def test_unknown_version_of_a_known_kind_is_an_error() -> None:
    result = parse(VS.format(name="a").replace("networking.istio.io/v1\n", "networking.istio.io/v2\n"))
    (error,) = errors_of(result)
    assert error.path == "apiVersion" and error.line == 1
    assert 'unsupported apiVersion "networking.istio.io/v2"' in error.message
    assert result.rejected == {ConfigKey("VirtualService", "default", "a")}


def test_other_kinds_are_skipped_with_a_debug_line(caplog: pytest.LogCaptureFixture) -> None:
    text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n---\n" + (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\ndata: {a: b}\n---\n"
        "apiVersion: example.com/v1\nkind: VirtualService\nmetadata: {name: y}\n---\n"
    )
    with caplog.at_level(logging.DEBUG, logger="pilot.config.parse"):
        result = parse(text)
    assert result == ParseResult("test.yaml", skipped=("Deployment", "ConfigMap", "VirtualService"))
    assert sum("skipping" in r.getMessage() for r in caplog.records) == 3


def test_yaml_syntax_error_is_fatal_with_its_line() -> None:
    result = parse(VS.format(name="a") + "---\nkind: [unclosed\n")
    assert result.fatal and result.objects == ()
    (error,) = result.errors
    assert error.line == 13 and "invalid YAML" in error.message


def test_a_bad_document_does_not_cost_the_others() -> None:
    text = (
        "- a list\n---\n" + VS.format(name="a") + "---\nkind: VirtualService\nmetadata: {name: b}\n---\n42\n"
    )
    result = parse(text)
    assert [obj.key.name for obj in result.objects] == ["a"]
    assert [(e.line, e.path, e.message) for e in result.errors] == [
        (1, "", "a document must be a mapping, got a list"),
        (14, "apiVersion", "required"),
        (17, "", "a document must be a mapping, got an integer"),
    ]
    assert not result.fatal


def test_missing_name_is_an_error_without_a_key() -> None:
    result = parse(VS.format(name="a").replace("  name: a\n", "  namespace: x\n"))
    (error,) = errors_of(result)
    assert error.key is None and error.path == "metadata.name" and error.line == 3
    assert result.rejected == frozenset()


def test_duplicate_object_in_one_file_keeps_the_first() -> None:
    result = parse(VS.format(name="a") + "---\n" + VS.format(name="a").replace("host: a", "host: b"))
    (obj,) = result.objects
    assert obj.spec.http[0].route[0].destination.host == "a"  # type: ignore[attr-defined]
    (error,) = errors_of(result)
    assert error.line == 12 and "duplicate of the object at line 1" in error.message


def test_duplicate_yaml_key_is_a_warning_and_the_last_wins() -> None:
    result = parse(VS.format(name="a").replace("  hosts: [a]\n", "  hosts: [x]\n  hosts: [a]\n"))
    (obj,) = result.objects
    assert list(obj.spec.hosts) == ["a"]  # type: ignore[attr-defined]
    (warning,) = result.errors
    assert warning.severity == "warning" and warning.line == 7 and warning.path == "spec.hosts"


def test_json_list_is_read_item_by_item() -> None:
    items = [yaml.safe_load(VS.format(name=name)) for name in ("a", "b")]
    items[1]["spec"]["http"][0]["route"][0]["weight"] = -1
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=2)
    result = parse(text, "list.json")
    assert [obj.key.name for obj in result.objects] == ["a"]
    (error,) = errors_of(result)
    assert error.path == "spec.http[0].route[0].weight"
    assert text.splitlines()[error.line - 1].strip() == '"weight": -1'  # type: ignore[operator]


def test_snake_case_field_names_are_accepted() -> None:
    text = VS.format(name="a") + "    retries:\n      attempts: 2\n      per_try_timeout: 2s\n"
    (obj,) = parse(text).objects
    assert obj.spec.http[0].retries.per_try_timeout.seconds == 2  # type: ignore[attr-defined]


def test_unknown_field_has_a_precise_path_and_line() -> None:
    text = VS.format(name="a") + "      weigth: 5\n"
    result = parse(text)
    (error,) = errors_of(result)
    assert (error.path, error.line, error.message) == (
        "spec.http[0].route[0].weigth",
        11,
        'unknown field; did you mean "weight"?',
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"80"', "expected an integer, got a string"),
        ("true", "expected an integer, got a boolean"),
        ("-1", "-1 is out of range for uint32 (0..4294967295)"),
        ("4294967296", "4294967296 is out of range for uint32 (0..4294967295)"),
        ("[80]", "expected an integer, got a list"),
    ],
)
def test_wrong_types_are_errors(value: str, message: str) -> None:
    text = VS.format(name="a") + f"        port:\n          number: {value}\n"
    (error,) = errors_of(parse(text))
    assert (error.path, error.message) == ("spec.http[0].route[0].destination.port.number", message)


def test_oneof_conflict_is_an_error() -> None:
    text = VS.format(name="a").replace(
        "  - route:", "  - match:\n    - uri: {exact: /a, regex: /b}\n    route:"
    )
    (error,) = errors_of(parse(text))
    assert error.path == "spec.http[0].match[0].uri.regex"
    assert error.message == 'only one of "exact", "prefix", "regex" may be set'


# --- durations --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3m", "180s"),
        ("1h30m", "5400s"),
        ("500ms", "0.5s"),
        ("1.5s", "1.5s"),
        ("0s", "0s"),
        ("0", "0s"),
        ("250us", "0.00025s"),
        ("1ns", "0.000000001s"),
        ("-1m30s", "-90s"),
        ("24h", "86400s"),
        ("1.5h", "5400s"),
        ("2562047h", "9223369200s"),
    ],
)
def test_go_durations(text: str, expected: str) -> None:
    assert go_duration_to_json(text) == expected


@pytest.mark.parametrize("text", ["", "5", "s", "1d", "1.2.3s", "10 s", "abc", "9999999h"])
def test_invalid_go_durations(text: str) -> None:
    assert go_duration_to_json(text) is None


def test_duration_fields_are_normalised_everywhere() -> None:
    text = VS.format(name="a") + (
        "    timeout: 1h30m\n"
        "    retries: {attempts: 1, perTryTimeout: 250ms}\n"
        "    fault: {delay: {fixedDelay: 1.5s, percentage: {value: 1}}}\n"
    )
    (obj,) = parse(text).objects
    route: Any = obj.spec.http[0]  # type: ignore[attr-defined]
    assert route.timeout.seconds == 5400
    assert route.retries.per_try_timeout.ToMilliseconds() == 250
    assert route.fault.delay.fixed_delay.ToMilliseconds() == 1500


def test_normalize_durations_leaves_its_input_alone() -> None:
    data = {"http": [{"timeout": "3m", "retries": {"perTryTimeout": "2s"}}], "hosts": ["a"]}
    out = normalize_durations(data, cast(Descriptor, nw.VirtualService.DESCRIPTOR))
    assert out == {"http": [{"timeout": "180s", "retries": {"perTryTimeout": "2s"}}], "hosts": ["a"]}
    assert data["http"][0]["timeout"] == "3m"  # type: ignore[index]


@pytest.mark.parametrize("value", ["5x", "10", "1d"])
def test_invalid_duration_is_an_error(value: str) -> None:
    (error,) = errors_of(parse(VS.format(name="a") + f"    timeout: '{value}'\n"))
    assert error.path == "spec.http[0].timeout" and error.line == 11
    assert f'invalid duration "{value}"' in error.message


def test_number_for_a_duration_is_an_error() -> None:
    (error,) = errors_of(parse(VS.format(name="a") + "    timeout: 10\n"))
    assert error.message == 'expected a duration such as "5s" or "1m30s", got an integer'


# --- the mesh config --------------------------------------------------------------------------------------

MESH = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: istio
  namespace: istio-system
data:
  mesh: |
    connectTimeout: 3m
    outboundTrafficPolicy:
      mode: ALLOW_ANY
    defaultHttpRetryPolicy:
      attempts: 0
"""


def test_mesh_config_map_becomes_a_mesh_config_object() -> None:
    (obj,) = parse(MESH).objects
    assert obj.key == ConfigKey("MeshConfig", "istio-system", "istio")
    assert obj.api_version == "v1"
    assert isinstance(obj.spec, nw.MeshConfig)
    assert obj.spec.connect_timeout.seconds == 180
    assert obj.spec.outbound_traffic_policy.mode == nw.MeshConfig.OutboundTrafficPolicy.ALLOW_ANY


def test_mesh_config_errors_have_the_line_inside_the_block() -> None:
    result = parse(MESH.replace("mode: ALLOW_ANY", "mode: allow_any"))
    (error,) = errors_of(result)
    assert (error.path, error.line) == ("data.mesh.outboundTrafficPolicy.mode", 10)
    assert result.rejected == {ConfigKey("MeshConfig", "istio-system", "istio")}


def test_mesh_config_with_bad_yaml_inside() -> None:
    (error,) = errors_of(parse(MESH.replace("      mode: ALLOW_ANY", "    mode: [")))
    assert error.path == "data.mesh" and "invalid YAML" in error.message


def test_mesh_config_map_without_mesh_key_is_the_default_mesh() -> None:
    (obj,) = parse("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio}\ndata: {}\n").objects
    assert obj.spec == nw.MeshConfig()


# --- kinds pilot does not serve ------------------------------------------------------------------------


def test_kind_typo_under_an_istio_api_version_is_an_error_naming_the_object() -> None:
    result = parse("apiVersion: networking.istio.io/v1\nkind: VirtualServce\nmetadata: {name: r}\n")
    [error] = errors_of(result)
    assert error.line == 2 and error.path == "kind"
    assert 'unknown kind "VirtualServce"' in error.message and "(object r)" in error.message
    assert "VirtualService" in error.message  # the known kinds are listed


def test_istio_kinds_not_served_are_skipped_with_a_warning_naming_the_kind() -> None:
    text = (
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\n"
        "metadata: {name: default, namespace: istio-system}\nspec: {tracing: []}\n---\n"
        "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: UDPRoute\nmetadata: {name: dns}\n"
        "spec: {rules: []}\n---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\n"
    )
    result = parse(text)
    assert errors_of(result) == [] and result.objects == ()
    warnings = [str(e) for e in result.errors]
    assert warnings == [
        "test.yaml:2: kind: Telemetry istio-system/default (telemetry.istio.io/v1) "
        "is not served by pilot; skipped (warning)",
        "test.yaml:7: kind: UDPRoute dns (gateway.networking.k8s.io/v1alpha2) "
        "is not served by pilot; skipped (warning)",
    ]


def test_creation_timestamp_is_read_as_utc() -> None:
    """``metadata.creationTimestamp`` decides precedence (pilot.config.metadata); absent is None."""
    text = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: timed, creationTimestamp: 2019-01-01T02:00:00+02:00}
spec: {hosts: [a], http: [{route: [{destination: {host: a}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: untimed}
spec: {hosts: [a], http: [{route: [{destination: {host: a}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: garbled, creationTimestamp: yesterday}
spec: {hosts: [a], http: [{route: [{destination: {host: a}}]}]}
"""
    result = parse_text(text, origin="x.yaml")
    created = {obj.name: obj.created for obj in result.objects}
    assert created == {"timed": datetime(2019, 1, 1, tzinfo=UTC), "untimed": None, "garbled": None}
    (warning,) = result.errors
    assert warning.severity == "warning" and warning.path == "metadata.creationTimestamp"
    timed, untimed, garbled = result.objects
    # none sorts first (Go's zero time), then name: garbled, untimed, then the timed one
    assert sorted(result.objects, key=lambda o: o.precedence) == [garbled, untimed, timed]
