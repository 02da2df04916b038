"""Gateways, servers and VirtualServices for the router tests, and what a router is sent."""

from __future__ import annotations

from typing import Any

from pilot.translate.generators import build_listeners, build_routes
from pilot.translate.proxy import NodeType, ProxyView
from tests import factories as f

INGRESS = ProxyView(NodeType.ROUTER, "istio-system", labels=(("istio", "ingressgateway"),))


def gw(name: str, *servers: dict[str, Any], namespace: str = "default", selector: Any = None) -> Any:
    spec = {
        "selector": {"istio": "ingressgateway"} if selector is None else selector,
        "servers": list(servers),
    }
    return f.config("Gateway", name, spec, namespace)


def server(
    number: int, protocol: str = "HTTP", hosts: tuple[str, ...] = ("*",), name: str = "", **extra: Any
) -> dict[str, Any]:
    port = {"number": number, "protocol": protocol, "name": name or f"{protocol.lower()}-{number}"}
    return {"port": port, "hosts": list(hosts), **extra}


def vs(name: str, namespace: str = "default", **spec: Any) -> Any:
    return f.virtual_service(name, namespace, **spec)


SIMPLE = {"mode": "SIMPLE", "serverCertificate": "/certs/cert.pem", "privateKey": "/certs/key.pem"}


def listeners(*objects: Any, view: ProxyView = INGRESS) -> dict[str, Any]:
    return dict(build_listeners(view, f.push_context(*objects)))


def routes(*objects: Any, view: ProxyView = INGRESS) -> dict[str, Any]:
    return dict(build_routes(view, f.push_context(*objects)))


def unpack(chain: Any, message: Any) -> Any:
    (network_filter,) = [
        x for x in chain.filters if x.name.endswith(("http_connection_manager", "tcp_proxy"))
    ]
    out = message()
    assert network_filter.typed_config.Unpack(out)
    return out
