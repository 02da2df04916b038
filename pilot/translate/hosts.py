"""Hostnames as Istio treats them: short-name resolution, wildcard matching, virtual-host domains.

Istio's ``ResolveShortnameToFQDN`` (pilot/pkg/model/config.go), ``host.Name.Matches`` /
``SubsetOf`` (pkg/config/host/name.go) and ``generateVirtualHostDomains`` /
``GenerateAltVirtualHosts`` (pilot/pkg/networking/core/httproute.go).
"""

from __future__ import annotations

from collections.abc import Iterable

from pilot.config.addresses import is_ip
from pilot.translate.proxy import DEFAULT_DNS_DOMAIN

WILDCARD = "*"


def resolve_shortname(host: str, namespace: str, domain: str = DEFAULT_DNS_DOMAIN) -> str:
    """``reviews`` written in namespace ``default`` means ``reviews.default.svc.cluster.local``.

    ``*``, IP addresses and anything with a dot are taken as written (Istio's
    ResolveShortnameToFQDN).
    """
    if not host or host == WILDCARD or "." in host or is_ip(host):
        return host
    return f"{host}.{namespace}.svc.{domain}"


def is_wildcard(host: str) -> bool:
    return host.startswith(WILDCARD)


def matches(a: str, b: str) -> bool:
    """Istio's ``host.Name.Matches``: true if the two (possibly wildcard) hosts overlap.

    ``*.example.com`` matches ``api.example.com`` and ``*.api.example.com``; ``*`` matches
    everything; ``*.example.com`` does not match ``example.com``.
    """
    if a == b:
        return True
    if is_wildcard(a):
        if is_wildcard(b):
            longer, shorter = (a, b) if len(a) > len(b) else (b, a)
            return longer[1:].endswith(shorter[1:])
        return b.endswith(a[1:])
    if is_wildcard(b):
        return a.endswith(b[1:])
    return False


def subset_of(host: str, pattern: str) -> bool:
    """Istio's ``host.Name.SubsetOf``: every name ``host`` covers is covered by ``pattern``."""
    if host == pattern:
        return True
    if is_wildcard(pattern):
        suffix = pattern[1:]
        if is_wildcard(host):
            return host[1:].endswith(suffix)
        return host.endswith(suffix)
    return False


def most_specific_match(host: str, candidates: Iterable[str]) -> str | None:
    """Istio's ``MostSpecificHostMatch``: the exact candidate, else the longest wildcard covering ``host``."""
    best: str | None = None
    for candidate in candidates:
        if candidate == host:
            return candidate
        if is_wildcard(candidate) and subset_of(host, candidate):
            if best is None or len(candidate) > len(best):
                best = candidate
    return best


def with_port(host: str, port: int) -> str:
    if ":" in host and is_ip(host):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def ipv6_compliant(host: str) -> str:
    """An IPv6 address in brackets, as a Host header carries it (Istio's util.IPv6Compliant)."""
    return f"[{host}]" if ":" in host and is_ip(host) else host


def alt_hosts(host: str, proxy_namespace: str, dns_domain: str = DEFAULT_DNS_DOMAIN) -> list[str]:
    """The shorter names a proxy in ``proxy_namespace`` may use for a Kubernetes-style host.

    ``reviews.default.svc.cluster.local`` seen from ``default``: ``reviews``, ``reviews.default.svc``,
    ``reviews.default``; from any other namespace: ``reviews.default``, ``reviews.default.svc`` (never
    the bare name, which would mean a service of the caller's own namespace). Other hosts: none.
    """
    svc_suffix = f".svc.{dns_domain}"
    if not host.endswith(svc_suffix) or is_wildcard(host):
        return []
    name_ns = host[: -len(svc_suffix)]
    name, dot, namespace = name_ns.partition(".")
    if not dot or not name or not namespace:
        return []
    if namespace == proxy_namespace:
        return [name, f"{name_ns}.svc", name_ns]
    return [name_ns, f"{name_ns}.svc"]


def virtual_host_domains(
    host: str,
    proxy_namespace: str,
    dns_domain: str = DEFAULT_DNS_DOMAIN,
    addresses: Iterable[str] = (),
) -> list[str]:
    """Every ``Host`` header value that reaches ``host``, without a port: the route configuration sets
    ``ignore_port_in_host_matching``, so ``reviews:1234`` matches ``reviews`` as istiod's sidecars do
    (pilot/pkg/networking/core/httproute.go, generateVirtualHostDomains with SidecarIgnorePort).

    Order follows Istio: the host, its alternative names, then the service addresses (VIPs).
    """
    names = [host, *alt_hosts(host, proxy_namespace, dns_domain)]
    names += [a for a in addresses if a and "/" not in a and a != "0.0.0.0"]
    return [ipv6_compliant(name) for name in names]
