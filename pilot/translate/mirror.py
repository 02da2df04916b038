"""Traffic mirroring: ``mirror`` + ``mirrorPercentage`` (or the deprecated ``mirrorPercent``) and
``mirrors[]`` as the route's ``request_mirror_policies``.

Istio's ``MirrorPercent``, ``MirrorPercentByPolicy`` and ``TranslateRequestMirrorPolicy``
(pilot/pkg/networking/core/route/route.go): the fraction is a runtime fraction whose default is the
percentage (per million; the deprecated integer percent per hundred), 100% when none is given, and an
explicit 0 turns mirroring off. Mirrored requests are never trace-sampled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from pilot._gen import networking_pb2 as nw

FractionalPercent: TypeAlias = percent_pb2.FractionalPercent
RequestMirrorPolicy: TypeAlias = rc.RouteAction.RequestMirrorPolicy
# (destination) → cluster name, with the route's namespace and listener port already bound.
ClusterOf: TypeAlias = Callable[[nw.Destination], str]


def per_million(value: float) -> FractionalPercent:
    """Istio's translatePercentToFractionalPercent."""
    return FractionalPercent(numerator=int(value * 10000), denominator=FractionalPercent.MILLION)


def per_hundred(value: int) -> FractionalPercent:
    """Istio's translateIntegerToFractionalPercent."""
    return FractionalPercent(numerator=value, denominator=FractionalPercent.HUNDRED)


def _runtime(fraction: FractionalPercent) -> base_pb2.RuntimeFractionalPercent:
    return base_pb2.RuntimeFractionalPercent(default_value=fraction)


def mirror_percent(route: nw.HTTPRoute) -> base_pb2.RuntimeFractionalPercent | None:
    """The fraction of an HTTPRoute's single ``mirror``; None when explicitly 0."""
    if route.HasField("mirror_percentage"):
        value = route.mirror_percentage.value
        return _runtime(per_million(value)) if value > 0 else None
    if route.HasField("mirror_percent"):
        count = route.mirror_percent.value
        return _runtime(per_hundred(count)) if count > 0 else None
    return _runtime(per_hundred(100))


def policy_percent(mirror: nw.HTTPMirrorPolicy) -> base_pb2.RuntimeFractionalPercent | None:
    """The fraction of one ``mirrors[]`` entry; None when explicitly 0."""
    if mirror.HasField("percentage"):
        value = mirror.percentage.value
        return _runtime(per_million(value)) if value > 0 else None
    return _runtime(per_hundred(100))


def mirror_policy(cluster: str, fraction: base_pb2.RuntimeFractionalPercent) -> RequestMirrorPolicy:
    return RequestMirrorPolicy(
        cluster=cluster, runtime_fraction=fraction, trace_sampled=wrappers_pb2.BoolValue(value=False)
    )


def mirror_policies(route: nw.HTTPRoute, cluster_of: ClusterOf) -> list[RequestMirrorPolicy]:
    """Every mirror policy of an HTTPRoute, ``mirror`` first, then ``mirrors`` in order."""
    out = []
    if route.HasField("mirror"):
        fraction = mirror_percent(route)
        if fraction is not None:
            out.append(mirror_policy(cluster_of(route.mirror), fraction))
    for mirror in route.mirrors:
        fraction = policy_percent(mirror)
        if fraction is not None and mirror.HasField("destination"):
            out.append(mirror_policy(cluster_of(mirror.destination), fraction))
    return out


__all__ = [
    "mirror_percent",
    "mirror_policies",
    "mirror_policy",
    "per_hundred",
    "per_million",
    "policy_percent",
]
