"""The services of a scope on one port: what a sidecar's route configuration for the port starts from.

A route configuration per HTTP port looks at the services with that port (Istio's
``servicesByName`` in httproute.go holds only those) and gives a virtual host to those it serves
over HTTP. For the scope's own services both lists are made once per scope and port, from one
index of the services by port (``Scope.derived``), instead of a scan of every service per port.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from pilot.translate.context import Scope, Service
from pilot.translate.listeners import SNIFFED


def services_on_port(port: int, scope: Scope, services: Iterable[Service]) -> Mapping[str, Service]:
    """The ``services`` with ``port``, by lower-case hostname (the last of a hostname wins); for the
    scope's own services made once per scope and port (never change it)."""
    if services is not scope.services:
        return _by_hostname(port, services)
    return scope.derived(("services-on-port", port), lambda: _by_hostname(port, _with_port(port, scope)))


def http_services_on_port(port: int, scope: Scope, services: Sequence[Service]) -> Sequence[Service]:
    """The ``services`` the port's routes serve (``is_http_on``), in order; for the scope's own
    services made once per scope and port."""
    if services is not scope.services:
        return [service for service in services if is_http_on(service, port)]
    return scope.derived(
        ("http-on-port", port), lambda: [s for s in _with_port(port, scope) if is_http_on(s, port)]
    )


def is_http_on(service: Service, port: int) -> bool:
    """HTTP, or not declared and sniffed (Istio's IsHTTPOrSniffed): the port's routes serve it."""
    service_port = service.port(port)
    return service_port is not None and (service_port.protocol.is_http or service_port.protocol is SNIFFED)


def _with_port(port: int, scope: Scope) -> Sequence[Service]:
    """The scope's services with ``port``, in order: one pass over them for every port."""
    by_port: dict[int, list[Service]] = scope.derived(("services-by-port",), lambda: _by_port(scope.services))
    return by_port.get(port, ())


def _by_port(services: Sequence[Service]) -> dict[int, list[Service]]:
    out: dict[int, list[Service]] = {}
    for service in services:
        for number in dict.fromkeys(p.number for p in service.ports):
            out.setdefault(number, []).append(service)
    return out


def _by_hostname(port: int, services: Iterable[Service]) -> dict[str, Service]:
    return {svc.hostname.lower(): svc for svc in services if svc.port(port) is not None}


__all__ = ["http_services_on_port", "is_http_on", "services_on_port"]
