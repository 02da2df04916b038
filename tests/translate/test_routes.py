from __future__ import annotations

from envoy.config.core.v3.base_pb2 import HeaderValueOption
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.type.v3 import percent_pb2

from pilot.translate.routes import build_routes
from tests import factories as f

REVIEWS = "reviews.default.svc.cluster.local"
V1 = f"outbound|9080|v1|{REVIEWS}"
V2 = f"outbound|9080|v2|{REVIEWS}"


def route_configs(*objects, view=None):
    return dict(build_routes(view or f.sidecar(), f.push_context(*objects)))


def vhost(*objects, name=f"{REVIEWS}:9080", port="9080", view=None) -> rc.VirtualHost:
    config = route_configs(*objects, view=view)[port]
    return next(v for v in config.virtual_hosts if v.name == name)


def reviews_routes(*http, **extra) -> list[rc.Route]:
    vs = f.virtual_service("reviews", hosts=["reviews"], http=list(http), **extra)
    return list(vhost(f.http_service("reviews", port=9080), vs).routes)


def to(subset: str = "v1", **extra) -> dict:
    return {"destination": {"host": "reviews", "subset": subset}, **extra}


def test_default_route_without_virtual_service() -> None:
    config = route_configs(f.http_service("reviews", port=9080))["9080"]
    assert config.name == "9080" and config.validate_clusters.value is False
    reviews, catch_all = config.virtual_hosts
    assert reviews.name == f"{REVIEWS}:9080"
    assert list(reviews.domains) == [REVIEWS, "reviews", "reviews.default.svc", "reviews.default"]
    assert config.ignore_port_in_host_matching  # ``Host: reviews:1234`` still finds reviews
    (route,) = reviews.routes
    assert route.name == "default" and route.match.prefix == "/"
    assert route.route.cluster == f"outbound|9080||{REVIEWS}"
    assert route.route.timeout.ToSeconds() == 0 and route.route.HasField("timeout")
    policy = route.route.retry_policy
    assert policy.retry_on == "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    assert policy.num_retries.value == 2 and list(policy.retriable_status_codes) == [503]
    assert policy.host_selection_retry_max_attempts == 5
    assert [p.name for p in policy.retry_host_predicate] == ["envoy.retry_host_predicates.previous_hosts"]
    assert catch_all.name == "allow_any" and list(catch_all.domains) == ["*"]
    assert catch_all.routes[0].route.cluster == "PassthroughCluster"


def test_block_all_when_registry_only() -> None:
    config = route_configs(
        f.http_service("reviews"), f.mesh_config(outboundTrafficPolicy={"mode": "REGISTRY_ONLY"})
    )
    catch_all = config["80"].virtual_hosts[-1]
    assert catch_all.name == "block_all" and catch_all.routes[0].direct_response.status == 502


def test_weighted_route() -> None:
    (route,) = reviews_routes({"route": [to("v1", weight=80), to("v2", weight=20), to("v3", weight=0)]})
    weights = [(c.name, c.weight.value) for c in route.route.weighted_clusters.clusters]
    assert weights == [(V1, 80), (V2, 20)]
    assert route.match.prefix == "/"


def test_single_destination_ignores_weight() -> None:
    (route,) = reviews_routes({"route": [to("v2", weight=100)]})
    assert route.route.cluster == V2


def test_matches() -> None:
    routes = reviews_routes(
        {
            "name": "r",
            "match": [
                {
                    "name": "a",
                    "uri": {"exact": "/x"},
                    "headers": {"b": {"prefix": "p"}, "a": {"exact": "e"}},
                    "method": {"exact": "GET"},
                },
                {
                    "uri": {"regex": "/y/.*"},
                    "ignoreUriCase": True,
                    "authority": {"prefix": "reviews"},
                    "scheme": {"exact": "https"},
                    "headers": {"x": {"regex": "*"}},
                },
            ],
            "route": [to()],
        }
    )
    first, second = routes
    assert first.name == "r.a" and second.name == "r"
    assert first.match.path == "/x" and first.match.case_sensitive.value is True
    assert [(h.name, h.string_match.WhichOneof("match_pattern")) for h in first.match.headers] == [
        ("a", "exact"),
        ("b", "prefix"),
        (":method", "exact"),
    ]
    assert second.match.safe_regex.regex == "/y/.*" and second.match.case_sensitive.value is False
    assert [h.name for h in second.match.headers] == ["x", ":authority", ":scheme"]
    assert second.match.headers[0].present_match


def test_routes_stop_at_first_catch_all() -> None:
    routes = reviews_routes(
        {
            "match": [{"uri": {"prefix": "/a"}}, {"uri": {"prefix": "/"}}, {"uri": {"prefix": "/b"}}],
            "route": [to()],
        },
        {"route": [to("v2")]},
    )
    assert [r.match.prefix for r in routes] == ["/a", "/"]


def test_match_port_source_labels_and_gateways_decided_here() -> None:
    routes = reviews_routes(
        {
            "match": [
                {"port": 9080, "uri": {"prefix": "/port"}},
                {"port": 8080, "uri": {"prefix": "/other"}},
            ],
            "route": [to()],
        },
        {"match": [{"sourceLabels": {"app": "x"}, "uri": {"prefix": "/labels"}}], "route": [to()]},
        {"match": [{"gateways": ["istio-system/gw"], "uri": {"prefix": "/gw"}}], "route": [to()]},
        {"match": [{"gateways": ["mesh"], "uri": {"prefix": "/mesh"}}], "route": [to()]},
        {"match": [{"sourceNamespace": "default", "uri": {"prefix": "/ns"}}], "route": [to()]},
        {"match": [{"sourceNamespace": "prod", "uri": {"prefix": "/prod"}}], "route": [to()]},
    )
    assert [r.match.prefix for r in routes] == ["/port", "/mesh", "/ns"]


def test_virtual_service_for_gateways_only_is_ignored() -> None:
    (route,) = reviews_routes({"route": [to("v2")]}, gateways=["istio-system/gw"])
    assert route.name == "default"


def test_fault_timeout_rewrite_retries() -> None:
    (route,) = reviews_routes(
        {
            "fault": {
                "delay": {"fixedDelay": "5s", "percentage": {"value": 12.5}},
                "abort": {"grpcStatus": "UNAVAILABLE", "percent": 30},
            },
            "timeout": "2.5s",
            "rewrite": {"uri": "/v2", "authority": "new.example.com"},
            "retries": {"attempts": 4, "perTryTimeout": "1s", "retryOn": "5xx,429,retriable-4xx"},
            "route": [to()],
        }
    )
    fault = fault_pb2.HTTPFault()
    assert route.typed_per_filter_config["envoy.filters.http.fault"].Unpack(fault)
    assert fault.delay.fixed_delay.seconds == 5
    assert (fault.delay.percentage.numerator, fault.delay.percentage.denominator) == (
        125000,
        percent_pb2.FractionalPercent.MILLION,
    )
    assert fault.abort.grpc_status == 14
    assert (fault.abort.percentage.numerator, fault.abort.percentage.denominator) == (
        30,
        percent_pb2.FractionalPercent.HUNDRED,
    )
    action = route.route
    assert action.timeout.ToMilliseconds() == 2500
    assert action.prefix_rewrite == "/v2" and action.host_rewrite_literal == "new.example.com"
    policy = action.retry_policy
    assert policy.num_retries.value == 4 and policy.per_try_timeout.seconds == 1
    assert policy.retry_on == "5xx,retriable-4xx,retriable-status-codes"
    assert list(policy.retriable_status_codes) == [429]


def test_zero_attempts_disable_retries() -> None:
    (route,) = reviews_routes({"retries": {"attempts": 0}, "route": [to()]})
    assert not route.route.HasField("retry_policy")


def test_mesh_default_retry_policy() -> None:
    vs = f.virtual_service("reviews", hosts=["reviews"], http=[{"route": [to()]}])
    mesh = f.mesh_config(defaultHttpRetryPolicy={"attempts": 7})
    (route,) = vhost(f.http_service("reviews", port=9080), vs, mesh).routes
    assert route.route.retry_policy.num_retries.value == 7


def test_headers() -> None:
    (route,) = reviews_routes(
        {
            "headers": {
                "request": {
                    "set": {"b": "1", "a": "2", "host": "h.example.com"},
                    "add": {"c": "3"},
                    "remove": ["d", ":path"],
                },
                "response": {"add": {"e": "4"}, "remove": ["f"]},
            },
            "route": [
                to("v1", weight=50, headers={"request": {"set": {"x-v": "1"}}}),
                to("v2", weight=50, headers={"response": {"remove": ["y"]}}),
            ],
        }
    )
    overwrite, append = (
        HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
        HeaderValueOption.APPEND_IF_EXISTS_OR_ADD,
    )
    options = [(o.header.key, o.append_action) for o in route.request_headers_to_add]
    assert options == [("a", overwrite), ("b", overwrite), ("c", append)]
    assert list(route.request_headers_to_remove) == ["d"]
    assert [o.header.key for o in route.response_headers_to_add] == ["e"]
    assert list(route.response_headers_to_remove) == ["f"]
    assert route.route.host_rewrite_literal == "h.example.com"
    first, second = route.route.weighted_clusters.clusters
    assert [o.header.key for o in first.request_headers_to_add] == ["x-v"]
    assert list(second.response_headers_to_remove) == ["y"]


def test_redirect_and_direct_response() -> None:
    redirect, direct = reviews_routes(
        {
            "match": [{"uri": {"prefix": "/old"}}],
            "redirect": {
                "uri": "/new",
                "authority": "n.example.com",
                "redirectCode": 308,
                "port": 8443,
                "scheme": "https",
            },
        },
        {"directResponse": {"status": 418, "body": {"string": "teapot"}}},
    )
    assert redirect.redirect.path_redirect == "/new" and redirect.redirect.host_redirect == "n.example.com"
    assert redirect.redirect.response_code == rc.RedirectAction.PERMANENT_REDIRECT
    assert redirect.redirect.port_redirect == 8443 and redirect.redirect.scheme_redirect == "https"
    assert direct.direct_response.status == 418 and direct.direct_response.body.inline_string == "teapot"


def test_destination_port_resolution() -> None:
    multi = f.service_entry(
        "multi",
        hosts=["multi.example.com"],
        resolution="STATIC",
        ports=[{"number": 80, "name": "http"}, {"number": 81, "name": "http-b"}],
    )
    single = f.http_service("single", port=7000)
    vs = f.virtual_service(
        "r",
        hosts=["reviews"],
        http=[
            {"match": [{"uri": {"prefix": "/a"}}], "route": [{"destination": {"host": "single"}}]},
            {"match": [{"uri": {"prefix": "/b"}}], "route": [{"destination": {"host": "multi.example.com"}}]},
            {
                "match": [{"uri": {"prefix": "/c"}}],
                "route": [{"destination": {"host": "single", "port": {"number": 1}}}],
            },
        ],
    )
    routes = vhost(f.http_service("reviews", port=9080), multi, single, vs).routes
    assert [r.route.cluster for r in routes] == [
        "outbound|7000||single.default.svc.cluster.local",
        "outbound|9080||multi.example.com",
        "outbound|1||single.default.svc.cluster.local",
    ]


def test_wildcard_virtual_service_host() -> None:
    vs = f.virtual_service(
        "wild", hosts=["*.example.com"], http=[{"route": [{"destination": {"host": "a.example.com"}}]}]
    )
    se = f.service_entry(
        "a", hosts=["a.example.com"], resolution="DNS", ports=[{"number": 80, "name": "http"}]
    )
    (route,) = vhost(se, vs, name="a.example.com:80", port="80").routes
    assert route.route.cluster == "outbound|80||a.example.com"


def test_virtual_service_export_to() -> None:
    vs = f.virtual_service("reviews", hosts=["reviews"], exportTo=["."], http=[{"route": [to("v2")]}])
    service = f.http_service("reviews", port=9080)
    assert vhost(service, vs).routes[0].route.cluster == V2
    other = vhost(service, vs, view=f.sidecar("other"))
    assert other.routes[0].name == "default"
    assert "reviews" not in other.domains and "reviews.default" in other.domains


def test_domains_are_never_duplicated_across_virtual_hosts() -> None:
    a = f.service_entry("a", hosts=["reviews.default"], ports=[{"number": 9080, "name": "http"}])
    config = route_configs(f.http_service("reviews", port=9080), a)["9080"]
    domains = [d for v in config.virtual_hosts for d in v.domains]
    assert len(domains) == len(set(domains))
    by_name = {v.name: list(v.domains) for v in config.virtual_hosts}
    assert by_name["reviews.default:9080"] == ["reviews.default"]
    assert "reviews.default" not in by_name[f"{REVIEWS}:9080"]


def test_tcp_services_get_no_virtual_host_and_routers_no_routes() -> None:
    assert route_configs(f.http_service("db", port=3306, protocol="TCP")) == {}
    assert route_configs(f.http_service("reviews"), view=f.router()) == {}


def test_consistent_hash_adds_hash_policy() -> None:
    rule = f.destination_rule(
        "reviews",
        host="reviews",
        trafficPolicy={"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}},
        subsets=[
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v2", "trafficPolicy": {"loadBalancer": {"consistentHash": {"useSourceIp": True}}}},
        ],
    )
    service = f.http_service("reviews", port=9080)
    (default,) = vhost(service, rule).routes
    assert [h.header.header_name for h in default.route.hash_policy] == ["x-user"]
    assert default.route.retry_policy.retry_host_predicate  # Istio keeps it on the default route
    vs = f.virtual_service(
        "reviews",
        hosts=["reviews"],
        http=[
            {"match": [{"uri": {"prefix": "/one"}}], "route": [to("v2")]},
            {"route": [to("v1", weight=50), to("v2", weight=50)]},
        ],
    )
    single, weighted = vhost(service, rule, vs).routes
    assert [h.connection_properties.source_ip for h in single.route.hash_policy] == [True]
    assert not single.route.retry_policy.retry_host_predicate  # retries stay on the hashed host
    assert [h.WhichOneof("policy_specifier") for h in weighted.route.hash_policy] == [
        "header",
        "connection_properties",
    ]
    assert weighted.route.retry_policy.retry_host_predicate
