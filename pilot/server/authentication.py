"""Who is calling on the secure xDS port, and which node they may be.

istiod authenticates every ADS stream on 15012 (pilot/pkg/xds/authentication.go ``authenticate``)
and then checks that the node's namespace and service account are the caller's
(``checkConnectionIdentity``: the proxy's ConfigNamespace and SERVICE_ACCOUNT metadata against the
SPIFFE ids the caller proved). pilot's secure port is server-authenticated TLS (Python grpc cannot
ask for a client certificate without requiring one), so the caller proves its identity the way
Istio's KubeJWTAuthenticator path and its agent's XDS proxy do: ``authorization: Bearer <token>``
metadata on the call (security/pkg/server/ca/authenticate/kubeauth/kube_jwt.go).

Fail-closed: a stream on a port that authenticates opens only when the token proves a service
account *and* every namespace the node claims (its id's ``POD.NS`` and ``NS.svc`` parts, its
NAMESPACE metadata) and the service account it claims (SERVICE_ACCOUNT metadata) are the caller's.
The node the server hands on is then pinned to the caller (NAMESPACE and SERVICE_ACCOUNT metadata
set to the authenticated ones), so the proxy's view is built for the authenticated namespace even
when the node claimed none.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from envoy.config.core.v3 import base_pb2
from prometheus_client import Counter

from pilot.metrics import REGISTRY

__all__ = [
    "AuthenticatedCaller",
    "CallerAuthenticator",
    "Metadata",
    "NodeIdentityError",
    "auth_failures",
    "claimed_identity",
    "pinned_node",
]

# gRPC invocation metadata: (key, value) pairs, binary values as bytes.
Metadata = Iterable[tuple[str, str | bytes]] | None

auth_failures = Counter(
    "pilot_xds_auth_failures",
    "ADS streams refused on the secure port, by reason: unauthenticated (no, malformed, expired, "
    "foreign or wrong-audience token) or permission_denied (the node claims another namespace or "
    "service account than its token's).",
    ["reason"],
    registry=REGISTRY,
)


class AuthenticatedCaller(Protocol):
    """What an authenticator proves: a Kubernetes service account (pilot.ca.identity.ServiceAccount
    is one)."""

    @property
    def namespace(self) -> str: ...

    @property
    def name(self) -> str: ...


class CallerAuthenticator(Protocol):
    """Turns a call's metadata (its ``authorization: Bearer <token>``) into the caller's service
    account (pilot.ca.bearer.BearerAuthenticator is one)."""

    async def authenticate_metadata(self, metadata: Metadata) -> AuthenticatedCaller:
        """The caller; AuthenticationError with the reason when the metadata proves none."""
        ...


class NodeIdentityError(Exception):
    """The node claims an identity its token does not prove; the message says which."""


def claimed_identity(node: base_pb2.Node) -> tuple[set[str], set[str]]:
    """(namespaces, service accounts) ``node`` claims: the ``POD.NS`` and ``NS.svc.DOMAIN`` parts of
    an Istio node id (``TYPE~IP~POD.NS~NS.svc.DOMAIN``), its NAMESPACE and SERVICE_ACCOUNT metadata.
    A plain node id claims nothing."""
    namespaces: set[str] = set()
    accounts: set[str] = set()
    parts = node.id.split("~")
    if len(parts) == 4:
        # Read as pilot.translate.proxy.Proxy.from_node reads them: POD.NS, and NS before ".svc.".
        _, _, pod_namespace = parts[2].partition(".")
        domain_namespace, svc, _ = parts[3].partition(".svc.")
        namespaces.update(ns for ns in (pod_namespace, domain_namespace if svc else "") if ns)
    fields = node.metadata.fields
    for key, into in (("NAMESPACE", namespaces), ("SERVICE_ACCOUNT", accounts)):
        value = fields.get(key)
        if value is not None:
            # Any non-empty value claims something; a non-string one is never the caller's.
            text = value.string_value if value.WhichOneof("kind") == "string_value" else repr(value)
            if text:
                into.add(text)
    return namespaces, accounts


def pinned_node(node: base_pb2.Node, caller: AuthenticatedCaller) -> base_pb2.Node:
    """``node`` checked against ``caller`` and pinned to it: NodeIdentityError when the node claims
    another namespace or service account (Istio's checkConnectionIdentity), else a copy whose
    NAMESPACE and SERVICE_ACCOUNT metadata are the caller's, so the view is the caller's namespace."""
    namespaces, accounts = claimed_identity(node)
    others = sorted(namespaces - {caller.namespace})
    if others:
        raise NodeIdentityError(
            f"node {node.id[:128]!r} claims namespace {', '.join(others)} but the token is for "
            f"service account {caller.namespace}/{caller.name}"
        )
    other_accounts = sorted(accounts - {caller.name})
    if other_accounts:
        raise NodeIdentityError(
            f"node {node.id[:128]!r} claims service account {', '.join(other_accounts)} but the token is "
            f"for service account {caller.namespace}/{caller.name}"
        )
    pinned = base_pb2.Node()
    pinned.CopyFrom(node)
    pinned.metadata.fields["NAMESPACE"].string_value = caller.namespace
    pinned.metadata.fields["SERVICE_ACCOUNT"].string_value = caller.name
    return pinned
