"""Who a proxy is: its node metadata, its service targets and the view it shares with others."""

from __future__ import annotations

import time

from pilot.config.objects import ConfigObject, ParseResult
from pilot.config.store import ConfigStore
from pilot.translate.clusters import build_clusters
from pilot.translate.context import PushContext
from pilot.translate.proxy import InterceptionMode, NodeType, Proxy
from pilot.translate.snapshot import build_snapshot
from pilot.translate.targets import ServiceTarget
from pilot.translate.views import same_views, service_targets, view_of
from pilot.xds import types
from tests import factories as f

REVIEWS = "reviews.default.svc.cluster.local"


def sidecar_at(ip: str, namespace: str = "default", **labels: str) -> Proxy:
    return Proxy.from_node(
        f"sidecar~{ip}~pod-{ip.replace('.', '-')}.{namespace}~{namespace}.svc.cluster.local",
        {"LABELS": dict(labels)},
    )


# -- node metadata ----------------------------------------------------------------------------------


def test_node_metadata_is_read_under_istios_keys() -> None:
    proxy = Proxy.from_node(
        "sidecar~10.0.0.7~ratings-1.shop~shop.svc.cluster.local",
        {
            "LABELS": {"app": "ratings", "version": "v1"},
            "STATIC_LABELS": {"version": "v2", "zone": "a"},
            "NAMESPACE": "shop",
            "SERVICE_ACCOUNT": "ratings-sa",
            "WORKLOAD_NAME": "ratings",
            "INTERCEPTION_MODE": "redirect",
            "ISTIO_VERSION": "1.24.0",
            "CLUSTER_ID": "Kubernetes",
        },
    )
    assert proxy.labels == {"app": "ratings", "version": "v2", "zone": "a"}  # STATIC_LABELS win
    assert (proxy.namespace, proxy.service_account, proxy.workload_name) == ("shop", "ratings-sa", "ratings")
    assert proxy.interception_mode is InterceptionMode.REDIRECT
    assert (proxy.istio_version, proxy.cluster_id, proxy.ip) == ("1.24.0", "Kubernetes", "10.0.0.7")


def test_missing_interception_mode_is_none_unlike_istio() -> None:
    proxy = Proxy.from_node("sidecar~10.0.0.7~a.default~default.svc.cluster.local", {})
    assert proxy.interception_mode is InterceptionMode.NONE
    assert (proxy.service_account, proxy.labels) == ("", {})


# -- service targets --------------------------------------------------------------------------------


def test_targets_are_the_ports_of_services_with_an_endpoint_at_the_proxy_ip() -> None:
    context = f.push_context(
        f.service_entry(
            "reviews",
            hosts=[REVIEWS],
            ports=[
                {"number": 9080, "name": "http", "protocol": "HTTP"},
                {"number": 9443, "name": "tcp", "protocol": "TCP", "targetPort": 8443},
            ],
            resolution="STATIC",
            location="MESH_INTERNAL",
            endpoints=[{"address": "10.0.0.1", "ports": {"http": 8080}}, {"address": "10.0.0.2"}],
        ),
        # The same address in another namespace is another workload.
        f.http_service("other", namespace="prod", endpoints=[{"address": "10.0.0.1"}]),
    )
    assert service_targets(context, "10.0.0.1", "default") == (
        ServiceTarget(REVIEWS, 9080, 8080, "HTTP"),
        ServiceTarget(REVIEWS, 9443, 8443, "TCP"),
    )
    assert service_targets(context, "10.0.0.2", "default") == (
        ServiceTarget(REVIEWS, 9080, 9080, "HTTP"),
        ServiceTarget(REVIEWS, 9443, 8443, "TCP"),
    )
    assert service_targets(context, "10.0.0.3", "default") == ()
    assert service_targets(context, "", "default") == ()


def test_workload_entries_selected_by_a_service_entry_are_targets() -> None:
    context = f.push_context(
        f.http_service("vm", port=80, endpoints=(), workloadSelector={"labels": {"app": "vm"}}),
        f.config("WorkloadEntry", "vm-1", {"address": "10.1.0.1", "labels": {"app": "vm"}}),
    )
    view = view_of(sidecar_at("10.1.0.1"), context)
    assert view.targets == (ServiceTarget("vm.default.svc.cluster.local", 80, 80, "HTTP"),)


def test_a_proxy_without_labels_is_known_by_its_workload_entrys() -> None:
    context = f.push_context(
        f.http_service("vm", port=80, endpoints=(), workloadSelector={"labels": {"app": "vm"}}),
        f.config(
            "WorkloadEntry", "vm-1", {"address": "10.1.0.1", "labels": {"app": "vm", "track": "canary"}}
        ),
        f.destination_rule("canary", host="vm", workloadSelector={"matchLabels": {"track": "canary"}}),
    )
    assert view_of(sidecar_at("10.1.0.1"), context).labels == (("track", "canary"),)
    # Labels the proxy sends are what counts when it sends some.
    assert view_of(sidecar_at("10.1.0.1", track="stable"), context).labels == ()


# -- the view: which labels count -------------------------------------------------------------------


def source_labels_routes() -> tuple[ConfigObject, ...]:
    return (
        f.http_service("reviews"),
        f.virtual_service(
            "reviews",
            hosts=["reviews"],
            http=[
                {
                    "match": [{"sourceLabels": {"app": "productpage"}, "uri": {"prefix": "/pp"}}],
                    "route": [{"destination": {"host": "reviews"}}],
                },
                {
                    "match": [{"sourceNamespace": "prod", "uri": {"prefix": "/prod"}}],
                    "route": [{"destination": {"host": "reviews"}}],
                },
                {"route": [{"destination": {"host": "reviews"}}]},
            ],
        ),
    )


def test_a_sidecar_view_keeps_only_labels_some_selector_names() -> None:
    context = f.push_context(*source_labels_routes())
    selected = view_of(sidecar_at("10.0.0.1", app="productpage", **{"pod-template-hash": "abc"}), context)
    assert selected.labels == (("app", "productpage"),)
    # A label value no selector names is dropped too: these two share one view.
    one = view_of(sidecar_at("10.0.0.2", app="details", version="v1"), context)
    two = view_of(sidecar_at("10.0.0.3", app="ratings", version="v2"), context)
    assert one == two and one.labels == ()
    assert one.type is NodeType.SIDECAR


def test_a_router_view_keeps_all_its_labels() -> None:
    router = Proxy.from_node(
        "router~10.0.0.9~gw-1.istio-system~istio-system.svc.cluster.local",
        {"LABELS": {"istio": "ingressgateway", "pod-template-hash": "x"}},
    )
    view = view_of(router, f.push_context())
    assert view.labels == (("istio", "ingressgateway"), ("pod-template-hash", "x"))


def route_prefixes(context: PushContext, proxy: Proxy) -> list[str]:
    snapshot = build_snapshot(view_of(proxy, context), context)
    out = []
    for resource in snapshot.resources(types.ROUTE).values():
        message = resource.unpack(_route_config())
        for host in message.virtual_hosts:
            if REVIEWS in host.domains:
                out += [r.match.prefix for r in host.routes]
    return out


def _route_config():  # type: ignore[no-untyped-def]
    from envoy.config.route.v3 import route_pb2

    return route_pb2.RouteConfiguration()


def test_source_labels_and_namespace_matches_apply_per_view() -> None:
    context = f.push_context(*source_labels_routes())
    assert route_prefixes(context, sidecar_at("10.0.0.1", app="productpage")) == ["/pp", "/"]
    assert route_prefixes(context, sidecar_at("10.0.0.2", app="details")) == ["/"]
    assert route_prefixes(context, sidecar_at("10.0.0.3", "prod", app="details")) == ["/prod", "/"]


def test_tcp_source_labels_apply_per_view() -> None:
    context = f.push_context(
        f.http_service("db", port=5432, protocol="TCP", addresses=["240.0.0.1"]),
        f.http_service("db-canary", port=5432, protocol="TCP", addresses=["240.0.0.2"]),
        f.virtual_service(
            "db",
            hosts=["db"],
            tcp=[
                {
                    "match": [{"sourceLabels": {"app": "canary"}}],
                    "route": [{"destination": {"host": "db-canary"}}],
                },
                {"route": [{"destination": {"host": "db"}}]},
            ],
        ),
    )
    assert (
        db_cluster(context, sidecar_at("10.0.0.1", app="canary"))
        == "outbound|5432||db-canary.default.svc.cluster.local"
    )
    assert (
        db_cluster(context, sidecar_at("10.0.0.2", app="web"))
        == "outbound|5432||db.default.svc.cluster.local"
    )


def db_cluster(context: PushContext, proxy: Proxy) -> str:
    """The cluster of the TCP proxy on the chain for db's address (240.0.0.1)."""
    from envoy.config.listener.v3 import listener_pb2
    from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

    snapshot = build_snapshot(view_of(proxy, context), context)
    for resource in snapshot.resources(types.LISTENER).values():
        listener = resource.unpack(listener_pb2.Listener())
        assert isinstance(listener, listener_pb2.Listener)
        for chain in listener.filter_chains:
            if any(r.address_prefix == "240.0.0.1" for r in chain.filter_chain_match.prefix_ranges):
                tcp = tcp_proxy_pb2.TcpProxy()
                chain.filters[-1].typed_config.Unpack(tcp)
                return tcp.cluster
    raise AssertionError("no chain for 240.0.0.1")


# -- DestinationRule workloadSelector ---------------------------------------------------------------


def selector_rules(namespace: str = "default") -> tuple[ConfigObject, ...]:
    return (
        f.http_service("reviews"),
        f.destination_rule("all", host="reviews", trafficPolicy={"loadBalancer": {"simple": "RANDOM"}}),
        f.destination_rule(
            "canary",
            namespace,
            host=REVIEWS,
            workloadSelector={"matchLabels": {"track": "canary"}},
            trafficPolicy={"loadBalancer": {"simple": "LEAST_REQUEST"}},
        ),
    )


def test_a_destination_rule_with_a_selector_applies_to_the_workloads_it_selects() -> None:
    context = f.push_context(*selector_rules())
    canary = view_of(sidecar_at("10.0.0.1", track="canary", app="x"), context)
    stable = view_of(sidecar_at("10.0.0.2", track="stable"), context)
    assert canary.labels == (("track", "canary"),) and stable.labels == ()
    assert context.scope("default", canary.labels).destination_rule(REVIEWS).key.name == "canary"  # type: ignore[union-attr]
    assert context.scope("default", stable.labels).destination_rule(REVIEWS).key.name == "all"  # type: ignore[union-attr]
    clusters = dict(build_clusters(canary, context))
    assert clusters[f"outbound|80||{REVIEWS}"].lb_policy == clusters[f"outbound|80||{REVIEWS}"].LEAST_REQUEST
    clusters = dict(build_clusters(stable, context))
    assert clusters[f"outbound|80||{REVIEWS}"].lb_policy == clusters[f"outbound|80||{REVIEWS}"].RANDOM


def test_a_selector_rule_applies_only_in_its_own_namespace() -> None:
    context = f.push_context(*selector_rules(namespace="prod"))
    prod = view_of(sidecar_at("10.0.0.1", "prod", track="canary"), context)
    default = view_of(sidecar_at("10.0.0.2", "default", track="canary"), context)
    assert context.scope("prod", prod.labels).destination_rule(REVIEWS).key.name == "canary"  # type: ignore[union-attr]
    assert context.scope("default", default.labels).destination_rule(REVIEWS).key.name == "all"  # type: ignore[union-attr]


# -- sharing: 1000 proxies, 10 workloads ------------------------------------------------------------


def test_a_thousand_proxies_of_ten_workloads_share_ten_views() -> None:
    objects: list[ConfigObject] = []
    proxies: list[Proxy] = []
    for w in range(10):
        addresses = [f"10.{w}.{i // 250}.{i % 250 + 1}" for i in range(100)]
        objects.append(f.http_service(f"w{w}", endpoints=[{"address": a} for a in addresses]))
        objects.append(
            f.virtual_service(
                f"w{w}",
                hosts=[f"w{w}"],
                http=[
                    {
                        "match": [{"sourceLabels": {"app": f"w{(w + 1) % 10}"}}],
                        "route": [{"destination": {"host": f"w{w}"}}],
                    },
                    {"route": [{"destination": {"host": f"w{w}"}}]},
                ],
            )
        )
        for i, address in enumerate(addresses):
            # Every pod has its own pod-template-hash-like label: raw labels would split all 1000.
            proxies.append(sidecar_at(address, app=f"w{w}", pod=f"w{w}-{i}"))
    context = f.push_context(*objects)
    started = time.perf_counter()
    views = {view_of(proxy, context) for proxy in proxies}
    view_seconds = time.perf_counter() - started
    assert len(views) == 10
    assert all(len(view.targets) == 1 for view in views)
    started = time.perf_counter()
    for view in views:
        assert build_snapshot(view, context).inconsistencies() == []
    translate_seconds = time.perf_counter() - started
    print(f"1000 proxies, {len(views)} views: views {view_seconds * 1e3:.1f} ms, ", end="")
    print(f"translation {translate_seconds * 1e3:.1f} ms")


def test_pairs_of_a_selector_a_workload_does_not_satisfy_never_split_a_view() -> None:
    """reviews-v1 and reviews-v2 share a view although ``version=v2`` is in a sourceLabels selector
    that only productpage-v2 satisfies; productpage-v2 keeps both pairs (it satisfies it)."""
    from pilot.translate.views import selected_labels

    selectors = (frozenset({("app", "productpage"), ("version", "v2")}), frozenset({("app", "ratings")}))
    assert selected_labels({"app": "reviews", "version": "v1"}, selectors) == ()
    assert selected_labels({"app": "reviews", "version": "v2"}, selectors) == ()
    assert selected_labels({"app": "productpage", "version": "v2", "pod-template-hash": "x"}, selectors) == (
        ("app", "productpage"),
        ("version", "v2"),
    )
    assert selected_labels({"app": "productpage", "version": "v1"}, selectors) == ()


def test_views_stay_across_route_edits_and_not_across_a_new_selector_or_service() -> None:
    store = ConfigStore()

    def context_with(*objects: ConfigObject, previous: PushContext | None = None) -> PushContext:
        store.apply(ParseResult("mesh.yaml", objects=objects))
        return PushContext.build(store.snapshot(), previous)

    reviews = f.http_service("reviews")

    def routes(weight: int, match: list[dict[str, object]] | None = None) -> ConfigObject:
        route = {
            "route": [{"destination": {"host": "reviews"}, "weight": weight}, {"destination": {"host": "x"}}]
        }
        return f.virtual_service(
            "reviews", hosts=["reviews"], http=[{**route, **({"match": match} if match else {})}]
        )

    first = context_with(reviews, routes(90))
    edited = context_with(reviews, routes(80), previous=first)
    assert same_views(first, edited)  # routes alone: no proxy is told apart differently
    selecting = context_with(reviews, routes(80, [{"sourceLabels": {"app": "web"}}]), previous=edited)
    assert not same_views(edited, selecting)  # a new selector can split a view
    moved = context_with(
        f.http_service("reviews", endpoints=[{"address": "10.0.0.1"}]),
        routes(80, [{"sourceLabels": {"app": "web"}}]),
        previous=selecting,
    )
    assert not same_views(selecting, moved)  # an endpoint at a proxy's address gives it targets
