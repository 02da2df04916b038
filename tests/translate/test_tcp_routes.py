"""VirtualService tcp and tls routes as filter chains of sidecar outbound listeners (tcp_routes.py)."""

from __future__ import annotations

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from pilot.translate.listeners import build_listeners
from pilot.translate.proxy import InterceptionMode
from tests import factories as f

DB = "db.default.svc.cluster.local"


def listener(*objects, port: int, view=None) -> listener_pb2.Listener:
    out = dict(build_listeners(view or f.sidecar(), f.push_context(*objects)))
    return out[f"0.0.0.0_{port}"]


def proxy_of(chain) -> tcp_proxy_pb2.TcpProxy:
    out = tcp_proxy_pb2.TcpProxy()
    tcp = next(x for x in chain.filters if x.name == "envoy.filters.network.tcp_proxy")
    assert tcp.typed_config.Unpack(out)
    return out


def db(protocol: str = "TCP", port: int = 3306, **extra):
    endpoints = [{"address": "10.0.0.1", "labels": {"v": "a"}}, {"address": "10.0.0.2", "labels": {"v": "b"}}]
    return f.http_service("db", port=port, protocol=protocol, endpoints=endpoints, **extra)


def subsets(**policy):
    return f.destination_rule(
        "db",
        host="db",
        subsets=[{"name": "a", "labels": {"v": "a"}}, {"name": "b", "labels": {"v": "b"}}],
        **policy,
    )


def dest(subset: str, weight: int | None = None, port: int | None = None) -> dict:
    destination: dict = {"host": "db", "subset": subset}
    if port:
        destination["port"] = {"number": port}
    return {"destination": destination, **({"weight": weight} if weight is not None else {})}


def test_weighted_tcp_route() -> None:
    vs = f.virtual_service(
        "db", hosts=["db"], tcp=[{"route": [dest("a", 80), dest("b", 20), dest("a", 0, port=3307)]}]
    )
    (chain,) = listener(db(), subsets(), vs, port=3306).filter_chains
    proxy = proxy_of(chain)
    assert proxy.stat_prefix == "db.default"
    weights = [(c.name, c.weight) for c in proxy.weighted_clusters.clusters]
    assert weights == [(f"outbound|3306|a|{DB}", 80), (f"outbound|3306|b|{DB}", 20)]
    assert chain.metadata.filter_metadata["istio"]["config"].endswith("/virtual-service/db")


def test_tcp_matches_by_port_subnet_and_source() -> None:
    vs = f.virtual_service(
        "db",
        hosts=["db"],
        tcp=[
            {"match": [{"port": 9999}], "route": [dest("b")]},  # another port: never here
            {"match": [{"sourceLabels": {"app": "x"}}], "route": [dest("b")]},  # sidecars have no labels
            {"match": [{"destinationSubnets": ["10.1.0.0/16", "10.2.3.4"]}], "route": [dest("b")]},
            {"route": [dest("a")]},
        ],
    )
    subnet, catch_all = listener(db(), subsets(), vs, port=3306).filter_chains
    ranges = [(r.address_prefix, r.prefix_len.value) for r in subnet.filter_chain_match.prefix_ranges]
    assert ranges == [("10.1.0.0", 16), ("10.2.3.4", 32)]
    assert proxy_of(subnet).cluster == f"outbound|3306|b|{DB}"
    assert not catch_all.HasField("filter_chain_match")
    assert proxy_of(catch_all).cluster == f"outbound|3306|a|{DB}" == proxy_of(catch_all).stat_prefix


def test_services_sharing_a_port_are_told_apart_by_address() -> None:
    first = db(addresses=["240.0.0.1"])
    second = f.service_entry(
        "cache",
        hosts=["cache.example.com"],
        addresses=["240.0.1.0/24"],
        ports=[{"number": 3306, "name": "tcp", "protocol": "TCP"}],
        resolution="STATIC",
        endpoints=[{"address": "10.0.0.9"}],
    )
    third = f.http_service("plain", port=3306, protocol="TCP")
    chains = listener(first, second, third, port=3306).filter_chains
    matched = {
        proxy_of(c).cluster: [r.address_prefix for r in c.filter_chain_match.prefix_ranges] for c in chains
    }
    assert matched == {
        "outbound|3306||cache.example.com": ["240.0.1.0"],
        f"outbound|3306||{DB}": ["240.0.0.1"],
        "outbound|3306||plain.default.svc.cluster.local": [],
    }


def test_tls_routes_by_sni() -> None:
    vs = f.virtual_service(
        "db",
        hosts=["db", "*.db.example.com"],
        tls=[
            {
                "match": [{"sniHosts": ["a.db.example.com"]}, {"sniHosts": ["db"], "port": 1}],
                "route": [dest("a")],
            },
            {"match": [{"sniHosts": ["a.db.example.com"]}], "route": [dest("b")]},  # already handled
            {"match": [{"sniHosts": ["b.db.example.com"]}], "route": [dest("b", 50), dest("a", 50)]},
        ],
    )
    out = listener(db("TLS", 443), subsets(), vs, port=443)
    assert [x.name for x in out.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    names = [(list(c.filter_chain_match.server_names), proxy_of(c).cluster) for c in out.filter_chains]
    assert names == [(["a.db.example.com"], f"outbound|443|a|{DB}"), (["b.db.example.com"], "")]
    assert len(proxy_of(out.filter_chains[1]).weighted_clusters.clusters) == 2


def test_tls_port_without_route_matches_the_host_name() -> None:
    ext = f.service_entry(
        "ext",
        hosts=["api.example.com", "*.wiki.org"],
        ports=[{"number": 443, "name": "https", "protocol": "HTTPS"}],
        resolution="NONE",
    )
    out = listener(ext, port=443)
    names = [(list(c.filter_chain_match.server_names), proxy_of(c).cluster) for c in out.filter_chains]
    assert names == [
        (["*.wiki.org"], "outbound|443||*.wiki.org"),
        (["api.example.com"], "outbound|443||api.example.com"),
    ]
    assert not out.HasField("default_filter_chain")  # bound to the port itself: nothing else arrives
    intercepted = listener(ext, port=443, view=f.sidecar(mode=InterceptionMode.REDIRECT))
    assert proxy_of(intercepted.default_filter_chain).cluster == "PassthroughCluster"


def test_destination_rule_tcp_settings_reach_the_proxy() -> None:
    rule = subsets(
        trafficPolicy={
            "connectionPool": {"tcp": {"idleTimeout": "30s", "maxConnectionDuration": "3600s"}},
            "loadBalancer": {"consistentHash": {"useSourceIp": True}},
            "tunnel": {"protocol": "POST", "targetHost": "10.0.0.7", "targetPort": 8443},
        }
    )
    (chain,) = listener(db(), rule, port=3306).filter_chains
    proxy = proxy_of(chain)
    assert proxy.idle_timeout.seconds == 30 and proxy.max_downstream_connection_duration.seconds == 3600
    assert proxy.hash_policy[0].HasField("source_ip")
    assert (proxy.tunneling_config.hostname, proxy.tunneling_config.use_post) == ("10.0.0.7:8443", True)


def test_mongo_ports_get_the_mongo_proxy() -> None:
    (chain,) = listener(db("MONGO", 27017), port=27017).filter_chains
    assert [x.name for x in chain.filters] == [
        "envoy.filters.network.mongo_proxy",
        "envoy.filters.network.tcp_proxy",
    ]
