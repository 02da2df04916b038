"""The OpenAPI schema language of CRDs, as plain data, and the walk that checks a spec against it.

A schema is made of ``Str`` (pattern, enum, length), ``Int`` (bounds), ``Seq`` (items, count), ``StrMap``
and ``Obj`` (fields, required fields, and rules on the whole mapping, as CEL rules that need only one
object); pilot.config.gateway_api.schema writes the Gateway API's kinds in it and scripts/gen_crds.py
turns them into CRDs. The walk reports each problem at its field path and line, and keeps only what is
valid. Unknown fields are errors, as with ``kubectl --validate=strict``.
https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from pilot.config.objects import Severity
from pilot.config.schema import Checked, Issue, LineOf, describe
from pilot.config.yamlpos import YamlPath


@dataclass(frozen=True, slots=True)
class Str:
    pattern: str | None = None  # a full match
    enum: tuple[str, ...] = ()
    max_length: int = 253
    min_length: int = 0
    what: str = ""  # how to name the pattern in a message


@dataclass(frozen=True, slots=True)
class Int:
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class Seq:
    item: Type
    max_items: int
    min_items: int = 0


@dataclass(frozen=True, slots=True)
class StrMap:
    """A map of strings (labels, annotations, TLS options)."""

    max_items: int = 64


# A rule on a whole mapping once its fields are checked: yields (field, message) problems.
Rule: TypeAlias = Callable[[Mapping[str, Any]], list[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class Obj:
    fields: Mapping[str, Type]
    required: frozenset[str] = frozenset()
    rules: tuple[Rule, ...] = field(default=())


Type: TypeAlias = Str | Int | Seq | StrMap | Obj


# -- the walk -----------------------------------------------------------------------------------


def check_spec(schema: Obj, data: object, display: str, where: YamlPath, line_of: LineOf) -> Checked:
    """Check ``data`` (read from YAML at ``where``) against ``schema``; paths start with ``display``.
    The value returned holds only what is valid (invalid values dropped, with an issue each)."""
    walk = _Walk(line_of)
    value = walk.value(schema, data, display, where)
    return Checked(value if isinstance(value, dict) else {}, tuple(walk.issues), walk.lines)


class _Walk:
    def __init__(self, line_of: LineOf) -> None:
        self._line_of = line_of
        self.issues: list[Issue] = []
        self.lines: dict[str, int] = {}

    def issue(self, display: str, where: YamlPath, message: str, severity: Severity = "error") -> None:
        self.issues.append(Issue(display, message, self._line_of(where), severity))

    def value(self, schema: Type, raw: object, display: str, where: YamlPath) -> object:
        line = self._line_of(where)
        if line is not None:
            self.lines[display] = line
        if isinstance(schema, Obj):
            return self.mapping(schema, raw, display, where)
        if isinstance(schema, Seq):
            return self.sequence(schema, raw, display, where)
        if isinstance(schema, StrMap):
            return self.string_map(schema, raw, display, where)
        if isinstance(schema, Int):
            return self.integer(schema, raw, display, where)
        return self.string(schema, raw, display, where)

    def mapping(self, schema: Obj, raw: object, display: str, where: YamlPath) -> object:
        if not isinstance(raw, dict):
            self.issue(display, where, f"expected a mapping, got {describe(raw)}")
            return None
        out: dict[str, Any] = {}
        for key, item in raw.items():
            inner_display, inner_where = f"{display}.{key}", (*where, key)
            inner = schema.fields.get(str(key))
            if inner is None:
                self.issue(inner_display, inner_where, "unknown field")
                continue
            if item is None:
                continue  # null means unset, as in Kubernetes
            checked = self.value(inner, item, inner_display, inner_where)
            if checked is not None:
                out[str(key)] = checked
        for name in sorted(schema.required - raw.keys()):
            self.issue(f"{display}.{name}", where, "required")
        if all(name in out for name in schema.required if name in raw):
            for rule in schema.rules:
                for path, message in rule(out):
                    self.issue(f"{display}.{path}", (*where, *path.split(".")), message)
        return out

    def sequence(self, schema: Seq, raw: object, display: str, where: YamlPath) -> object:
        if not isinstance(raw, list):
            self.issue(display, where, f"expected a list, got {describe(raw)}")
            return None
        if len(raw) > schema.max_items:
            self.issue(display, where, f"has {len(raw)} items, more than {schema.max_items}")
            return None
        if len(raw) < schema.min_items:
            self.issue(display, where, f"needs at least {schema.min_items} item(s)")
        items = []
        for index, item in enumerate(raw):
            checked = self.value(schema.item, item, f"{display}[{index}]", (*where, index))
            if checked is None:
                if item is None:
                    self.issue(f"{display}[{index}]", (*where, index), "a list item may not be null")
                return None  # an item would be missing: drop the whole list, its meaning changed
            items.append(checked)
        return items

    def string_map(self, schema: StrMap, raw: object, display: str, where: YamlPath) -> object:
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            self.issue(display, where, f"expected a mapping of strings, got {describe(raw)}")
            return None
        if len(raw) > schema.max_items:
            self.issue(display, where, f"has {len(raw)} entries, more than {schema.max_items}")
            return None
        return {str(k): v for k, v in raw.items()}

    def integer(self, schema: Int, raw: object, display: str, where: YamlPath) -> object:
        if isinstance(raw, bool) or not isinstance(raw, int):
            self.issue(display, where, f"expected an integer, got {describe(raw)}")
            return None
        if not schema.low <= raw <= schema.high:
            self.issue(display, where, f"{raw} is out of range ({schema.low}..{schema.high})")
            return None
        return raw

    def string(self, schema: Str, raw: object, display: str, where: YamlPath) -> object:
        if not isinstance(raw, str):
            self.issue(display, where, f"expected a string, got {describe(raw)}")
            return None
        if schema.enum and raw not in schema.enum:
            self.issue(display, where, f'invalid value "{raw}"; must be one of {", ".join(schema.enum)}')
            return None
        if not schema.min_length <= len(raw) <= schema.max_length:
            self.issue(
                display, where, f"length {len(raw)} is outside {schema.min_length}..{schema.max_length}"
            )
            return None
        if schema.pattern is not None and not _compiled(schema.pattern).fullmatch(raw):
            self.issue(display, where, f'invalid value "{raw}"; must be {schema.what or schema.pattern}')
            return None
        return raw


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    found = _PATTERNS.get(pattern)
    if found is None:
        found = _PATTERNS[pattern] = re.compile(pattern)
    return found
