"""Which config resources the API server serves, and at which version: its discovery documents.

pilot watches three API groups of custom resources, each kind at the first version of its preference
list that the server serves (the CRDs installed decide; istiod reads its kinds the same way):

- ``networking.istio.io``: VirtualService, DestinationRule, ServiceEntry, Gateway, Sidecar,
  WorkloadGroup, at v1, else v1beta1, else v1alpha3 (they share one schema);
- ``security.istio.io``: PeerAuthentication, AuthorizationPolicy, RequestAuthentication, at v1, else
  v1beta1;
- ``gateway.networking.k8s.io`` (the Kubernetes Gateway API): Gateway, GatewayClass (cluster-scoped),
  HTTPRoute, GRPCRoute, TCPRoute, TLSRoute and ReferenceGrant, newest version first. The standard
  channel of Gateway API v1.6 serves all seven at v1; older installs serve TCPRoute and TLSRoute at
  v1alpha2 (experimental channel) and ReferenceGrant at v1beta1.

``/apis/GROUP`` lists the versions served; ``/apis/GROUP/VERSION`` the resources of each. An absent
group (no CRD installed) finds nothing, and the source asks again later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pilot.config import kinds
from pilot.sources.kube_api import Resource, WatchOptions, get_json

# Preference order of the networking.istio.io versions.
ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")
# Istio kind → its resource (plural) name.
ISTIO_RESOURCES = {
    kinds.VIRTUAL_SERVICE: "virtualservices",
    kinds.DESTINATION_RULE: "destinationrules",
    kinds.SERVICE_ENTRY: "serviceentries",
    kinds.GATEWAY: "gateways",
    kinds.SIDECAR: "sidecars",
    kinds.WORKLOAD_GROUP: "workloadgroups",
    kinds.PEER_AUTHENTICATION: "peerauthentications",
    kinds.AUTHORIZATION_POLICY: "authorizationpolicies",
    kinds.REQUEST_AUTHENTICATION: "requestauthentications",
}
# The Istio API groups those kinds are served in, in the order discovery asks for them.
ISTIO_GROUPS = tuple(dict.fromkeys(kinds.KINDS[kind].group for kind in ISTIO_RESOURCES))


@dataclass(frozen=True, slots=True)
class Wanted:
    """A kind pilot watches: its plural, the versions it reads (preferred first), its scope."""

    plural: str
    versions: tuple[str, ...]
    namespaced: bool = True


# Gateway API kind → what to watch. Versions newest first; each is one pilot's parser accepts.
GATEWAY_API_RESOURCES: Mapping[str, Wanted] = {
    kinds.K8S_GATEWAY: Wanted("gateways", ("v1", "v1beta1")),
    kinds.GATEWAY_CLASS: Wanted("gatewayclasses", ("v1", "v1beta1"), namespaced=False),
    kinds.HTTP_ROUTE: Wanted("httproutes", ("v1", "v1beta1")),
    kinds.GRPC_ROUTE: Wanted("grpcroutes", ("v1", "v1alpha2")),
    kinds.TCP_ROUTE: Wanted("tcproutes", ("v1", "v1alpha2")),
    kinds.TLS_ROUTE: Wanted("tlsroutes", ("v1", "v1alpha3", "v1alpha2")),
    kinds.REFERENCE_GRANT: Wanted("referencegrants", ("v1", "v1beta1", "v1alpha2")),
}
# Every config kind pilot watches, by group (an Istio kind at its KindInfo's versions, in order).
WANTED: Mapping[str, Mapping[str, Wanted]] = {
    **{
        group: {
            kind: Wanted(plural, kinds.KINDS[kind].versions)
            for kind, plural in ISTIO_RESOURCES.items()
            if kinds.KINDS[kind].group == group
        }
        for group in ISTIO_GROUPS
    },
    kinds.GATEWAY_API_GROUP: GATEWAY_API_RESOURCES,
}
CLUSTER_SCOPED = frozenset(
    kind for wanted in WANTED.values() for kind, item in wanted.items() if not item.namespaced
)


def discover_group(
    api_client: Any, group: str, wanted: Mapping[str, Wanted], options: WatchOptions
) -> dict[str, Resource]:
    """The kinds of ``wanted`` that ``group`` serves, each at its first served preferred version."""
    document = get_json(api_client, f"/apis/{group}", options)
    if document is None:
        return {}
    served = {str(v.get("version")) for v in document.get("versions") or () if isinstance(v, dict)}
    by_version: dict[str, set[str]] = {}
    found: dict[str, Resource] = {}
    for kind, item in wanted.items():
        for version in item.versions:
            if version not in served:
                continue
            if version not in by_version:
                resources = get_json(api_client, f"/apis/{group}/{version}", options) or {}
                by_version[version] = {
                    str(r.get("name")) for r in resources.get("resources") or () if isinstance(r, dict)
                }
            if item.plural in by_version[version]:
                found[kind] = Resource(group, version, item.plural, kind)
                break
    return found


__all__ = [
    "CLUSTER_SCOPED",
    "GATEWAY_API_RESOURCES",
    "ISTIO_GROUPS",
    "ISTIO_RESOURCES",
    "ISTIO_VERSIONS",
    "WANTED",
    "Wanted",
    "discover_group",
]
