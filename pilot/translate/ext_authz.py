"""MeshConfig ext_authz ``extensionProviders`` → Envoy's ext_authz filter configurations.

Istio's pilot/pkg/security/authz/builder/extauthz.go (``processExtensionProvider``,
``buildExtAuthzHTTP``/``GRPC``, ``generateHTTPConfig``/``generateGRPCConfig``):

- the provider's ``service`` is looked up as ``model.LookupCluster`` does: ``namespace/host`` names
  the service of that host in that namespace; a bare ``host`` must be defined in exactly one
  namespace. The filter talks to the outbound cluster ``outbound|PORT||HOST`` of that service;
- ``timeout`` defaults to 600s; ``failOpen`` is ``failure_mode_allow``; ``statusOnError`` is
  ``status_on_error``; header lists become case-insensitive matchers (``x*`` prefix, ``*x`` suffix);
- an HTTP provider has only an HTTP filter (Istio ignores it on TCP chains); a gRPC provider has both
  the HTTP and the network (``stat_prefix: tcp.``) filter;
- each filter runs only when the RBAC filter in front of it, whose shadow rules are the CUSTOM
  policies of this provider, says one of them matched: ``filter_enabled_metadata`` on that filter's
  ``istio_ext_authz_shadow_effective_policy_id`` starting with ``istio-ext-authz-<provider>``.

A provider with a problem (pilot.config.validation.extension_providers) or a service pilot cannot
find has an ``error`` instead: the policies naming it deny what their rules match.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2, http_uri_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2 as http_ext_authz_pb2
from envoy.extensions.filters.network.ext_authz.v3 import ext_authz_pb2 as network_ext_authz_pb2
from envoy.type.matcher.v3 import metadata_pb2, string_pb2, value_pb2
from envoy.type.v3 import http_status_pb2
from google.protobuf import duration_pb2

from pilot._gen import networking_pb2 as nw
from pilot.config.validation.extension_providers import EXT_AUTHZ_KINDS, provider_problems
from pilot.config.validation.provider_references import lookup_problem, service_host
from pilot.translate.registry import Service
from pilot.xds.names import outbound_cluster

HTTP_EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz"
NETWORK_EXT_AUTHZ_FILTER = "envoy.filters.network.ext_authz"
HTTP_RBAC_FILTER = "envoy.filters.http.rbac"
NETWORK_RBAC_FILTER = "envoy.filters.network.rbac"
# Istio's extAuthzMatchPrefix, authzmodel.RBACExtAuthzShadowRulesStatPrefix and
# RBACShadowEffectivePolicyID: Envoy's RBAC filter writes the name of the shadow policy that matched
# into its dynamic metadata under ``<shadow_rules_stat_prefix>shadow_effective_policy_id``.
EXT_AUTHZ_MATCH_PREFIX = "istio-ext-authz"
EXT_AUTHZ_SHADOW_STAT_PREFIX = "istio_ext_authz_"
SHADOW_EFFECTIVE_POLICY_ID = "shadow_effective_policy_id"
TCP_STAT_PREFIX = "tcp."
DEFAULT_TIMEOUT = duration_pb2.Duration(seconds=600)

Provider = nw.MeshConfig.ExtensionProvider
HttpProvider = Provider.EnvoyExternalAuthorizationHttpProvider
GrpcProvider = Provider.EnvoyExternalAuthorizationGrpcProvider


@dataclass(frozen=True, slots=True)
class ExtAuthzProvider:
    """One ext_authz provider, ready to place: its filter configs, or why it cannot be used."""

    name: str
    http: http_ext_authz_pb2.ExtAuthz | None = None
    tcp: network_ext_authz_pb2.ExtAuthz | None = None
    error: str = ""


def policy_prefix(provider: str) -> str:
    """The prefix of the RBAC policy names of ``provider``'s CUSTOM rules (Istio's policyName)."""
    return f"{EXT_AUTHZ_MATCH_PREFIX}-{provider}-"


def resolve_providers(
    providers: Sequence[Provider], services: Iterable[Service]
) -> dict[str, ExtAuthzProvider]:
    """The ext_authz providers of the mesh config by name (Istio's processExtensionProvider: other
    kinds are left out, so a policy naming one finds no provider)."""
    problems = provider_problems(providers)
    hosts: dict[str, set[str]] = {}  # Istio's ServiceIndex.HostnameAndNamespace
    for service in services:
        hosts.setdefault(service.hostname, set()).add(service.namespace)
    out: dict[str, ExtAuthzProvider] = {}
    for position, provider in enumerate(providers):
        kind = provider.WhichOneof("provider")
        if kind not in EXT_AUTHZ_KINDS:
            continue
        name = provider.name
        if position in problems:
            shown = "; ".join(f"{p.field}: {p.message}" if p.field else p.message for p in problems[position])
            out[name] = ExtAuthzProvider(name, error=f"found errors in provider {name}: {shown}")
            continue
        config: HttpProvider | GrpcProvider = getattr(provider, kind)
        problem = lookup_problem(config.service, hosts)
        if problem:
            out[name] = ExtAuthzProvider(name, error=f"found errors in provider {name}: {problem}")
            continue
        found = service_host(config.service)
        cluster = outbound_cluster(found, config.port)
        if isinstance(config, HttpProvider):
            out[name] = ExtAuthzProvider(name, http=_http_config(found, cluster, config))
        else:
            http, tcp = _grpc_configs(found, cluster, config)
            out[name] = ExtAuthzProvider(name, http=http, tcp=tcp)
    return out


def _status(text: str) -> http_status_pb2.HttpStatus | None:
    return http_status_pb2.HttpStatus(code=int(text)) if text else None


def _timeout(config: HttpProvider | GrpcProvider) -> duration_pb2.Duration:
    return config.timeout if config.HasField("timeout") else DEFAULT_TIMEOUT


def _body(
    config: HttpProvider | GrpcProvider,
) -> http_ext_authz_pb2.BufferSettings | None:
    if not config.HasField("include_request_body_in_check"):
        return None
    body = config.include_request_body_in_check
    return http_ext_authz_pb2.BufferSettings(
        max_request_bytes=body.max_request_bytes,
        allow_partial_message=body.allow_partial_message,
        pack_as_bytes=body.pack_as_bytes,
    )


def enabled_metadata(rbac_filter: str, provider: str) -> metadata_pb2.MetadataMatcher:
    """Run only when ``rbac_filter``'s shadow rules matched a CUSTOM policy of ``provider``."""
    return metadata_pb2.MetadataMatcher(
        filter=rbac_filter,
        path=[
            metadata_pb2.MetadataMatcher.PathSegment(
                key=EXT_AUTHZ_SHADOW_STAT_PREFIX + SHADOW_EFFECTIVE_POLICY_ID
            )
        ],
        value=value_pb2.ValueMatcher(
            string_match=string_pb2.StringMatcher(prefix=f"{EXT_AUTHZ_MATCH_PREFIX}-{provider}")
        ),
    )


def headers_matcher(headers: Sequence[str]) -> string_pb2.ListStringMatcher | None:
    """Istio's generateHeaders: ``*x`` a suffix, ``x*`` a prefix, else exact; case-insensitive."""
    if not headers:
        return None
    patterns = []
    for header in headers:
        if header.startswith("*"):
            patterns.append(string_pb2.StringMatcher(suffix=header[1:], ignore_case=True))
        elif header.endswith("*"):
            patterns.append(string_pb2.StringMatcher(prefix=header[:-1], ignore_case=True))
        else:
            patterns.append(string_pb2.StringMatcher(exact=header, ignore_case=True))
    return string_pb2.ListStringMatcher(patterns=patterns)


def _http_config(hostname: str, cluster: str, config: HttpProvider) -> http_ext_authz_pb2.ExtAuthz:
    service = http_ext_authz_pb2.HttpService(
        path_prefix=config.path_prefix,
        # The uri is required but unused: requests go to the cluster.
        server_uri=http_uri_pb2.HttpUri(uri=f"http://{hostname}", cluster=cluster, timeout=_timeout(config)),
    )
    added = [
        base_pb2.HeaderValue(key=key, value=config.include_additional_headers_in_check[key])
        for key in sorted(config.include_additional_headers_in_check)
    ]
    if added:
        service.authorization_request.headers_to_add.extend(added)
    upstream = headers_matcher(config.headers_to_upstream_on_allow)
    on_deny = headers_matcher(config.headers_to_downstream_on_deny)
    on_allow = headers_matcher(config.headers_to_downstream_on_allow)
    if upstream or on_deny or on_allow:
        response = service.authorization_response
        response.SetInParent()
        if upstream:
            response.allowed_upstream_headers.CopyFrom(upstream)
        if on_deny:
            response.allowed_client_headers.CopyFrom(on_deny)
        if on_allow:
            response.allowed_client_headers_on_success.CopyFrom(on_allow)
    out = http_ext_authz_pb2.ExtAuthz(
        http_service=service,
        failure_mode_allow=config.fail_open,
        transport_api_version=config_source_pb2.V3,
        status_on_error=_status(config.status_on_error),
        with_request_body=_body(config),
    )
    if (allowed := headers_matcher(config.include_request_headers_in_check)) is not None:
        out.allowed_headers.CopyFrom(allowed)
    return out


def _grpc_configs(
    hostname: str, cluster: str, config: GrpcProvider
) -> tuple[http_ext_authz_pb2.ExtAuthz, network_ext_authz_pb2.ExtAuthz]:
    grpc = grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=cluster, authority=hostname),
        timeout=_timeout(config),
    )
    http = http_ext_authz_pb2.ExtAuthz(
        grpc_service=grpc,
        failure_mode_allow=config.fail_open,
        transport_api_version=config_source_pb2.V3,
        status_on_error=_status(config.status_on_error),
        with_request_body=_body(config),
    )
    tcp = network_ext_authz_pb2.ExtAuthz(
        stat_prefix=TCP_STAT_PREFIX,
        grpc_service=grpc,
        failure_mode_allow=config.fail_open,
        transport_api_version=config_source_pb2.V3,
    )
    return http, tcp


def http_filter_config(provider: ExtAuthzProvider) -> http_ext_authz_pb2.ExtAuthz | None:
    """``provider``'s HTTP ext_authz config, enabled by its CUSTOM policies' RBAC shadow rules."""
    if provider.http is None:
        return None
    config = http_ext_authz_pb2.ExtAuthz()
    config.CopyFrom(provider.http)
    config.filter_enabled_metadata.CopyFrom(enabled_metadata(HTTP_RBAC_FILTER, provider.name))
    return config


def network_filter_config(provider: ExtAuthzProvider) -> network_ext_authz_pb2.ExtAuthz | None:
    """``provider``'s network ext_authz config (gRPC providers only), enabled likewise."""
    if provider.tcp is None:
        return None
    config = network_ext_authz_pb2.ExtAuthz()
    config.CopyFrom(provider.tcp)
    config.filter_enabled_metadata.CopyFrom(enabled_metadata(NETWORK_RBAC_FILTER, provider.name))
    return config


def missing(name: str, providers: Mapping[str, ExtAuthzProvider]) -> ExtAuthzProvider:
    """The provider a policy names that the mesh config does not define."""
    shown = sorted(providers)
    return ExtAuthzProvider(name, error=f"available providers are {shown} but found {name!r}")


__all__ = [
    "DEFAULT_TIMEOUT",
    "EXT_AUTHZ_MATCH_PREFIX",
    "EXT_AUTHZ_SHADOW_STAT_PREFIX",
    "HTTP_EXT_AUTHZ_FILTER",
    "NETWORK_EXT_AUTHZ_FILTER",
    "ExtAuthzProvider",
    "enabled_metadata",
    "headers_matcher",
    "http_filter_config",
    "missing",
    "network_filter_config",
    "policy_prefix",
    "resolve_providers",
]
