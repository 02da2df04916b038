"""MeshConfig ``extensionProviders``: Istio's checks of the ext_authz providers a CUSTOM
AuthorizationPolicy names, and which policies name a provider the mesh does not define.

Istio splits these checks in two, and so does pilot:

- ``validateExtensionProvider`` (pkg/config/validation/agent/extensionprovider.go), part of the mesh
  config's validation: empty or duplicate names, ports, the ``service`` form, ``statusOnError`` and
  ``pathPrefix``. These are errors: the MeshConfig is rejected and its last good version served.
- ``processExtensionProvider`` (pilot/pkg/security/authz/builder/extauthz.go), at translation: the
  name must be a DNS-1123 label (it becomes part of RBAC policy names and metadata keys) and a header
  list may not be a lone ``*``. Istio accepts such a mesh config and denies what the policies naming
  the provider match; pilot does the same and warns here.

``provider_problems`` is the one list of both, which translation (pilot.translate.ext_authz) reads
to decide that a provider is unusable. What a provider and a policy name across objects is checked
by pilot.config.validation.provider_references.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from envoy.type.v3 import http_status_pb2

from pilot._gen import networking_pb2 as nw
from pilot.config.objects import Severity
from pilot.config.validation.common import Report, at, check_duration, check_fqdn, check_ip, check_port, item

Provider = nw.MeshConfig.ExtensionProvider
HttpProvider = Provider.EnvoyExternalAuthorizationHttpProvider
GrpcProvider = Provider.EnvoyExternalAuthorizationGrpcProvider

EXT_AUTHZ_KINDS = ("envoy_ext_authz_http", "envoy_ext_authz_grpc")
# The providers pilot reads but does not translate (tracing, metrics, access logs, SDS).
OTHER_KINDS = tuple(
    f.name for f in Provider.DESCRIPTOR.oneofs_by_name["provider"].fields if f.name not in EXT_AUTHZ_KINDS
)
# Istio's validateProviderName: a lower-case DNS-1123 label of at most 63 characters.
_PROVIDER_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
# Envoy's type.v3.StatusCode: the statuses ext_authz can answer with when the check fails.
SUPPORTED_STATUS = frozenset(http_status_pb2.StatusCode.values()) - {0}
BAD_PROVIDER_EFFECT = "AuthorizationPolicies naming it deny the requests their rules match"


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem of one provider: the field (relative to the provider) and what is wrong."""

    field: str
    message: str
    severity: Severity


def provider_problems(providers: Iterable[Provider]) -> dict[int, list[Problem]]:
    """Every problem of each provider (by its index in ``extensionProviders``); none for a good one."""
    out: dict[int, list[Problem]] = {}
    seen: set[str] = set()
    for index, provider in enumerate(providers):
        found = list(_name_problems(provider.name, seen))
        kind = provider.WhichOneof("provider")
        if kind is None:
            found.append(Problem("", "unsupported provider: none of its kinds is set", "error"))
        elif kind == "envoy_ext_authz_http":
            found += _prefixed("envoyExtAuthzHttp", _http_problems(provider.envoy_ext_authz_http))
        elif kind == "envoy_ext_authz_grpc":
            found += _prefixed("envoyExtAuthzGrpc", _grpc_problems(provider.envoy_ext_authz_grpc))
        if found:
            out[index] = found
        if provider.name:
            seen.add(provider.name)
    return out


def validate_extension_providers(mesh: nw.MeshConfig, path: str, report: Report) -> None:
    """The problems of ``mesh.extensionProviders``, on their fields under ``path``."""
    providers = at(path, "extensionProviders")
    for index, problems in provider_problems(mesh.extension_providers).items():
        name = mesh.extension_providers[index].name
        for problem in problems:
            where = item(providers, index) + (f".{problem.field}" if problem.field else "")
            if problem.severity == "error":
                report.error(where, f"invalid extension provider {name}: {problem.message}")
            else:
                report.warn(where, f"extension provider {name}: {problem.message}; {BAD_PROVIDER_EFFECT}")


def _name_problems(name: str, seen: set[str]) -> Iterator[Problem]:
    if not name:
        yield Problem("name", "empty extension provider name", "error")
        return
    if name in seen:
        yield Problem("name", f"duplicate extension provider name {name}", "error")
    if len(name) > 63:
        yield Problem("name", f"provider name too long (max 63 characters): {len(name)}", "warning")
    elif _PROVIDER_NAME.fullmatch(name) is None:
        yield Problem(
            "name",
            f'invalid provider name "{name}": only lowercase letters, digits and hyphens are allowed, '
            "starting and ending with a letter or digit",
            "warning",
        )


def _prefixed(prefix: str, problems: Iterable[Problem]) -> Iterator[Problem]:
    for problem in problems:
        yield Problem(
            at(prefix, problem.field) if problem.field else prefix, problem.message, problem.severity
        )


def _common(config: HttpProvider | GrpcProvider) -> Iterator[Problem]:
    if (problem := check_port(config.port)) is not None:
        yield Problem("port", f"invalid service port: {problem}", "error")
    if (problem := check_service(config.service)) is not None:
        yield Problem("service", problem, "error")
    if config.status_on_error and (problem := check_status_on_error(config.status_on_error)) is not None:
        yield Problem("statusOnError", problem, "error")
    if config.HasField("timeout") and (problem := check_duration(config.timeout)) is not None:
        yield Problem("timeout", f"invalid timeout: {problem}", "error")


def _http_problems(config: HttpProvider) -> Iterator[Problem]:
    yield from _common(config)
    if config.path_prefix and not config.path_prefix.startswith("/"):
        yield Problem(
            "pathPrefix", f"pathPrefix should begin with `/` but found {config.path_prefix!r}", "error"
        )
    headers = {
        "includeRequestHeadersInCheck": config.include_request_headers_in_check,
        "headersToUpstreamOnAllow": config.headers_to_upstream_on_allow,
        "headersToDownstreamOnDeny": config.headers_to_downstream_on_deny,
        "headersToDownstreamOnAllow": config.headers_to_downstream_on_allow,
    }
    for name, values in headers.items():
        for index, value in enumerate(values):
            if value == "*":
                yield Problem(
                    item(name, index),
                    'a single wildcard ("*") is not supported, change it to either prefix or suffix match',
                    "warning",
                )


def _grpc_problems(config: GrpcProvider) -> Iterator[Problem]:
    yield from _common(config)


def check_service(service: str) -> str | None:
    """Istio's validateExtensionProviderService: ``host`` (an FQDN or an IP) or ``namespace/host``."""
    if not service:
        return "service must not be empty"
    namespace, slash, host = service.partition("/")
    if not slash:
        if check_fqdn(service) is None or check_ip(service) is None:
            return None
        return f"invalid service fmt {service}: {service} is not a valid IP or FQDN"
    if not namespace or not host or "/" in host:
        return f"invalid service {service}: must be of the form namespace/hostname"
    return check_fqdn(host)


def check_status_on_error(status: str) -> str | None:
    try:
        code = int(status, 10)
    except ValueError:
        return f"invalid statusOnError value {status}: not a number"
    if code not in SUPPORTED_STATUS:
        return (
            f"unsupported statusOnError value {status}: not an HTTP status code Envoy knows (e.g. 403, 503)"
        )
    return None


def ext_authz_provider_names(mesh: nw.MeshConfig | None) -> frozenset[str]:
    """The names of the mesh's ext_authz providers (whether or not they have problems)."""
    if mesh is None:
        return frozenset()
    return frozenset(p.name for p in mesh.extension_providers if p.WhichOneof("provider") in EXT_AUTHZ_KINDS)


__all__ = [
    "EXT_AUTHZ_KINDS",
    "OTHER_KINDS",
    "Problem",
    "check_service",
    "check_status_on_error",
    "ext_authz_provider_names",
    "provider_problems",
    "validate_extension_providers",
]
