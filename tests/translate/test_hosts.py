from __future__ import annotations

import pytest

from pilot.translate import hosts


@pytest.mark.parametrize(
    ("host", "namespace", "expected"),
    [
        ("reviews", "default", "reviews.default.svc.cluster.local"),
        ("reviews", "prod", "reviews.prod.svc.cluster.local"),
        ("reviews.prod", "default", "reviews.prod"),  # has a dot: taken as written
        ("httpbin.org", "default", "httpbin.org"),
        ("*", "default", "*"),
        ("*.example.com", "default", "*.example.com"),
        ("10.0.0.1", "default", "10.0.0.1"),
        ("::1", "default", "::1"),
        ("", "default", ""),
    ],
)
def test_resolve_shortname(host: str, namespace: str, expected: str) -> None:
    assert hosts.resolve_shortname(host, namespace) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("api.example.com", "api.example.com", True),
        ("*.example.com", "api.example.com", True),
        ("api.example.com", "*.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "*.api.example.com", True),
        ("*", "anything.at.all", True),
        ("*.example.com", "api.example.org", False),
        ("a.example.com", "b.example.com", False),
    ],
)
def test_matches(a: str, b: str, expected: bool) -> None:
    assert hosts.matches(a, b) is expected
    assert hosts.matches(b, a) is expected


def test_most_specific_match_prefers_exact_then_longest_wildcard() -> None:
    candidates = ["*", "*.example.com", "*.api.example.com", "v1.api.example.com"]
    assert hosts.most_specific_match("v1.api.example.com", candidates) == "v1.api.example.com"
    assert hosts.most_specific_match("v2.api.example.com", candidates) == "*.api.example.com"
    assert hosts.most_specific_match("www.example.com", candidates) == "*.example.com"
    assert hosts.most_specific_match("example.org", candidates) == "*"
    assert hosts.most_specific_match("example.org", ["*.example.com"]) is None


def test_domains_same_namespace() -> None:
    assert hosts.virtual_host_domains("reviews.default.svc.cluster.local", "default") == [
        "reviews.default.svc.cluster.local",
        "reviews",
        "reviews.default.svc",
        "reviews.default",
    ]


def test_domains_other_namespace_never_use_the_bare_name() -> None:
    assert hosts.virtual_host_domains("reviews.default.svc.cluster.local", "prod") == [
        "reviews.default.svc.cluster.local",
        "reviews.default",
        "reviews.default.svc",
    ]


def test_domains_external_host_and_addresses() -> None:
    domains = hosts.virtual_host_domains(
        "httpbin.org", "default", addresses=["240.0.0.1", "10.0.0.0/16", "::1"]
    )
    assert domains == ["httpbin.org", "240.0.0.1", "[::1]"]


def test_domains_follow_the_proxy_dns_domain() -> None:
    domains = hosts.virtual_host_domains("a.ns.svc.corp.local", "ns", dns_domain="corp.local")
    assert "a" in domains and "a.ns.svc" in domains
    assert hosts.virtual_host_domains("a.ns.svc.cluster.local", "ns", dns_domain="corp.local") == [
        "a.ns.svc.cluster.local",
    ]
