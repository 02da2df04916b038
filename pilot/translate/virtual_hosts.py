"""VHDS: a route configuration's virtual hosts as resources of their own, for proxies that ask.

A proxy whose node metadata says ``VHDS: "true"`` (pilot.translate.proxy) gets each route
configuration as a shell (every field but its virtual hosts, plus ``vhds`` pointing at ADS) and
its virtual hosts as ``VirtualHost`` resources. Envoy subscribes to the route configuration's name
as a namespace and takes every VirtualHost resource named ``ROUTE_CONFIG/...``; afterwards the
server sends only the virtual hosts that changed, and removes those that went. So an edit of one
VirtualService costs each proxy that service's virtual host, not its port's whole route
configuration. Envoy accepts VHDS only over delta ADS.
https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/vhds

Envoy keys the virtual hosts it got over VHDS by ``VirtualHost.name`` and removes them by resource
name (``RouteConfigUpdateReceiverImpl::removeVhosts``), so the two must be equal: a virtual host's
name is Istio's (``reviews.default.svc.cluster.local:9080``) behind its route configuration's name
and a "/" (``9080/reviews.default.svc.cluster.local:9080``). That name is what the proxy's config
dump shows; its domains, routes and everything else are Istio's.
https://github.com/envoyproxy/envoy/blob/main/source/common/router/route_config_update_receiver_impl.cc
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from envoy.config.core.v3 import config_source_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf.message import Message

from pilot.translate.context import PushContext
from pilot.translate.proxy import ProxyView

Resources = list[tuple[str, Message]]
RouteBuilder = Callable[[ProxyView, PushContext], Resources]


def resource_name(route_config: str, virtual_host: str) -> str:
    """The VHDS resource name (and VirtualHost name) of ``virtual_host`` in ``route_config``."""
    return f"{route_config}/{virtual_host}"


def shells(configs: Sequence[tuple[str, Message]]) -> Resources:
    """Each route configuration without its virtual hosts, fetching them over ADS (delta) instead."""
    out: Resources = []
    for name, config in configs:
        shell = route_pb2.RouteConfiguration()
        shell.CopyFrom(config)
        shell.ClearField("virtual_hosts")
        shell.vhds.config_source.ads.SetInParent()
        shell.vhds.config_source.resource_api_version = config_source_pb2.ApiVersion.V3
        out.append((name, shell))
    return out


def split(configs: Sequence[tuple[str, Message]]) -> Resources:
    """Every virtual host of ``configs`` as a VHDS resource, named ``ROUTE_CONFIG/VHOST``."""
    out: Resources = []
    for name, config in configs:
        for vhost in config.virtual_hosts:  # type: ignore[attr-defined]
            named = route_components_pb2.VirtualHost()
            named.CopyFrom(vhost)
            named.name = resource_name(name, vhost.name)
            out.append((named.name, named))
    return out


class RouteMemo:
    """The full route configurations of one (view, context), from the RDS generator of a VHDS view
    to its VHDS generator, which runs next (both start from them; the translator runs on one
    thread). The VHDS side takes them, so nothing stays alive after the translation."""

    def __init__(self, build: RouteBuilder) -> None:
        self._build = build
        self._last: tuple[ProxyView, PushContext, Resources] | None = None

    def __call__(self, view: ProxyView, context: PushContext, *, keep: bool) -> Resources:
        last, self._last = self._last, None
        if last is not None and last[0] == view and last[1] is context:
            built = last[2]
        else:
            built = self._build(view, context)
        if keep:
            self._last = (view, context, built)
        return built


__all__ = ["RouteMemo", "resource_name", "shells", "split"]
