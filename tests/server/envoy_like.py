"""A client that subscribes the way Envoy does, over either protocol, and counts what it receives.

Envoy asks for every Listener and Cluster (wildcard LDS and CDS), then for the
ClusterLoadAssignment of every EDS cluster and the RouteConfiguration of every listener that uses
RDS, and follows changes: a new cluster adds an EDS name, a removed one drops it. It ACKs every
response. :class:`EnvoyLike` does the same with an :class:`~tests.server.ads_client.XdsClient`
and records every response (type, names, serialized size), so tests can assert what a change
cost one proxy. https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#api-flow
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2

from pilot.xds import types
from pilot.xds.listeners import route_config_names
from tests.server.ads_client import PROBE_TYPE, Update, XdsClient


def eds_names(clusters: Iterable[bytes]) -> set[str]:
    """The EDS resource names of serialized clusters: the service name, else the cluster's name."""
    names = set()
    for value in clusters:
        cluster = cluster_pb2.Cluster.FromString(value)
        if cluster.type == cluster_pb2.Cluster.EDS:
            names.add(cluster.eds_cluster_config.service_name or cluster.name)
    return names


def rds_names(listeners: Iterable[bytes]) -> set[str]:
    """The route configuration names that serialized listeners fetch over RDS."""
    return route_config_names(listener_pb2.Listener.FromString(value) for value in listeners)


SETTLE_TIMEOUT = 10.0  # seconds a subscribed name may stay unanswered before ``settle`` gives up


class EnvoyLike:
    """One proxy: ``client``'s stream, subscribed like Envoy, every response ACKed and recorded."""

    def __init__(self, client: XdsClient) -> None:
        self.client = client
        self.values: dict[str, dict[str, bytes]] = {t: {} for t in types.PUSH_ORDER}  # what it holds
        self.updates: list[Update] = []  # every response received, in order (probes excluded)

    async def start(self) -> EnvoyLike:
        await self.client.subscribe(types.CLUSTER)
        await self.client.subscribe(types.LISTENER)
        await self.settle()
        return self

    async def settle(self) -> list[Update]:
        """Receive, apply and ACK until the server has nothing more to send, following every
        change of clusters and listeners with EDS and RDS subscriptions. Returns what came.

        Silence is checked with a probe: its answer comes after everything sent before it. A
        subscription change made on the way asks for more, so another probe round follows. Like
        Envoy's initial fetch, it is not settled while a subscribed EDS or RDS name has never been
        answered: a new view's first snapshot can still be on its way when the probe is answered."""
        received: list[Update] = []
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            await self.client.probe()
            resubscribed = False
            while (update := await self.client.recv()).type_url != PROBE_TYPE:
                received.append(update)
                resubscribed |= await self._take(update)
            if resubscribed:
                continue
            unanswered = self._unanswered()
            if not unanswered:
                self.updates.extend(received)
                return received
            if time.monotonic() > deadline:
                raise AssertionError(f"never answered: {unanswered}")
            await asyncio.sleep(0.01)

    def _unanswered(self) -> list[str]:
        """Subscribed EDS and RDS names no response has carried yet."""
        return sorted(
            name
            for type_url in (types.ENDPOINT, types.ROUTE)
            for name in self.client.subscribed.get(type_url, set())
            if name not in self.values[type_url]
        )

    async def _take(self, update: Update) -> bool:
        """Like Envoy: take the update (adding or removing watches), then ACK it. True if the
        subscriptions changed."""
        self._apply(update)
        resubscribed = await self._follow()
        await self.client.ack(update)
        return resubscribed

    def _apply(self, update: Update) -> None:
        held = self.values.setdefault(update.type_url, {})
        if self.client.protocol == "sotw" and update.type_url in types.WILDCARD_TYPES:
            self.values[update.type_url] = dict(update.values)  # the complete state of the world
            return
        held.update(update.values)
        for name in update.removed:
            held.pop(name, None)

    async def _follow(self) -> bool:
        """Subscribe to the EDS and RDS names the clusters and listeners need now; unsubscribe
        from the others. True if anything changed."""
        changed = False
        for type_url, wanted in (
            (types.ENDPOINT, eds_names(self.values[types.CLUSTER].values())),
            (types.ROUTE, rds_names(self.values[types.LISTENER].values())),
        ):
            current = self.client.subscribed.get(type_url, set())
            added, dropped = wanted - current, current - wanted
            if dropped:
                for name in dropped:
                    self.values[type_url].pop(name, None)  # Envoy forgets what it stops watching
                await self.client.unsubscribe(type_url, sorted(dropped))
                changed = True
            if added:
                await self.client.subscribe(type_url, sorted(added))
                changed = True
        return changed


def bytes_by_type(updates: Iterable[Update]) -> Counter[str]:
    """Serialized response bytes per short type name (cds, eds, lds, rds)."""
    total: Counter[str] = Counter()
    for update in updates:
        total[types.short_name(update.type_url)] += update.size
    return total


def names_by_type(updates: Iterable[Update]) -> dict[str, set[str]]:
    """Every resource name received per short type name."""
    names: dict[str, set[str]] = {}
    for update in updates:
        names.setdefault(types.short_name(update.type_url), set()).update(update.resources)
    return names
