"""/debug/convergence's verdict per proxy (pilot.debug.convergence), on hand-made statuses."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2

from pilot.cache.snapshot import Snapshot
from pilot.debug.convergence import convergence
from pilot.server.status import ConnectionStatus, NackStatus, TypeStatus
from pilot.xds import types

SNAPSHOT = Snapshot.from_messages("9", {types.CLUSTER: [("a", cluster_pb2.Cluster(name="a"))]})
CURRENT = SNAPSHOT.resources(types.CLUSTER)["a"].version


def stream(node: str, view: str, sent: str = "1", acked: str = "1", nack: NackStatus | None = None):
    status = TypeStatus(types.CLUSTER, True, (), "", sent, "", acked, nack, None)
    return ConnectionStatus(1, node, "", 0.0, view, "sotw", {types.CLUSTER: status})


def verdicts(revision: int, streams, held, rejections=(), built=9):
    answer = convergence(
        revision,
        9,
        streams,
        {s.view: built for s in streams},
        list(rejections),
        lambda node: ({types.CLUSTER: {"a": held[node]}}, SNAPSHOT),
    )
    out = {p["proxy"]: "acked" for p in answer["acked_proxies"]}
    out.update({p["proxy"]: p["reason"] for p in answer["pending"]})
    assert answer["acked"] == len(answer["acked_proxies"]) and answer["proxies"] == len(out)
    return out


def test_a_proxy_acked_a_revision_when_it_holds_a_snapshot_built_from_it_or_later():
    streams = [stream("in-step", "v1"), stream("behind", "v2"), stream("in-flight", "v3", sent="2")]
    held = {"in-step": CURRENT, "behind": "old", "in-flight": CURRENT}
    assert verdicts(9, streams, held) == {"in-step": "acked", "behind": "syncing", "in-flight": "syncing"}
    assert verdicts(10, streams[:1], held) == {"in-step": "building"}
    assert verdicts(5, streams[:1], held, built=4) == {"in-step": "building"}


def test_a_nack_or_a_held_object_keeps_the_revision_from_a_proxy():
    nack = NackStatus("bad", 3, "2", "1", 0.0)
    streams = [stream("nacked", "v1", sent="2", nack=nack), stream("held", "v2"), stream("later", "v3")]
    held = {"nacked": CURRENT, "held": CURRENT, "later": CURRENT}
    rejection = {"view": "v2", "rejected_revision": 7, "key": "VirtualService default/a"}
    later = {"view": "v3", "rejected_revision": 8, "key": "VirtualService default/b"}
    found = verdicts(7, streams, held, [rejection, later])
    # v3's held object was edited after revision 7: that revision reached it.
    assert found == {"nacked": "nacked", "held": "held", "later": "acked"}
