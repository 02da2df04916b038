"""Istio YAML for tests, built as dicts: one service (ServiceEntry + DestinationRule) per test.

Each test gets its own host and its own service port N, so Envoy gets a listener ``0.0.0.0_N``
per test and tests sharing one pilot and one Envoy never see each other's routes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

Doc = dict[str, Any]

API_VERSION = "networking.istio.io/v1"
NAMESPACE = "default"


@dataclass(frozen=True)
class Service:
    """A test service: short ``name`` (what requests use as Host), its FQDN and port N."""

    name: str
    port: int

    @property
    def host(self) -> str:
        return f"{self.name}.{NAMESPACE}.svc.cluster.local"

    @property
    def listener(self) -> str:
        return f"0.0.0.0_{self.port}"


def _meta(name: str) -> Doc:
    return {"name": name, "namespace": NAMESPACE}


def service_entry(service: Service, backend_ports: Mapping[str, int]) -> Doc:
    """STATIC ServiceEntry with one 127.0.0.1 endpoint per version, labelled ``version: vN``."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceEntry",
        "metadata": _meta(service.name),
        "spec": {
            "hosts": [service.host],
            "location": "MESH_INTERNAL",
            "ports": [{"number": service.port, "name": "http", "protocol": "HTTP"}],
            "resolution": "STATIC",
            "endpoints": [
                {"address": "127.0.0.1", "ports": {"http": port}, "labels": {"version": version}}
                for version, port in sorted(backend_ports.items())
            ],
        },
    }


def destination_rule(service: Service, versions: Sequence[str]) -> Doc:
    return {
        "apiVersion": API_VERSION,
        "kind": "DestinationRule",
        "metadata": _meta(service.name),
        "spec": {
            "host": service.host,
            "subsets": [{"name": v, "labels": {"version": v}} for v in versions],
        },
    }


def destination(service: Service, subset: str, weight: int | None = None) -> Doc:
    dest: Doc = {"destination": {"host": service.name, "subset": subset}}
    if weight is not None:
        dest["weight"] = weight
    return dest


def virtual_service(service: Service, http: Sequence[Doc]) -> Doc:
    """VirtualService ``service.name`` for the short host, with the given ``http`` routes."""
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualService",
        "metadata": _meta(service.name),
        "spec": {"hosts": [service.name], "http": list(http)},
    }


def split(service: Service, weights: Mapping[str, int]) -> Doc:
    """A VirtualService sending ``weights`` percent of requests to each subset."""
    return virtual_service(service, [{"route": [destination(service, s, w) for s, w in weights.items()]}])


def inbound_sidecar(port: int, backend_port: int, namespace: str = "default") -> Doc:
    """A Sidecar ``default`` whose one HTTP ingress port goes to a backend on 127.0.0.1."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "default", "namespace": namespace},
        "spec": {
            "ingress": [
                {
                    "port": {"number": port, "protocol": "HTTP", "name": "http"},
                    "defaultEndpoint": f"127.0.0.1:{backend_port}",
                }
            ]
        },
    }


def dump(*docs: Doc) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)
