"""Config objects held back because a proxy rejected what they produced (pilot.push.holds), as the
debug endpoints show them: the object (kind namespace/name), its file and the line its document
starts on, the resource and type the proxy rejected, and the proxy's error_detail.

``/debug/configz`` shows them on the objects, ``/debug/syncz`` on the type of every stream of the
view that holds them back (``pilot proxy-status`` marks that type NACKED), ``/debug/convergence``
on the proxies an edit has not reached.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from pilot.config.object_lines import file_documents, object_line
from pilot.config.objects import ConfigKey
from pilot.xds import types

Json = dict[str, Any]


class ObjectRejection(Protocol):
    """A config object held back for a view because a proxy rejected what it produced
    (``pilot.push.holds.ObjectRejection``, read by shape: debug never imports push/)."""

    @property
    def key(self) -> ConfigKey: ...
    @property
    def origin(self) -> str: ...
    @property
    def view(self) -> str: ...
    @property
    def proxy(self) -> str: ...
    @property
    def type_url(self) -> str: ...
    @property
    def resource(self) -> str: ...
    @property
    def error(self) -> str: ...
    @property
    def at(self) -> float: ...
    @property
    def rejected_revision(self) -> int: ...
    @property
    def held_revision(self) -> int | None: ...


def origin_line(key: ConfigKey, origin: str, folders: Sequence[Path]) -> int | None:
    """The line the object's document starts on in its file: ``origin`` as given or under a folder
    pilot watches (a folder source names its files relative to it); None for another source
    (``kube:...``) or a file that no longer holds the object. Reads the file: call off the loop."""
    if not origin or ":" in origin.partition("/")[0]:
        return None
    for candidate in (Path(origin), *(folder / origin for folder in folders)):
        if candidate.is_file():
            return object_line(file_documents(candidate), key.kind, key.namespace, key.name)
    return None


def object_rejection(rejection: ObjectRejection, line: int | None = None) -> Json:
    return {
        "key": str(rejection.key),
        "kind": rejection.key.kind,
        "namespace": rejection.key.namespace,
        "name": rejection.key.name,
        "origin": rejection.origin,
        "line": line,  # of the object's document in origin; null: not known
        "view": rejection.view,
        "proxy": rejection.proxy,
        "type": types.short_name(rejection.type_url),
        "resource": rejection.resource,
        "error": rejection.error,
        "at": rejection.at,
        "rejected_revision": rejection.rejected_revision,
        "held_revision": rejection.held_revision,  # null: left out of the view's config
    }


def located(rejections: Sequence[ObjectRejection], folders: Sequence[Path] = ()) -> list[Json]:
    """Every rejection as JSON, with the line of its object. Reads files: call off the loop."""
    return [object_rejection(r, origin_line(r.key, r.origin, folders)) for r in rejections]
