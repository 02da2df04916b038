"""Property-based fuzzing of the folder source (hypothesis): random and mutated YAML, written over one
file of a folder of real config, never crashes pilot, never changes what is served from the other files,
never removes an object the file served unless the file was read without a single error and without it,
and every error is reported on that file.

The mutants start from real files (testdata/config and the shared Istio corpus). The budget is bounded
(``max_examples``; each example is one edit of one file) so that it runs in CI in seconds.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilot.config.objects import ConfigKey, ConfigObject
from pilot.config.parse import parse_text
from pilot.config.store import ConfigStore
from pilot.sources.files import FolderSource
from pilot.sources.folder_services import SERVICE_ORIGIN_PREFIX
from tests.config.helpers import CORPUS_FILES, GOOD_FILES

# Files that are never touched (their objects must stay served exactly as they were) ...
UNTOUCHED = GOOD_FILES[:3] + CORPUS_FILES[:6]
# ... and the real files that mutants are made from.
SEEDS = GOOD_FILES + CORPUS_FILES[6:]
TARGET = "zz-mutant.yaml"  # sorts after every untouched file: its duplicates never win

_YAML_BITS = st.sampled_from(
    [
        ":",
        " ",
        "\n",
        "-",
        "- ",
        "  ",
        "\t",
        "{",
        "}",
        "[",
        "]",
        "'",
        '"',
        "&a",
        "*a",
        "!!binary",
        "#",
        "---\n",
        "kind: ",
        "name: ",
        "metadata:",
        "spec:",
        "hosts:",
        "VirtualServce",
        "-1",
        "null",
        "~",
        "\x00",
        "é",
    ]
)
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12)
)
_HOW = ["delete", "duplicate", "replace", "truncate", "insert", "random", "field", "empty"]
_FIELDS = [("kind",), ("apiVersion",), ("metadata",), ("metadata", "name"), ("spec",)]
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@st.composite
def mutants(draw: st.DrawFn, original: Path) -> str:
    """A real file's text, mutated; or random YAML; or a real document with a random field."""
    seed = original.read_text(encoding="utf-8")
    lines = seed.splitlines(keepends=True)
    how = draw(st.sampled_from(_HOW))
    if how == "random":
        return yaml.safe_dump(draw(_VALUES))
    if how == "empty":
        return draw(st.sampled_from(["", "\n", "# nothing\n", "---\n", "---\n---\n"]))
    if how == "field":
        documents = [d for d in yaml.safe_load_all(seed) if isinstance(d, dict)]
        document = draw(st.sampled_from(documents)) if documents else {}
        path = draw(st.sampled_from(_FIELDS))
        target = document
        for part in path[:-1]:
            target = target.setdefault(part, {}) if isinstance(target, dict) else {}
        if isinstance(target, dict):
            target[path[-1]] = draw(_VALUES)
        return yaml.safe_dump(document)
    if not lines:
        return seed
    at = draw(st.integers(0, len(lines) - 1))
    if how == "delete":
        return "".join(lines[:at] + lines[at + draw(st.integers(1, 5)) :])
    if how == "duplicate":
        return "".join(lines[: at + 1] + lines[at:])
    if how == "replace":
        junk = "".join(draw(st.lists(_YAML_BITS, max_size=6))) + "\n"
        return "".join(lines[:at] + [junk] + lines[at + 1 :])
    if how == "truncate":
        return seed[: draw(st.integers(0, len(seed)))]
    position = draw(st.integers(0, len(seed)))
    return seed[:position] + "".join(draw(st.lists(_YAML_BITS, min_size=1, max_size=4))) + seed[position:]


@dataclass
class Folder:
    path: Path
    store: ConfigStore
    source: FolderSource


_FOLDER: list[Folder] = []


def folder() -> Folder:
    """One folder for every example (loading the untouched files once), restored between examples."""
    if not _FOLDER:
        path = Path(tempfile.mkdtemp(prefix="pilot-fuzz-"))
        for index, file in enumerate(UNTOUCHED):
            shutil.copy(file, path / f"{index:02d}-{file.name}")
        store = ConfigStore()
        source = FolderSource(path, store)
        asyncio.run(source.apply_changes([str(p) for p in sorted(path.iterdir())]))
        _FOLDER.append(Folder(path, store, source))
    return _FOLDER[0]


def served_from(store: ConfigStore, origin: str, *, inside: bool) -> dict[ConfigKey, ConfigObject]:
    """The objects of the file ``origin`` (``inside``), or of the other files. The ServiceEntries made
    of Kubernetes Services are neither: they join the Services, EndpointSlices and Pods of every file."""
    return {
        key: obj
        for key, obj in store.snapshot().objects.items()
        if (obj.origin == origin) is inside and not obj.origin.startswith(SERVICE_ORIGIN_PREFIX)
    }


def teardown_module() -> None:
    for state in _FOLDER:
        shutil.rmtree(state.path, ignore_errors=True)
    _FOLDER.clear()


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(edit=st.sampled_from(SEEDS).flatmap(lambda seed: st.tuples(st.just(seed), mutants(seed))))
def test_a_mutated_file_never_costs_other_files_or_its_own_last_good_objects(edit: tuple[Path, str]) -> None:
    original, mutant = edit
    state = folder()
    target = state.path / TARGET
    # Start from a real file, served as it is.
    shutil.copy(original, target)
    asyncio.run(state.source.apply_changes([str(target)]))
    others = served_from(state.store, TARGET, inside=False)
    own = served_from(state.store, TARGET, inside=True)

    target.write_text(mutant, encoding="utf-8")
    asyncio.run(state.source.apply_changes([str(target)]))  # never raises

    assert served_from(state.store, TARGET, inside=False) == others  # untouched files: unchanged
    result = parse_text(mutant, TARGET)
    for key, obj in own.items():
        after = state.store.get(key)
        if after is None:  # removed: only by a file read cleanly without it
            assert not result.fatal and not result.partial, (key, result.errors)
            assert not any(error.severity == "error" for error in result.errors), (key, result.errors)
            assert key not in result.rejected and key not in {o.key for o in result.objects}
        elif any(error.key == key and error.severity == "error" for error in result.errors):
            assert after == obj  # rejected: its last good version stays
    problems = [error for error in state.store.errors() if error.origin == TARGET]
    if any(error.severity == "error" for error in result.errors):
        assert any(error.severity == "error" for error in problems), "an error in the file is reported on it"
    assert all(str(state.path) not in str(error) for error in state.store.errors())  # relative paths only
