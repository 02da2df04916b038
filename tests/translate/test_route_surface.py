"""HTTP route features beyond matches and destinations: mirroring, CORS, gRPC timeouts and retries,
redirect ports, query and header matches, delegate VirtualServices."""

from __future__ import annotations

import dataclasses

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.type.v3 import percent_pb2

from pilot.config.gateway_api.convert import GATEWAY_SEMANTICS, ROUTE_SEMANTICS
from pilot.translate.routes import build_routes
from tests import factories as f

REVIEWS = "reviews.default.svc.cluster.local"
V1 = f"outbound|9080|v1|{REVIEWS}"
V2 = f"outbound|9080|v2|{REVIEWS}"
MILLION = percent_pb2.FractionalPercent.MILLION
HUNDRED = percent_pb2.FractionalPercent.HUNDRED


def vhost_routes(*objects, host: str = REVIEWS, port: int = 9080, view=None) -> list[rc.Route]:
    configs = dict(build_routes(view or f.sidecar(), f.push_context(*objects)))
    vhost = next(v for v in configs[str(port)].virtual_hosts if v.name == f"{host}:{port}")
    return list(vhost.routes)


def reviews_routes(*http, **extra) -> list[rc.Route]:
    vs = f.virtual_service("reviews", hosts=["reviews"], http=list(http), **extra)
    return vhost_routes(f.http_service("reviews", port=9080), vs)


def to(subset: str = "v1", **extra) -> dict:
    return {"destination": {"host": "reviews", "subset": subset}, **extra}


def fraction(policy: rc.RouteAction.RequestMirrorPolicy) -> tuple[int, int]:
    value = policy.runtime_fraction.default_value
    return value.numerator, value.denominator


def test_mirror_percentages() -> None:
    (default,) = reviews_routes({"route": [to()], "mirror": {"host": "reviews", "subset": "v2"}})
    (policy,) = default.route.request_mirror_policies
    assert policy.cluster == V2 and fraction(policy) == (100, HUNDRED)
    assert policy.HasField("trace_sampled") and not policy.trace_sampled.value
    (exact,) = reviews_routes(
        {"route": [to()], "mirror": {"host": "reviews"}, "mirrorPercentage": {"value": 12.5}}
    )
    assert [fraction(p) for p in exact.route.request_mirror_policies] == [(125000, MILLION)]
    assert exact.route.request_mirror_policies[0].cluster == f"outbound|9080||{REVIEWS}"
    (legacy,) = reviews_routes({"route": [to()], "mirror": {"host": "reviews"}, "mirrorPercent": 30})
    assert [fraction(p) for p in legacy.route.request_mirror_policies] == [(30, HUNDRED)]
    (off,) = reviews_routes(
        {"route": [to()], "mirror": {"host": "reviews"}, "mirrorPercentage": {"value": 0}}
    )
    assert not off.route.request_mirror_policies


def test_mirrors_list() -> None:
    (route,) = reviews_routes(
        {
            "route": [to()],
            "mirrors": [
                {"destination": {"host": "reviews", "subset": "v2"}, "percentage": {"value": 50}},
                {"destination": {"host": "other.example.com", "port": {"number": 8080}}},
                {"destination": {"host": "reviews"}, "percentage": {"value": 0}},
            ],
        }
    )
    policies = route.route.request_mirror_policies
    assert [(p.cluster, fraction(p)) for p in policies] == [
        (V2, (500000, MILLION)),
        ("outbound|8080||other.example.com", (100, HUNDRED)),
    ]


def test_cors_policy_per_route() -> None:
    (route,) = reviews_routes(
        {
            "route": [to()],
            "corsPolicy": {
                "allowOrigins": [
                    {"exact": "https://a.com"},
                    {"prefix": "https://b."},
                    {"regex": ".*\\.c\\.com"},
                ],
                "allowMethods": ["GET", "POST"],
                "allowHeaders": ["x-a", "x-b"],
                "exposeHeaders": ["x-c"],
                "maxAge": "86400s",
                "allowCredentials": False,
                "unmatchedPreflights": "IGNORE",
            },
        }
    )
    policy = cors_pb2.CorsPolicy()
    assert route.typed_per_filter_config["envoy.filters.http.cors"].Unpack(policy)
    origins = [m.WhichOneof("match_pattern") for m in policy.allow_origin_string_match]
    assert origins == ["exact", "prefix", "safe_regex"]
    assert (policy.allow_methods, policy.allow_headers, policy.expose_headers) == (
        "GET,POST",
        "x-a,x-b",
        "x-c",
    )
    assert policy.max_age == "86400"
    assert policy.HasField("allow_credentials") and not policy.allow_credentials.value
    assert policy.forward_not_matching_preflights.value is False
    assert policy.filter_enabled.default_value.numerator == 100


def test_cors_legacy_allow_origin_and_forwarded_preflights() -> None:
    (route,) = reviews_routes({"route": [to()], "corsPolicy": {"allowOrigin": ["https://a.com", "*"]}})
    policy = cors_pb2.CorsPolicy()
    route.typed_per_filter_config["envoy.filters.http.cors"].Unpack(policy)
    assert [m.exact for m in policy.allow_origin_string_match] == ["https://a.com", "*"]
    assert policy.forward_not_matching_preflights.value is True
    assert not policy.HasField("allow_credentials") and not policy.max_age


def test_grpc_timeout_follows_route_timeout() -> None:
    timed, untimed = reviews_routes(
        {"match": [{"uri": {"prefix": "/a"}}], "timeout": "3s", "route": [to()]}, {"route": [to()]}
    )
    limits = timed.route.max_stream_duration
    assert timed.route.timeout.seconds == limits.max_stream_duration.seconds == 3
    assert limits.grpc_timeout_header_max.seconds == 3
    assert not timed.route.HasField("max_grpc_timeout")  # deprecated in Envoy
    untimed_limits = untimed.route.max_stream_duration
    assert (
        untimed_limits.HasField("grpc_timeout_header_max")
        and untimed_limits.grpc_timeout_header_max.seconds == 0
    )


def test_retry_on_grpc_statuses_and_codes() -> None:
    (route,) = reviews_routes(
        {
            "route": [to()],
            "retries": {"attempts": 4, "retryOn": "cancelled,deadline-exceeded,resource-exhausted,503"},
        }
    )
    policy = route.route.retry_policy
    assert policy.retry_on == "cancelled,deadline-exceeded,resource-exhausted,retriable-status-codes"
    assert list(policy.retriable_status_codes) == [503] and policy.num_retries.value == 4
    (remote,) = reviews_routes({"route": [to()], "retries": {"attempts": 1, "retryRemoteLocalities": True}})
    assert remote.route.retry_policy.retry_priority.name == "envoy.retry_priorities.previous_priorities"


def test_redirect_ports() -> None:
    derived, explicit, default_port = reviews_routes(
        {"match": [{"uri": {"exact": "/a"}}], "redirect": {"uri": "/b", "derivePort": "FROM_REQUEST_PORT"}},
        {
            "match": [{"uri": {"exact": "/c"}}],
            "redirect": {"authority": "x", "port": 8443, "scheme": "https"},
        },
        {
            "match": [{"uri": {"exact": "/d"}}],
            "redirect": {"authority": "y", "port": 80, "redirectCode": 308},
        },
    )
    assert derived.redirect.port_redirect == 9080 and derived.redirect.path_redirect == "/b"
    assert (explicit.redirect.port_redirect, explicit.redirect.scheme_redirect) == (8443, "https")
    assert default_port.redirect.port_redirect == 0  # :80 is http's own port
    assert default_port.redirect.response_code == rc.RedirectAction.PERMANENT_REDIRECT


def test_a_prefix_redirect_only_with_the_gateway_api_semantics() -> None:
    http = {"match": [{"uri": {"prefix": "/a/"}}], "redirect": {"uri": "%PREFIX()%/b/"}}
    vs = f.virtual_service("reviews", hosts=["reviews"], http=[http])
    converted = dataclasses.replace(vs, annotations=((ROUTE_SEMANTICS, GATEWAY_SEMANTICS),))
    (prefix,) = vhost_routes(f.http_service("reviews", port=9080), converted)
    assert prefix.redirect.prefix_rewrite == "/b/" and not prefix.redirect.path_redirect
    (literal,) = vhost_routes(f.http_service("reviews", port=9080), vs)  # istiod keeps it verbatim
    assert literal.redirect.path_redirect == "%PREFIX()%/b/" and not literal.redirect.prefix_rewrite


def test_query_params_and_without_headers() -> None:
    (route,) = reviews_routes(
        {
            "match": [
                {
                    "queryParams": {"b": {"exact": "1"}, "a": {"regex": "*"}, "c": {"prefix": "x"}},
                    "withoutHeaders": {"x-skip": {}, "x-env": {"exact": "prod"}},
                }
            ],
            "route": [to()],
        }
    )
    params = [(q.name, q.WhichOneof("query_parameter_match_specifier")) for q in route.match.query_parameters]
    assert params == [("a", "present_match"), ("b", "string_match"), ("c", "string_match")]
    env, skip = route.match.headers
    assert (env.name, env.invert_match, env.treat_missing_header_as_empty) == ("x-env", True, True)
    assert (skip.name, skip.invert_match, skip.present_match, skip.treat_missing_header_as_empty) == (
        "x-skip",
        True,
        True,
        False,
    )


def test_source_namespace_match() -> None:
    routes = reviews_routes(
        {"match": [{"sourceNamespace": "other"}], "route": [to("v2")]},
        {"match": [{"sourceNamespace": "default", "uri": {"prefix": "/x"}}], "route": [to("v1")]},
    )
    assert [r.route.cluster for r in routes] == [V1]


def test_delegate_routes_are_merged_into_the_root() -> None:
    root = f.virtual_service(
        "root",
        hosts=["reviews"],
        http=[
            {
                "name": "r",
                "match": [{"uri": {"prefix": "/api"}, "headers": {"x-a": {"exact": "1"}}}],
                "timeout": "5s",
                "delegate": {"name": "api", "namespace": "team"},
            },
            {"match": [{"uri": {"prefix": "/gone"}}], "delegate": {"name": "missing"}},
            {"route": [to("v2")]},
        ],
    )
    delegate = f.virtual_service(
        "api",
        "team",
        http=[
            {
                "name": "d",
                "match": [{"uri": {"prefix": "/api/v1"}}],
                "route": [{"destination": {"host": "svc"}}],
            },
            {"match": [{"uri": {"prefix": "/other"}}], "route": [{"destination": {"host": "svc"}}]},
            {"route": [{"destination": {"host": "reviews.default.svc.cluster.local", "subset": "v1"}}]},
        ],
    )
    svc = f.http_service("svc", "team", port=9080)
    routes = vhost_routes(f.http_service("reviews", port=9080), svc, root, delegate)
    first, catch_all_of_delegate, last = routes
    # /api/v1 is under /api: merged (names joined, the root's header match and timeout kept); /other
    # conflicts with /api and is dropped; the missing delegate drops its root route.
    assert first.name == "r-d" and first.match.prefix == "/api/v1"
    assert [h.name for h in first.match.headers] == ["x-a"]
    assert first.route.cluster == "outbound|9080||svc.team.svc.cluster.local"  # resolved in "team"
    assert first.route.timeout.seconds == 5
    assert catch_all_of_delegate.match.prefix == "/api" and catch_all_of_delegate.route.cluster == V1
    assert last.route.cluster == V2


def test_delegate_not_exported_to_the_root_is_ignored() -> None:
    root = f.virtual_service("root", hosts=["reviews"], http=[{"delegate": {"name": "d", "namespace": "t"}}])
    hidden = f.virtual_service("d", "t", exportTo=["."], http=[{"route": [to("v2")]}])
    (route,) = vhost_routes(f.http_service("reviews", port=9080), root, hidden)
    assert route.name == "default"  # the root VirtualService yields no route: the default one is used


def test_jwt_claims_match_authentication_metadata() -> None:
    (route,) = reviews_routes(
        {
            "match": [
                {
                    "headers": {"@request.auth.claims.group": {"exact": "admin"}, "x": {"exact": "1"}},
                    "withoutHeaders": {"@request.auth.claims[org][id]": {"prefix": "ext-"}},
                }
            ],
            "route": [to()],
        }
    )
    assert [h.name for h in route.match.headers] == ["x"]
    group, org = route.match.dynamic_metadata
    assert group.filter == "istio_authn" and not group.invert
    assert [p.key for p in group.path] == ["request.auth.claims", "group"]
    assert group.value.list_match.one_of.string_match.exact == "admin"
    assert [p.key for p in org.path] == ["request.auth.claims", "org", "id"] and org.invert
