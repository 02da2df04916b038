"""A sidecar's VirtualService routes serialized from templates: the routes of VirtualServices written alike.

VirtualServices written alike (the same HTTP routes, matches, weights, retries and timeouts, only
their destination hosts differ) make routes that differ in a few fields (``OWN``): the route's
Istio metadata (the VirtualService's name), its decorator, and in the route action the cluster
names (``cluster`` or ``weighted_clusters``), their hash policies and mirror policies. The first
VirtualService of a *shape* is translated by the real builder (pilot.translate.routes); its routes
without those fields are the shape's template, serialized once. Every VirtualService of the shape
then makes only its own fields, with the builder's own functions, and each route is sent as the
template's bytes followed by those (pilot.translate.templated).

A shape is the scope (templates are kept per scope's pieces), the port, the VirtualService's
namespace, its HTTP routes serialized with every destination and mirror host blanked, and the hash
policy (consistent-hash DestinationRule) of each destination's cluster, which decides the retry
policy too. A VirtualService whose single-destination routes carry header operations (they land
in the route's header lists, which the template has too) or that delegates is never templated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from envoy.config.route.v3 import route_components_pb2 as rc

from pilot._gen import networking_pb2 as nw
from pilot.translate import mirror, route_actions
from pilot.translate.context import Scope, VirtualServiceEntry
from pilot.translate.route_records import RouteTemplate, RouteTemplates, TemplatedRoutes, VirtualServiceShape
from pilot.xds import names

# The real builder: the routes of a VirtualService on a port, each with the index of its HTTPRoute.
Build = Callable[[], list[tuple[int, rc.Route]]]


def operation(match: rc.RouteMatch, action: rc.RouteAction | None, vs_name: str, port: int) -> str:
    """Istio's GetRouteOperation, the trace decorator: ``host:port/path*`` or ``vs:port/path*``."""
    kind = match.WhichOneof("path_specifier")
    path = {"prefix": match.prefix + "*", "path": match.path, "safe_regex": match.safe_regex.regex}.get(
        kind or "", "/*"
    )
    parsed = names.parse_cluster(action.cluster) if action is not None else None
    if parsed is not None:
        return f"{parsed.host}:{parsed.port}{path}"
    return f"{vs_name}:{port}{path}"


def add_config_metadata(route: rc.Route, vs: VirtualServiceEntry) -> None:
    """Istio's ``filter_metadata.istio.config``: the VirtualService that made the route."""
    route.metadata.filter_metadata["istio"].fields[
        "config"
    ].string_value = f"/apis/networking.istio.io/v1/namespaces/{vs.namespace}/virtual-service/{vs.key.name}"


def own_fields(
    route: rc.Route,
    template: rc.Route,
    spec: nw.HTTPRoute,
    clusters: Sequence[str],
    vs: VirtualServiceEntry,
    scope: Scope,
    port: int,
) -> None:
    """What the routes of one shape do not share, set on ``route`` (holding the VirtualService's
    metadata) as translate_route sets them on the whole route (``template``: the shape's route, for
    its match and whether it routes; ``clusters``: those of the HTTPRoute's destinations)."""
    action = None
    if template.HasField("route"):
        action = route.route
        if spec.HasField("mirror") or spec.mirrors:

            def cluster_of(destination: nw.Destination) -> str:
                return route_actions.destination_cluster(destination, vs.namespace, scope, port)

            action.request_mirror_policies.extend(mirror.mirror_policies(spec, cluster_of))
        route_actions.apply_destinations(route, action, spec, vs.namespace, scope, port, clusters)
    route.decorator.operation = operation(template.match, action, vs.key.name, port)


def _blank_hosts(spec: nw.HTTPRoute) -> bytes | None:
    """The HTTPRoute serialized with its destination and mirror hosts blanked; None if its routes
    are never templated (it delegates, or its single destination has header operations)."""
    if spec.HasField("delegate") or (len(spec.route) == 1 and spec.route[0].HasField("headers")):
        return None
    blank = nw.HTTPRoute()
    blank.CopyFrom(spec)
    for destination in blank.route:
        destination.destination.ClearField("host")
    if blank.HasField("mirror"):
        blank.mirror.ClearField("host")
    for each in blank.mirrors:
        each.destination.ClearField("host")
    return blank.SerializeToString(deterministic=True)


def _spec_shape(vs: VirtualServiceEntry, templates: RouteTemplates) -> VirtualServiceShape | None:
    """The part of ``vs``'s shape that is its own, with its HTTPRoutes and their destinations read
    out of the message (made once per entry and scope; read again on every port)."""
    found = templates.specs.get(id(vs))
    if found is None or found.entry is not vs:
        http = tuple(vs.spec.http)
        blanks = tuple(_blank_hosts(spec) for spec in http)
        metadata = rc.Route()
        add_config_metadata(metadata, vs)
        destinations = tuple(tuple(d.destination for d in spec.route) for spec in http)
        found = templates.specs[id(vs)] = VirtualServiceShape(
            vs, None if None in blanks else blanks, metadata, http, destinations
        )
    return found if found.blanks is not None else None


def templated_routes(
    vs: VirtualServiceEntry, port: int, scope: Scope, templates: RouteTemplates, build: Build
) -> Sequence[rc.Route]:
    """The routes of ``vs`` on ``port``: serialized from its shape's template (made from these
    routes, by ``build``, when the shape has none in ``templates``), or ``build``'s messages when
    it has no shape (see the module docstring)."""
    own_shape = _spec_shape(vs, templates)
    if own_shape is None:
        return tuple(route for _, route in build())
    namespace = vs.namespace
    destination_cluster = route_actions.destination_cluster
    clusters = [
        [destination_cluster(d, namespace, scope, port) for d in destinations]
        for destinations in own_shape.destinations
    ]
    hashing = []
    for names_of_spec in clusters:
        for cluster in names_of_spec:
            policy = route_actions.cluster_hash_policy(scope, cluster)
            hashing.append(None if policy is None else policy.SerializeToString(deterministic=True))
    key = (port, namespace, vs.gateway_semantics, own_shape.blanks, tuple(hashing))
    template = templates.shapes.get(key)
    if template is None:
        template = templates.shapes[key] = RouteTemplate.of(build())
    encoded = []
    http, metadata = own_shape.http, own_shape.metadata
    for index, shared, value in zip(template.specs, template.routes, template.encoded, strict=True):
        own = rc.Route()
        own.CopyFrom(metadata)
        own_fields(own, shared, http[index], clusters[index], vs, scope, port)
        encoded.append(value + own.SerializeToString(deterministic=True))
    return TemplatedRoutes(tuple(encoded))


__all__ = [
    "add_config_metadata",
    "operation",
    "own_fields",
    "templated_routes",
]
