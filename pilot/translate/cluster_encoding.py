"""CDS serialized from policy templates: a cluster's bytes are its template's, then its own fields'.

The outbound clusters of one traffic policy, port protocol and discovery type differ only in
``pilot.translate.clusters.OWN_FIELDS`` (name, EDS service name, the mesh's mTLS, Istio's metadata).
Their template (``clusters.policy_template``) is serialized once; each cluster serializes only a
``Cluster`` holding those fields, made by the same ``clusters.own_fields`` the message path uses,
and is sent as the two joined (pilot.translate.templated). A template that sets one of those fields
itself (a DestinationRule's TLS sets the transport socket) is not joined: its clusters are built as
messages, always, so one cluster never changes bytes by changing path.
"""

from __future__ import annotations

from typing import TypeAlias

from envoy.config.cluster.v3 import cluster_pb2

from pilot.translate import clusters
from pilot.translate.context import PushContext
from pilot.translate.proxy import ProxyView
from pilot.translate.templated import Templated

Cluster: TypeAlias = cluster_pb2.Cluster


class TemplatedCluster(Templated[Cluster]):
    """A cluster joined from its template; ``type`` for the snapshot's consistency check."""

    __slots__ = ("type",)

    def __init__(self, value: bytes, discovery: int) -> None:
        super().__init__(value, Cluster)
        self.type = discovery


def encode_cluster(
    target: clusters.ClusterTarget,
    context: PushContext,
    mesh_certificates: bool,
    templates: clusters.PolicyTemplates,
) -> Cluster | TemplatedCluster | None:
    """``clusters.build_cluster`` of ``target``, joined from its template when it has one."""
    if target.discovery in (Cluster.STRICT_DNS, Cluster.LOGICAL_DNS):
        return clusters.build_cluster(target, context, mesh_certificates, templates)
    template = clusters.policy_template(target, context, mesh_certificates, templates)
    if template.encoded is None:
        return clusters.build_cluster(target, context, mesh_certificates, templates)
    # The type too: the mesh's mTLS reads it (never upgrades ORIGINAL_DST); the template has the same.
    own = Cluster(type=target.discovery)
    clusters.own_fields(own, target, context, mesh_certificates, template.http2)
    return TemplatedCluster(template.encoded + own.SerializeToString(deterministic=True), target.discovery)


def encode_clusters(view: ProxyView, context: PushContext) -> list[tuple[str, Cluster | TemplatedCluster]]:
    """``clusters.build_clusters``, the templated ones serialized already (build_snapshot's way)."""
    return clusters.make_clusters(view, context, encode_cluster)


__all__ = ["TemplatedCluster", "encode_cluster", "encode_clusters"]
