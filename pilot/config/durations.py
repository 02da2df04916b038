"""Go-style durations ("1h30m", "500ms", "0") as protobuf JSON durations ("5400s", "0.5s", "0s").

Istio reads its YAML with Go's JSON-to-proto unmarshalling, which parses ``google.protobuf.Duration``
fields with ``time.ParseDuration``; published configs rely on it (``baseEjectionTime: 3m``). Protobuf's
own JSON format only takes seconds ("180s"), so every Duration field is rewritten before
``json_format.ParseDict`` sees it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

DURATION_FULL_NAME = "google.protobuf.Duration"

_NANOS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 MICRO SIGN
    "μs": 1_000,  # U+03BC GREEK SMALL LETTER MU
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_PART = r"(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h)"
_GO_DURATION = re.compile(rf"([+-]?)((?:{_PART})+)")
_GO_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
# time.Duration is an int64 of nanoseconds: Go rejects anything longer (about 292 years).
_MAX_NANOS = 2**63 - 1


def parse_go_duration(text: str) -> int | None:
    """Nanoseconds of a Go ``time.ParseDuration`` string, or None when ``text`` is not one."""
    if text in ("0", "+0", "-0"):
        return 0
    match = _GO_DURATION.fullmatch(text)
    if match is None:
        return None
    nanos = Decimal(0)
    for number, unit in _GO_DURATION_PART.findall(match.group(2)):
        nanos += Decimal(number) * _NANOS_PER_UNIT[unit]
    total = int(nanos)  # Go truncates below a nanosecond
    if total > _MAX_NANOS:
        return None
    return -total if match.group(1) == "-" else total


def format_json_duration(nanos: int) -> str:
    """Protobuf JSON form of a duration: "180s", "0.5s", "-90s"."""
    sign = "-" if nanos < 0 else ""
    seconds, frac = divmod(abs(nanos), 1_000_000_000)
    if frac == 0:
        return f"{sign}{seconds}s"
    return f"{sign}{seconds}.{frac:09d}".rstrip("0") + "s"


def go_duration_to_json(text: str) -> str | None:
    """A Go duration string ("3m", "1h30m", "500ms", "0") as protobuf JSON ("180s"), or None if invalid."""
    nanos = parse_go_duration(text.strip())
    return None if nanos is None else format_json_duration(nanos)


def normalize_durations(data: Any, descriptor: Descriptor) -> Any:
    """A copy of ``data`` (a dict read from YAML for ``descriptor``) with Go-style Duration strings in
    protobuf JSON form, through nested, repeated and map fields. Anything that is not a field of the
    message, or not a valid duration, is kept as it is for the parser to report. ``data`` is not modified.
    """
    if not isinstance(data, Mapping):
        return data
    out: dict[Any, Any] = {}
    for key, value in data.items():
        field = _field(descriptor, key) if isinstance(key, str) else None
        if field is None or field.message_type is None:
            out[key] = value
        elif field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[key] = (
                {k: _normalize_value(v, value_field) for k, v in value.items()}
                if isinstance(value, Mapping)
                else value
            )
        elif field.is_repeated and isinstance(value, list):
            out[key] = [_normalize_value(v, field) for v in value]
        else:
            out[key] = _normalize_value(value, field)
    return out


def _normalize_value(value: Any, field: FieldDescriptor) -> Any:
    message_type = field.message_type
    if message_type is None:
        return value
    if message_type.full_name == DURATION_FULL_NAME:
        if isinstance(value, str):
            converted = go_duration_to_json(value)
            return value if converted is None else converted
        return value
    return normalize_durations(value, message_type)


def _field(descriptor: Descriptor, key: str) -> FieldDescriptor | None:
    field = descriptor.fields_by_name.get(key)
    if field is not None:
        return field
    for candidate in descriptor.fields:
        if candidate.json_name == key:
            return candidate
    return None
