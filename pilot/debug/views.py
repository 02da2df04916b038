"""Read-only JSON views for the operator endpoints: nothing here changes the store, cache or server.

Each view returns plain JSON-able data (dicts, lists, str, int, float, bool, None); http.py
serializes it. Shapes follow what Istio's tools read where there is one: ``/debug/syncz`` like
istiod's (what ``istioctl proxy-status`` shows) and ``config_dump`` like Envoy's admin
``/config_dump``, so the two can be diffed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import importlib
import logging
import pkgutil
import re
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from google.protobuf import any_pb2, descriptor_pool
from google.protobuf.json_format import MessageToDict

from pilot import metrics
from pilot.cache.snapshot import Resource, Snapshot
from pilot.config.gateway_api.convert import convert as convert_gateway_api
from pilot.config.objects import FieldError
from pilot.config.store import ConfigStore, StoreSnapshot
from pilot.server.status import ConnectionStatus, TypeStatus, bounded_text
from pilot.xds import types

log = logging.getLogger("pilot.debug")

Json = dict[str, Any]

# syncz: the four types istioctl proxy-status shows, in its column order, with istiod's key prefix.
SYNC_TYPES: tuple[tuple[str, str, str], ...] = (
    ("cds", "cluster", types.CLUSTER),
    ("lds", "listener", types.LISTENER),
    ("eds", "endpoint", types.ENDPOINT),
    ("rds", "route", types.ROUTE),
)
_SYNC_TYPE_URLS = frozenset(type_url for _, _, type_url in SYNC_TYPES)


class ConnectionRegistry(Protocol):
    """What the debug views read from the ADS server (``pilot.server.ads.AdsServer``)."""

    def connections(self) -> Sequence[ConnectionStatus]: ...

    def find_view(self, node_id: str) -> Hashable | None: ...


# -- /debug/syncz -----------------------------------------------------------------------------------


def sync_status(sent: str, acked: str) -> str:
    """istioctl proxy-status's rule, on nonces: nothing sent, acked the last thing sent, or not."""
    if not sent:
        return "NOT SENT"
    if sent == acked:
        return "SYNCED"
    if not acked:
        return "STALE (Never Acknowledged)"
    return "STALE"


def _type_row(status: TypeStatus | None) -> Json:
    if status is None:
        return {
            "status": "NOT SENT",
            "version_sent": "",
            "nonce_sent": "",
            "version_acked": "",
            "nonce_acked": "",
            "subscribed": None,
            "last_nack": None,
        }
    nack = status.last_nack
    return {
        "status": sync_status(status.nonce_sent, status.nonce_acked),
        "version_sent": status.version_sent,
        "nonce_sent": status.nonce_sent,
        "version_acked": status.version_acked,
        "nonce_acked": status.nonce_acked,
        # None for a wildcard subscription ("everything"), else the names asked for.
        "subscribed": None if status.wildcard else list(status.names),
        "last_sent_at": status.last_sent_at,
        "last_nack": None
        if nack is None
        else {
            "message": bounded_text(nack.message),  # a proxy's text: never shown whole
            "code": nack.code,
            "nonce": nack.nonce,
            "version": nack.version,
            "at": nack.at,
        },
    }


def syncz(connections: Sequence[ConnectionStatus], rejections: Sequence[Json] = ()) -> list[Json]:
    """One entry per stream, sorted by proxy id. Also carries istiod's flat ``cluster_sent`` /
    ``cluster_acked`` (nonce) keys so tools written for istiod's syncz can read it. A type's
    ``rejected_objects`` are the config objects held back for the stream's view because a proxy of
    that view rejected them in that type (``rejections``: pilot.debug.rejections.located): the
    proxy runs without their latest version."""
    rows: list[Json] = []
    for conn in sorted(connections, key=lambda c: (c.node_id, c.stream_id)):
        row: Json = {
            "proxy": conn.node_id,
            "stream_id": conn.stream_id,
            "peer": conn.peer,
            "protocol": conn.protocol,
            "connected_at": conn.connected_at,
            "view": conn.view,
            "identity": conn.identity,
        }
        for short, istio_prefix, type_url in SYNC_TYPES:
            type_row = _type_row(conn.types.get(type_url))
            type_row["rejected_objects"] = [
                r for r in rejections if r["view"] == conn.view and r["type"] == short
            ]
            row[short] = type_row
            row[f"{istio_prefix}_sent"] = type_row["nonce_sent"]
            row[f"{istio_prefix}_acked"] = type_row["nonce_acked"]
        # Other types the stream has (VHDS of a proxy that asks for it): a row when present.
        for type_url, status in sorted(conn.types.items()):
            if type_url not in _SYNC_TYPE_URLS:
                row[types.short_name(type_url)] = _type_row(status)
        rows.append(row)
    return rows


# -- /debug/config_dump -----------------------------------------------------------------------------

ADMIN = "type.googleapis.com/envoy.admin.v3."
_MISSING_TYPE = re.compile(r"type_url: (\S+)")


def find_connection(registry: ConnectionRegistry, proxy_id: str) -> tuple[str, Hashable] | None:
    """The connected node and its view for ``proxy_id``: a full node id, or Istio's short
    ``pod.namespace`` form (the third ``~`` field of a sidecar id)."""
    view = registry.find_view(proxy_id)
    if view is not None:
        return proxy_id, view
    for conn in registry.connections():
        parts = conn.node_id.split("~")
        if len(parts) == 4 and parts[2] == proxy_id:
            view = registry.find_view(conn.node_id)
            if view is not None:
                return conn.node_id, view
    return None


def _import_package_of(type_url: str) -> bool:
    """Import every ``*_pb2`` module of the message's proto package so the default descriptor pool
    knows it (a nested ``typed_config`` may name an extension nobody imported yet)."""
    package = type_url.rsplit("/", 1)[-1].rpartition(".")[0]
    try:
        module = importlib.import_module(package)
    except ImportError:
        return False
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if info.name.endswith("_pb2"):
            importlib.import_module(f"{package}.{info.name}")
    try:
        descriptor_pool.Default().FindMessageTypeByName(type_url.rsplit("/", 1)[-1])
    except KeyError:
        return False
    return True


def render_resource(type_url: str, resource: Resource) -> Json:
    """A resource as Envoy's admin would print it: ``{"@type": ..., <fields in proto names>}``."""
    wrapper = any_pb2.Any.FromString(resource.body)
    tried: set[str] = set()
    while True:
        try:
            return MessageToDict(wrapper, preserving_proto_field_name=True)
        except TypeError as err:
            match = _MISSING_TYPE.search(str(err))
            missing = match.group(1) if match else ""
            if not missing or missing in tried or not _import_package_of(missing):
                log.warning("config_dump: cannot render %s %r: %s", type_url, resource.name, err)
                return {"@type": type_url, "name": resource.name, "render_error": str(err)}
            tried.add(missing)


def config_dump(snapshot: Snapshot) -> Json:
    """The snapshot in Envoy admin ``/config_dump`` shape: ConfigDump.configs, in Envoy's order."""

    def rendered(type_url: str) -> list[tuple[str, str, Json]]:
        version = snapshot.type_version(type_url)
        return [
            (name, version, render_resource(type_url, resource))
            for name, resource in sorted(snapshot.resources(type_url).items())
        ]

    return {
        "configs": [
            {
                "@type": ADMIN + "ClustersConfigDump",
                "version_info": snapshot.type_version(types.CLUSTER),
                "dynamic_active_clusters": [
                    {"version_info": version, "cluster": body} for _, version, body in rendered(types.CLUSTER)
                ],
            },
            {
                "@type": ADMIN + "EndpointsConfigDump",
                "dynamic_endpoint_configs": [
                    {"version_info": version, "endpoint_config": body}
                    for _, version, body in rendered(types.ENDPOINT)
                ],
            },
            {
                "@type": ADMIN + "ListenersConfigDump",
                "version_info": snapshot.type_version(types.LISTENER),
                "dynamic_listeners": [
                    {"name": name, "active_state": {"version_info": version, "listener": body}}
                    for name, version, body in rendered(types.LISTENER)
                ],
            },
            {
                "@type": ADMIN + "RoutesConfigDump",
                "dynamic_route_configs": [
                    {"version_info": version, "route_config": _with_virtual_hosts(name, body, snapshot)}
                    for name, version, body in rendered(types.ROUTE)
                ],
            },
        ],
    }


def _with_virtual_hosts(name: str, body: Json, snapshot: Snapshot) -> Json:
    """A route configuration as Envoy dumps it: a VHDS proxy's holds the virtual hosts it took over
    VHDS (those named ``NAME/...``), after its own, in name order (Envoy's
    RouteConfigUpdateReceiverImpl::rebuildRouteConfig)."""
    vhosts = snapshot.resources(types.VIRTUAL_HOST)
    if not vhosts:
        return body
    found = [
        {k: v for k, v in render_resource(types.VIRTUAL_HOST, resource).items() if k != "@type"}
        for vhost, resource in sorted(vhosts.items())
        if types.namespace_of(vhost) == name
    ]
    return {**body, "virtual_hosts": [*body.get("virtual_hosts", []), *found]} if found else body


# -- /debug/proxyz ---------------------------------------------------------------------------------


@runtime_checkable
class HeldResources(Protocol):
    """What /debug/proxyz reads besides the registry (``AdsServer.held_resources``), where present."""

    def held_resources(self, node_id: str) -> dict[str, dict[str, str]] | None: ...


def plain(value: object) -> Any:
    """A view (a frozen dataclass of enums, strings and tuples) as JSON-able data, by shape: debug
    never imports pilot.translate. Enums give their value; anything else unknown its str()."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, tuple | list):
        return [plain(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def proxyz(
    node_id: str, view: Hashable, snapshot: Snapshot | None, held: Mapping[str, Mapping[str, str]]
) -> Json:
    """One proxy: its view (fields, so a client can translate it again, as ``pilot diff`` does) and,
    per type, each resource's version in pilot's snapshot now (``pilot``) and the version the proxy
    holds (``proxy``; see ``Connection.held``): ``pilot proxy-status PROXY`` diffs the two."""
    types_out: Json = {}
    for short, _, type_url in SYNC_TYPES:
        current = {name: r.version for name, r in snapshot.resources(type_url).items()} if snapshot else {}
        proxy = held.get(type_url, {})
        types_out[short] = {
            "version": snapshot.type_version(type_url) if snapshot else "",
            "resources": {
                name: {
                    "pilot": current.get(name),
                    "proxy": proxy.get(name),
                    "bytes": len(snapshot.resources(type_url)[name].body)
                    if snapshot and name in current
                    else None,
                }
                for name in sorted({*current, *proxy})
            },
        }
    return {
        "proxy": node_id,
        "view": str(view),
        "view_fields": plain(view),
        "snapshot_version": snapshot.version if snapshot else None,
        "types": types_out,
    }


# -- /debug/configz and /metrics --------------------------------------------------------------------


def field_error(error: FieldError) -> Json:
    return {
        "origin": error.origin,
        "line": error.line,
        "kind": error.key.kind if error.key else None,
        "namespace": error.key.namespace if error.key else None,
        "name": error.key.name if error.key else None,
        "key": str(error.key) if error.key else None,
        "path": error.path,
        "message": error.message,
        "severity": error.severity,
    }


def configz(
    snapshot: StoreSnapshot,
    errors: Sequence[FieldError],
    rejections: Sequence[Json] = (),
    untranslated: Sequence[Json] = (),
) -> Json:
    """Every object the store holds (spec in the YAML's camelCase names) and every current problem;
    on an object a proxy rejected, the rejection (the object is held back for that proxy's view); on
    an object translation could not take, why and for which views (``untranslated``:
    pilot.debug.untranslated); a Gateway API object also has the ``status`` its conversion gives it
    (conditions with reasons)."""
    status = convert_gateway_api(snapshot.objects).status
    rejected: dict[str, list[Json]] = {}
    for rejection in rejections:  # pilot.debug.rejections.located
        rejected.setdefault(rejection["key"], []).append(rejection)
    not_taken = {entry["key"]: entry for entry in untranslated}
    objects = [
        {
            "kind": obj.kind,
            "namespace": obj.namespace,
            "name": obj.name,
            "api_version": obj.api_version,
            "origin": obj.origin,
            "revision": obj.revision,
            "labels": dict(obj.labels),
            "annotations": dict(obj.annotations),
            "spec": MessageToDict(obj.spec),
            **({"rejected": rejected[str(key)]} if str(key) in rejected else {}),
            **({"untranslated": not_taken[str(key)]} if str(key) in not_taken else {}),
            **({"status": status[key]} if key in status else {}),
        }
        for key, obj in sorted(snapshot.objects.items())
    ]
    return {
        "revision": snapshot.revision,
        "objects": objects,
        "errors": [field_error(e) for e in errors],
        "rejections": list(rejections),
        "untranslated": list(untranslated),
    }


def refresh_config_gauges(store: ConfigStore) -> None:
    """Set pilot_config_objects{kind} and pilot_config_errors{severity} from the store, now."""
    kinds = Counter(key.kind for key in store.snapshot().objects)
    severities: Counter[str] = Counter({"error": 0, "warning": 0})
    severities.update(error.severity for error in store.errors())
    metrics.config_objects.clear()  # kinds that disappeared must not linger at their old count
    for kind, count in kinds.items():
        metrics.config_objects.labels(kind).set(count)
    for severity, count in severities.items():
        metrics.config_errors.labels(severity).set(count)


# -- /debug/sourcez ---------------------------------------------------------------------------------


class SourceState(Protocol):
    """What /debug/sourcez reads of a config source (``pilot.sources.base.ConfigSource``): read-only.

    Besides ``synced``, a source may show more, found by shape (debug never imports pilot.sources):
    a ``status()`` mapping (``KubeSource``: each watch's state) and a ``path`` (``FolderSource``).
    """

    @property
    def synced(self) -> asyncio.Event: ...


@runtime_checkable
class _Reports(Protocol):
    def status(self) -> Mapping[str, Any]: ...


def source_state(source: SourceState) -> Json:
    """One source: its kind (class name), whether it has synced, and whatever it reports of itself."""
    row: Json = {"kind": type(source).__name__, "synced": source.synced.is_set()}
    path = getattr(source, "path", None)
    if path is not None:
        row["path"] = str(path)
    if isinstance(source, _Reports):
        try:
            row["status"] = dict(source.status())
        except Exception as err:  # a bug in a source's report must not break the endpoint
            log.exception("sourcez: %s.status() failed", row["kind"])
            row["status_error"] = f"{type(err).__name__}: {err}"
    return row


def sourcez(sources: Sequence[SourceState]) -> Json:
    """Every config source in start-up order; ``synced`` when all are (one condition of /ready)."""
    rows = [source_state(source) for source in sources]
    return {"synced": all(row["synced"] for row in rows), "sources": rows}
