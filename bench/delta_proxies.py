"""A simulated Envoy on delta ADS (``delta``), optionally taking virtual hosts over VHDS
(``vhds``: node metadata ``VHDS: "true"``), run by a :class:`bench.proxies.Fleet`.

It subscribes as Envoy does over delta: CDS and LDS wildcard; EDS for the EDS clusters its CDS
responses add (and unsubscribes those they remove); RDS for the route configurations its
listeners name; with VHDS, one VirtualHost request naming nothing once it has route
configurations (Envoy's VHDS sends no namespaces); and ACKs every response by nonce. The edited
route's weight is read from RDS responses, or VHDS ones. :meth:`bench.proxies.Fleet.run` opens
the stream again when it ends.
https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#incremental-xds
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2

from bench.mesh import node_id
from bench.proxies import CDS, EDS, LDS, RDS, edited_weight, eds_clusters, route_names

if TYPE_CHECKING:
    from bench.proxies import Backoff, Fleet

METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
VHDS = "type.googleapis.com/envoy.config.route.v3.VirtualHost"
Request = discovery_pb2.DeltaDiscoveryRequest
_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]


def _node(index: int, vhds: bool) -> base_pb2.Node:
    node = base_pb2.Node(id=node_id(index), cluster="bench")
    if vhds:
        node.metadata.CopyFrom(struct_pb2.Struct(fields={"VHDS": struct_pb2.Value(string_value="true")}))
    return node


async def delta_proxy(
    fleet: Fleet, index: int, channel: grpc.aio.Channel, backoff: Backoff, protocol: str
) -> None:
    """One delta stream of proxy ``index`` until it ends (returns) or fails (raises)."""
    vhds = protocol == "vhds"
    wanted = frozenset({CDS, EDS, LDS, RDS, VHDS} if vhds else {CDS, EDS, LDS, RDS})
    call: Any = channel.stream_stream(
        METHOD,
        request_serializer=Request.SerializeToString,
        response_deserializer=discovery_pb2.DeltaDiscoveryResponse.FromString,
    )(wait_for_ready=True)  # type: ignore[call-arg]
    held: dict[str, frozenset[str]] = {EDS: frozenset(), RDS: frozenset()}  # subscribed, from CDS and LDS
    acked: set[str] = set()
    asked_vhds = False
    weight = -1
    try:
        await call.write(Request(node=_node(index, vhds), type_url=CDS, resource_names_subscribe=["*"]))
        await call.write(Request(type_url=LDS, resource_names_subscribe=["*"]))
        while True:
            response: Any = await call.read()
            if response is _EOF:
                return
            fleet.responses += 1
            backoff.reset()
            type_url = response.type_url
            if type_url in (CDS, LDS):
                child = EDS if type_url == CDS else RDS
                # ``named`` is sorted and shared by the worker's proxies (memoized); the names
                # new to this proxy keep its order.
                named = fleet.memo.get(response, eds_clusters if type_url == CDS else route_names)
                had = held[child]
                # A removed cluster's EDS name is the cluster name (as in Istio).
                removed = response.removed_resources if type_url == CDS else ()
                gone = sorted(had.intersection(removed)) if removed and had else []
                new = [name for name in named if name not in had] if had else named
                if new or gone:
                    held[child] = had.union(new).difference(gone) if had else frozenset(new)
                    await call.write(
                        Request(type_url=child, resource_names_subscribe=new, resource_names_unsubscribe=gone)
                    )
            await call.write(Request(type_url=type_url, response_nonce=response.nonce))
            if type_url == RDS and vhds and not asked_vhds:
                asked_vhds = True
                await call.write(Request(type_url=VHDS))
            if type_url == (VHDS if vhds else RDS) and response.resources:
                new_weight = fleet.memo.get(response, edited_weight)
                if new_weight not in (-1, weight):
                    weight = new_weight
                    fleet.saw_weight(index, weight)
            if len(acked) < len(wanted) and type_url in wanted:
                acked.add(type_url)
                if acked >= wanted:
                    fleet.has_full_config(index)
            # Not held while the next read waits: at K=5000 each stream's last response is MBs
            # (4 x 1250 streams' worth ran a 23 GB machine out of memory at N=5000).
            del response
    finally:
        call.cancel()
