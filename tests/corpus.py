"""The shared corpus of real Istio config (../shared/corpus/istio): the files and objects pilot
serves, and the ServiceEntries they need.

A corpus file's VirtualServices, DestinationRules and Sidecars (exact egress hosts) name hosts that
the file does not declare (in Kubernetes they are Services). ``synthetic_service_entries`` makes one
STATIC ServiceEntry per such host, with a 127.0.0.1 endpoint (one more per subset, carrying the
subset's labels), on the ports the file routes to (80 and 9080 when it names none), so that the config
has services to attach to.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from pilot.config import kinds
from pilot.config.gateway_api.convert import convert, spec_of
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.translate import hosts

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "istio"
DEFAULT_PORTS = (80, 9080)
API_VERSION = "networking.istio.io/v1"


def documents(path: Path) -> list[dict[str, Any]]:
    """The objects (mappings) of one corpus file, as YAML has them."""
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict)]


def is_served(document: dict[str, Any]) -> bool:
    """Whether pilot serves this document's kind at its apiVersion (``kinds.resolve``)."""
    return kinds.resolve(str(document.get("apiVersion", "")), str(document.get("kind", ""))).info is not None


def is_not_served(document: dict[str, Any]) -> bool:
    """An Istio or Gateway API kind pilot recognises and skips with a warning."""
    return kinds.resolve(str(document.get("apiVersion", "")), str(document.get("kind", ""))).not_served


def is_gateway_api(document: dict[str, Any]) -> bool:
    """A Kubernetes Gateway API object (gateway.networking.k8s.io; its ``Gateway`` is not Istio's)."""
    return kinds.split_api_version(str(document.get("apiVersion", "")))[0] == kinds.GATEWAY_API_GROUP


def served_documents(path: Path) -> list[dict[str, Any]]:
    """The documents of a corpus file of the Istio kinds pilot serves. The corpus also holds what
    pilot does not read (security.istio.io policies, core objects) and the Kubernetes Gateway API
    objects, which pilot converts into Istio ones (``gateway_api_documents``)."""
    return [doc for doc in documents(path) if is_served(doc) and not is_gateway_api(doc)]


def gateway_api_documents(path: Path) -> list[dict[str, Any]]:
    """The documents of a corpus file of the Gateway API kinds pilot serves."""
    return [doc for doc in documents(path) if is_served(doc) and is_gateway_api(doc)]


def gateway_api_files() -> list[Path]:
    """The corpus files holding at least one Gateway API object pilot serves."""
    return [path for path in all_files() if gateway_api_documents(path)]


def all_files() -> list[Path]:
    """Every file of the corpus."""
    return sorted(CORPUS.glob("*.yaml")) if CORPUS.is_dir() else []


@functools.cache
def _served_files() -> tuple[Path, ...]:
    return tuple(path for path in all_files() if served_documents(path))


def served_files() -> list[Path]:
    """The corpus files holding at least one object of a kind pilot serves."""
    return list(_served_files())


class _Hosts:
    """Hosts named by a file: host → (namespace, {port: protocol}, [subset labels])."""

    def __init__(self) -> None:
        self.found: dict[str, tuple[str, dict[int, str], list[dict[str, str]]]] = {}

    def add(self, host: str, namespace: str, port: int = 0, protocol: str = "HTTP") -> None:
        if not host or host == "*" or hosts.is_wildcard(host) or hosts.is_ip(host):
            return
        fqdn = hosts.resolve_shortname(host, namespace)
        _, ports, _ = self.found.setdefault(fqdn, (_namespace_of(fqdn, namespace), {}, []))
        if port:
            ports.setdefault(port, protocol)
        elif not ports:
            ports.update({0: protocol})  # no port yet: the defaults, unless one is named later

    def subset(self, host: str, namespace: str, labels: dict[str, str]) -> None:
        self.add(host, namespace)
        fqdn = hosts.resolve_shortname(host, namespace)
        if labels and labels not in self.found[fqdn][2]:
            self.found[fqdn][2].append(labels)


def _namespace_of(fqdn: str, fallback: str) -> str:
    parts = fqdn.split(".")
    if len(parts) == 5 and parts[2] == "svc":
        return parts[1]
    return fallback


def _port(destination: Any) -> int:
    return destination.port.number if destination.HasField("port") else 0


def _virtual_service(found: _Hosts, obj: ConfigObject) -> None:
    spec: Any = obj.spec
    ns = obj.namespace
    for section, protocol in (("http", "HTTP"), ("tcp", "TCP"), ("tls", "TLS")):
        routes = getattr(spec, section)
        if not routes:
            continue
        match_ports = {m.port for r in routes for m in r.match if m.port}
        for host in spec.hosts:
            for port in sorted(match_ports) or [0]:
                found.add(host, ns, port, protocol)
        for route in routes:
            destinations = [d.destination for d in route.route]
            if section == "http":
                destinations += [route.mirror] if route.HasField("mirror") else []
                destinations += [m.destination for m in route.mirrors]
            for destination in destinations:
                found.add(destination.host, ns, _port(destination), protocol)


def _destination_rule(found: _Hosts, obj: ConfigObject) -> None:
    spec: Any = obj.spec
    found.add(spec.host, obj.namespace)
    for setting in spec.traffic_policy.port_level_settings:
        found.add(spec.host, obj.namespace, setting.port.number)
    for subset in spec.subsets:
        found.subset(spec.host, obj.namespace, dict(subset.labels))


def _sidecar(found: _Hosts, obj: ConfigObject) -> None:
    """The exact ``ns/host`` egress hosts, in that namespace (``*`` and ``.``: the Sidecar's)."""
    spec: Any = obj.spec
    for listener in spec.egress:
        for entry in listener.hosts:
            namespace, slash, host = entry.partition("/")
            if not slash or namespace.startswith("~") or "." not in host:
                continue
            namespace = obj.namespace if namespace in ("*", ".") else namespace
            port = listener.port.number if listener.HasField("port") else 0
            protocol = str(listener.port.protocol).upper() if port else "HTTP"
            found.add(host, namespace, port, protocol if protocol in ("HTTP", "TCP", "TLS") else "TCP")


def _declared(objects: Iterable[ConfigObject]) -> set[str]:
    out = set()
    for obj in objects:
        if obj.kind == "ServiceEntry":
            spec: Any = obj.spec
            out.update(hosts.resolve_shortname(h, obj.namespace) for h in spec.hosts)
    return out


def _gateway_api_services(found: _Hosts, obj: ConfigObject) -> None:
    """The Services a Gateway API route names: its parents (GAMMA) and its backends."""
    spec = spec_of(obj)
    refs = [*spec.get("parentRefs", ())]
    refs += [ref for rule in spec.get("rules", ()) for ref in rule.get("backendRefs", ())]
    protocol = {kinds.TCP_ROUTE: "TCP", kinds.TLS_ROUTE: "TLS"}.get(obj.kind, "HTTP")
    for ref in refs:
        if ref.get("kind", "Service") == "Service" and ref.get("group", "") == "":
            namespace = ref.get("namespace", obj.namespace)
            host = f"{ref['name']}.{namespace}.svc.cluster.local"
            found.add(host, namespace, int(ref.get("port", 0)), protocol)


def with_gateway_api(objects: list[ConfigObject]) -> list[ConfigObject]:
    """``objects`` and the Istio objects their Gateway API objects convert to."""
    return [*objects, *convert(store_objects(objects)).objects]


def store_objects(objects: Iterable[ConfigObject]) -> dict[ConfigKey, ConfigObject]:
    return {obj.key: obj for obj in objects}


def synthetic_service_entries(objects: list[ConfigObject]) -> list[dict[str, Any]]:
    """ServiceEntry documents (dicts) for every host the objects name and do not declare (the
    Gateway API's included: the hosts of the VirtualServices they convert to, and their parents)."""
    found = _Hosts()
    for obj in objects:
        if obj.kind in (kinds.HTTP_ROUTE, kinds.GRPC_ROUTE, kinds.TCP_ROUTE, kinds.TLS_ROUTE):
            _gateway_api_services(found, obj)
    for obj in with_gateway_api(objects):
        if obj.kind == "VirtualService":
            _virtual_service(found, obj)
        elif obj.kind == "DestinationRule":
            _destination_rule(found, obj)
        elif obj.kind == "Sidecar":
            _sidecar(found, obj)
    declared = _declared(objects)
    out = []
    for fqdn, (namespace, ports, subsets) in sorted(found.found.items()):
        if fqdn in declared:
            continue
        default = ports.pop(0, "HTTP")
        if not ports:
            ports = {number: default for number in DEFAULT_PORTS}
        endpoints: list[dict[str, Any]] = [{"address": "127.0.0.1"}]
        endpoints += [{"address": "127.0.0.1", "labels": labels} for labels in subsets]
        out.append(
            {
                "apiVersion": API_VERSION,
                "kind": "ServiceEntry",
                "metadata": {
                    "name": "synthetic-" + re.sub(r"[^a-z0-9-]", "-", fqdn.lower())[:50],
                    "namespace": namespace,
                },
                "spec": {
                    "hosts": [fqdn],
                    "location": "MESH_INTERNAL",
                    "resolution": "STATIC",
                    "ports": [
                        {"number": number, "name": f"{protocol.lower()}-{number}", "protocol": protocol}
                        for number, protocol in sorted(ports.items())
                    ],
                    "endpoints": endpoints,
                },
            }
        )
    return out


def gateway_selectors(objects: Iterable[ConfigObject]) -> list[tuple[tuple[str, str], ...]]:
    """The distinct label selectors of the Gateways among ``objects`` (sorted), and of those their
    Gateway API objects convert to."""
    selectors = set()
    for obj in with_gateway_api(list(objects)):
        if obj.kind == "Gateway":
            spec: Any = obj.spec
            selectors.add(tuple(sorted(spec.selector.items())))
    return sorted(selectors)
