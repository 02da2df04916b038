"""Delegate VirtualService merging (Istio's mergeVirtualServicesIfNeeded), on specs."""

from __future__ import annotations

from google.protobuf import json_format

from pilot._gen import networking_pb2 as nw
from pilot.translate import delegate
from tests import factories as f


def match(**spec) -> nw.HTTPMatchRequest:
    return json_format.ParseDict(spec, nw.HTTPMatchRequest())


def route(**spec) -> nw.HTTPRoute:
    return json_format.ParseDict(spec, nw.HTTPRoute())


def test_string_match_conflicts() -> None:
    def conflict(root: dict, leaf: dict) -> bool:
        return delegate.has_conflict(match(uri=root), match(uri=leaf))

    assert not conflict({"prefix": "/a"}, {"prefix": "/a/b"})
    assert conflict({"prefix": "/a/b"}, {"prefix": "/a"})
    assert not conflict({"prefix": "/a"}, {"exact": "/a/x"})
    assert not conflict({"exact": "/a"}, {"exact": "/a"})
    assert conflict({"exact": "/a"}, {"prefix": "/a"})
    assert conflict({"regex": "/a.*"}, {"prefix": "/a"})
    assert conflict({"prefix": "/a"}, {"regex": "/a.*"})
    assert not delegate.has_conflict(match(uri={"regex": "/a.*"}), match())


def test_other_match_conflicts() -> None:
    assert delegate.has_conflict(match(headers={"x": {"exact": "1"}}), match(headers={"x": {"exact": "2"}}))
    assert not delegate.has_conflict(
        match(headers={"x": {"exact": "1"}}), match(headers={"y": {"exact": "2"}})
    )
    assert delegate.has_conflict(match(ignoreUriCase=True), match())
    assert delegate.has_conflict(match(port=80), match(port=81))
    assert delegate.has_conflict(match(sourceNamespace="a"), match(sourceNamespace="b"))
    assert delegate.has_conflict(match(gateways=["a"]), match(gateways=["a", "b"]))
    assert not delegate.has_conflict(match(gateways=["a", "b"]), match(gateways=["b"]))


def test_merged_match_completes_the_delegate_with_the_root() -> None:
    root = match(
        name="r", uri={"prefix": "/api"}, method={"exact": "GET"}, headers={"a": {"exact": "1"}}, port=80
    )
    leaf = match(name="l", uri={"prefix": "/api/v1"}, headers={"b": {"exact": "2"}}, queryParams={"q": {}})
    merged = delegate.merge_match(root, leaf)
    assert merged.name == "r-l" and merged.uri.prefix == "/api/v1" and merged.method.exact == "GET"
    assert sorted(merged.headers) == ["a", "b"] and list(merged.query_params) == ["q"] and merged.port == 80


def test_merge_matches_each_delegate_match_needs_a_root_match() -> None:
    roots = [match(uri={"prefix": "/a"}), match(uri={"prefix": "/b"})]
    merged = delegate.merge_matches(roots, [match(uri={"prefix": "/b/1"})])
    assert merged is not None and [m.uri.prefix for m in merged] == ["/b/1"]
    assert delegate.merge_matches(roots, [match(uri={"prefix": "/b/1"}), match(uri={"prefix": "/c"})]) is None
    everything = delegate.merge_matches(roots, [])
    assert everything is not None and [m.uri.prefix for m in everything] == ["/a", "/b"]


def test_merged_route_inherits_what_the_delegate_leaves_unset() -> None:
    root = route(name="root", timeout="5s", retries={"attempts": 1}, corsPolicy={"allowMethods": ["GET"]})
    leaf = route(name="leaf", timeout="1s", route=[{"destination": {"host": "x"}}])
    merged = delegate.merge_http_route(root, leaf)
    assert merged is not None and merged.name == "root-leaf"
    assert merged.timeout.seconds == 1 and merged.retries.attempts == 1
    assert list(merged.cors_policy.allow_methods) == ["GET"]
    assert not leaf.HasField("retries"), "the delegate itself is never changed"


def test_delegates_leave_the_context_and_roots_are_merged() -> None:
    root = f.virtual_service("root", hosts=["a"], http=[{"delegate": {"name": "d"}}])
    child = f.virtual_service("d", http=[{"route": [{"destination": {"host": "b"}}]}])
    plain = f.virtual_service("plain", hosts=["c"], http=[{"route": [{"destination": {"host": "c"}}]}])
    context = f.push_context(root, child, plain)
    by_name = {vs.key.name: vs for vs in context.virtual_services}
    assert sorted(by_name) == ["plain", "root"]
    (merged,) = by_name["root"].spec.http
    assert merged.route[0].destination.host == "b.default.svc.cluster.local"
    assert by_name["plain"].spec is plain.spec
