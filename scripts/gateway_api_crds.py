"""The Gateway API CRDs, generated from pilot's own schema of the API (pilot.config.gateway_api.schema).

``scripts/gen_crds.py`` writes them to manifests/11-gateway-api-crds.yaml. They are for clusters that
cannot install the upstream release (docs/kubernetes.md names it by version: the standard channel of
Gateway API v1.6.1, ``standard-install.yaml``); the upstream YAML is not copied into this repository.
What they hold, and what they do not:

- the kinds, group, plural names, short names, scope (GatewayClass is cluster-scoped), served versions
  (pilot.config.kinds, the first one stored) and the status subresource, as upstream;
- ``spec``: pilot's schema walked into OpenAPI: types, enums, lengths, bounds, required fields and
  patterns (anchored: pilot matches whole values). Every object node keeps unknown fields
  (``x-kubernetes-preserve-unknown-fields``), so fields of newer Gateway API versions that pilot does
  not read are kept, never pruned. The CEL rules are not carried over: pilot checks them itself (the
  webhook and the watch);
- ``status``: free-form, written by controllers (pilot writes conditions as the API defines them).
"""

from __future__ import annotations

from typing import Any

from pilot.config import kinds
from pilot.config.gateway_api import schema as gw
from pilot.config.gateway_api.openapi import Int, Seq, Str, StrMap, Type
from pilot.sources.kube_discovery import GATEWAY_API_RESOURCES

# Upstream short names (config/crd/standard in kubernetes-sigs/gateway-api).
SHORT_NAMES = {kinds.K8S_GATEWAY: ["gtw"], kinds.GATEWAY_CLASS: ["gc"], kinds.REFERENCE_GRANT: ["refgrant"]}
_SPECS = {
    kinds.K8S_GATEWAY: gw.GATEWAY,
    kinds.GATEWAY_CLASS: gw.GATEWAY_CLASS,
    kinds.HTTP_ROUTE: gw.HTTP_ROUTE,
    kinds.GRPC_ROUTE: gw.GRPC_ROUTE,
    kinds.TCP_ROUTE: gw.TCP_ROUTE,
    kinds.TLS_ROUTE: gw.TLS_ROUTE,
    kinds.REFERENCE_GRANT: gw.REFERENCE_GRANT,
}


def openapi(node: Type) -> dict[str, Any]:
    """One node of pilot's schema as an OpenAPI v3 structural schema."""
    if isinstance(node, Str):
        out: dict[str, Any] = {"type": "string"}
        if node.enum:
            out["enum"] = list(node.enum)
        else:
            out["maxLength"] = node.max_length
            if node.min_length:
                out["minLength"] = node.min_length
            if node.pattern is not None:
                out["pattern"] = f"^(?:{node.pattern})$"
        return out
    if isinstance(node, Int):
        return {"type": "integer", "format": "int32", "minimum": node.low, "maximum": node.high}
    if isinstance(node, Seq):
        array: dict[str, Any] = {"type": "array", "items": openapi(node.item), "maxItems": node.max_items}
        if node.min_items:
            array["minItems"] = node.min_items
        return array
    if isinstance(node, StrMap):
        return {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": node.max_items}
    properties = {name: openapi(child) for name, child in node.fields.items()}
    obj: dict[str, Any] = {"type": "object", "properties": properties}
    if node.required:
        obj["required"] = sorted(node.required)
    obj["x-kubernetes-preserve-unknown-fields"] = True
    return obj


def crd(kind: str) -> dict[str, Any]:
    wanted = GATEWAY_API_RESOURCES[kind]
    info = kinds.KINDS[kind]
    name = info.document_kind or kind
    spec = openapi(_SPECS[kind])
    spec["description"] = f"The {name} spec, as pilot reads it (from pilot.config.gateway_api.schema)."
    schema = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
        "required": ["spec"],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{wanted.plural}.{kinds.GATEWAY_API_GROUP}",
            "labels": {"app.kubernetes.io/part-of": "pilot"},
            "annotations": {
                "pilot.io/generated-by": "scripts/gen_crds.py",
                "gateway.networking.k8s.io/channel": "standard",
            },
        },
        "spec": {
            "group": kinds.GATEWAY_API_GROUP,
            "names": {
                "kind": name,
                "listKind": f"{name}List",
                "plural": wanted.plural,
                "singular": name.lower(),
                **({"shortNames": SHORT_NAMES[kind]} if kind in SHORT_NAMES else {}),
                "categories": ["gateway-api"],
            },
            "scope": "Namespaced" if wanted.namespaced else "Cluster",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": version == info.versions[0],
                    "schema": {"openAPIV3Schema": schema},
                    "additionalPrinterColumns": [
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
                    ],
                    "subresources": {"status": {}},
                }
                for version in info.versions
            ],
        },
    }


def documents() -> list[dict[str, Any]]:
    return [crd(kind) for kind in GATEWAY_API_RESOURCES]


__all__ = ["documents", "openapi"]
