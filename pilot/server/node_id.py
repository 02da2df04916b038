"""Which node ids a stream may carry: Istio's form, or a plain safe name; never hostile input.

istiod parses ``TYPE~IP~POD.NS~NS.svc.DOMAIN`` and refuses any other id with InvalidArgument
(`ParseServiceNodeWithMetadata`, https://github.com/istio/istio/blob/master/pilot/pkg/model/context.go).
pilot also serves plain ids (``front-envoy``: a sidecar in ``default``, see
:meth:`pilot.translate.proxy.Proxy.from_node`), so a plain id made of DNS-safe characters is
accepted. A node id is logged, shown in /debug/syncz and kept per stream, so its length is bounded
and control characters, ``/`` and ``..`` are refused outright.
"""

from __future__ import annotations

import ipaddress
import re

from pilot.errors import XdsProtocolError

__all__ = ["MAX_NODE_ID_BYTES", "NODE_TYPES", "InvalidNodeIdError", "check_node_id"]

MAX_NODE_ID_BYTES = 1024
# The proxy types pilot builds config for (Istio also knows waypoint, ztunnel, agentgateway).
NODE_TYPES = frozenset({"sidecar", "router"})

_PLAIN = re.compile(r"[A-Za-z0-9._-]{1,253}")
# RFC 1123 label and subdomain, as Kubernetes names pods, namespaces and DNS domains.
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SHOWN = 64  # characters of a refused id quoted back in the error


class InvalidNodeIdError(XdsProtocolError):
    """A node id pilot refuses; the message says why (it goes back to the proxy)."""


def check_node_id(node_id: str) -> None:
    """Raise :class:`InvalidNodeIdError` unless ``node_id`` is Istio's 4-part form or a plain safe
    name (``[A-Za-z0-9._-]{1,253}`` without ``..``)."""
    size = len(node_id.encode("utf-8", "surrogatepass"))
    if size > MAX_NODE_ID_BYTES:
        raise InvalidNodeIdError(f"node id is {size} bytes, more than {MAX_NODE_ID_BYTES}")
    if not node_id.isprintable() or any(c.isspace() for c in node_id):
        raise InvalidNodeIdError(f"node id {_quoted(node_id)} holds control or space characters")
    if "/" in node_id or "\\" in node_id or ".." in node_id:
        raise InvalidNodeIdError(f"node id {_quoted(node_id)} holds a path ('/', '\\' or '..')")
    if "~" not in node_id:
        if not _PLAIN.fullmatch(node_id):
            raise InvalidNodeIdError(
                f"node id {_quoted(node_id)} is neither TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.DOMAIN "
                "nor a plain name of letters, digits, '.', '_' and '-' (at most 253)"
            )
        return
    parts = node_id.split("~")
    if len(parts) != 4:
        raise InvalidNodeIdError(
            f"node id {_quoted(node_id)} has {len(parts)} '~' parts, not 4 (TYPE~IP~POD.NAMESPACE~DOMAIN)"
        )
    node_type, ip, pod, domain = parts
    if node_type not in NODE_TYPES:
        raise InvalidNodeIdError(
            f"node id {_quoted(node_id)}: type {node_type!r} is not one of sidecar, router"
        )
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidNodeIdError(f"node id {_quoted(node_id)}: {ip!r} is not an IP address") from None
    if not _is_dns_names(pod, max_len=253):
        raise InvalidNodeIdError(
            f"node id {_quoted(node_id)}: {pod!r} is not POD.NAMESPACE (DNS-1123 labels)"
        )
    if not _is_dns_names(domain, max_len=253):
        raise InvalidNodeIdError(f"node id {_quoted(node_id)}: {domain!r} is not a DNS-1123 domain")


def _is_dns_names(text: str, *, max_len: int) -> bool:
    return 0 < len(text) <= max_len and all(_LABEL.fullmatch(label) for label in text.split("."))


def _quoted(node_id: str) -> str:
    """The id as the error quotes it: printable, and cut (the proxy sent it; it may be huge)."""
    shown = ascii(node_id[:_SHOWN])
    return shown if len(node_id) <= _SHOWN else f"{shown}... ({len(node_id)} characters)"
