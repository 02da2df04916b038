"""Config objects, push contexts and proxy views for tests, built from small dicts or YAML files.

Specs are given as Istio writes them (camelCase YAML/JSON names) and parsed with protobuf's JSON
mapping into pilot's networking messages. ``load_yaml`` uses ``pilot.config.parse.parse_text``, so
golden inputs go through the same path as a real config folder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from google.protobuf import json_format

from pilot._gen import networking_pb2 as nw
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.config.parse import parse_text
from pilot.config.store import StoreSnapshot
from pilot.translate.context import PushContext
from pilot.translate.proxy import InterceptionMode, NodeType, ProxyView

SPEC_TYPES: Mapping[str, Any] = {
    "VirtualService": nw.VirtualService,
    "DestinationRule": nw.DestinationRule,
    "ServiceEntry": nw.ServiceEntry,
    "WorkloadEntry": nw.WorkloadEntry,
    "Gateway": nw.Gateway,
    "MeshConfig": nw.MeshConfig,
    "Sidecar": nw.Sidecar,
    "WorkloadGroup": nw.WorkloadGroup,
}
API_VERSION = "networking.istio.io/v1"


def config(
    kind: str,
    name: str,
    spec: Mapping[str, Any],
    namespace: str = "default",
    labels: Mapping[str, str] | None = None,
) -> ConfigObject:
    """One ConfigObject of ``kind`` whose spec is ``spec`` (Istio's camelCase field names)."""
    message = json_format.ParseDict(dict(spec), SPEC_TYPES[kind]())
    return ConfigObject(
        key=ConfigKey(kind, namespace, name),
        api_version=API_VERSION,
        spec=message,
        origin="test",
        labels=tuple(sorted((labels or {}).items())),
    )


def created(obj: ConfigObject, timestamp: str) -> ConfigObject:
    """``obj`` with ``metadata.creationTimestamp`` ``timestamp`` (RFC 3339)."""
    return dataclasses.replace(obj, created=datetime.fromisoformat(timestamp))


def service_entry(name: str, namespace: str = "default", **spec: Any) -> ConfigObject:
    return config("ServiceEntry", name, spec, namespace)


def service_entry_yaml(
    name: str,
    host: str,
    *,
    port: int = 80,
    resolution: str = "STATIC",
    location: str = "MESH_INTERNAL",
    endpoint: str | None = None,
) -> str:
    """A ServiceEntry in namespace default as a config file holds it, with one HTTP port."""
    endpoints = f"  endpoints:\n  - address: {endpoint}\n" if endpoint else ""
    return f"""\
apiVersion: {API_VERSION}
kind: ServiceEntry
metadata:
  name: {name}
  namespace: default
spec:
  hosts: [{host}]
  ports:
  - number: {port}
    name: http
    protocol: HTTP
  resolution: {resolution}
  location: {location}
{endpoints}"""


def virtual_service(name: str, namespace: str = "default", **spec: Any) -> ConfigObject:
    return config("VirtualService", name, spec, namespace)


def destination_rule(name: str, namespace: str = "default", **spec: Any) -> ConfigObject:
    return config("DestinationRule", name, spec, namespace)


def mesh_config(namespace: str = "istio-system", **spec: Any) -> ConfigObject:
    return config("MeshConfig", "mesh", spec, namespace)


def http_service(
    name: str,
    namespace: str = "default",
    port: int = 80,
    protocol: str = "HTTP",
    endpoints: Iterable[Mapping[str, Any]] = (),
    resolution: str = "STATIC",
    **extra: Any,
) -> ConfigObject:
    """A ServiceEntry for ``name.namespace.svc.cluster.local`` with one port."""
    return service_entry(
        name,
        namespace,
        hosts=[f"{name}.{namespace}.svc.cluster.local"],
        ports=[{"number": port, "name": f"{protocol.lower()}-{port}", "protocol": protocol}],
        resolution=resolution,
        location="MESH_INTERNAL",
        endpoints=list(endpoints),
        **extra,
    )


def store_snapshot(objects: Iterable[ConfigObject], revision: int = 1) -> StoreSnapshot:
    return StoreSnapshot(revision, MappingProxyType({obj.key: obj for obj in objects}))


def push_context(*objects: ConfigObject, revision: int = 1) -> PushContext:
    return PushContext.build(store_snapshot(objects, revision))


def sidecar(namespace: str = "default", mode: InterceptionMode = InterceptionMode.NONE) -> ProxyView:
    return ProxyView(NodeType.SIDECAR, namespace, mode)


def router(namespace: str = "istio-system") -> ProxyView:
    return ProxyView(NodeType.ROUTER, namespace, labels=(("istio", "ingressgateway"),))


def load_yaml(path: Path) -> list[ConfigObject]:
    """Every object of a multi-document YAML file, through pilot's own parser (errors fail the test)."""
    result = parse_text(path.read_text(), str(path))
    problems = "; ".join(str(e) for e in result.errors if e.severity == "error")
    if result.fatal or problems:
        raise AssertionError(f"{path}: {problems or 'could not be parsed'}")
    return list(result.objects)


def context_from_yaml(*paths: Path, revision: int = 1) -> PushContext:
    return PushContext.build(store_snapshot([obj for path in paths for obj in load_yaml(path)], revision))
