#!/usr/bin/env python3
"""Generate the CustomResourceDefinitions of Istio's networking and security kinds from pilot's protos.

    python scripts/gen_crds.py           # (re)write manifests/10-crds.yaml
    python scripts/gen_crds.py --check   # exit 1 if manifests/10-crds.yaml is not what this would write

The ``openAPIV3Schema`` of each CRD is walked from the descriptors in pilot._gen.networking_pb2 and
security_pb2 (generated from protos/networking.proto and protos/security.proto), so the API server
accepts exactly the fields pilot reads:

- a message → ``type: object`` with ``properties`` named by the fields' JSON (camelCase) names;
- repeated → ``type: array`` with ``items``; map<string, V> → ``type: object`` with ``additionalProperties``;
- an enum → ``type: string`` with its value names in ``enum``;
- google.protobuf.Duration → ``type: string`` ("5s", "1m30s"); the wrappers (UInt32Value, BoolValue, ...)
  → their scalar; int32/uint32 → integer with its range; int64/uint64 → integer; float/double → number;
  bytes → string (format byte).

Every object node also carries ``x-kubernetes-preserve-unknown-fields: true``: the API server checks
the types of the fields pilot knows and keeps every other field as written. pilot's protos hold the
fields pilot reads, which is fewer than Istio's API; a closed schema would make the API server prune
(silently drop) every field of an Istio object that pilot does not read, including from objects istiod
serves when both run on one cluster. Unknown fields are reported by pilot's validating webhook, which
runs the same validation as the watch, and so are oneofs and value checks (weights, hosts, ...).

Each networking CRD serves v1 (the storage version), v1beta1 and v1alpha3 with the same schema, each
security CRD v1 and v1beta1, as Istio's do.
Output is deterministic; --check compares without writing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "manifests" / "10-crds.yaml"
NETWORKING = "networking.istio.io"
SECURITY = "security.istio.io"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from google.protobuf.descriptor import Descriptor, FieldDescriptor  # noqa: E402

from pilot._gen import networking_pb2, security_pb2  # noqa: E402

# group → (the module of its spec messages, its proto file, its versions: the first is the storage
# version, and Istio's CRD categories)
GROUPS: dict[str, tuple[Any, str, tuple[str, ...], list[str]]] = {
    NETWORKING: (
        networking_pb2,
        "protos/networking.proto",
        ("v1", "v1beta1", "v1alpha3"),
        ["networking-istio-io"],
    ),
    SECURITY: (security_pb2, "protos/security.proto", ("v1", "v1beta1"), ["security-istio-io"]),
}

_FD = FieldDescriptor
_INT32 = {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
_UINT32 = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
_SCALARS: dict[int, dict[str, Any]] = {
    _FD.TYPE_STRING: {"type": "string"},
    _FD.TYPE_BOOL: {"type": "boolean"},
    _FD.TYPE_INT32: _INT32,
    _FD.TYPE_SINT32: _INT32,
    _FD.TYPE_SFIXED32: _INT32,
    _FD.TYPE_UINT32: _UINT32,
    _FD.TYPE_FIXED32: _UINT32,
    _FD.TYPE_INT64: {"type": "integer", "format": "int64"},
    _FD.TYPE_SINT64: {"type": "integer", "format": "int64"},
    _FD.TYPE_SFIXED64: {"type": "integer", "format": "int64"},
    _FD.TYPE_UINT64: {"type": "integer", "minimum": 0},
    _FD.TYPE_FIXED64: {"type": "integer", "minimum": 0},
    _FD.TYPE_DOUBLE: {"type": "number"},
    _FD.TYPE_FLOAT: {"type": "number"},
    _FD.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_WRAPPERS = {
    "google.protobuf.DoubleValue": _FD.TYPE_DOUBLE,
    "google.protobuf.FloatValue": _FD.TYPE_FLOAT,
    "google.protobuf.Int64Value": _FD.TYPE_INT64,
    "google.protobuf.UInt64Value": _FD.TYPE_UINT64,
    "google.protobuf.Int32Value": _FD.TYPE_INT32,
    "google.protobuf.UInt32Value": _FD.TYPE_UINT32,
    "google.protobuf.BoolValue": _FD.TYPE_BOOL,
    "google.protobuf.StringValue": _FD.TYPE_STRING,
    "google.protobuf.BytesValue": _FD.TYPE_BYTES,
}
_DURATION = "google.protobuf.Duration"


# kind → (group, plural, short names, printer columns beyond Age)
KINDS: dict[str, tuple[str, str, list[str], list[dict[str, str]]]] = {
    "VirtualService": (
        NETWORKING,
        "virtualservices",
        ["vs"],
        [
            {
                "name": "Gateways",
                "type": "string",
                "jsonPath": ".spec.gateways",
                "description": "The gateways the routes apply to",
            },
            {
                "name": "Hosts",
                "type": "string",
                "jsonPath": ".spec.hosts",
                "description": "The destination hosts the routes apply to",
            },
        ],
    ),
    "DestinationRule": (
        NETWORKING,
        "destinationrules",
        ["dr"],
        [
            {
                "name": "Host",
                "type": "string",
                "jsonPath": ".spec.host",
                "description": "The service the rule is for",
            }
        ],
    ),
    "ServiceEntry": (
        NETWORKING,
        "serviceentries",
        ["se"],
        [
            {
                "name": "Hosts",
                "type": "string",
                "jsonPath": ".spec.hosts",
                "description": "The hosts of the entry",
            },
            {
                "name": "Location",
                "type": "string",
                "jsonPath": ".spec.location",
                "description": "Inside or outside the mesh",
            },
            {
                "name": "Resolution",
                "type": "string",
                "jsonPath": ".spec.resolution",
                "description": "How endpoints are found",
            },
        ],
    ),
    "Gateway": (NETWORKING, "gateways", ["gw"], []),
    "Sidecar": (NETWORKING, "sidecars", [], []),
    "WorkloadGroup": (NETWORKING, "workloadgroups", ["wg"], []),
    "PeerAuthentication": (
        SECURITY,
        "peerauthentications",
        ["pa"],
        [
            {
                "name": "Mode",
                "type": "string",
                "jsonPath": ".spec.mtls.mode",
                "description": "Defines the mTLS mode used for peer authentication.",
            }
        ],
    ),
    "AuthorizationPolicy": (
        SECURITY,
        "authorizationpolicies",
        ["ap"],
        [
            {
                "name": "Action",
                "type": "string",
                "jsonPath": ".spec.action",
                "description": "The operation to take.",
            }
        ],
    ),
    "RequestAuthentication": (SECURITY, "requestauthentications", ["ra"], []),
}


def schema_of(descriptor: Descriptor, stack: tuple[str, ...] = ()) -> dict[str, Any]:
    """The structural schema of a message (recursion is an error: a CRD schema cannot express it)."""
    if descriptor.full_name in stack:
        raise SystemExit(f"recursive message {' -> '.join((*stack, descriptor.full_name))}: not expressible")
    inner = (*stack, descriptor.full_name)
    properties = {field.json_name: _field(field, inner) for field in descriptor.fields}
    return {"type": "object", "properties": properties, "x-kubernetes-preserve-unknown-fields": True}


def _field(field: FieldDescriptor, stack: tuple[str, ...]) -> dict[str, Any]:
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        return {"type": "object", "additionalProperties": _single(message.fields_by_name["value"], stack)}
    if field.is_repeated:
        return {"type": "array", "items": _single(field, stack)}
    return _single(field, stack)


def _single(field: FieldDescriptor, stack: tuple[str, ...]) -> dict[str, Any]:
    message = field.message_type
    if message is not None:
        if message.full_name == _DURATION:
            return {"type": "string"}
        if message.full_name in _WRAPPERS:
            return dict(_SCALARS[_WRAPPERS[message.full_name]])
        return schema_of(message, stack)
    enum = field.enum_type  # set exactly for TYPE_ENUM fields
    if enum is not None:
        return {"type": "string", "enum": [value.name for value in enum.values]}
    return dict(_SCALARS[field.type])


def crd(kind: str) -> dict[str, Any]:
    group, plural, short_names, columns = KINDS[kind]
    module, proto, versions, categories = GROUPS[group]
    descriptor: Descriptor = getattr(module, kind).DESCRIPTOR
    spec_schema = schema_of(descriptor)
    spec_schema["description"] = f"The {kind} spec, as pilot reads it (generated from {proto})."
    schema = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            # Written by controllers (Istio's Reconciled condition, analysis messages): free-form.
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    printer_columns = [*columns, {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{group}",
            "labels": {"app.kubernetes.io/part-of": "pilot"},
            "annotations": {"pilot.io/generated-by": "scripts/gen_crds.py"},
        },
        "spec": {
            "group": group,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                **({"shortNames": short_names} if short_names else {}),
                "categories": ["istio-io", *categories],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": version == versions[0],
                    "schema": {"openAPIV3Schema": schema},
                    "additionalPrinterColumns": printer_columns,
                    "subresources": {"status": {}},
                }
                for version in versions
            ],
        },
    }


class _Dumper(yaml.SafeDumper):
    """No anchors/aliases: every version's schema is written out in full, as kubectl expects to read it."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render() -> str:
    header = (
        "# GENERATED by scripts/gen_crds.py from protos/networking.proto and protos/security.proto: "
        "do not edit.\n"
        f"# The Istio CRDs pilot watches: {', '.join(KINDS)}.\n"
    )
    documents = [crd(kind) for kind in KINDS]
    return header + yaml.dump_all(
        documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the CRDs on disk are stale; write nothing"
    )
    opts = parser.parse_args(argv)
    fresh = render()
    current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.is_file() else None
    relative = OUTPUT.relative_to(ROOT)
    if opts.check:
        if current != fresh:
            print(f"stale: {relative} (run scripts/gen_crds.py)", file=sys.stderr)
            return 1
        return 0
    if current != fresh:
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        tmp = OUTPUT.with_name(OUTPUT.name + ".tmp")
        tmp.write_text(fresh, encoding="utf-8")
        tmp.replace(OUTPUT)
        print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
