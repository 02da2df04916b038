"""Delegate VirtualServices merged into their roots, as Istio's ``mergeVirtualServicesIfNeeded``
(pilot/pkg/model/virtualservice.go) does when the PushContext is built.

A VirtualService without ``hosts`` is a delegate. A root's HTTP route with ``delegate: {name,
namespace}`` is replaced by the delegate's HTTP routes, each with its matches merged with the root
route's (a delegate match must be a subset of one root match, else that route is dropped) and the
root's rewrite, timeout, retries, fault, mirror, CORS policy and headers where it sets none. A
delegate that is missing, or not exported to the root's namespace, drops the root route. Shortnames
in a delegate's destinations are resolved in the delegate's namespace, as Istio resolves them per
VirtualService before merging.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TypeAlias

from pilot._gen import networking_pb2 as nw
from pilot.config.objects import ConfigObject
from pilot.translate import hosts
from pilot.translate.registry import export_set, visible

log = logging.getLogger("pilot.translate.delegate")

VirtualServiceObject: TypeAlias = ConfigObject[nw.VirtualService]

# HTTPRoute fields a delegate route inherits from its root when it does not set them (Istio's list).
_INHERITED = (
    "rewrite",
    "timeout",
    "retries",
    "fault",
    "mirror",
    "mirror_percent",
    "mirror_percentage",
    "cors_policy",
    "headers",
)
_STRING_MATCHES = ("uri", "scheme", "method", "authority")


def is_delegate(spec: nw.VirtualService) -> bool:
    return len(spec.hosts) == 0


def is_root(spec: nw.VirtualService) -> bool:
    return any(route.HasField("delegate") for route in spec.http)


def merge_virtual_services(
    objects: Iterable[VirtualServiceObject], default_export_to: frozenset[str]
) -> list[tuple[VirtualServiceObject, nw.VirtualService]]:
    """(object, spec to translate) for every VirtualService that has hosts; a root's spec is a copy
    with its delegates merged in. Delegates themselves are left out (they bind to no host)."""
    objects = list(objects)
    delegates = {(o.namespace, o.name): o for o in objects if is_delegate(o.spec)}
    out: list[tuple[VirtualServiceObject, nw.VirtualService]] = []
    for obj in objects:
        spec = obj.spec
        if is_delegate(spec):
            continue
        out.append((obj, merge_root(obj, delegates, default_export_to) if is_root(spec) else spec))
    return out


def merge_root(
    root: VirtualServiceObject,
    delegates: dict[tuple[str, str], VirtualServiceObject],
    default_export_to: frozenset[str],
) -> nw.VirtualService:
    spec = root.spec
    merged = nw.VirtualService()
    merged.CopyFrom(spec)
    del merged.http[:]
    for route in spec.http:
        if not route.HasField("delegate"):
            merged.http.add().CopyFrom(route)
            continue
        key = (route.delegate.namespace or root.namespace, route.delegate.name)
        delegate = delegates.get(key)
        if delegate is None:
            log.info("%s: delegate VirtualService %s/%s not found", root.key, *key)
            continue
        delegate_spec = delegate.spec
        exported = export_set(delegate_spec.export_to, delegate.namespace, default_export_to)
        if not visible(exported, root.namespace):
            log.info("%s: delegate %s is not exported to %s", root.key, delegate.key, root.namespace)
            continue
        for sub in delegate_spec.http:
            combined = merge_http_route(route, _resolved(sub, delegate.namespace))
            if combined is not None:
                merged.http.add().CopyFrom(combined)
    return merged


def _resolved(route: nw.HTTPRoute, namespace: str) -> nw.HTTPRoute:
    """A copy of the delegate's route with its destination shortnames resolved in ``namespace``."""
    out = nw.HTTPRoute()
    out.CopyFrom(route)
    destinations = [d.destination for d in out.route]
    if out.HasField("mirror"):
        destinations.append(out.mirror)
    destinations += [m.destination for m in out.mirrors if m.HasField("destination")]
    for destination in destinations:
        destination.host = hosts.resolve_shortname(destination.host, namespace)
    return out


def merge_http_route(root: nw.HTTPRoute, delegate: nw.HTTPRoute) -> nw.HTTPRoute | None:
    """Istio's mergeHTTPRoute on a copy of ``delegate``; None when its matches conflict with the root's."""
    matches = merge_matches(list(root.match), list(delegate.match))
    if matches is None:
        log.debug("root route %r, delegate route %r: matches conflict; dropped", root.name, delegate.name)
        return None
    out = nw.HTTPRoute()
    out.CopyFrom(delegate)
    del out.match[:]
    out.match.extend(matches)
    if not out.name:
        out.name = root.name
    elif root.name:
        out.name = f"{root.name}-{out.name}"
    for name in _INHERITED:
        if not out.HasField(name) and root.HasField(name):
            getattr(out, name).CopyFrom(getattr(root, name))
    return out


def merge_matches(
    root: list[nw.HTTPMatchRequest], delegate: list[nw.HTTPMatchRequest]
) -> list[nw.HTTPMatchRequest] | None:
    """Istio's mergeHTTPMatchRequests: every delegate match merged with each root match it does not
    conflict with; None (a conflict) when some delegate match fits no root match."""
    if not root:
        return delegate
    if not delegate:
        return root
    out: list[nw.HTTPMatchRequest] = []
    for sub in delegate:
        fitting = [r for r in root if not has_conflict(r, sub)]
        if not fitting:
            return None
        out.extend(merge_match(r, sub) for r in fitting)
    return out or None


def merge_match(root: nw.HTTPMatchRequest, delegate: nw.HTTPMatchRequest) -> nw.HTTPMatchRequest:
    """Istio's mergeHTTPMatchRequest: the delegate's match, completed by the root's."""
    out = nw.HTTPMatchRequest()
    out.CopyFrom(delegate)
    if not out.name:
        out.name = root.name
    elif root.name:
        out.name = f"{root.name}-{out.name}"
    for name in _STRING_MATCHES:
        if not out.HasField(name) and root.HasField(name):
            getattr(out, name).CopyFrom(getattr(root, name))
    for name in ("headers", "without_headers", "query_params"):
        combined = {**dict(getattr(root, name).items()), **dict(getattr(delegate, name).items())}
        target = getattr(out, name)
        target.clear()
        for key, value in combined.items():
            target[key].CopyFrom(value)
    if not out.port:
        out.port = root.port
    labels = {**dict(root.source_labels), **dict(delegate.source_labels)}
    out.source_labels.clear()
    out.source_labels.update(labels)
    if not out.source_namespace:
        out.source_namespace = root.source_namespace
    if not out.gateways:
        out.gateways.extend(root.gateways)
    return out


def has_conflict(root: nw.HTTPMatchRequest, leaf: nw.HTTPMatchRequest) -> bool:
    """Istio's hasConflict: true when ``leaf`` is not within ``root``."""
    for name in _STRING_MATCHES:
        if _string_conflict(_get(root, name), _get(leaf, name)):
            return True
    for key, value in leaf.headers.items():
        if _string_conflict(root.headers[key] if key in root.headers else None, value):
            return True
    for key, value in leaf.without_headers.items():
        if _string_conflict(root.without_headers[key] if key in root.without_headers else None, value):
            return True
    for key, value in leaf.query_params.items():
        if _string_conflict(root.query_params[key] if key in root.query_params else None, value):
            return True
    if root.ignore_uri_case != leaf.ignore_uri_case:
        return True
    if root.port and leaf.port and root.port != leaf.port:
        return True
    if root.source_namespace and leaf.source_namespace != root.source_namespace:
        return True
    if any(k in root.source_labels and root.source_labels[k] != v for k, v in leaf.source_labels.items()):
        return True
    if root.gateways and leaf.gateways:
        return not set(leaf.gateways) <= set(root.gateways)
    return False


def _get(match: nw.HTTPMatchRequest, name: str) -> nw.StringMatch | None:
    return getattr(match, name) if match.HasField(name) else None


def _string_conflict(root: nw.StringMatch | None, leaf: nw.StringMatch | None) -> bool:
    """Istio's stringMatchConflict: the leaf must be the root's exact value or under its prefix;
    regexes only combine with an unset match."""
    if root is None or leaf is None:
        return False
    root_kind, leaf_kind = root.WhichOneof("match_type"), leaf.WhichOneof("match_type")
    root_value = getattr(root, root_kind) if root_kind else ""
    leaf_value = getattr(leaf, leaf_kind) if leaf_kind else ""
    if root_kind == "regex" and root_value:
        return bool(leaf_value)
    if leaf_kind == "regex" and leaf_value:
        return bool(root_value)
    if root_kind == "exact" and root_value:
        return not (leaf_kind == "exact" and leaf_value == root_value)
    if root_kind == "prefix" and root_value:
        if leaf_kind in ("prefix", "exact") and leaf_value:
            return not leaf_value.startswith(root_value)
    return True
