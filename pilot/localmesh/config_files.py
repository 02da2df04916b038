"""Writing the folder ``pilot serve`` watches, so that it never reads a file half written."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` in one step: a temporary file, then a rename.

    The temporary name is hidden and not ``*.yaml``, so the watcher ignores it.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
