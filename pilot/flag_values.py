"""Command-line flag values: argparse ``type=`` functions shared by every subcommand's flags.

Each raises ``argparse.ArgumentTypeError`` with a one-line reason (a plain ValueError would make
argparse name the function in the usage error), and numbers are finite (``nan`` and ``1e400`` are
refused). tests/test_cli_flags.py feeds every flag of every subcommand bad values.
"""

from __future__ import annotations

import argparse
import datetime
import math
import re

__all__ = [
    "count",
    "duration",
    "integer",
    "key_value",
    "non_negative",
    "number",
    "parse_duration",
    "port",
    "positive",
]

# Go duration syntax as Istio's flags take it, restricted to whole h/m/s: 1h, 30m, 1h30m, 90s, 3600.
_DURATION = re.compile(r"(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?")


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def count(text: str) -> int:
    """A whole number, 0 or more."""
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def positive(text: str) -> int:
    """A whole number, 1 or more."""
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative(text: str) -> float:
    """A finite number, 0 or more: seconds, rates."""
    value = number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def port(text: str) -> int:
    """0 to 65535 (0: any free port, or off, as each flag says)."""
    value = integer(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {value}")
    return value


def key_value(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (the value may be empty, the key not)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def parse_duration(text: str) -> datetime.timedelta:
    """``1h``, ``30m``, ``1h30m``, ``90s`` or plain seconds → timedelta; ValueError otherwise."""
    match = _DURATION.fullmatch(text)
    if not text or (match is None and not text.isdigit()):
        raise ValueError(f"not a duration (like 1h, 30m, 90s): {text!r}")
    try:
        if text.isdigit():
            return datetime.timedelta(seconds=int(text))
        assert match is not None
        hours, minutes, seconds = (int(match.group(unit) or 0) for unit in "hms")
        return datetime.timedelta(hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise ValueError(f"duration too long: {text!r}") from None


def duration(text: str) -> datetime.timedelta:
    """A Go-style duration flag (``parse_duration``) as argparse takes it."""
    try:
        return parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
