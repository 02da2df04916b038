"""``pilot diff PROXY FILE...``: what candidate YAML would change in one proxy's config, before it is saved.

The design: translate twice, locally, with pilot's own translator, and compare.

1. pilot's ``/debug/proxyz`` gives the proxy's node id and view (the fields that decide its
   config) and the version of each resource pilot serves it now.
2. The running config is pilot's ``/debug/configz`` (every object it holds), or ``--config-dir``.
3. The candidate files are parsed and validated as pilot would load them; an object replaces the
   running object of the same kind, namespace and name, or is added. An invalid candidate object is
   reported and left out, as pilot keeps the last good version of it.
4. Both configs are translated for the proxy (its view recomputed under each, so an edit that moves
   the proxy to another view is seen) and compared resource by resource: added, removed, changed,
   with sizes in bytes.

The "before" translation is checked against the versions pilot serves now: when they differ (pilot
runs other code, or the config changed meanwhile), the diff says so, since it then describes the
local translation, not the running one. A sidecar's view holds only the labels some selector names
(pilot.translate.views): a candidate that adds a selector on a label no current selector names cannot
see that label, and the diff says that too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import orjson
from google.protobuf import json_format

from pilot.cache.snapshot import Snapshot
from pilot.config import kinds
from pilot.config.objects import ConfigKey, ConfigObject, FieldError
from pilot.config.store import StoreSnapshot
from pilot.inspect.pilot_api import DEFAULT_PILOT, ApiError, PilotApi
from pilot.translate.context import PushContext
from pilot.translate.proxy import Proxy
from pilot.translate.snapshot import build_snapshot
from pilot.translate.views import view_of
from pilot.validate import check, expand
from pilot.xds import types

TYPES = (("cds", types.CLUSTER), ("lds", types.LISTENER), ("rds", types.ROUTE), ("eds", types.ENDPOINT))
RUNNING_ORIGIN = "pilot:/debug/configz"


@dataclass(frozen=True, slots=True)
class DiffOptions:
    proxy: str
    files: tuple[str, ...]
    pilot: str = DEFAULT_PILOT
    config_dir: str | None = None
    output: str = "text"


@dataclass(frozen=True, slots=True)
class Change:
    type: str  # cds, lds, rds, eds
    name: str
    change: str  # added, removed, changed
    bytes_before: int
    bytes_after: int


def objects_from_configz(configz: Mapping[str, Any]) -> list[ConfigObject]:
    """The objects of a ``/debug/configz`` answer, their specs parsed back into their messages."""
    found = []
    for item in configz.get("objects", []):
        info = kinds.KINDS.get(item["kind"])
        if info is None:
            raise ApiError(f"/debug/configz holds a {item['kind']}, which this pilot cannot translate")
        spec = json_format.ParseDict(item.get("spec", {}), info.new_spec())
        found.append(
            ConfigObject(
                ConfigKey(item["kind"], item["namespace"], item["name"]),
                item.get("api_version", ""),
                spec,
                item.get("origin", RUNNING_ORIGIN),
                int(item.get("revision", 0)),
                tuple(sorted(item.get("labels", {}).items())),
                tuple(sorted(item.get("annotations", {}).items())),
            )
        )
    return found


def parse_files(paths: Sequence[str]) -> tuple[list[ConfigObject], list[FieldError]]:
    import sys

    objects: list[ConfigObject] = []
    errors: list[FieldError] = []
    for path in expand(paths):
        result = check(path, sys.stdin)
        objects.extend(result.objects)
        errors.extend(result.errors)
    return objects, errors


def proxy_of(node_id: str, view_fields: Mapping[str, Any]) -> Proxy:
    """The proxy as its view shows it: node id (type, address, namespace), labels, capture mode."""
    metadata = {
        "NAMESPACE": view_fields.get("namespace", ""),
        "INTERCEPTION_MODE": view_fields.get("interception_mode", ""),
        "LABELS": dict(view_fields.get("labels", [])),
    }
    return Proxy.from_node(node_id, metadata)


def translate(proxy: Proxy, objects: Sequence[ConfigObject], revision: int) -> Snapshot:
    context = PushContext.build(StoreSnapshot(revision, {obj.key: obj for obj in objects}))
    return build_snapshot(view_of(proxy, context), context)


def changes(before: Snapshot, after: Snapshot) -> list[Change]:
    out = []
    for short, type_url in TYPES:
        old, new = before.resources(type_url), after.resources(type_url)
        for name in sorted({*old, *new}):
            a, b = old.get(name), new.get(name)
            if a is not None and b is not None and a.version == b.version:
                continue
            change = "added" if a is None else "removed" if b is None else "changed"
            out.append(Change(short, name, change, len(a.body) if a else 0, len(b.body) if b else 0))
    return out


def served_mismatch(before: Snapshot, proxyz: Mapping[str, Any]) -> list[str]:
    """Resources whose local "before" version is not the one pilot serves now."""
    out: list[str] = []
    for short, type_url in TYPES:
        served = {
            name: v.get("pilot")
            for name, v in proxyz.get("types", {}).get(short, {}).get("resources", {}).items()
            if v.get("pilot") is not None
        }
        local = {name: r.version for name, r in before.resources(type_url).items()}
        out.extend(
            f"{short} {name}" for name in sorted({*served, *local}) if served.get(name) != local.get(name)
        )
    return out


def run(options: DiffOptions, out: TextIO) -> int:
    """Exit 0: no change for this proxy; 1: changes (like diff(1)); errors are reported, exit 1."""
    api = PilotApi(options.pilot)
    proxyz = api.proxyz(options.proxy)
    if options.config_dir is not None:
        running, _ = parse_files([options.config_dir])
    else:
        running = objects_from_configz(api.configz())
    candidates, errors = parse_files(options.files)
    for error in errors:
        print(f"{error.severity}: {error}", file=out)
    merged = {obj.key: obj for obj in running}
    merged.update({obj.key: obj for obj in candidates})
    proxy = proxy_of(proxyz["proxy"], proxyz.get("view_fields", {}))
    before = translate(proxy, running, 1)
    after = translate(proxy, list(merged.values()), 2)
    found = changes(before, after)
    mismatch = served_mismatch(before, proxyz)
    if options.output == "json":
        data = {
            "proxy": proxyz["proxy"],
            "changes": [vars_of(c) for c in found],
            "bytes_before": sum(len(r.body) for _, t in TYPES for r in before.resources(t).values()),
            "bytes_after": sum(len(r.body) for _, t in TYPES for r in after.resources(t).values()),
            "not_as_served": mismatch,
        }
        out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        if mismatch:
            print(
                "note: the local translation differs from what pilot serves now for "
                f"{len(mismatch)} resource(s) "
                f"({', '.join(mismatch[:3])}{', ...' if len(mismatch) > 3 else ''})",
                file=out,
            )
        marks = {"added": "+", "removed": "-", "changed": "~"}
        for c in found:
            print(
                f"{marks[c.change]} {c.type} {c.name} ({c.bytes_before} -> {c.bytes_after} bytes)", file=out
            )
        print(f"{len(found)} resource(s) change for {proxyz['proxy']}", file=out)
    return 1 if found or any(e.severity == "error" for e in errors) else 0


def vars_of(change: Change) -> dict[str, Any]:
    return {
        "type": change.type,
        "name": change.name,
        "change": change.change,
        "bytes_before": change.bytes_before,
        "bytes_after": change.bytes_after,
    }
