"""The Sidecar resource in translation: what a proxy's view names, what its egress imports and its
outbound traffic policy do to clusters, listeners and routes, and how views are shared."""

from __future__ import annotations

from typing import Any

from pilot.config.objects import ConfigKey, ConfigObject
from pilot.translate.context import PushContext
from pilot.translate.generators import GENERATORS
from pilot.translate.proxy import Proxy, ProxyView
from pilot.translate.snapshot import build_snapshot, generate_messages, inconsistencies, types_to_rebuild
from pilot.translate.views import view_of
from pilot.xds import types
from tests import factories as f

ROOT = "istio-system"


def sidecar(name: str, namespace: str, **spec: Any) -> ConfigObject:
    return f.config("Sidecar", name, spec, namespace)


def proxy(ip: str, namespace: str = "default", mode: str = "NONE", **labels: str) -> Proxy:
    return Proxy.from_node(
        f"sidecar~{ip}~pod-{ip.replace('.', '-')}.{namespace}~{namespace}.svc.cluster.local",
        {"LABELS": dict(labels), "INTERCEPTION_MODE": mode},
    )


def mesh_services() -> list[ConfigObject]:
    """reviews and ratings in default, details in other, a TCP database in istio-system."""
    return [
        f.http_service("reviews", "default", 9080),
        f.http_service("ratings", "default", 9080),
        f.http_service("details", "other", 9080),
        f.http_service("db", ROOT, 3306, protocol="TCP"),
    ]


def names_of(context: PushContext, view: ProxyView, type_url: str) -> list[str]:
    return [name for name, _ in generate_messages(view, context)[type_url]]


def view(context: PushContext, p: Proxy) -> ProxyView:
    return view_of(p, context)


# -- which Sidecar a view names ---------------------------------------------------------------------


def test_view_names_the_sidecar_by_istios_precedence() -> None:
    selected = sidecar("reviews-only", "default", workloadSelector={"labels": {"app": "reviews"}})
    namespace_default = sidecar("default", "default")
    root_default = sidecar("default", ROOT)
    context = f.push_context(*mesh_services(), selected, namespace_default, root_default)
    assert view(context, proxy("10.0.0.1", app="reviews")).sidecar == selected.key
    assert view(context, proxy("10.0.0.2", app="ratings")).sidecar == namespace_default.key
    assert view(context, proxy("10.0.0.3", "other", app="details")).sidecar == root_default.key
    no_root = f.push_context(*mesh_services(), selected)
    assert view(no_root, proxy("10.0.0.3", "other")).sidecar is None


def test_sidecar_selector_labels_do_not_split_views_of_the_namespace_default() -> None:
    """Labels a Sidecar selector names are not in the key: proxies its selector does not pick share
    the namespace default's view."""
    context = f.push_context(
        *mesh_services(),
        sidecar("reviews-only", "default", workloadSelector={"labels": {"app": "reviews"}}),
        sidecar("default", "default"),
    )
    a = view(context, proxy("10.0.0.1", app="ratings", version="v1"))
    b = view(context, proxy("10.0.0.2", app="web", version="v2"))
    assert a == b and a.labels == () and str(a).endswith("/sidecar:default/default")


# -- egress scoping ---------------------------------------------------------------------------------


def test_namespace_sidecar_imports_only_its_hosts() -> None:
    context = f.push_context(
        *mesh_services(), sidecar("default", "default", egress=[{"hosts": ["./*", f"{ROOT}/*"]}])
    )
    v = view(context, proxy("10.0.0.1"))
    clusters = names_of(context, v, types.CLUSTER)
    assert "outbound|9080||reviews.default.svc.cluster.local" in clusters
    assert "outbound|3306||db.istio-system.svc.cluster.local" in clusters
    assert not any("details" in name for name in clusters)
    routes = dict(generate_messages(v, context)[types.ROUTE])
    hosts = [vh.name for vh in routes["9080"].virtual_hosts]
    assert hosts == [
        "ratings.default.svc.cluster.local:9080",
        "reviews.default.svc.cluster.local:9080",
        "allow_any",
    ]
    # NONE mode with a Sidecar: Istio binds the egress listeners to 127.0.0.1.
    assert names_of(context, v, types.LISTENER) == ["127.0.0.1_9080", "127.0.0.1_3306"]
    # Without the Sidecar, everything (and pilot's wildcard binding in NONE mode).
    plain = f.push_context(*mesh_services())
    assert any("details" in name for name in names_of(plain, view(plain, proxy("10.0.0.1")), types.CLUSTER))
    assert names_of(plain, view(plain, proxy("10.0.0.1")), types.LISTENER) == ["0.0.0.0_9080", "0.0.0.0_3306"]


def test_exact_host_import_and_port_bound_egress_listener() -> None:
    context = f.push_context(
        *mesh_services(),
        sidecar(
            "default",
            "default",
            egress=[
                {"port": {"number": 9080, "protocol": "HTTP", "name": "http"}, "hosts": ["other/*"]},
                {"hosts": ["./reviews.default.svc.cluster.local", f"{ROOT}/*"]},
            ],
        ),
    )
    v = view(context, proxy("10.0.0.1", mode="REDIRECT"))
    messages = generate_messages(v, context)
    assert inconsistencies(messages) == []
    listeners = [name for name, _ in messages[types.LISTENER]]
    assert listeners == ["0.0.0.0_9080", "0.0.0.0_3306", "virtualOutbound", "virtualInbound"]
    # Port 9080 is the first egress listener's: only details, though the catch-all imports reviews.
    routes = dict(messages[types.ROUTE])
    assert [vh.name for vh in routes["9080"].virtual_hosts] == [
        "details.other.svc.cluster.local:9080",
        "allow_any",
    ]
    clusters = [name for name, _ in messages[types.CLUSTER]]
    assert "outbound|9080||reviews.default.svc.cluster.local" in clusters
    assert not any("ratings" in name for name in clusters)


def test_virtual_service_destinations_are_imported_with_it() -> None:
    """Istio adds the services an imported VirtualService routes to."""
    vs = f.virtual_service(
        "reviews",
        "default",
        hosts=["reviews.default.svc.cluster.local"],
        http=[{"route": [{"destination": {"host": "details.other.svc.cluster.local"}}]}],
    )
    context = f.push_context(
        *mesh_services(),
        vs,
        sidecar("default", "default", egress=[{"hosts": ["./reviews.default.svc.cluster.local"]}]),
    )
    clusters = names_of(context, view(context, proxy("10.0.0.1")), types.CLUSTER)
    assert "outbound|9080||details.other.svc.cluster.local" in clusters
    assert not any("ratings" in name for name in clusters)


# -- outbound traffic policy ------------------------------------------------------------------------


def test_sidecar_registry_only_overrides_the_mesh_allow_any() -> None:
    context = f.push_context(
        *mesh_services(),
        sidecar(
            "locked",
            "default",
            workloadSelector={"labels": {"app": "locked"}},
            outboundTrafficPolicy={"mode": "REGISTRY_ONLY"},
        ),
    )
    locked = generate_messages(view(context, proxy("10.0.0.1", mode="REDIRECT", app="locked")), context)
    free = generate_messages(view(context, proxy("10.0.0.2", mode="REDIRECT", app="free")), context)

    def catch_alls(messages: Any) -> tuple[str, str]:
        routes = dict(messages[types.ROUTE])
        outbound = dict(messages[types.LISTENER])["virtualOutbound"]
        tcp = outbound.filter_chains[-1].filters[0]
        return routes["9080"].virtual_hosts[-1].name, tcp.typed_config.value.decode(errors="ignore")

    locked_vh, locked_tcp = catch_alls(locked)
    free_vh, free_tcp = catch_alls(free)
    assert (locked_vh, free_vh) == ("block_all", "allow_any")
    assert "BlackHoleCluster" in locked_tcp and "PassthroughCluster" in free_tcp


def test_sidecar_allow_any_overrides_the_mesh_registry_only() -> None:
    context = f.push_context(
        *mesh_services(),
        f.mesh_config(outboundTrafficPolicy={"mode": "REGISTRY_ONLY"}),
        sidecar("default", "default", outboundTrafficPolicy={"mode": "ALLOW_ANY"}),
    )
    routes = dict(generate_messages(view(context, proxy("10.0.0.1")), context)[types.ROUTE])
    assert routes["9080"].virtual_hosts[-1].name == "allow_any"
    other = view(context, proxy("10.0.0.2", "other"))
    assert dict(generate_messages(other, context)[types.ROUTE])["9080"].virtual_hosts[-1].name == "block_all"


# -- sharing and pushes -----------------------------------------------------------------------------


def test_1000_proxies_of_10_workloads_with_a_namespace_sidecar_build_10_views() -> None:
    workloads = [f"app{i}" for i in range(10)]
    entries = [
        f.http_service(app, "default", 9080, endpoints=[{"address": f"10.1.{i}.{j}"} for j in range(100)])
        for i, app in enumerate(workloads)
    ]
    context = f.push_context(
        *entries, *mesh_services(), sidecar("default", "default", egress=[{"hosts": ["./*", f"{ROOT}/*"]}])
    )
    views = {
        view(context, proxy(f"10.1.{i}.{j}", app=app, pod=f"{app}-{j}"))
        for i, app in enumerate(workloads)
        for j in range(100)
    }
    assert len(views) == 10
    assert {v.sidecar for v in views} == {ConfigKey("Sidecar", "default", "default")}


def test_a_sidecar_edit_rebuilds_the_views_that_name_it() -> None:
    before = f.push_context(*mesh_services(), sidecar("default", "default", egress=[{"hosts": ["./*"]}]))
    edited = sidecar("default", "default", egress=[{"hosts": ["./*", "other/*"]}])
    after = f.push_context(*mesh_services(), edited, revision=2)
    v = view(before, proxy("10.0.0.1"))
    assert view(after, proxy("10.0.0.1")) == v  # the same view: only its content changes
    first = build_snapshot(v, before)
    # Every generator reads Sidecars: an edit to one alone rebuilds every type.
    assert types_to_rebuild([edited.key], first) == list(GENERATORS)
    second = build_snapshot(v, after, (before, first))
    details = "outbound|9080||details.other.svc.cluster.local"
    assert details in second.resources(types.CLUSTER) and details not in first.resources(types.CLUSTER)


# -- ingress ----------------------------------------------------------------------------------------

INGRESS = sidecar(
    "web",
    "default",
    workloadSelector={"labels": {"app": "web"}},
    ingress=[
        {"port": {"number": 9080, "protocol": "HTTP", "name": "http"}, "defaultEndpoint": "127.0.0.1:8080"},
        {
            "port": {"number": 9090, "protocol": "TCP", "name": "tcp"},
            "defaultEndpoint": "unix:///var/run/app.sock",
        },
        {
            "port": {"number": 9091, "protocol": "HTTP", "name": "own"},
            "defaultEndpoint": "0.0.0.0:8081",
            "bind": "127.0.0.2",
            "connectionPool": {"tcp": {"maxConnections": 7}},
        },
    ],
    egress=[{"hosts": ["./*"]}],
)


def test_none_mode_ingress_binds_listeners_and_inbound_clusters() -> None:
    context = f.push_context(*mesh_services(), INGRESS)
    messages = generate_messages(view(context, proxy("10.0.0.1", app="web")), context)
    assert inconsistencies(messages) == []
    listeners = dict(messages[types.LISTENER])
    assert list(listeners) == ["127.0.0.1_9080", "0.0.0.0_9080", "0.0.0.0_9090", "127.0.0.2_9091"]
    http = listeners["0.0.0.0_9080"]
    assert http.traffic_direction == 1  # INBOUND
    assert not any(f.name.endswith("original_dst") for f in http.listener_filters)
    assert [chain.name for chain in http.filter_chains] == ["0.0.0.0_9080"]
    clusters = dict(messages[types.CLUSTER])
    assert "InboundPassthroughCluster" not in clusters
    loopback = clusters["inbound|9080||"]
    address = loopback.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (loopback.type, address.address, address.port_value) == (0, "127.0.0.1", 8080)  # STATIC
    assert not loopback.HasField("upstream_bind_config")
    uds = clusters["inbound|9090||"].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    assert uds.pipe.path == "/var/run/app.sock"
    own = clusters["inbound|9091||"]
    assert own.type == 4 and own.original_dst_lb_config.upstream_port_override.value == 8081  # ORIGINAL_DST
    assert own.circuit_breakers.thresholds[0].max_connections.value == 7


def test_none_mode_without_ingress_has_no_inbound_side() -> None:
    context = f.push_context(*mesh_services(), sidecar("default", "default"))
    messages = generate_messages(view(context, proxy("10.0.0.1")), context)
    assert not any(name.startswith("inbound|") for name, _ in messages[types.CLUSTER])
    assert all(listener.traffic_direction == 2 for _, listener in messages[types.LISTENER])  # OUTBOUND


def test_redirect_mode_ingress_replaces_the_service_ports_in_virtual_inbound() -> None:
    backed = f.http_service("web", "default", 7000, endpoints=[{"address": "10.0.0.1"}])
    context = f.push_context(*mesh_services(), backed, INGRESS)
    v = view(context, proxy("10.0.0.1", mode="REDIRECT", app="web"))
    assert [t.port for t in v.targets] == [7000]
    messages = generate_messages(v, context)
    assert inconsistencies(messages) == []
    listeners = dict(messages[types.LISTENER])
    chains = [chain.name for chain in listeners["virtualInbound"].filter_chains]
    assert "0.0.0.0_7000" not in chains and "0.0.0.0_9080" in chains and "0.0.0.0_9090" in chains
    # The ingress port with a bind but no captureMode joins virtualInbound too (REDIRECT proxy).
    assert "0.0.0.0_9091" in chains and "127.0.0.2_9091" not in listeners
    clusters = [name for name, _ in messages[types.CLUSTER]]
    assert clusters[-4:] == [
        "inbound|9080||",
        "inbound|9090||",
        "inbound|9091||",
        "InboundPassthroughCluster",
    ]
    # The virtual host of a port the proxy backs is named after the service, else after the Sidecar.
    http = listeners["virtualInbound"].filter_chains[chains.index("0.0.0.0_9080")]
    assert b"web.default:9080" in http.filters[0].typed_config.value


# -- WorkloadEntry ----------------------------------------------------------------------------------


def test_workload_entries_selected_by_a_service_entry_are_its_endpoints_and_targets() -> None:
    entry = f.service_entry(
        "vm",
        "default",
        hosts=["vm.default.svc.cluster.local"],
        ports=[{"number": 80, "name": "http", "protocol": "HTTP", "targetPort": 8000}],
        resolution="STATIC",
        location="MESH_INTERNAL",
        workloadSelector={"labels": {"app": "vm"}},
    )
    workloads = [
        f.config(
            "WorkloadEntry", "vm-1", {"address": "10.2.0.1", "labels": {"app": "vm"}, "ports": {"http": 8080}}
        ),
        # The object's labels win over the spec's (Istio's ConvertWorkloadEntry).
        f.config(
            "WorkloadEntry", "vm-2", {"address": "10.2.0.2", "labels": {"app": "db"}}, labels={"app": "vm"}
        ),
        f.config(
            "WorkloadEntry", "vm-3", {"address": "10.2.0.3", "labels": {"app": "vm"}}, labels={"app": "db"}
        ),
        f.config(
            "WorkloadEntry", "vm-4", {"address": "10.2.0.4", "labels": {"app": "vm"}}, namespace="other"
        ),
    ]
    context = f.push_context(entry, *workloads)
    client = view(context, proxy("10.9.9.9"))
    (assignment,) = [m for _, m in generate_messages(client, context)[types.ENDPOINT]]
    found = [
        (e.endpoint.address.socket_address.address, e.endpoint.address.socket_address.port_value)
        for group in assignment.endpoints
        for e in group.lb_endpoints
    ]
    assert sorted(found) == [("10.2.0.1", 8080), ("10.2.0.2", 8000)]
    vm = view(context, proxy("10.2.0.1", mode="REDIRECT"))
    assert [(t.hostname, t.port, t.target_port) for t in vm.targets] == [
        ("vm.default.svc.cluster.local", 80, 8080)
    ]
    listeners = dict(generate_messages(vm, context)[types.LISTENER])
    assert "0.0.0.0_8080" in [chain.name for chain in listeners["virtualInbound"].filter_chains]
    assert view(context, proxy("10.2.0.4", "other")).targets == ()


def test_egress_proxy_takes_unknown_traffic_instead_of_passthrough() -> None:
    egress = {"host": "db.istio-system.svc.cluster.local", "port": {"number": 3306}}
    context = f.push_context(
        *mesh_services(),
        sidecar("default", "default", outboundTrafficPolicy={"mode": "ALLOW_ANY", "egressProxy": egress}),
    )
    messages = generate_messages(view(context, proxy("10.0.0.1", mode="REDIRECT")), context)
    cluster = "outbound|3306||db.istio-system.svc.cluster.local"
    assert dict(messages[types.ROUTE])["9080"].virtual_hosts[-1].routes[0].route.cluster == cluster
    catch_all = dict(messages[types.LISTENER])["virtualOutbound"].filter_chains[-1]
    assert cluster.encode() in catch_all.filters[0].typed_config.value


def test_an_egress_listener_with_capture_mode_none_binds_in_redirect_mode() -> None:
    context = f.push_context(
        *mesh_services(),
        sidecar(
            "default",
            "default",
            egress=[
                {
                    "port": {"number": 3306, "protocol": "TCP", "name": "db"},
                    "captureMode": "NONE",
                    "hosts": [f"{ROOT}/*"],
                },
                {"hosts": ["./*"]},
            ],
        ),
    )
    listeners = dict(
        generate_messages(view(context, proxy("10.0.0.1", mode="REDIRECT")), context)[types.LISTENER]
    )
    bound = listeners["127.0.0.1_3306"]
    assert bound.address.socket_address.address == "127.0.0.1" and not bound.HasField("bind_to_port")
    assert listeners["0.0.0.0_9080"].bind_to_port.value is False


def test_a_port_bound_egress_listener_routes_by_the_virtual_services_it_imports() -> None:
    """A VirtualService of namespace other for reviews: the catch-all listener (``*/*``) imports it,
    the 9080 listener (``./*``) does not, and route configuration 9080 is that listener's."""
    vs = f.virtual_service(
        "to-ratings",
        "other",
        hosts=["reviews.default.svc.cluster.local"],
        http=[{"route": [{"destination": {"host": "ratings.default.svc.cluster.local"}}]}],
    )
    egress = [
        {"port": {"number": 9080, "protocol": "HTTP", "name": "http"}, "hosts": ["./*"]},
        {"hosts": ["*/*"]},
    ]
    for listeners, expected in ((egress, "outbound|9080||reviews"), (egress[1:], "outbound|9080||ratings")):
        context = f.push_context(*mesh_services(), vs, sidecar("default", "default", egress=listeners))
        routes = dict(generate_messages(view(context, proxy("10.0.0.1")), context)[types.ROUTE])
        (reviews,) = [vh for vh in routes["9080"].virtual_hosts if vh.name.startswith("reviews.")]
        assert reviews.routes[0].route.cluster.startswith(expected), listeners
