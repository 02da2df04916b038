"""examples/: every folder is what ``pilot serve --config-dir`` takes as is: no error, no warning, and
its translation is accepted by a real Envoy for a sidecar and for the ingress gateway it names."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pilot import validate
from pilot.cli import ValidateOptions
from pilot.config.objects import ConfigObject
from pilot.config.parse import parse_text
from pilot.translate.proxy import NodeType, ProxyView
from pilot.translate.snapshot import generate_messages, inconsistencies
from pilot.xds import types
from tests import factories
from tests.translate.golden import ENVOY, envoy_validate, static_bootstrap

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FOLDERS = sorted(p for p in EXAMPLES.iterdir() if p.is_dir())


def load(folder: Path) -> list[ConfigObject]:
    objects: list[ConfigObject] = []
    for path in sorted(folder.glob("*.yaml")):
        result = parse_text(path.read_text(), str(path))
        assert not result.fatal and not result.errors, [str(e) for e in result.errors]
        objects += result.objects
    return objects


def test_there_are_examples() -> None:
    assert [p.name for p in FOLDERS] == ["bookinfo"]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_example_validates_without_a_warning(folder: Path) -> None:
    out = io.StringIO()
    assert validate.run(ValidateOptions(files=(str(folder),)), out=out) == 0
    assert out.getvalue().rstrip().endswith("valid: 0 error(s), 0 warning(s)"), out.getvalue()


def test_bookinfo_routes_reviews_by_version() -> None:
    context = factories.push_context(*load(EXAMPLES / "bookinfo"))
    messages = generate_messages(factories.sidecar("default"), context)
    clusters = {name for name, _ in messages[types.CLUSTER]}
    for version in ("v1", "v2", "v3"):
        assert f"outbound|9080|{version}|reviews.default.svc.cluster.local" in clusters


@pytest.mark.skipif(not ENVOY.exists(), reason="no envoy binary in .venv")
@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_example_accepted_by_envoy(folder: Path, tmp_path: Path) -> None:
    context = factories.push_context(*load(folder))
    gateway = ProxyView(NodeType.ROUTER, "default", labels=(("istio", "ingressgateway"),))
    for view in (factories.sidecar("default"), gateway):
        messages = generate_messages(view, context)
        assert messages[types.LISTENER], f"{view}: no listeners"
        assert inconsistencies(messages) == []
        result = envoy_validate(static_bootstrap(messages), tmp_path)
        assert result.returncode == 0, f"envoy rejected {folder.name} for {view}:\n{result.stderr[-3000:]}"
