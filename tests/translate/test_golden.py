"""Golden tests: each YAML scenario of testdata/translate/ translated for one proxy view must equal
its JSON under testdata/golden/ (proto3 JSON, camelCase names, sorted keys, 2-space indent), and a
real Envoy must accept the result.

To regenerate the golden files after an intended change, run::

    PILOT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/translate/test_golden.py -q -p no:cacheprovider

and review the diff (``git diff testdata/golden``) before committing it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pilot.translate.snapshot import build_snapshot, generate_messages
from tests import factories
from tests.translate.golden import (
    ENVOY,
    SCENARIOS,
    Scenario,
    dumps,
    envoy_validate,
    static_bootstrap,
    to_json,
)

UPDATE = os.environ.get("PILOT_UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_golden(scenario: Scenario) -> None:
    context = factories.context_from_yaml(scenario.input_path)
    actual = dumps(to_json(generate_messages(scenario.view, context)))
    if UPDATE:
        scenario.golden_path.parent.mkdir(parents=True, exist_ok=True)
        scenario.golden_path.write_text(actual)
    assert scenario.golden_path.exists(), f"no {scenario.golden_path}: run with PILOT_UPDATE_GOLDEN=1"
    assert actual == scenario.golden_path.read_text(), (
        f"{scenario.name}: translation changed (see module doc)"
    )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_snapshot_is_consistent(scenario: Scenario) -> None:
    context = factories.context_from_yaml(scenario.input_path)
    snapshot = build_snapshot(scenario.view, context)
    assert snapshot.version == context.version
    assert snapshot.inconsistencies() == []


@pytest.mark.skipif(not ENVOY.exists(), reason="no envoy binary in .venv")
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_envoy_accepts(scenario: Scenario, tmp_path: Path) -> None:
    """``envoy --mode validate`` on a static bootstrap holding the whole translation."""
    context = factories.context_from_yaml(scenario.input_path)
    bootstrap = static_bootstrap(generate_messages(scenario.view, context))
    result = envoy_validate(bootstrap, tmp_path)
    assert result.returncode == 0, f"envoy rejected {scenario.name}:\n{result.stdout}\n{result.stderr}"
