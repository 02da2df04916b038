"""What proxyless gRPC clients cannot honour in a VirtualService or a DestinationRule's TLS, as
warnings (``pilot validate --grpc``).

gRPC's xDS client reads a subset of Envoy's route API (gRFC A28, A31, A33, A44); pilot leaves the
rest out of what it sends those clients (pilot.translate.grpc_routes), so these fields have no
effect on them, or, for ``redirect`` and ``directResponse``, fail every matching call with
UNAVAILABLE (observed with grpcio, docs/proxyless-grpc.md). A VirtualService names hosts, not
clients, so pilot cannot tell on its own which ones serve gRPC clients: the user says so.

A DestinationRule's ``tls`` in mode ``SIMPLE`` or ``MUTUAL`` is not applied to them either
(pilot.translate.grpc_clusters, as Istio's grpcgen): gRPC takes certificates from its bootstrap's
certificate providers only, so those clients connect in plain text; ``ISTIO_MUTUAL`` is applied.
"""

from __future__ import annotations

from pilot._gen import networking_pb2 as nw
from pilot.config.objects import ConfigObject, FieldError

IGNORED = "proxyless gRPC clients ignore it"
FAILS = "proxyless gRPC clients fail every call this route matches (UNAVAILABLE)"

# HTTPRoute fields (JSON name, proto name) gRPC's xDS client does not read.
_IGNORED_ROUTE_FIELDS = (
    ("rewrite", "rewrite"),
    ("mirror", "mirror"),
    ("mirrors", "mirrors"),
    ("mirrorPercent", "mirror_percent"),
    ("mirrorPercentage", "mirror_percentage"),
    ("headers", "headers"),
    ("corsPolicy", "cors_policy"),
)
_FAILING_ROUTE_FIELDS = (("redirect", "redirect"), ("directResponse", "direct_response"))


def grpc_client_warnings(obj: ConfigObject[nw.VirtualService]) -> list[FieldError]:
    """A warning for every field of ``obj`` that a proxyless gRPC client would not honour."""
    out: list[FieldError] = []

    def warn(path: str, message: str) -> None:
        out.append(FieldError(obj.origin, message, obj.key, path, severity="warning"))

    spec = obj.spec
    for index, http in enumerate(spec.http):
        where = f"spec.http[{index}]"
        for json_name, field in _IGNORED_ROUTE_FIELDS:
            if _is_set(http, field):
                warn(f"{where}.{json_name}", IGNORED)
        for json_name, field in _FAILING_ROUTE_FIELDS:
            if _is_set(http, field):
                warn(f"{where}.{json_name}", FAILS)
        if http.HasField("retries") and http.retries.HasField("per_try_timeout"):
            warn(f"{where}.retries.perTryTimeout", IGNORED)
        for match_index, match in enumerate(http.match):
            if len(match.query_params):
                warn(f"{where}.match[{match_index}].queryParams", "proxyless gRPC clients never match it")
        for route_index, route in enumerate(http.route):
            if route.HasField("headers"):
                warn(f"{where}.route[{route_index}].headers", IGNORED)
    for kind, routes in (("tcp", spec.tcp), ("tls", spec.tls)):
        if len(routes):
            warn(f"spec.{kind}", "proxyless gRPC clients route HTTP/2 only: " + IGNORED)
    return out


_FILE_TLS = (nw.ClientTLSSettings.SIMPLE, nw.ClientTLSSettings.MUTUAL)
PLAIN_TEXT = (
    "proxyless gRPC clients take certificates from their bootstrap only: they connect in plain "
    "text (ISTIO_MUTUAL is applied)"
)


def grpc_tls_warnings(obj: ConfigObject[nw.DestinationRule]) -> list[FieldError]:
    """A warning for every ``tls`` of ``obj`` in mode SIMPLE or MUTUAL (rule, port, subset level)."""
    policies: list[tuple[str, nw.TrafficPolicy]] = []
    if obj.spec.HasField("traffic_policy"):
        policies.append(("spec.trafficPolicy", obj.spec.traffic_policy))
    policies += [
        (f"spec.subsets[{i}].trafficPolicy", subset.traffic_policy)
        for i, subset in enumerate(obj.spec.subsets)
        if subset.HasField("traffic_policy")
    ]
    out: list[FieldError] = []
    for where, policy in policies:
        levels: list[tuple[str, nw.TrafficPolicy | nw.TrafficPolicy.PortTrafficPolicy]] = [(where, policy)]
        levels += [(f"{where}.portLevelSettings[{i}]", p) for i, p in enumerate(policy.port_level_settings)]
        for path, level in levels:
            if level.HasField("tls") and level.tls.mode in _FILE_TLS:
                out.append(
                    FieldError(obj.origin, PLAIN_TEXT, obj.key, f"{path}.tls.mode", severity="warning")
                )
    return out


def _is_set(message: nw.HTTPRoute, field: str) -> bool:
    value = getattr(message, field)
    if hasattr(value, "ListFields"):
        return message.HasField(field)
    return bool(len(value)) if hasattr(value, "__len__") else bool(value)


__all__ = ["FAILS", "IGNORED", "PLAIN_TEXT", "grpc_client_warnings", "grpc_tls_warnings"]
