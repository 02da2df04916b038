"""Distribution tracking: which proxies run which revision, and each object's "N/M proxies up to date"."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from google.protobuf import struct_pb2

from pilot.cache.snapshot import Snapshot, TypeResources
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.status.distribution import Progress, ProxyProgress, progress, proxy_progress

RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
SDS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
REVIEWS = ConfigKey("VirtualService", "apps", "reviews")
RATINGS = ConfigKey("DestinationRule", "apps", "ratings")


@dataclass(frozen=True)
class Type:
    nonce_sent: str
    nonce_acked: str


@dataclass(frozen=True)
class Stream:
    stream_id: int
    node_id: str
    types: dict[str, Type] = field(default_factory=dict)


@dataclass(frozen=True)
class Backlog:
    pending_snapshots: int = 0
    writing: bool = False


def snapshot(version: str, *keys: ConfigKey) -> Snapshot:
    origins = MappingProxyType({RDS: MappingProxyType({"9080": frozenset(keys)})})
    by_type = {type_url: TypeResources(type_url, "v", MappingProxyType({})) for type_url in (CDS, RDS)}
    return Snapshot(version, MappingProxyType(by_type), origins)


def obj(key: ConfigKey, revision: int) -> ConfigObject:
    return ConfigObject(key, "networking.istio.io/v1", struct_pb2.Struct(), "kube:x", revision)


def synced(stream_id: int, node: str) -> Stream:
    return Stream(stream_id, node, {RDS: Type("3", "3"), CDS: Type("2", "2")})


def test_a_proxy_runs_its_snapshot_revision_only_when_every_type_is_acked_and_nothing_is_pending():
    snap = snapshot("7", REVIEWS)
    streams = [
        synced(1, "a"),
        Stream(2, "b", {RDS: Type("4", "3"), CDS: Type("2", "2")}),  # RDS sent, not ACKed yet
        synced(3, "c"),  # a newer snapshot waits to be sent
        synced(4, "d"),  # no view: closing
        # A request for a type the snapshot does not hold (answered empty, never ACKed) is no lag.
        Stream(5, "e", {RDS: Type("3", "3"), CDS: Type("2", "2"), SDS: Type("4", "")}),
    ]
    backlogs = {3: Backlog(pending_snapshots=1)}
    found = proxy_progress(streams, {1: "v", 2: "v", 3: "v", 5: "v"}, {"v": snap}.get, backlogs.get)
    assert found == [
        ProxyProgress("a", 7, frozenset({REVIEWS})),
        ProxyProgress("b", None, frozenset({REVIEWS})),
        ProxyProgress("c", None, frozenset({REVIEWS})),
        ProxyProgress("e", 7, frozenset({REVIEWS})),
    ]


def test_an_object_counts_the_proxies_that_use_it_and_run_its_revision_or_later():
    proxies = [
        ProxyProgress("a", 7, frozenset({REVIEWS, RATINGS})),
        ProxyProgress("b", 5, frozenset({REVIEWS})),
        ProxyProgress("c", None, frozenset({REVIEWS})),
    ]
    objects = {REVIEWS: obj(REVIEWS, 6), RATINGS: obj(RATINGS, 2)}
    found = progress(proxies, objects)
    assert found == {REVIEWS: Progress(1, 3), RATINGS: Progress(1, 1)}
    assert str(found[REVIEWS]) == "1/3 proxies up to date." and not found[REVIEWS].complete
    assert found[RATINGS].complete


def test_an_object_no_proxy_uses_is_complete_and_a_rejecting_proxy_is_not_up_to_date():
    unused = ConfigKey("Gateway", "infra", "edge")
    proxies = [ProxyProgress("a", 9, frozenset({REVIEWS}))]
    objects = {REVIEWS: obj(REVIEWS, 6), unused: obj(unused, 1)}
    found = progress(proxies, objects, held={REVIEWS: frozenset({"a"})})
    assert found == {REVIEWS: Progress(0, 1), unused: Progress(0, 0)}
    assert found[unused].complete
