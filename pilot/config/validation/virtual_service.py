"""VirtualService checks, as Istio's ``ValidateVirtualService`` (pkg/config/validation) does."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeAlias

from pilot._gen import networking_pb2 as nw
from pilot.config.addresses import is_ip
from pilot.config.validation.common import (
    Report,
    at,
    check_export_to,
    check_gateway_names,
    check_ip_subnet,
    check_labels,
    check_port,
    check_wildcard_domain,
    check_wildcard_domain_for_gateway,
    item,
)
from pilot.config.validation.destinations import validate_route_destinations
from pilot.config.validation.http import is_jwt_claim_route
from pilot.config.validation.http_route import validate_http_route

MESH_GATEWAY = "mesh"


def validate_virtual_service(spec: nw.VirtualService, namespace: str, path: str, report: Report) -> None:
    delegate = len(spec.hosts) == 0
    if delegate:
        # A VirtualService without hosts is a delegate: it only makes sense merged into a root's HTTP route.
        if len(spec.gateways):
            report.error(at(path, "gateways"), "delegate virtual service must have no gateways specified")
        if len(spec.tls):
            report.error(at(path, "tls"), "delegate virtual service must have no tls route specified")
        if len(spec.tcp):
            report.error(at(path, "tcp"), "delegate virtual service must have no tcp route specified")
    applies_to_gateway = len(spec.gateways) > 0 and MESH_GATEWAY not in spec.gateways
    for index, name in enumerate(spec.gateways):
        errors, warnings = check_gateway_names([name])
        report.check_all(item(at(path, "gateways"), index), errors)
        for warning in warnings:
            report.warn(item(at(path, "gateways"), index), warning)
    if not applies_to_gateway:
        _jwt_claim_routes(spec, path, report)
    _hosts(spec, applies_to_gateway, path, report)
    if not len(spec.http) and not len(spec.tcp) and not len(spec.tls):
        report.error(path, "http, tcp or tls must be provided in virtual service")
    for index, http_route in enumerate(spec.http):
        validate_http_route(http_route, delegate, item(at(path, "http"), index), report)
    for index, tls_route in enumerate(spec.tls):
        _tls_route(tls_route, spec, item(at(path, "tls"), index), report)
    for index, tcp_route in enumerate(spec.tcp):
        _tcp_route(tcp_route, item(at(path, "tcp"), index), report)
    report.check_all(at(path, "exportTo"), check_export_to(namespace, spec.export_to, False, False))
    _unreachable_rules(spec.http, True, at(path, "http"), report)
    _unreachable_rules(spec.tcp, False, at(path, "tcp"), report)
    _unreachable_rules(spec.tls, False, at(path, "tls"), report)


def _jwt_claim_routes(spec: nw.VirtualService, path: str, report: Report) -> None:
    gateways = "[" + " ".join(spec.gateways) + "]"
    for route_index, route in enumerate(spec.http):
        for match_index, match in enumerate(route.match):
            match_path = item(at(item(at(path, "http"), route_index), "match"), match_index)
            for field, name in (("headers", "headers"), ("without_headers", "withoutHeaders")):
                for key in sorted(getattr(match, field)):
                    if is_jwt_claim_route(key):
                        report.error(
                            item(at(match_path, name), key),
                            f"JWT claim based routing (key: {key}) is only "
                            f"supported for gateway, found no gateways: {gateways}",
                        )


def _hosts(spec: nw.VirtualService, applies_to_gateway: bool, path: str, report: Report) -> None:
    all_valid = True
    sni = _has_sni_hosts(spec)
    for index, host in enumerate(spec.hosts):
        host_path = item(at(path, "hosts"), index)
        if applies_to_gateway:
            problem = check_wildcard_domain_for_gateway(sni, host)
        else:
            problem = check_wildcard_domain(host)
        if problem is not None:
            if not is_ip(host):
                report.error(host_path, problem)
                all_valid = False
        elif not applies_to_gateway and host == "*":
            report.error(
                host_path, "wildcard host * is not allowed for virtual services bound to the mesh gateway"
            )
            all_valid = False
    if all_valid:
        # Literal and wildcard duplicates: *.foo.com and *.com overlap in one VirtualService.
        hosts = list(spec.hosts)
        for i, first in enumerate(hosts):
            for j in range(i + 1, len(hosts)):
                if host_matches(first, hosts[j]):
                    report.error(
                        item(at(path, "hosts"), j),
                        f"duplicate hosts in virtual service: {first} & {hosts[j]}",
                    )


def host_matches(a: str, b: str) -> bool:
    """Istio's ``host.Name.Matches``: equal, or one wildcard covers the other."""
    a_wild, b_wild = a.startswith("*"), b.startswith("*")
    if a_wild and b_wild:
        return b[1:].endswith(a[1:]) if len(a) < len(b) else a[1:].endswith(b[1:])
    if a_wild:
        return b.endswith(a[1:])
    if b_wild:
        return a.endswith(b[1:])
    return a == b


def host_subset_of(a: str, b: str) -> bool:
    """Istio's ``host.Name.SubsetOf``: every name ``a`` matches, ``b`` matches too."""
    if b.startswith("*"):
        return a[1:].endswith(b[1:]) if a.startswith("*") else a.endswith(b[1:])
    return not a.startswith("*") and a == b


def _has_sni_hosts(spec: nw.VirtualService) -> bool:
    return any(len(match.sni_hosts) for route in spec.tls for match in route.match)


def _tls_route(route: nw.TLSRoute, spec: nw.VirtualService, path: str, report: Report) -> None:
    if not len(route.match):
        report.error(path, "TLS route must have at least one match condition")
    # Istio checks SNI hosts as gateway hosts unless the VirtualService names the mesh gateway.
    gateway_style = MESH_GATEWAY not in spec.gateways
    for index, match in enumerate(route.match):
        match_path = item(at(path, "match"), index)
        if not len(match.sni_hosts):
            report.error(match_path, "TLS match must have at least one SNI host")
        for sni_index, sni_host in enumerate(match.sni_hosts):
            _sni_host(sni_host, spec, gateway_style, item(at(match_path, "sniHosts"), sni_index), report)
        _l4_match(match, match_path, report)
    if not len(route.route):
        report.error(path, "TLS route is required")
    validate_route_destinations(route.route, at(path, "route"), report, http_route=False)


def _sni_host(sni_host: str, spec: nw.VirtualService, gateway_style: bool, path: str, report: Report) -> None:
    if gateway_style:
        problem = check_wildcard_domain_for_gateway(True, sni_host)
    else:
        problem = check_wildcard_domain(sni_host)
    if problem is not None:
        if is_ip(sni_host):
            report.warn(
                path,
                f'using an IP address ("{sni_host}") goes against SNI spec and most clients do not '
                "support this",
            )
        else:
            report.error(path, problem)
        return
    if not any(host_subset_of(sni_host, host) for host in spec.hosts):
        hosts = ", ".join(spec.hosts)
        report.error(
            path,
            f'SNI host "{sni_host}" is not a compatible subset of any of the virtual service '
            f"hosts: [{hosts}]",
        )


def _tcp_route(route: nw.TCPRoute, path: str, report: Report) -> None:
    for index, match in enumerate(route.match):
        match_path = item(at(path, "match"), index)
        if match.source_subnet:
            report.check(at(match_path, "sourceSubnet"), check_ip_subnet(match.source_subnet))
        _l4_match(match, match_path, report)
    if not len(route.route):
        report.error(path, "TCP route is required")
    validate_route_destinations(route.route, at(path, "route"), report, http_route=False)


def _l4_match(match: nw.L4MatchAttributes | nw.TLSMatchAttributes, path: str, report: Report) -> None:
    for index, subnet in enumerate(match.destination_subnets):
        report.check(item(at(path, "destinationSubnets"), index), check_ip_subnet(subnet))
    if match.port != 0:
        report.check(at(path, "port"), check_port(match.port))
    report.check_all(at(path, "sourceLabels"), check_labels(match.source_labels))
    errors, warnings = check_gateway_names(match.gateways)
    report.check_all(at(path, "gateways"), errors)
    for warning in warnings:
        report.warn(at(path, "gateways"), warning)


# The routes of a VirtualService and their match conditions; only the HTTP ones have names.
Rule: TypeAlias = nw.HTTPRoute | nw.TCPRoute | nw.TLSRoute
RuleMatch: TypeAlias = nw.HTTPMatchRequest | nw.L4MatchAttributes | nw.TLSMatchAttributes


def _name(message: Rule | RuleMatch, named: bool) -> str:
    return message.name if named and isinstance(message, nw.HTTPRoute | nw.HTTPMatchRequest) else ""


def _unreachable_rules(routes: Sequence[Rule], named: bool, path: str, report: Report) -> None:
    """Istio's unreachable-rule analysis (warnings): a second match-less rule, or matches already used."""

    def rule_name(index: int) -> str:
        name = _name(routes[index], named)
        return f'"{name}"' if name else f"#{index}"

    def match_name(match: RuleMatch, index: int) -> str:
        name = _name(match, named)
        return f'"{name}"' if name else f"#{index}"

    seen: dict[bytes, int] = {}
    empty_seen = False
    for index, route in enumerate(routes):
        route_path = item(path, index)
        if not len(route.match):
            if empty_seen:
                report.warn(
                    route_path,
                    f"virtualService rule {rule_name(index)} not used "
                    "(only the last rule can have no matches)",
                )
            empty_seen = True
            continue
        duplicates = 0
        matches: Sequence[RuleMatch] = route.match
        for match_index, match in enumerate(matches):
            key = _match_key(match, named)
            if key in seen:
                report.warn(
                    item(at(route_path, "match"), match_index),
                    f"virtualService rule {rule_name(index)} match {match_name(match, match_index)} is not "
                    f"used (duplicate/overlapping match in rule {rule_name(seen[key])})",
                )
                duplicates += 1
            else:
                seen[key] = index
        if duplicates == len(route.match):
            report.warn(
                route_path,
                f"virtualService rule {rule_name(index)} not used (all matches used by prior rules)",
            )


def _match_key(match: RuleMatch, named: bool) -> bytes:
    """The match without its name, serialized deterministically: equal keys route the same traffic."""
    if named and isinstance(match, nw.HTTPMatchRequest) and match.name:
        copy = nw.HTTPMatchRequest()
        copy.CopyFrom(match)
        copy.ClearField("name")
        match = copy
    serialize: Callable[..., bytes] = match.SerializeToString
    return serialize(deterministic=True)
