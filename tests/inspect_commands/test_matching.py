"""Envoy's matching rules as ``pilot explain`` applies them, and istioctl's cells, on small dumps."""

from __future__ import annotations

import pytest

from pilot.inspect import config_dump
from pilot.inspect.request_matching import (
    Request,
    header_matches,
    pick_virtual_host,
    route_matches,
    without_port,
)


def test_a_request_line_gives_method_authority_path_and_headers():
    request = Request.parse("POST http://reviews:9080/api?x=1 -H End-User:jason")
    assert (request.method, request.host, request.port, request.path) == ("POST", "reviews", 9080, "/api")
    assert request.query == {"x": "1"}
    assert request.headers["end-user"] == "jason" and request.authority == "reviews:9080"
    assert Request.parse("reviews.default").port == 80
    with pytest.raises(ValueError, match="-H needs"):
        Request.parse("http://a/ -H nocolon")


HOSTS = [
    {"name": "star", "domains": ["*"]},
    {"name": "prefix", "domains": ["rev*"]},
    {"name": "short-suffix", "domains": ["*.com"]},
    {"name": "long-suffix", "domains": ["*.example.com"]},
    {"name": "exact", "domains": ["reviews:9080", "reviews"]},
]


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("reviews:9080", "exact"),
        ("a.example.com", "long-suffix"),
        ("b.other.com", "short-suffix"),
        ("revolver", "prefix"),
        ("ratings", "star"),
    ],
)
def test_virtual_hosts_are_picked_in_envoys_order(authority: str, expected: str):
    picked = pick_virtual_host(HOSTS, authority)
    assert picked is not None and picked[0]["name"] == expected


def test_route_matches_path_headers_and_query():
    request = Request.parse("http://r/api/v1?debug=1 -H end-user:jason")
    assert route_matches({"prefix": "/api"}, request)
    assert not route_matches({"path": "/api"}, request)
    assert route_matches({"safe_regex": {"regex": "/api/v[0-9]"}}, request)
    assert route_matches({"path_separated_prefix": "/api"}, request)
    assert not route_matches({"prefix": "/API"}, request)
    assert route_matches({"prefix": "/API", "case_sensitive": False}, request)
    jason = {"name": "end-user", "string_match": {"exact": "jason"}}
    assert route_matches({"prefix": "/", "headers": [jason]}, request)
    assert not route_matches({"prefix": "/", "headers": [{**jason, "invert_match": True}]}, request)
    assert not header_matches({"name": "x-missing", "present_match": True}, request.headers)
    assert header_matches({"name": ":method", "string_match": {"exact": "GET"}}, request.headers)
    query = {"name": "debug", "string_match": {"exact": "1"}}
    assert route_matches({"prefix": "/", "query_parameters": [query]}, request)
    assert not route_matches(
        {"prefix": "/", "query_parameters": [{**query, "string_match": {"exact": "2"}}]}, request
    )


def test_istioctl_cells():
    assert config_dump.parse_subset_key("outbound|9080|v1|reviews.default.svc.cluster.local") == (
        "outbound",
        "9080",
        "v1",
        "reviews.default.svc.cluster.local",
    )
    assert config_dump.parse_subset_key("PassthroughCluster") is None
    domains = [
        "reviews.default.svc.cluster.local",
        "reviews",
        "reviews:9080",
        "reviews.default.svc",
        "reviews.default",
    ]
    assert config_dump.describe_domains(domains) == "reviews, reviews.default"
    assert (
        config_dump.describe_match({"destination_port": 443, "server_names": ["a.com"]})
        == "SNI: a.com; Addr: *:443"
    )
    metadata = {
        "filter_metadata": {
            "istio": {"config": "/apis/networking.istio.io/v1/namespaces/ns/virtual-service/vs"}
        }
    }
    assert config_dump.describe_management(metadata) == "vs.ns"


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("reviews:9080", "reviews"),
        ("reviews", "reviews"),
        ("[::1]:80", "[::1]"),
        ("[::1]", "[::1]"),
        ("::1", "::1"),
    ],
)
def test_without_port(authority: str, expected: str) -> None:
    assert without_port(authority) == expected
