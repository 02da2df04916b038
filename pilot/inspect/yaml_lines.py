"""The line of a field of one object in a YAML file, for messages that name a rule by file and line
(``pilot analyze``, ``pilot explain``, ``pilot proxy-status``): each file read once per command."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pilot.config.object_lines import file_documents, object_line
from pilot.config.yamlpos import Document, YamlPath


@lru_cache(maxsize=64)
def _documents(file: Path) -> tuple[Document, ...]:
    return file_documents(file)


def line_of(file: Path, kind: str, namespace: str, name: str, path: YamlPath) -> int | None:
    """The line of ``path`` (or its nearest ancestor) in the document of ``kind namespace/name``;
    None when the file cannot be read or holds no such document (a ``kind: List`` item, JSON)."""
    return object_line(_documents(file), kind, namespace, name, path)
