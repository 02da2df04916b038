"""Which identity a node claims, and the node pinned to its caller (pilot.server.authentication),
checked against how the translation reads the same node (Proxy.from_node)."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2
from google.protobuf.json_format import MessageToDict

from pilot.ca.identity import ServiceAccount
from pilot.server.authentication import NodeIdentityError, claimed_identity, pinned_node
from pilot.translate.proxy import Proxy

WEB = ServiceAccount("alpha", "web")


def node(node_id: str, **metadata: object) -> base_pb2.Node:
    fields = struct_pb2.Struct()
    fields.update(metadata)
    return base_pb2.Node(id=node_id, metadata=fields)


@pytest.mark.parametrize(
    ("who", "namespaces", "accounts"),
    [
        (node("sidecar~10.0.0.1~web-1.alpha~alpha.svc.cluster.local"), {"alpha"}, set()),
        (node("sidecar~10.0.0.1~web-1.alpha~beta.svc.cluster.local"), {"alpha", "beta"}, set()),
        (node("router~0.0.0.0~gw~alpha.svc.cluster.local"), {"alpha"}, set()),
        (node("sidecar~10.0.0.1~web-1~cluster.local"), set(), set()),
        (node("front-envoy"), set(), set()),
        (node("front-envoy", NAMESPACE="beta", SERVICE_ACCOUNT="admin"), {"beta"}, {"admin"}),
        (node("front-envoy", NAMESPACE=""), set(), set()),
    ],
)
def test_what_a_node_claims(who: base_pb2.Node, namespaces: set[str], accounts: set[str]):
    assert claimed_identity(who) == (namespaces, accounts)


def test_a_claim_that_is_no_string_is_never_the_callers():
    namespaces, _ = claimed_identity(node("front-envoy", NAMESPACE=7))
    assert len(namespaces) == 1 and "7" in namespaces.pop()


@pytest.mark.parametrize(
    "who",
    [
        node("sidecar~10.0.0.1~web-1.beta~beta.svc.cluster.local"),
        node("sidecar~10.0.0.1~web-1.alpha~beta.svc.cluster.local"),
        node("sidecar~10.0.0.1~web-1.alpha~alpha.svc.cluster.local", NAMESPACE="beta"),
        node("front-envoy", NAMESPACE=["alpha"]),
        node("front-envoy", SERVICE_ACCOUNT="admin"),
    ],
)
def test_a_node_claiming_anyone_else_is_refused(who: base_pb2.Node):
    with pytest.raises(NodeIdentityError, match="but the token is for service account alpha/web"):
        pinned_node(who, WEB)


@pytest.mark.parametrize(
    "who",
    [
        node("sidecar~10.0.0.1~web-1.alpha~alpha.svc.cluster.local", LABELS={"app": "web"}),
        node("front-envoy"),
        node("sidecar~10.0.0.1~web-1~cluster.local"),
        node("router~0.0.0.0~gw.alpha~alpha.svc.cluster.local", SERVICE_ACCOUNT="web"),
    ],
)
def test_an_accepted_node_is_the_callers_in_the_translation(who: base_pb2.Node):
    pinned = pinned_node(who, WEB)
    proxy = Proxy.from_node(pinned.id, MessageToDict(pinned.metadata))
    assert (proxy.namespace, proxy.service_account) == ("alpha", "web")
    assert proxy.view().namespace == "alpha"
    assert pinned.id == who.id and who.metadata.fields.get("NAMESPACE") is None  # a copy
    kept = {k: v for k, v in MessageToDict(who.metadata).items() if k not in ("NAMESPACE", "SERVICE_ACCOUNT")}
    assert kept.items() <= MessageToDict(pinned.metadata).items()  # the rest of the node is kept
