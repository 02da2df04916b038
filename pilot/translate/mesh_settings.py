"""MeshSettings: the MeshConfig fields translation reads, with Istio's defaults
(istio.io/api mesh/v1alpha1 config.proto; pkg/config/mesh/mesh.go ``DefaultMeshConfig``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from pilot._gen import networking_pb2 as nw
from pilot.translate.proxy import DEFAULT_DNS_DOMAIN
from pilot.translate.registry import PUBLIC

ROOT_NAMESPACE = "istio-system"


@dataclass(frozen=True, slots=True)
class MeshSettings:
    """The MeshConfig fields translation reads, with Istio's defaults."""

    allow_any: bool = True
    connect_timeout: timedelta = timedelta(seconds=10)
    dns_refresh_rate: timedelta = timedelta(seconds=60)
    root_namespace: str = ROOT_NAMESPACE
    h2_upgrade: bool = False
    default_retry_policy: nw.HTTPRetry | None = None
    service_export_to: frozenset[str] = frozenset({PUBLIC})
    virtual_service_export_to: frozenset[str] = frozenset({PUBLIC})
    destination_rule_export_to: frozenset[str] = frozenset({PUBLIC})
    locality_lb_setting: nw.LocalityLoadBalancerSetting | None = None  # the mesh-wide one, if any
    # the mesh-wide keepalive of upstream connections, if any
    tcp_keepalive: nw.ConnectionPoolSettings.TCPSettings.TcpKeepalive | None = None
    # The SPIFFE trust domain of workload identities (SANs checked on ISTIO_MUTUAL), and enableAutoMtls.
    trust_domain: str = DEFAULT_DNS_DOMAIN
    auto_mtls: bool = True
    # Other trust domains whose identities count as this mesh's (AuthorizationPolicy principals).
    trust_domain_aliases: tuple[str, ...] = ()
    # The providers CUSTOM AuthorizationPolicies name (pilot.translate.ext_authz reads the ext_authz ones).
    extension_providers: tuple[nw.MeshConfig.ExtensionProvider, ...] = ()

    @classmethod
    def from_spec(cls, spec: nw.MeshConfig) -> MeshSettings:
        """The settings ``spec`` sets, Istio's defaults for the others."""
        default = cls()
        allow_any = nw.MeshConfig.OutboundTrafficPolicy.ALLOW_ANY
        return cls(
            allow_any=(
                spec.outbound_traffic_policy.mode == allow_any
                if spec.HasField("outbound_traffic_policy")
                else default.allow_any
            ),
            connect_timeout=(
                spec.connect_timeout.ToTimedelta()
                if spec.HasField("connect_timeout")
                else default.connect_timeout
            ),
            dns_refresh_rate=(
                spec.dns_refresh_rate.ToTimedelta()
                if spec.HasField("dns_refresh_rate")
                else default.dns_refresh_rate
            ),
            root_namespace=spec.root_namespace or default.root_namespace,
            h2_upgrade=spec.h2_upgrade_policy == nw.MeshConfig.UPGRADE,
            default_retry_policy=(
                spec.default_http_retry_policy if spec.HasField("default_http_retry_policy") else None
            ),
            locality_lb_setting=spec.locality_lb_setting if spec.HasField("locality_lb_setting") else None,
            tcp_keepalive=spec.tcp_keepalive if spec.HasField("tcp_keepalive") else None,
            trust_domain=spec.trust_domain or default.trust_domain,
            trust_domain_aliases=tuple(spec.trust_domain_aliases),
            extension_providers=tuple(spec.extension_providers),
            auto_mtls=spec.enable_auto_mtls.value if spec.HasField("enable_auto_mtls") else default.auto_mtls,
            service_export_to=_export_default(spec.default_service_export_to, default.service_export_to),
            virtual_service_export_to=_export_default(
                spec.default_virtual_service_export_to, default.virtual_service_export_to
            ),
            destination_rule_export_to=_export_default(
                spec.default_destination_rule_export_to, default.destination_rule_export_to
            ),
        )


def _export_default(written: Iterable[str], default: frozenset[str]) -> frozenset[str]:
    return frozenset(written) or default


__all__ = ["ROOT_NAMESPACE", "MeshSettings"]
