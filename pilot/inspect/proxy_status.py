"""``pilot proxy-status [PROXY]``: istioctl proxy-status over pilot's ``/debug/syncz``.

Without a proxy: one row per connected stream, each type SYNCED (the proxy ACKed the latest
response), NOT SENT, STALE (a response is not ACKed yet) or NACKED (the latest response was
rejected, or a config object is held back for the proxy's view because a proxy of the view
rejected what it produced: the proxy keeps that object's last accepted version); under the table,
each held object (kind namespace/name, file:line, the proxy's error_detail). With a proxy: per
type, the resources whose version in pilot's snapshot now differs from the version the proxy
holds (``/debug/proxyz``), the held objects, the last NACK's text, and with ``--envoy-admin`` a
diff of each differing resource against what Envoy reports holding (its admin ``/config_dump``),
as istioctl diffs a pod's Envoy against istiod. ``--revision`` asks ``/debug/convergence`` instead
(pilot.inspect.convergence).
"""

from __future__ import annotations

import datetime
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import yaml

from pilot.inspect import config_dump, convergence
from pilot.inspect.held_objects import held_lines
from pilot.inspect.pilot_api import DEFAULT_PILOT, PilotApi, envoy_config_dump

# gRPC's default receive limit (pilot.server.size_guard warns of larger responses in pilot's log).
GRPC_DEFAULT_MAX_RECV_BYTES = 4 * 1024 * 1024
TYPES = (("cds", "CDS"), ("lds", "LDS"), ("eds", "EDS"), ("rds", "RDS"))
HEADERS = ("NAME", "CDS", "LDS", "EDS", "RDS", "VERSION", "VIEW", "PROTOCOL", "CONNECTED SINCE")
# What each xDS type is called in a config dump, and in istioctl's "Clusters Match" lines.
DUMP_KINDS = {
    "cds": (config_dump.CLUSTER, "Clusters"),
    "lds": (config_dump.LISTENER, "Listeners"),
    "eds": (config_dump.ENDPOINT, "Endpoints"),
    "rds": (config_dump.ROUTE, "Routes"),
}


@dataclass(frozen=True, slots=True)
class ProxyStatusOptions:
    proxy: str | None = None
    pilot: str = DEFAULT_PILOT
    envoy_admin: str | None = None  # HOST:PORT of the proxy's Envoy admin, to diff against
    revision: str | None = None  # a store revision, or "latest": which proxies ACKed it


def type_status(row: Mapping[str, Any]) -> str:
    """SYNCED / NOT SENT / STALE / NACKED for one type of one stream (a ``/debug/syncz`` cell)."""
    nack = row.get("last_nack")
    if nack and row.get("nonce_sent") and nack.get("nonce") == row.get("nonce_sent"):
        return "NACKED"
    if row.get("rejected_objects"):
        return "NACKED"  # acked a version without the objects it rejected: they are held back
    return str(row.get("status", "NOT SENT"))


def held_objects(syncz: Sequence[Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """(proxy, rejection) for every object held back for some stream, by proxy and type."""
    return [
        (str(stream.get("proxy", "")), rejection)
        for stream in syncz
        for short, _ in TYPES
        for rejection in stream.get(short, {}).get("rejected_objects") or ()
    ]


def _since(seconds: float | None) -> str:
    if not seconds:
        return "-"
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_rows(syncz: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    rows = []
    for stream in syncz:
        cells = [type_status(stream.get(short, {})) for short, _ in TYPES]
        version = str(stream.get("cds", {}).get("version_acked", "")) or "-"
        rows.append(
            (
                str(stream.get("proxy", "")),
                *cells,
                version,
                str(stream.get("view", "")),
                str(stream.get("protocol", "")),
                _since(stream.get("connected_at")),
            )
        )
    return rows


def resource_diff(proxyz: Mapping[str, Any]) -> dict[str, list[str]]:
    """Per type, one line per resource whose versions differ: ``+ name`` pilot would send it and the
    proxy lacks it, ``- name`` the proxy holds it and pilot would remove it, ``~ name`` both hold
    another version."""
    out: dict[str, list[str]] = {}
    for short, _ in TYPES:
        lines = []
        for name, versions in proxyz.get("types", {}).get(short, {}).get("resources", {}).items():
            pilot, proxy = versions.get("pilot"), versions.get("proxy")
            if pilot == proxy:
                continue
            if proxy is None:
                lines.append(f"+ {name} (pilot {pilot}, not held by the proxy)")
            elif pilot is None:
                lines.append(f"- {name} (held by the proxy at {proxy}, no longer in pilot's config)")
            else:
                lines.append(f"~ {name} (pilot {pilot}, proxy {proxy})")
        out[short] = lines
    return out


def response_bytes(proxyz: Mapping[str, Any], short: str) -> int:
    """About the size of a whole-state response of the type: the sum of its resources."""
    resources = proxyz.get("types", {}).get(short, {}).get("resources", {})
    return sum(int(v.get("bytes") or 0) for v in resources.values())


def _dumped(resource: Mapping[str, Any] | None) -> list[str]:
    if resource is None:
        return []
    cleaned = {k: v for k, v in resource.items() if k != "last_updated"}
    return yaml.safe_dump(cleaned, sort_keys=True).splitlines(keepends=True)


def envoy_diff(pilot_dump: Mapping[str, Any], envoy_dump: Mapping[str, Any], kind: str) -> list[str]:
    """Unified diff, resource by resource, of pilot's view of ``kind`` against Envoy's dynamic
    (control-plane) resources. Endpoints are compared by name only: Envoy's dump of a
    ClusterLoadAssignment fills in defaults (health status, weights, overprovisioning) pilot omits."""
    ours = config_dump.by_name(pilot_dump, kind)
    theirs = config_dump.by_name(envoy_dump, kind, dynamic_only=True)
    lines: list[str] = []
    for name in sorted({*ours, *theirs}):
        if kind == config_dump.ENDPOINT:
            # Envoy lists a load assignment of its own for every cluster without EDS.
            if name not in ours and name in config_dump.by_name(pilot_dump, config_dump.CLUSTER):
                continue
            if (name in ours) != (name in theirs):
                lines.append(f"+ {name} (only pilot)" if name in ours else f"- {name} (only Envoy)")
            continue
        lines.extend(
            difflib.unified_diff(
                _dumped(theirs.get(name)),
                _dumped(ours.get(name)),
                f"envoy {kind} {name}",
                f"pilot {kind} {name}",
            )
        )
    return lines


def one_proxy(
    api: PilotApi, options: ProxyStatusOptions, syncz: Sequence[Mapping[str, Any]], out: TextIO
) -> int:
    assert options.proxy is not None
    proxyz = api.proxyz(options.proxy)
    node = proxyz["proxy"]
    stream: Mapping[str, Any] = next((s for s in reversed(syncz) if s.get("proxy") == node), {})
    print(f"{node}  view {proxyz.get('view')}  snapshot {proxyz.get('snapshot_version')}", file=out)
    # Objects the view's translation could not take (it holds their fail-closed result instead).
    for entry in proxyz.get("untranslated") or ():
        for reason in entry.get("reasons") or ():
            print(f"  not translated: {entry.get('key')}: {reason}", file=out)
    envoy = pilot_dump = None
    if options.envoy_admin is not None:
        envoy = envoy_config_dump(options.envoy_admin)
        pilot_dump = api.config_dump(node)
    differs = False
    for short, diff in resource_diff(proxyz).items():
        kind, title = DUMP_KINDS[short]
        row = stream.get(short, {})
        state = type_status(row)
        if envoy is not None and pilot_dump is not None:
            lines = envoy_diff(pilot_dump, envoy, kind)
            matches = not lines
        else:
            lines = diff
            matches = not diff and state in ("SYNCED", "NOT SENT")
        differs |= not matches
        size = response_bytes(proxyz, short)
        note = (
            f", {size} bytes: past gRPC's default 4 MiB receive limit"
            if size > GRPC_DEFAULT_MAX_RECV_BYTES
            else ""
        )
        print(f"{title} {'Match' if matches else 'Differ'} ({state}{note})", file=out)
        for line in lines:
            print(f"  {line.rstrip()}", file=out)
        for rejection in row.get("rejected_objects") or ():
            differs = True
            for line in held_lines(rejection):
                print(f"  {line}", file=out)
        nack = row.get("last_nack")
        if nack:
            print(f"  last NACK (nonce {nack.get('nonce')}, proxy keeps {nack.get('version')}):", file=out)
            print(f"    {nack.get('message')}", file=out)
    return 1 if differs else 0


def run(options: ProxyStatusOptions, out: TextIO) -> int:
    """The table (exit 0), or one proxy's diff (exit 0 when everything matches, 1 otherwise), or
    with ``revision`` who ACKed it (exit 0 when every proxy did, 1 otherwise)."""
    api = PilotApi(options.pilot)
    if options.revision is not None:
        return convergence.run(api, options.revision, out)
    syncz = api.syncz()
    if options.proxy is not None:
        return one_proxy(api, options, syncz, out)
    out.write(config_dump.table(HEADERS, status_rows(syncz)))
    held = held_objects(syncz)
    if held:
        print(file=out)
    for proxy, rejection in held:
        print(f"{proxy}:", file=out)
        for line in held_lines(rejection):
            print(f"  {line}", file=out)
    return 0
