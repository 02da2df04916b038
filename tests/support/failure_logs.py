"""Processes whose logs a failing test should show (pytest adds them as report sections)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class HasLog(Protocol):
    name: str
    log_path: Path

    def log_tail(self, lines: int = ...) -> str: ...


_watched: list[HasLog] = []


def watch(proc: HasLog) -> None:
    _watched.append(proc)


def unwatch(proc: HasLog) -> None:
    if proc in _watched:
        _watched.remove(proc)


def sections(lines: int = 80) -> list[tuple[str, str]]:
    return [(f"{proc.name} log ({proc.log_path})", proc.log_tail(lines)) for proc in _watched]
