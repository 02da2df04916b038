"""The Istio object an Envoy route or cluster came from, and the rule and file line that made a route.

Istio names each route's and cluster's source object in ``filter_metadata.istio.config``
(``/apis/networking.istio.io/v1/namespaces/NS/virtual-service/NAME``); pilot's ``/debug/configz`` gives
that object's file, and where the file is readable here, the line of the rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pilot.config.yamlpos import format_path
from pilot.inspect.yaml_lines import line_of

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Source:
    kind: str
    namespace: str
    name: str
    origin: str = ""
    line: int | None = None
    path: str = ""  # the rule's field path, e.g. spec.http[0].match[1]

    def __str__(self) -> str:
        where = f"{self.origin}:{self.line}" if self.line else self.origin
        text = f"{self.kind} {self.namespace}/{self.name}"
        if self.path:
            text += f" {self.path}"
        return f"{text} ({where})" if where else text


_KINDS = {
    "virtual-service": "VirtualService",
    "destination-rule": "DestinationRule",
    "service-entry": "ServiceEntry",
}


def source_of(
    metadata: Mapping[str, Any] | None, objects: Mapping[tuple[str, str, str], Json]
) -> Source | None:
    """The object ``filter_metadata.istio.config`` names, with its file from ``/debug/configz``."""
    config = str(((metadata or {}).get("filter_metadata", {}).get("istio", {}) or {}).get("config", ""))
    pieces = config.split("/")
    if not config.startswith("/apis/") or len(pieces) != 8:
        return None
    kind = _KINDS.get(pieces[6], pieces[6])
    found = objects.get((kind, pieces[5], pieces[7]), {})
    return Source(kind, pieces[5], pieces[7], str(found.get("origin", "")))


def rule_of(
    source: Source,
    obj: Json | None,
    route_index: int,
    route_name: str,
    port: int,
    folders: Sequence[str] = (),
) -> Source:
    """Which ``spec.http[i].match[j]`` made the ``route_index``-th route the VirtualService gave this
    virtual host (one route per match, up to the first catch-all, as pilot.translate.routes builds
    them), with its line when the file is readable here."""
    if obj is None:
        return source
    rules = obj.get("spec", {}).get("http", [])
    pairs: list[tuple[int, int | None]] = []
    for i, rule in enumerate(rules):
        matches = rule.get("match", [])
        if not matches:
            pairs.append((i, None))
            break
        pairs.extend((i, j) for j, m in enumerate(matches) if not m.get("port") or int(m["port"]) == port)
    by_name = [pair for pair in pairs if route_name and rules[pair[0]].get("name") == route_name]
    if by_name:
        pair: tuple[int, int | None] | None = by_name[0]
    else:
        pair = pairs[route_index] if route_index < len(pairs) else None
    if pair is None:
        return source
    path: tuple[str | int, ...] = ("spec", "http", pair[0]) + (
        ("match", pair[1]) if pair[1] is not None else ()
    )
    where = _readable(source.origin, folders)
    line = line_of(where, source.kind, source.namespace, source.name, path) if where is not None else None
    origin = str(where) if where is not None else source.origin
    return Source(source.kind, source.namespace, source.name, origin, line, format_path(path))


def _readable(origin: str, folders: Sequence[str]) -> Path | None:
    """The origin's file here: as given, or under a folder pilot watches (a folder source names its
    files relative to the folder; ``/debug/sourcez`` gives the folder)."""
    for candidate in (Path(origin), *(Path(folder) / origin for folder in folders)):
        if candidate.is_file():
            return candidate
    return None
