"""The kinds pilot reads: (group, version, kind) → the proto message of their spec.

Istio's networking kinds are served at three versions with one schema, so every version maps to the
same message. The mesh config is not a CRD: it is the ``mesh`` key of the ``istio`` ConfigMap, stored as
a ``MeshConfig`` object named ``istio``. Kubernetes Services, EndpointSlices and Pods are not kinds of this
table: pilot.config.kube_core reads them (the parser finds them in ``CORE_KINDS`` there) and makes
ServiceEntries of them, and of each Pod a ``Pod`` object, its identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Generic, TypeGuard, TypeVar

from google.protobuf import struct_pb2
from google.protobuf.message import Message

from pilot._gen import networking_pb2, security_pb2
from pilot.config.gateway_api import schema as gateway_api_schema
from pilot.config.gateway_api.openapi import Obj
from pilot.config.gateway_api.references import GATEWAY_API_GROUP as GATEWAY_API_GROUP
from pilot.config.jwks import JWKS_KIND
from pilot.config.objects import ConfigObject, SpecT

NETWORKING_GROUP = "networking.istio.io"
NETWORKING_VERSIONS = ("v1", "v1beta1", "v1alpha3")

VIRTUAL_SERVICE = "VirtualService"
DESTINATION_RULE = "DestinationRule"
SERVICE_ENTRY = "ServiceEntry"
GATEWAY = "Gateway"
WORKLOAD_ENTRY = "WorkloadEntry"
SIDECAR = "Sidecar"
WORKLOAD_GROUP = "WorkloadGroup"
MESH_CONFIG = "MeshConfig"
# A Kubernetes Pod as a proxy's identity (pilot.config.kube_core.pod_identity): its address, labels and
# service account, kept as a WorkloadEntry spec. Read from core/v1 Pods, never from a document of its own.
POD = "Pod"

# The mesh ConfigMap: ``apiVersion: v1, kind: ConfigMap, metadata.name: istio, data.mesh: <YAML>``.
CONFIG_MAP = "ConfigMap"
MESH_CONFIG_MAP_NAME = "istio"
MESH_CONFIG_MAP_KEY = "mesh"


@dataclass(frozen=True, slots=True)
class KindInfo(Generic[SpecT]):
    """One supported kind: its API group, the versions pilot accepts, and its spec message."""

    kind: str
    group: str
    versions: tuple[str, ...]
    message: type[SpecT]
    # Where the spec sits in the document, for error paths: ``spec``, or ``data.mesh`` for the mesh config.
    spec_path: str = "spec"
    # A kind with no proto (the Gateway API's): its spec is checked against this schema and kept, as
    # parsed, in a ``google.protobuf.Struct`` (``message``).
    schema: Obj | None = None
    # The kind as documents spell it, when the key's ``kind`` differs: the Gateway API's Gateway is keyed
    # ``Gateway.gateway.networking.k8s.io`` to tell it from Istio's Gateway.
    document_kind: str = ""

    @property
    def written_kind(self) -> str:
        return self.document_kind or self.kind

    def api_versions(self) -> tuple[str, ...]:
        return tuple(f"{self.group}/{version}" if self.group else version for version in self.versions)

    def new_spec(self) -> SpecT:
        return self.message()

    def holds(self, obj: ConfigObject) -> TypeGuard[ConfigObject[SpecT]]:
        """``obj`` is of this kind, so its spec is this kind's message: the parser and the sources
        make every spec with ``new_spec`` of its kind's KindInfo."""
        return obj.key.kind == self.kind


_M = TypeVar("_M", bound=Message)


def _networking(kind: str, message: type[_M]) -> KindInfo[_M]:
    return KindInfo(kind, NETWORKING_GROUP, NETWORKING_VERSIONS, message)


VIRTUAL_SERVICE_INFO: Final = _networking(VIRTUAL_SERVICE, networking_pb2.VirtualService)
DESTINATION_RULE_INFO: Final = _networking(DESTINATION_RULE, networking_pb2.DestinationRule)
SERVICE_ENTRY_INFO: Final = _networking(SERVICE_ENTRY, networking_pb2.ServiceEntry)
GATEWAY_INFO: Final = _networking(GATEWAY, networking_pb2.Gateway)
WORKLOAD_ENTRY_INFO: Final = _networking(WORKLOAD_ENTRY, networking_pb2.WorkloadEntry)
SIDECAR_INFO: Final = _networking(SIDECAR, networking_pb2.Sidecar)
WORKLOAD_GROUP_INFO: Final = _networking(WORKLOAD_GROUP, networking_pb2.WorkloadGroup)
MESH_CONFIG_INFO: Final = KindInfo(MESH_CONFIG, "", ("v1",), networking_pb2.MeshConfig, spec_path="data.mesh")
POD_INFO: Final = KindInfo(POD, "", ("v1",), networking_pb2.WorkloadEntry)
# The keys pilot fetched for RequestAuthentication rules (pilot.config.jwks), written by
# pilot.sources.jwks, never read from a document: listed so a ``/debug/configz`` answer reads back.
JWKS_INFO: Final = KindInfo(JWKS_KIND, "", ("v1",), struct_pb2.Struct)

# Istio's security policies (security.istio.io): v1 and v1beta1 share one schema, as Istio serves them.
SECURITY_GROUP = "security.istio.io"
SECURITY_VERSIONS = ("v1", "v1beta1")
PEER_AUTHENTICATION = "PeerAuthentication"
AUTHORIZATION_POLICY = "AuthorizationPolicy"
REQUEST_AUTHENTICATION = "RequestAuthentication"
PEER_AUTHENTICATION_INFO: Final = KindInfo(
    PEER_AUTHENTICATION, SECURITY_GROUP, SECURITY_VERSIONS, security_pb2.PeerAuthentication
)
AUTHORIZATION_POLICY_INFO: Final = KindInfo(
    AUTHORIZATION_POLICY, SECURITY_GROUP, SECURITY_VERSIONS, security_pb2.AuthorizationPolicy
)
REQUEST_AUTHENTICATION_INFO: Final = KindInfo(
    REQUEST_AUTHENTICATION, SECURITY_GROUP, SECURITY_VERSIONS, security_pb2.RequestAuthentication
)
SECURITY_KINDS: Final = (PEER_AUTHENTICATION_INFO, AUTHORIZATION_POLICY_INFO, REQUEST_AUTHENTICATION_INFO)

# The Kubernetes Gateway API (standard channel; TCPRoute and TLSRoute were experimental before v1.6,
# whose standard channel serves them, and ReferenceGrant, at v1).
K8S_GATEWAY = f"Gateway.{GATEWAY_API_GROUP}"
GATEWAY_CLASS = "GatewayClass"
HTTP_ROUTE = "HTTPRoute"
GRPC_ROUTE = "GRPCRoute"
TCP_ROUTE = "TCPRoute"
TLS_ROUTE = "TLSRoute"
REFERENCE_GRANT = "ReferenceGrant"


def _gateway_api(
    kind: str, versions: tuple[str, ...], schema: Obj, document_kind: str = ""
) -> KindInfo[struct_pb2.Struct]:
    return KindInfo(
        kind, GATEWAY_API_GROUP, versions, struct_pb2.Struct, schema=schema, document_kind=document_kind
    )


K8S_GATEWAY_INFO: Final = _gateway_api(K8S_GATEWAY, ("v1", "v1beta1"), gateway_api_schema.GATEWAY, GATEWAY)
GATEWAY_CLASS_INFO: Final = _gateway_api(GATEWAY_CLASS, ("v1", "v1beta1"), gateway_api_schema.GATEWAY_CLASS)
HTTP_ROUTE_INFO: Final = _gateway_api(HTTP_ROUTE, ("v1", "v1beta1"), gateway_api_schema.HTTP_ROUTE)
GRPC_ROUTE_INFO: Final = _gateway_api(GRPC_ROUTE, ("v1", "v1alpha2"), gateway_api_schema.GRPC_ROUTE)
TCP_ROUTE_INFO: Final = _gateway_api(TCP_ROUTE, ("v1", "v1alpha2"), gateway_api_schema.TCP_ROUTE)
TLS_ROUTE_INFO: Final = _gateway_api(TLS_ROUTE, ("v1", "v1alpha3", "v1alpha2"), gateway_api_schema.TLS_ROUTE)
REFERENCE_GRANT_INFO: Final = _gateway_api(
    REFERENCE_GRANT, ("v1", "v1beta1", "v1alpha2"), gateway_api_schema.REFERENCE_GRANT
)
GATEWAY_API_KINDS: Final = (
    K8S_GATEWAY_INFO,
    GATEWAY_CLASS_INFO,
    HTTP_ROUTE_INFO,
    GRPC_ROUTE_INFO,
    TCP_ROUTE_INFO,
    TLS_ROUTE_INFO,
    REFERENCE_GRANT_INFO,
)

KINDS: dict[str, KindInfo] = {
    info.kind: info
    for info in (
        VIRTUAL_SERVICE_INFO,
        DESTINATION_RULE_INFO,
        SERVICE_ENTRY_INFO,
        GATEWAY_INFO,
        WORKLOAD_ENTRY_INFO,
        SIDECAR_INFO,
        WORKLOAD_GROUP_INFO,
        MESH_CONFIG_INFO,
        POD_INFO,
        JWKS_INFO,
        *SECURITY_KINDS,
        *GATEWAY_API_KINDS,
    )
}
# By (group, kind as documents spell it).
_BY_GROUP_KIND: dict[tuple[str, str], KindInfo] = {
    (info.group, info.written_kind): info for info in KINDS.values()
}


# Kinds of Istio's and the Kubernetes Gateway API's groups that pilot recognises but does not serve:
# a document of one is skipped with a warning naming its kind, never in silence. A kind of an Istio
# group that is in neither table is a typo (``VirtualServce``) and an error.
NOT_SERVED: dict[str, frozenset[str]] = {
    NETWORKING_GROUP: frozenset({"EnvoyFilter", "ProxyConfig"}),
    "telemetry.istio.io": frozenset({"Telemetry"}),
    "extensions.istio.io": frozenset({"WasmPlugin"}),
    GATEWAY_API_GROUP: frozenset({"UDPRoute", "BackendTLSPolicy"}),
}
ISTIO_GROUPS = frozenset({NETWORKING_GROUP, SECURITY_GROUP, "telemetry.istio.io", "extensions.istio.io"})


# Kinds of KINDS that no document is parsed as by ``resolve``: the mesh config (a ConfigMap's key), the
# Pod identity (made from a Pod by pilot.config.kube_core) and the fetched JWKS (pilot.sources.jwks).
_NOT_DOCUMENTS = frozenset({MESH_CONFIG, POD, JWKS_KIND})


def split_api_version(api_version: str) -> tuple[str, str]:
    """``networking.istio.io/v1`` → (``networking.istio.io``, ``v1``); ``v1`` → (``""``, ``v1``)."""
    group, _, version = api_version.rpartition("/")
    return group, version


@dataclass(frozen=True, slots=True)
class Resolved:
    """What an (apiVersion, kind) pair is to pilot.

    ``info`` is set for a supported kind at a supported version. ``wrong_version`` is set for a
    supported kind and group at a version pilot does not know (an error). ``not_served``: a kind of
    Istio or the Gateway API that pilot does not serve (a warning). ``unknown``: a kind no Istio group
    has, under an Istio apiVersion (an error). None of these: not pilot's business (skipped).
    """

    info: KindInfo | None = None
    wrong_version: KindInfo | None = None
    not_served: bool = False
    unknown: bool = False


def resolve(api_version: str, kind: str) -> Resolved:
    """Look up a document's ``apiVersion`` and ``kind`` (the mesh ConfigMap is handled by the parser)."""
    group, version = split_api_version(api_version)
    info = _BY_GROUP_KIND.get((group, kind))
    if info is None or info.kind in _NOT_DOCUMENTS:
        if kind in NOT_SERVED.get(group, ()):
            return Resolved(not_served=True)
        return Resolved(unknown=group in ISTIO_GROUPS)
    if version not in info.versions:
        return Resolved(wrong_version=info)
    return Resolved(info=info)


def kinds_of_group(group: str) -> list[str]:
    """Every kind pilot knows in ``group``, served or not (for error messages)."""
    served = [
        info.written_kind
        for info in KINDS.values()
        if info.group == group and info.kind not in _NOT_DOCUMENTS
    ]
    return sorted({*served, *NOT_SERVED.get(group, ())})


def is_mesh_config_map(api_version: str, kind: str, name: object) -> bool:
    return api_version == "v1" and kind == CONFIG_MAP and name == MESH_CONFIG_MAP_NAME
