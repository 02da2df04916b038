"""The line of a field of one object in a YAML file, for messages that name a rule by file and line
(``pilot analyze``, ``pilot explain``): pilot's own positioned loader (pilot.config.yamlpos)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pilot.config.objects import DEFAULT_NAMESPACE
from pilot.config.yamlpos import Document, YamlPath, load_documents


@lru_cache(maxsize=64)
def _documents(file: Path) -> tuple[Document, ...]:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ()
    return load_documents(text).documents


def line_of(file: Path, kind: str, namespace: str, name: str, path: YamlPath) -> int | None:
    """The line of ``path`` (or its nearest ancestor) in the document of ``kind namespace/name``;
    None when the file cannot be read or holds no such document (a ``kind: List`` item, JSON)."""
    for document in _documents(file):
        value = document.value if isinstance(document.value, dict) else {}
        meta = value.get("metadata") if isinstance(value.get("metadata"), dict) else {}
        assert isinstance(meta, dict)
        if (
            value.get("kind") == kind
            and meta.get("name") == name
            and meta.get("namespace", DEFAULT_NAMESPACE) == namespace
        ):
            return document.line_of(path)
    return None
