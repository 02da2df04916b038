"""The benchmark mesh: K services written as Istio YAML into a folder pilot watches.

Service ``i`` is ``svc-NNNN`` in namespace ``bench`` with one HTTP port (cycling over ``PORTS``, so
a sidecar gets ``len(PORTS)`` listeners and route configurations), a STATIC ServiceEntry with three
endpoints (two ``version: v1``, one ``v2``), a DestinationRule with subsets ``v1`` and ``v2`` and
a VirtualService splitting traffic between them by weight. Each service is 3 EDS clusters (the
default one and one per subset), 3 ClusterLoadAssignments and one virtual host.

The ServiceEntry and DestinationRule of a service share a file; its VirtualService has its own, so
an edit rewrites (and pilot re-parses) one small file, as an operator's ``kubectl apply`` would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pilot.localmesh.config_files import write_atomically

NAMESPACE = "bench"
API_VERSION = "networking.istio.io/v1"
PORTS = (80, 8080, 9080, 3000, 5000, 7000, 8000, 9000)


@dataclass(frozen=True, slots=True)
class BenchService:
    index: int

    @property
    def name(self) -> str:
        return f"svc-{self.index:04d}"

    @property
    def host(self) -> str:
        return f"{self.name}.{NAMESPACE}.svc.cluster.local"

    @property
    def port(self) -> int:
        return PORTS[self.index % len(PORTS)]


def node_id(index: int) -> str:
    """Istio's sidecar node id for simulated proxy ``index`` (all in one namespace: one view)."""
    ip = f"10.200.{index // 250}.{index % 250 + 1}"
    return f"sidecar~{ip}~bench-{index}.{NAMESPACE}~{NAMESPACE}.svc.cluster.local"


def _meta(name: str) -> dict[str, str]:
    return {"name": name, "namespace": NAMESPACE}


def service_docs(svc: BenchService) -> list[dict[str, Any]]:
    third = svc.index % 250
    endpoints = [
        {
            "address": f"10.{svc.index // 250 + 1}.{third}.{e + 1}",
            "ports": {"http": 8080},
            "labels": {"app": svc.name, "version": version},
        }
        for e, version in enumerate(("v1", "v1", "v2"))
    ]
    service_entry: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "ServiceEntry",
        "metadata": _meta(svc.name),
        "spec": {
            "hosts": [svc.host],
            "location": "MESH_INTERNAL",
            "ports": [{"number": svc.port, "name": "http", "protocol": "HTTP"}],
            "resolution": "STATIC",
            "endpoints": endpoints,
        },
    }
    destination_rule: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "DestinationRule",
        "metadata": _meta(svc.name),
        "spec": {
            "host": svc.host,
            "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2")],
        },
    }
    return [service_entry, destination_rule]


def virtual_service_doc(svc: BenchService, v1_weight: int = 90) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualService",
        "metadata": _meta(svc.name),
        "spec": {
            "hosts": [svc.name],
            "http": [
                {
                    "name": "split",
                    "route": [
                        {"destination": {"host": svc.name, "subset": "v1"}, "weight": v1_weight},
                        {"destination": {"host": svc.name, "subset": "v2"}, "weight": 100 - v1_weight},
                    ],
                }
            ],
        },
    }


def service_path(root: Path, svc: BenchService) -> Path:
    return root / "services" / f"{svc.name}.yaml"


def virtual_service_path(root: Path, svc: BenchService) -> Path:
    return root / "routes" / f"{svc.name}-vs.yaml"


def write_mesh(root: Path, services: int) -> list[BenchService]:
    """Write ``services`` services into ``root`` (created); returns them."""
    (root / "services").mkdir(parents=True, exist_ok=True)
    (root / "routes").mkdir(parents=True, exist_ok=True)
    out = [BenchService(i) for i in range(services)]
    for svc in out:
        service_path(root, svc).write_text(yaml.safe_dump_all(service_docs(svc), sort_keys=False))
        virtual_service_path(root, svc).write_text(yaml.safe_dump(virtual_service_doc(svc), sort_keys=False))
    return out


def edit_weight(edit: int) -> int:
    """The v1 weight of the ``edit``-th edit: never 90 (the initial one), never twice in a row."""
    return 10 + (edit % 70)


def edit_virtual_service(root: Path, svc: BenchService, edit: int) -> None:
    text = yaml.safe_dump(virtual_service_doc(svc, edit_weight(edit)), sort_keys=False)
    write_atomically(virtual_service_path(root, svc), text)
