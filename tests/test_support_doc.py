"""docs/support.md's generated tables say what the code's own tables say."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from pilot.config import kinds
from pilot.config.validation import support

ROOT = Path(__file__).resolve().parents[1]


def load_gen_support() -> Any:
    spec = importlib.util.spec_from_file_location("gen_support", ROOT / "scripts" / "gen_support.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_support", module)
    spec.loader.exec_module(module)
    return module


def test_support_doc_is_current() -> None:
    assert load_gen_support().main(["--check"]) == 0, "run scripts/gen_support.py"


def test_every_served_kind_and_every_ignored_field_is_listed() -> None:
    text = (ROOT / "docs" / "support.md").read_text(encoding="utf-8")
    for kind in kinds.KINDS:
        if kind == kinds.JWKS_INFO.kind:
            continue  # keys pilot fetches itself (pilot.sources.jwks), no kind a user writes
        assert f"| {kind} |" in text or f"| {kind} (Kubernetes) |" in text
    for fields in support.NOT_YET_SUPPORTED.values():
        for field in fields:
            assert f"`{field}`" in text
    for names in kinds.NOT_SERVED.values():
        for name in names:
            assert name in text
