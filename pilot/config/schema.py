"""Check a YAML value against a proto message schema, before ``json_format.ParseDict`` converts it.

ParseDict stops at the first problem and names it vaguely; this walk finds every unknown field, wrong
type, out-of-range number, bad enum value, invalid duration and oneof conflict, each at its exact path
in the YAML's own names (``spec.http[0].route[0].weigth``) and with its line. It also returns the value
rewritten for ParseDict: camelCase keys, Go-style durations in protobuf form, nulls dropped (Kubernetes
treats ``field: null`` as unset).

Field names: Istio's YAML uses the JSON (camelCase) names; the proto (snake_case) names are accepted
too, as Istio's protojson-based reader does.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from pilot.config.durations import DURATION_FULL_NAME, format_json_duration, parse_go_duration
from pilot.config.objects import Severity
from pilot.config.yamlpos import YamlPath

_FD = FieldDescriptor
_INT_RANGES = {
    _FD.TYPE_INT32: ("int32", -(2**31), 2**31 - 1),
    _FD.TYPE_SINT32: ("int32", -(2**31), 2**31 - 1),
    _FD.TYPE_SFIXED32: ("int32", -(2**31), 2**31 - 1),
    _FD.TYPE_UINT32: ("uint32", 0, 2**32 - 1),
    _FD.TYPE_FIXED32: ("uint32", 0, 2**32 - 1),
    _FD.TYPE_INT64: ("int64", -(2**63), 2**63 - 1),
    _FD.TYPE_SINT64: ("int64", -(2**63), 2**63 - 1),
    _FD.TYPE_SFIXED64: ("int64", -(2**63), 2**63 - 1),
    _FD.TYPE_UINT64: ("uint64", 0, 2**64 - 1),
    _FD.TYPE_FIXED64: ("uint64", 0, 2**64 - 1),
}
_FLOAT_TYPES = {_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT}
# A free-form object (MeshConfig's extension providers pilot does not translate): any mapping.
STRUCT_FULL_NAME = "google.protobuf.Struct"
_WRAPPERS = {
    f"google.protobuf.{name}"
    for name in (
        "DoubleValue",
        "FloatValue",
        "Int64Value",
        "UInt64Value",
        "Int32Value",
        "UInt32Value",
        "BoolValue",
        "StringValue",
        "BytesValue",
    )
}
# Protobuf's own limit for google.protobuf.Duration.
_MAX_DURATION_NANOS = 315_576_000_000 * 1_000_000_000


@dataclass(frozen=True, slots=True)
class Issue:
    """A schema problem at ``path`` (display form, e.g. ``spec.http[0].timeout``)."""

    path: str
    message: str
    line: int | None
    severity: Severity = "error"
    # The value at ``path`` was left out of the converted spec (so checks of the spec cannot see it).
    dropped: bool = True


LineOf = Callable[[YamlPath], int | None]


@dataclass(frozen=True, slots=True)
class Checked:
    """The result of checking one value: ParseDict input, issues, and the line of each canonical path."""

    value: dict[str, Any]
    issues: tuple[Issue, ...]
    lines: Mapping[str, int]

    @property
    def ok(self) -> bool:
        return not any(issue.severity == "error" for issue in self.issues)


def check_message(
    data: object, descriptor: Descriptor, display: str, where: YamlPath, line_of: LineOf
) -> Checked:
    """Check ``data`` (read from YAML at ``where``) as ``descriptor``; paths start with ``display``."""
    walk = _Walk(line_of)
    value = walk.message(data, descriptor, display, where)
    return Checked(value if isinstance(value, dict) else {}, tuple(walk.issues), walk.lines)


_FIELD_CACHE: dict[str, dict[str, FieldDescriptor]] = {}


def _fields_by_key(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    """A message's fields by JSON name and by proto name."""
    cached = _FIELD_CACHE.get(descriptor.full_name)
    if cached is None:
        cached = {}
        for field in descriptor.fields:
            cached[field.name] = field
            cached[field.json_name] = field
        _FIELD_CACHE[descriptor.full_name] = cached
    return cached


def describe(value: object) -> str:
    """``value``'s type in words, as a YAML author would say it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class _Walk:
    def __init__(self, line_of: LineOf) -> None:
        self._line_of = line_of
        self.issues: list[Issue] = []
        self.lines: dict[str, int] = {}

    def _issue(
        self, display: str, where: YamlPath, message: str, severity: Severity = "error", dropped: bool = True
    ) -> None:
        self.issues.append(Issue(display, message, self._line_of(where), severity, dropped))

    def _mark(self, display: str, where: YamlPath) -> None:
        line = self._line_of(where)
        if line is not None:
            self.lines[display] = line

    def message(self, data: object, descriptor: Descriptor, display: str, where: YamlPath) -> object:
        if not isinstance(data, dict):
            self._issue(display, where, f"expected a mapping, got {describe(data)}")
            return None
        fields = _fields_by_key(descriptor)
        out: dict[str, Any] = {}
        seen: dict[str, str] = {}
        for key, raw in data.items():
            field = fields.get(key)
            key_display = f"{display}.{key}" if display else key
            key_where = (*where, key)
            if field is None:
                self._issue(key_display, key_where, _unknown(key, descriptor), dropped=False)
                continue
            canonical = f"{display}.{field.json_name}" if display else field.json_name
            if field.json_name in seen:
                self._issue(
                    key_display,
                    key_where,
                    f'"{seen[field.json_name]}" is already set; "{key}" is the same field',
                    dropped=False,
                )
                continue
            seen[field.json_name] = key
            self._mark(canonical, key_where)
            if raw is None:
                continue  # null means unset, as in Kubernetes
            value = self.field(raw, field, canonical, key_where)
            if value is not None:
                out[field.json_name] = value
        for oneof in descriptor.oneofs:
            if len(oneof.fields) < 2:
                continue  # a proto3 "optional" field's synthetic oneof
            names = {f.json_name for f in oneof.fields}
            members = [name for name in out if name in names]  # in the order the YAML has them
            listed = ", ".join(f'"{f.json_name}"' for f in oneof.fields)
            for extra in members[1:]:
                extra_display = f"{display}.{extra}" if display else extra
                self._issue(extra_display, (*where, seen[extra]), f"only one of {listed} may be set")
                del out[extra]
        return out

    def field(self, raw: object, field: FieldDescriptor, display: str, where: YamlPath) -> object:
        message_type = field.message_type
        if message_type is not None and message_type.GetOptions().map_entry:
            return self._map(raw, message_type, display, where)
        if field.is_repeated:
            if not isinstance(raw, list):
                self._issue(display, where, f"expected a list, got {describe(raw)}")
                return None
            items: list[object] = []
            for index, item in enumerate(raw):
                item_display, item_where = f"{display}[{index}]", (*where, index)
                self._mark(item_display, item_where)
                if item is None:
                    self._issue(item_display, item_where, "a list item may not be null")
                    items.append(_placeholder(field))
                    continue
                value = self.single(item, field, item_display, item_where)
                # An invalid item keeps its place, so that later items keep their indexes.
                items.append(_placeholder(field) if value is None else value)
            return items
        return self.single(raw, field, display, where)

    def _map(self, raw: object, entry: Descriptor, display: str, where: YamlPath) -> object:
        if not isinstance(raw, dict):
            self._issue(display, where, f"expected a mapping, got {describe(raw)}")
            return None
        value_field = entry.fields_by_name["value"]
        out: dict[str, object] = {}
        for key, item in raw.items():
            item_display, item_where = f"{display}[{key}]", (*where, key)
            self._mark(item_display, item_where)
            if item is None:
                self._issue(item_display, item_where, "a map value may not be null")
                continue
            value = self.single(item, value_field, item_display, item_where)
            if value is not None:
                out[key] = value
        return out

    def single(self, raw: object, field: FieldDescriptor, display: str, where: YamlPath) -> object:
        """One value of ``field`` (an element, for a repeated field)."""
        message_type = field.message_type
        if message_type is None:
            return self.scalar(raw, field.type, field.enum_type, display, where)
        if message_type.full_name == DURATION_FULL_NAME:
            return self._duration(raw, display, where)
        if message_type.full_name in _WRAPPERS:
            inner = message_type.fields_by_name["value"]
            return self.scalar(raw, inner.type, None, display, where)
        if message_type.full_name == STRUCT_FULL_NAME:
            if not isinstance(raw, dict):
                self._issue(display, where, f"expected a mapping, got {describe(raw)}")
                return None
            return raw
        return self.message(raw, message_type, display, where)

    def _duration(self, raw: object, display: str, where: YamlPath) -> object:
        if not isinstance(raw, str):
            self._issue(display, where, f'expected a duration such as "5s" or "1m30s", got {describe(raw)}')
            return None
        nanos = parse_go_duration(raw.strip())
        if nanos is None or abs(nanos) > _MAX_DURATION_NANOS:
            self._issue(
                display, where, f'invalid duration "{raw}" (expected a duration such as "5s" or "1m30s")'
            )
            return None
        return format_json_duration(nanos)

    def scalar(
        self, raw: object, kind: int, enum: EnumDescriptor | None, display: str, where: YamlPath
    ) -> object:
        if kind == _FD.TYPE_STRING:
            if isinstance(raw, str):
                return raw
            self._issue(display, where, f"expected a string, got {describe(raw)}{_quote_hint(raw)}")
            return None
        if kind == _FD.TYPE_BOOL:
            if isinstance(raw, bool):
                return raw
            self._issue(display, where, f"expected a boolean (true or false), got {describe(raw)}")
            return None
        if kind in _INT_RANGES:
            return self._integer(raw, kind, display, where)
        if kind in _FLOAT_TYPES:
            if isinstance(raw, (int, float)) and not isinstance(raw, bool):
                limit = 3.4028234663852886e38 if kind == _FD.TYPE_FLOAT else 1.7976931348623157e308
                if isinstance(raw, float) and not math.isfinite(raw):
                    # Valid doubles, which protobuf JSON spells as strings.
                    return "NaN" if math.isnan(raw) else ("Infinity" if raw > 0 else "-Infinity")
                if abs(raw) > limit:
                    self._issue(display, where, f"{_short(raw)} is out of range for a number")
                    return None
                return raw
            self._issue(display, where, f"expected a number, got {describe(raw)}")
            return None
        if kind == _FD.TYPE_ENUM and enum is not None:
            return self._enum(raw, enum, display, where)
        if kind == _FD.TYPE_BYTES:
            if isinstance(raw, str) and _is_base64(raw):
                return raw
            self._issue(display, where, f"expected base64-encoded bytes, got {describe(raw)}")
            return None
        self._issue(display, where, "unsupported field type")
        return None

    def _integer(self, raw: object, kind: int, display: str, where: YamlPath) -> object:
        name, low, high = _INT_RANGES[kind]
        value: int | None = None
        if isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        elif isinstance(raw, float) and raw.is_integer():
            value = int(raw)
        if value is None:
            self._issue(display, where, f"expected an integer, got {describe(raw)}")
            return None
        if not low <= value <= high:
            self._issue(display, where, f"{_short(value)} is out of range for {name} ({low}..{high})")
            return None
        return value

    def _enum(self, raw: object, enum: EnumDescriptor, display: str, where: YamlPath) -> object:
        names = ", ".join(enum.values_by_name)
        if isinstance(raw, str) and raw in enum.values_by_name:
            value = enum.values_by_name[raw]
        elif isinstance(raw, int) and not isinstance(raw, bool) and raw in enum.values_by_number:
            value = enum.values_by_number[raw]
        else:
            shown = f'"{raw}"' if isinstance(raw, str) else describe(raw)
            self._issue(display, where, f"invalid value {shown}; must be one of {names}")
            return None
        if value.GetOptions().deprecated:
            self._issue(display, where, f"{value.name} is deprecated", "warning")
        return value.name


def _placeholder(field: FieldDescriptor) -> object:
    """The default value of one element of ``field``, in ParseDict's terms."""
    message_type = field.message_type
    if message_type is not None:
        if message_type.full_name == DURATION_FULL_NAME:
            return "0s"
        if message_type.full_name in _WRAPPERS:
            return _placeholder(message_type.fields_by_name["value"])
        return {}
    if field.enum_type is not None:
        return field.enum_type.values[0].name
    if field.type == _FD.TYPE_BYTES:
        return ""
    return field.default_value


def _unknown(key: str, descriptor: Descriptor) -> str:
    candidates = sorted({field.json_name for field in descriptor.fields})
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.75)
    return f'unknown field; did you mean "{close[0]}"?' if close else "unknown field"


def _short(number: float) -> str:
    text = str(number)
    return text if len(text) <= 24 else f"{text[:20]}...({len(text)} digits)"


def _quote_hint(raw: object) -> str:
    if isinstance(raw, (bool, int, float)):
        return " (quote it to make it a string)"
    return ""


def _is_base64(text: str) -> bool:
    # Protobuf JSON takes standard and URL-safe base64, with or without padding.
    padded = text + "=" * (-len(text) % 4)
    try:
        base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True
