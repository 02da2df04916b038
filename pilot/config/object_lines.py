"""The line of a field of one object in a YAML file, for messages that name an object by file and
line (``pilot analyze``, ``pilot explain``, a rejection in ``/debug/syncz``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pilot.config.objects import DEFAULT_NAMESPACE
from pilot.config.yamlpos import Document, YamlPath, load_documents


def file_documents(file: Path) -> tuple[Document, ...]:
    """The documents of ``file`` with their lines; none when it cannot be read."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ()
    return load_documents(text).documents


def object_line(
    documents: Sequence[Document], kind: str, namespace: str, name: str, path: YamlPath = ()
) -> int | None:
    """The line of ``path`` (or its nearest ancestor) in the document of ``kind namespace/name``;
    None when no document is that object (a ``kind: List`` item, JSON)."""
    for document in documents:
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
