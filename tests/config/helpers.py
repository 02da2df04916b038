"""Shared helpers for tests/config: fixture paths, a minimal VirtualService, and one-object parsing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pilot.config.objects import FieldError, ParseResult
from pilot.config.parse import parse_text
from tests import corpus

ROOT = Path(__file__).resolve().parents[2]
TESTDATA = ROOT / "testdata" / "config"
CORPUS = corpus.CORPUS
CORPUS_FILES = corpus.all_files()
BAD_FILES = sorted(p for p in (TESTDATA / "bad").iterdir() if p.suffix in (".yaml", ".json"))
GOOD_FILES = sorted(p for p in (TESTDATA / "good").iterdir() if p.suffix in (".yaml", ".json"))


# A minimal valid VirtualService; format with name=...
VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
spec:
  hosts: [{name}]
  http:
  - route:
    - destination:
        host: {name}
"""


def errors_of(result: ParseResult) -> list[FieldError]:
    return [e for e in result.errors if e.severity == "error"]


def parse(text: str, origin: str = "test.yaml") -> ParseResult:
    return parse_text(text, origin)


ROUTE = [{"destination": {"host": "reviews"}}]


def problems(
    kind: str, spec: dict[str, Any], name: str = "obj", namespace: str = "default"
) -> set[tuple[str, str, str]]:
    """(severity, path, message) of everything parse_text says about one object of ``kind``."""
    document = {
        "apiVersion": "networking.istio.io/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    result = parse_text(yaml.safe_dump(document), "t.yaml")
    return {(e.severity, e.path, e.message) for e in result.errors}


def errors(kind: str, spec: dict[str, Any], **kwargs: str) -> set[tuple[str, str]]:
    return {
        (path, message) for severity, path, message in problems(kind, spec, **kwargs) if severity == "error"
    }


def warnings(kind: str, spec: dict[str, Any], **kwargs: str) -> set[tuple[str, str]]:
    return {
        (path, message) for severity, path, message in problems(kind, spec, **kwargs) if severity == "warning"
    }


def vs(**http: Any) -> dict[str, Any]:
    """A VirtualService for host reviews with one HTTP route."""
    return {"hosts": ["reviews"], "http": [{"route": ROUTE, **http}]}
