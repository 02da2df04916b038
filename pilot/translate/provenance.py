"""Provenance: which config objects each generated resource came from.

When Envoy rejects a resource, the pusher holds back the objects that produced it (and changed
since the proxy last accepted it) instead of the whole view (pilot.push.holds). This module answers
"which objects?" for every resource a generator emits, from the resource's name and the
PushContext's host index, without going back into translation:

- a cluster or its ClusterLoadAssignment (``outbound|PORT|SUBSET|HOST``): the ServiceEntries that
  define HOST and the DestinationRules for it; an inbound cluster: the ServiceEntries the proxy
  backs;
- a route configuration: for each virtual host (named ``HOST:PORT``), the ServiceEntries, the
  VirtualServices and the DestinationRules of HOST (wildcards included); a router's also comes from
  its Gateways;
- a listener (``ADDRESS_PORT``): everything of every host with a service on PORT (its filter chains
  and route configuration are made from them); a router's also comes from its Gateways; every
  listener also from the RequestAuthentications and the JWKS fetched for them (its jwt_authn filter).

The answer is a superset (an object that did not change what a resource holds may be named),
which is sound for its one use: the pusher intersects it with the objects that changed since the
proxy's last accepted version. The index is built once per PushContext.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

from google.protobuf.message import Message

from pilot.cache.snapshot import Encoded
from pilot.config import kinds
from pilot.config.objects import ConfigKey
from pilot.translate import hosts
from pilot.translate.context import PushContext
from pilot.translate.proxy import NodeType, ProxyView
from pilot.translate.route_records import EncodedRouteConfiguration
from pilot.xds import names, types

Keys = frozenset[ConfigKey]
Provenance = Mapping[str, Keys]  # resource name -> the keys of the objects it came from

_NONE: Keys = frozenset()
_SERVICE_KINDS = frozenset({kinds.SERVICE_ENTRY, kinds.DESTINATION_RULE, kinds.WORKLOAD_ENTRY})


class HostIndex:
    """Every object key by the host it names (ServiceEntry hosts, VirtualService hosts,
    DestinationRule host), and every host by service port: read-only once built."""

    __slots__ = (
        "_auth",
        "_by_port",
        "_clusters",
        "_exact",
        "_gateways",
        "_memo",
        "_ports",
        "_vhosts",
        "_wildcard",
    )

    def __init__(self, context: PushContext) -> None:
        exact: dict[str, set[ConfigKey]] = {}
        wildcard: list[tuple[str, ConfigKey]] = []
        by_port: dict[int, set[str]] = {}

        def add(host: str, key: ConfigKey) -> None:
            if hosts.is_wildcard(host):
                wildcard.append((host, key))
            exact.setdefault(host, set()).add(key)

        for service in context.services:
            add(service.hostname, service.key)
            for port in service.ports:
                by_port.setdefault(port.number, set()).add(service.hostname)
        for vs in context.virtual_services:
            for host in vs.hosts:
                add(host, vs.key)
        for dr in context.destination_rules:
            add(dr.host, dr.key)
        self._exact = {host: frozenset(keys) for host, keys in exact.items()}
        self._wildcard = tuple(wildcard)
        self._by_port = by_port
        self._gateways: Keys = frozenset(gw.key for gw in context.gateways)
        # The objects of listeners' HTTP auth filters (pilot.translate.auth_filters).
        self._auth: Keys = frozenset(
            [ra.key for ra in context.request_authentications] + [key.config_key for key in context.jwks]
        )
        self._memo: dict[str, Keys] = {}
        self._clusters: dict[str, Keys] = {}  # host -> keys of its clusters (shared by views)
        self._ports: dict[int, Keys] = {}
        self._vhosts: dict[tuple[bool, tuple[str, ...]], Keys] = {}

    def of_host(self, host: str) -> Keys:
        """The keys of every object naming ``host`` or a wildcard overlapping it."""
        found = self._memo.get(host)
        if found is None:
            keys = set(self._exact.get(host, _NONE))
            keys.update(key for pattern, key in self._wildcard if hosts.matches(pattern, host))
            if hosts.is_wildcard(host):  # a router's virtual host "*.example.com" or "*"
                keys.update(k for h, ks in self._exact.items() if hosts.matches(host, h) for k in ks)
            found = self._memo.setdefault(host, frozenset(keys))
        return found

    def of_outbound_cluster(self, name: str) -> Keys | None:
        """The ServiceEntries and DestinationRules of an ``outbound|...`` cluster's host; None
        for any other name. Memoized by host: a host has a cluster per port and subset."""
        if not name.startswith("outbound|"):
            return None
        host = name.rpartition("|")[2]
        found = self._clusters.get(host)
        if found is None:
            found = self._clusters.setdefault(host, _services_only(self.of_host(host)))
        return found

    def of_port(self, port: int) -> Keys:
        found = self._ports.get(port)
        if found is None:
            found = frozenset(key for host in self._by_port.get(port, ()) for key in self.of_host(host))
            found = self._ports.setdefault(port, found)
        return found

    def of_virtual_hosts(self, names: tuple[str, ...], router: bool) -> Keys:
        """The keys of every host of the virtual hosts ``names`` (Istio's ``HOST:PORT``; a VHDS
        one's behind its route configuration's name and a "/"), and a router's Gateways."""
        found = self._vhosts.get((router, names))
        if found is None:
            keys: set[ConfigKey] = set(self._gateways) if router else set()
            for name in names:
                host = name.rpartition("/")[2].rpartition(":")[0]
                if host:
                    keys.update(self.of_host(host))
            found = self._vhosts.setdefault((router, names), frozenset(keys))
        return found

    @property
    def gateways(self) -> Keys:
        return self._gateways

    @property
    def auth(self) -> Keys:
        return self._auth


_lock = threading.Lock()
_last: tuple[PushContext, HostIndex] | None = None


def host_index(context: PushContext) -> HostIndex:
    """The index of ``context`` (the last one is kept: every view of a push shares it). The last
    one's index itself, with what it memoized, when ``context`` was built from that context and
    indexes the same hosts (``PushContext.same_hosts_as``: only routes or policies changed)."""
    global _last
    last = _last
    if last is not None and last[0] is context:
        return last[1]
    with _lock:
        if _last is None or _last[0] is not context:
            if _last is not None and context.same_hosts_as(_last[0]):
                _last = (context, _last[1])
            else:
                _last = (context, HostIndex(context))
        return _last[1]


def provenance(
    view: ProxyView, context: PushContext, messages: Mapping[str, Sequence[tuple[str, Message | Encoded]]]
) -> dict[str, Provenance]:
    """type URL -> resource name -> the keys of the config objects it came from."""
    index = host_index(context)
    router = view.type is NodeType.ROUTER
    out: dict[str, Provenance] = {}
    for type_url, items in messages.items():
        if type_url in (types.CLUSTER, types.ENDPOINT):
            found = {name: _of_cluster(name, view, index) for name, _ in items}
        elif type_url == types.ROUTE:
            found = {name: _of_route_configuration(message, index, router) for name, message in items}
        elif type_url == types.VIRTUAL_HOST:
            found = {name: _of_route_configuration(message, index, router, False) for name, message in items}
        elif type_url == types.LISTENER:
            found = {name: _of_listener(name, index, router) for name, _ in items}
        else:
            continue
        out[type_url] = MappingProxyType(found)
    return out


def _of_cluster(name: str, view: ProxyView, index: HostIndex) -> Keys:
    found = index.of_outbound_cluster(name)
    if found is not None:
        return found
    parsed = names.parse_cluster(name)
    if parsed is None:
        return _NONE
    served = (t.hostname for t in view.targets if t.target_port == parsed.port)  # inbound
    return _services_only(key for host in served for key in index.of_host(host))


def _services_only(keys: Iterable[ConfigKey]) -> Keys:
    return frozenset(key for key in keys if key.kind in _SERVICE_KINDS)


def _of_route_configuration(
    message: Message | Encoded, index: HostIndex, router: bool, configuration: bool = True
) -> Keys:
    """A route configuration's keys (or a VHDS virtual host's: ``configuration`` False)."""
    if isinstance(message, EncodedRouteConfiguration):
        return index.of_virtual_hosts(message.virtual_host_names, router)
    vhosts = message.virtual_hosts if configuration else (message,)  # type: ignore[union-attr]
    return index.of_virtual_hosts(tuple(vhost.name for vhost in vhosts), router)  # type: ignore[union-attr]


def _of_listener(name: str, index: HostIndex, router: bool) -> Keys:
    _, _, port = name.rpartition("_")
    keys = (index.of_port(int(port)) if port.isdigit() else _NONE) | index.auth
    return keys | index.gateways if router else keys


__all__ = ["HostIndex", "Keys", "Provenance", "host_index", "provenance"]
