"""Hostile or broken input is an error, never a hang or a crash: size and depth limits, alias bombs,
odd characters, and random mutations of real documents."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest
import yaml

from pilot.config.limits import ParseLimits
from pilot.config.objects import ConfigKey
from pilot.config.parse import MAX_TEXT_BYTES, parse_text
from tests.config.helpers import CORPUS, CORPUS_FILES, GOOD_FILES, VS, errors_of, parse

# --- limits: hostile input is an error, never a hang or a crash ------------------------------------------


def test_too_large_text_is_fatal_and_fast() -> None:
    start = time.monotonic()
    result = parse("#" * (MAX_TEXT_BYTES + 1))
    assert result.fatal and "larger than 10 MiB" in result.errors[0].message
    assert time.monotonic() - start < 2


def test_deep_nesting_is_an_error() -> None:
    deep = "[" * 500 + "]" * 500
    result = parse(VS.format(name="a") + f"    mirror: {deep}\n")
    assert any("nested deeper than 100 levels" in error.message for error in errors_of(result))
    assert result.rejected == {ConfigKey("VirtualService", "default", "a")}


def test_every_limit_is_configurable_and_names_the_file() -> None:
    vs = VS.format(name="a")
    hosts = vs.replace("hosts: [a]", "hosts: [a, b, c]")
    three = "---\n".join(VS.format(name=name) for name in "abc")
    routes = vs + "  - route: [{destination: {host: b}}]\n  - route: [{destination: {host: c}}]\n"
    listed = "apiVersion: v1\nkind: List\nitems:\n" + "".join(
        "- " + json.dumps(yaml.safe_load(VS.format(name=f"n{i}"))) + "\n" for i in range(3)
    )
    cases = [
        (ParseLimits(file_bytes=100), vs, True, "larger than 100 bytes"),
        (ParseLimits(objects_per_file=2), listed, True, "holds more than 2 objects (the limit)"),
        (ParseLimits(objects_per_file=2), three, True, "holds more than 2 objects"),
        (ParseLimits(hosts_per_object=2), hosts, False, "has 3 hosts, more than the limit of 2"),
        (ParseLimits(routes_per_object=2), routes, False, "has 3 routes, more than the limit of 2"),
        (ParseLimits(depth=5), vs, False, "nested deeper than 5 levels"),
    ]
    for limits, text, fatal, message in cases:
        assert not errors_of(parse_text(text, "limits.yaml")), message  # fine by default
        result = parse_text(text, "limits.yaml", limits)
        assert result.fatal is fatal, message
        assert not any(obj.name == "a" for obj in result.objects), message
        assert any(message in e.message and e.origin == "limits.yaml" for e in errors_of(result)), message
        if not fatal:
            assert result.rejected == {ConfigKey("VirtualService", "default", "a")}  # last good version stays


def test_a_list_past_the_object_limit_is_refused_as_a_whole() -> None:
    """A 0.9 MB List of 100,000 items was read item by item into 300,000 errors (8.6 s on the loop)."""
    text = "apiVersion: v1\nkind: List\nitems:\n" + "- {a: 1}\n" * 10_001
    result = parse(text)
    assert result.fatal and [e.message for e in result.errors] == [
        "holds more than 10000 objects (the limit); not loaded"
    ]


def test_problems_per_file_are_bounded() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n" + "- {a: 1}\n" * 5_000
    result = parse(text)
    assert len(result.errors) == 1_000 and result.errors[-1].message.startswith("14001 more problems")


def test_nesting_beyond_libyaml_limit_is_fatal() -> None:
    result = parse("a: " + "[" * 20000 + "]" * 20000 + "\n")
    assert result.fatal


def test_alias_bomb_is_fatal_and_fast() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    start = time.monotonic()
    result = parse("\n".join(lines) + "\n")
    assert result.fatal and "aliases" in result.errors[0].message
    assert time.monotonic() - start < 5


@pytest.mark.parametrize(
    "text",
    [
        "a: \x00\n",
        "a: \ud800\n",
        "a: !!python/object:os.system x\n",
        "? [a, b]\n: c\n",
        "a: !custom x\n",
        "\ufeff",
    ],
)
def test_strange_input_never_raises(text: str) -> None:
    parse(text)


# --- fuzz: mutations of real documents never raise, and never hit the internal-error safety net ----------

_REPLACEMENTS: list[Any] = [
    None,
    "",
    "x",
    -1,
    0,
    2**40,
    1.5,
    float("nan"),
    True,
    [],
    {},
    [None],
    {"a": None},
    "*",
    "1h",
    "0s",
    "GET",
    "/",
    "a.b.c",
    "unix:///x",
    "10.0.0.1/33",
    "::1",
]


def _mutate(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(list(value))
        choice = rng.random()
        if choice < 0.15:
            return {k: v for k, v in value.items() if k != key}
        if choice < 0.3:
            return {**value, key + rng.choice(["x", "s", "_"]): value[key]}
        return {**value, key: _mutate(value[key], rng)}
    if isinstance(value, list) and value and rng.random() < 0.8:
        index = rng.randrange(len(value))
        if rng.random() < 0.2:
            return value + [value[index]]
        return value[:index] + [_mutate(value[index], rng)] + value[index + 1 :]
    return rng.choice(_REPLACEMENTS)


@pytest.mark.skipif(not CORPUS_FILES, reason=f"Istio corpus not found at {CORPUS}")
def test_mutated_corpus_documents_never_raise() -> None:
    rng = random.Random(20240611)
    documents = [d for path in CORPUS_FILES for d in yaml.safe_load_all(path.read_text()) if d]
    documents += [
        d for path in GOOD_FILES if path.suffix == ".yaml" for d in yaml.safe_load_all(path.read_text()) if d
    ]
    for round_ in range(3000):
        document = rng.choice(documents)
        for _ in range(rng.randint(1, 4)):
            if isinstance(document, dict) and isinstance(document.get("spec"), dict) and rng.random() < 0.85:
                document = {**document, "spec": _mutate(document["spec"], rng)}  # mostly the spec
            else:
                document = _mutate(document, rng)
        text = yaml.safe_dump(document) if rng.random() < 0.7 else json.dumps(document, allow_nan=True)
        if rng.random() < 0.1:  # also break the text itself
            cut = rng.randrange(len(text) + 1)
            text = text[:cut] + rng.choice(["\n  - ", ": ", "{", "]", "\t", "&a ", "*a", "'"]) + text[cut:]
        result = parse_text(text, f"fuzz-{round_}.yaml")
        # Neither the internal-error safety net nor ParseDict's own complaint: the schema walk caught it all.
        assert not any(m in e.message for e in result.errors for m in ("internal error", "invalid spec")), (
            text,
            result.errors,
        )
        for error in result.errors:
            str(error)
