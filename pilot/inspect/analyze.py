"""``pilot analyze [DIR...] [-o json]``: Istio's analyzers over a folder of Istio YAML.

The files are read by pilot's own parser and validation (the path ``pilot validate`` and a watched
folder take), so IST0106 lists exactly what pilot would refuse; the analyzers
(``pilot.inspect.analyzers``) then run over every object that parsed. Exit status: 1 when some
message is an Error, else 0 (``istioctl analyze`` likewise fails on errors only).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson

from pilot.config.objects import ConfigKey, ConfigObject, FieldError
from pilot.inspect.analyzers import analyze
from pilot.inspect.mesh import Mesh
from pilot.inspect.messages import Message
from pilot.inspect.yaml_lines import line_of
from pilot.validate import check, expand


@dataclass(frozen=True, slots=True)
class AnalyzeOptions:
    paths: tuple[str, ...] = (".",)
    output: str = "text"  # or "json"

    def __post_init__(self) -> None:
        if self.output not in ("text", "json"):
            raise ValueError(f"unknown output {self.output!r}: text or json")


def load(paths: Sequence[str]) -> Mesh:
    """Every object of ``paths``; an object a later path holds again (same kind, namespace and
    name) replaces the earlier one, so ``pilot analyze mesh/ candidate.yaml`` analyzes the mesh
    with the candidate edit applied, as the folder would hold it once saved."""
    objects: dict[ConfigKey, ConfigObject] = {}
    errors: list[FieldError] = []
    for path in expand(paths):
        result = check(path, sys.stdin)  # "-": standard input, as pilot validate
        for obj in result.objects:
            objects.pop(obj.key, None)  # the replacement keeps the later file's order
            objects[obj.key] = obj
        errors.extend(result.errors)
    return Mesh(list(objects.values()), errors)


def as_json(message: Message) -> dict[str, Any]:
    """istioctl analyze -o json's fields."""
    key = message.key
    return {
        "code": message.type.code,
        "level": message.type.level,
        "name": message.type.name,
        "message": message.text,
        "origin": f"{key.kind} {key.namespace}/{key.name}" if key else "",
        "reference": message.origin,
        "line": message.line,
    }


def with_line(message: Message) -> Message:
    """The message with the line of its field, read from its file (parse errors carry theirs)."""
    if message.line is not None or message.key is None or not message.origin:
        return message
    key = message.key
    line = line_of(Path(message.origin), key.kind, key.namespace, key.name, message.path)
    return dataclasses.replace(message, line=line)


def run(options: AnalyzeOptions, out: TextIO) -> int:
    messages = [with_line(message) for message in analyze(load(options.paths))]
    if options.output == "json":
        out.write(orjson.dumps([as_json(m) for m in messages], option=orjson.OPT_INDENT_2).decode() + "\n")
    elif messages:
        for message in messages:
            print(message, file=out)
    else:
        print("\u2714 No validation issues found when analyzing the given files.", file=out)
    return 1 if any(m.type.level == "Error" for m in messages) else 0
