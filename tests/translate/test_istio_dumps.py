"""Golden tests against Istio's published sidecar config dumps.

testdata/istio-dumps/ holds, per dump, the mesh it implies (``NAME.mesh.yaml``: ServiceEntries and
DestinationRules) and the outbound names and fields istiod gave that sidecar
(``NAME.published.json``, trimmed from the dump; its ``source`` names repository, commit, path and
Istio version; ``extract.py`` rebuilds both). pilot translates each mesh for a sidecar in
``default`` with interception, and the test compares listener, cluster and route configuration
names, virtual host names and domains, ``stream_idle_timeout`` of the HTTP connection managers,
``ignore_port_in_host_matching``, default route timeouts and retries, cluster type and
``connect_timeout`` with the published values.

A difference fails the test unless its kind is in ``KEPT``, which says why it is kept: pilot's
listener shape (docs/support.md), or, for the Istio 1.3/1.4 dumps, a field istiod itself has
changed since. Run with ``-s`` to see the counts.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from pilot.translate.proxy import InterceptionMode
from pilot.translate.snapshot import generate_messages
from pilot.xds import types
from tests import factories

DUMPS = Path(__file__).resolve().parents[2] / "testdata" / "istio-dumps"
WILDCARD = "0.0.0.0"

# Kinds of difference kept on purpose, each with its reason; any other kind fails the test.
KEPT_BY_PILOT = {
    # docs/support.md, "TCP services with an address": pilot's 0.0.0.0_N listener whose chains match
    # the service's address stands for istiod's ADDRESS_PORT listener (checked: the chain exists).
    "per-address listener": "pilot shares one 0.0.0.0_N listener per port (docs/support.md)",
    # The same shape for sniffed ports: istiod routes the ADDRESS_PORT listener's HTTP chain by
    # "host:port", pilot's shared listener by "N", which holds the virtual host (checked).
    "per-address route configuration": "pilot shares one 0.0.0.0_N listener per port (docs/support.md)",
}
KEPT_FOR_OLD_ISTIO = {
    # Istio 1.3/1.4 listed each domain with and without the port; istiod now lists them portless
    # and sets ignore_port_in_host_matching (httproute.go, generateVirtualHostDomains).
    "domain with port": "istiod now emits portless domains",
    "ignore_port_in_host_matching": "istiod now sets it on sidecar route configurations",
    # httproute.go generateAltVirtualHostsForKubernetesService: no "name.ns.svc.cluster" any more.
    "domain name.ns.svc.cluster": "istiod no longer emits it",
    # route/retry/retry.go defaultRetryOn: resource-exhausted was dropped from the default.
    "retry_on": "istiod's default retry_on no longer has resource-exhausted",
    # httproute.go buildCatchAllVirtualHost: the allow_any route now has timeout 0s (no timeout);
    # 1.3/1.4 set none, so Envoy's 15 s default applied to traffic to unknown hosts.
    "catch-all timeout": "istiod now sets 0s on the allow_any route",
    # The 1.3 dump's sleep2 and sleep3 virtual hosts on 9080 list no address, though both have one
    # (their 8888 listeners); the mesh behind the dump is not published, and the rebuilt one gives
    # each service one address for all its ports, which istiod lists as a domain (httproute.go).
    "address domain": "the 1.3 mesh gave these services no address on this port",
}


@dataclass(frozen=True)
class Dump:
    name: str
    old: bool  # Istio 1.3/1.4: the fields istiod has changed since are kept (KEPT_FOR_OLD_ISTIO)


CASES = (Dump("productpage-1.3", old=True), Dump("productpage-1.4", old=True), Dump("authz-2024", old=False))


@dataclass
class Comparison:
    matched: Counter[str] = field(default_factory=Counter)
    total: Counter[str] = field(default_factory=Counter)
    differences: list[tuple[str, str]] = field(default_factory=list)  # (kind, detail)

    def check(self, what: str, equal: bool, kind: str = "", detail: str = "") -> None:
        self.total[what] += 1
        if equal:
            self.matched[what] += 1
        else:
            self.differences.append((kind or what, detail))

    def summary(self) -> str:
        return "; ".join(f"{what} {self.matched[what]}/{self.total[what]}" for what in self.total)


def pilot_output(name: str) -> dict[str, dict[str, Any]]:
    """{cds|lds|rds: {name: resource as proto3 JSON with the proto field names, as in a config dump}}."""
    context = factories.context_from_yaml(DUMPS / f"{name}.mesh.yaml")
    messages = generate_messages(factories.sidecar("default", InterceptionMode.REDIRECT), context)
    return {
        types.short_name(type_url): {
            n: json_format.MessageToDict(m, preserving_proto_field_name=True) for n, m in items
        }
        for type_url, items in messages.items()
    }


def connection_managers(listener: dict[str, Any], address: str | None = None) -> list[dict[str, Any]]:
    """The HTTP connection managers of the listener's chains (those matching ``address``, if given)."""
    found = []
    for chain in listener.get("filter_chains", []):
        ranges = chain.get("filter_chain_match", {}).get("prefix_ranges", [])
        if address is not None and not any(r["address_prefix"] == address for r in ranges):
            continue
        for network_filter in chain.get("filters", []):
            if network_filter["name"] == "envoy.filters.network.http_connection_manager":
                found.append(network_filter["typed_config"])
    return found


def matches_address(listener: dict[str, Any], address: str) -> bool:
    return any(
        r["address_prefix"] == address
        for chain in listener.get("filter_chains", [])
        for r in chain.get("filter_chain_match", {}).get("prefix_ranges", [])
    )


def compare(dump: Dump) -> Comparison:
    published = json.loads((DUMPS / f"{dump.name}.published.json").read_text())
    ours = pilot_output(dump.name)
    result = Comparison()
    for cluster in published["clusters"]:
        mine = ours["cds"].get(cluster["name"])
        result.check("cluster names", mine is not None, detail=cluster["name"])
        if mine is not None:
            result.check("cluster type", mine.get("type") == cluster["type"], detail=cluster["name"])
            result.check(
                "cluster connect_timeout",
                mine.get("connect_timeout") == cluster["connect_timeout"],
                detail=cluster["name"],
            )
    per_address_routes: dict[str, str] = {}  # istiod's "host:port" route configuration -> pilot's "N"
    for listener in published["listeners"]:
        name = listener["name"]
        address, _, port = name.rpartition("_")
        mine = ours["lds"].get(name)
        shared = ours["lds"].get(f"{WILDCARD}_{port}")
        on_shared = shared is not None and address not in ("", WILDCARD) and matches_address(shared, address)
        if mine is None and shared is not None and on_shared:
            result.check("listener names", False, "per-address listener", name)
            for manager in listener["http"]:
                if manager["rds"] and ":" in manager["rds"]:
                    per_address_routes[manager["rds"]] = port
            mine, scope = shared, address
        else:
            result.check("listener names", mine is not None, detail=name)
            scope = None
        if mine is None:
            continue
        chains = {chain.get("name"): chain.get("filter_chain_match", {}) for chain in mine["filter_chains"]}
        for chain in listener.get("chains", []):  # named chains, as virtualOutbound's loop guard
            result.check(
                "filter chains (name and match)",
                chains.get(chain["name"]) == chain["match"],
                detail=f"{name}/{chain['name']}: {chains.get(chain['name'])} != {chain['match']}",
            )
        managers = connection_managers(mine, scope)
        for manager in listener["http"]:  # one check per published HCM: pilot's on that listener
            values = {theirs.get("stream_idle_timeout") for theirs in managers}
            result.check(
                "HCM stream_idle_timeout",
                values == {manager["stream_idle_timeout"]},
                "" if managers else "HCM missing",
                f"{name}: {sorted(map(str, values))} != {manager['stream_idle_timeout']}",
            )
    for name, listener in sorted(ours["lds"].items()):  # istiod sets 0s on all its HCMs
        for manager in connection_managers(listener):
            setting = manager.get("stream_idle_timeout")
            result.check("pilot HCMs with 0s", setting == "0s", detail=f"{name}: {setting}")
    for config in published["routes"]:
        name = config["name"]
        route_config = ours["rds"].get(name)
        if route_config is None and name in per_address_routes:
            result.check("route configuration names", False, "per-address route configuration", name)
            route_config = ours["rds"].get(per_address_routes[name])
        else:
            result.check("route configuration names", route_config is not None, detail=name)
        if route_config is None:
            continue
        result.check(
            "ignore_port_in_host_matching",
            route_config.get("ignore_port_in_host_matching", False) == config["ignore_port_in_host_matching"],
            detail=name,
        )
        hosts = {host["name"]: host for host in route_config.get("virtual_hosts", [])}
        for host in config["virtual_hosts"]:
            virtual_host = hosts.get(host["name"])
            result.check("virtual host names", virtual_host is not None, detail=f"{name}/{host['name']}")
            if virtual_host is None:
                continue
            compare_domains(result, host, virtual_host, f"{name}/{host['name']}")
            compare_routes(result, host, virtual_host, f"{name}/{host['name']}")
    return result


def compare_domains(result: Comparison, host: dict[str, Any], mine: dict[str, Any], where: str) -> None:
    ours = set(mine["domains"])
    for domain in host["domains"]:
        if domain in ours:
            result.check("domains", True)
        elif domain.split(":")[0].endswith(".svc.cluster"):
            result.check("domains", False, "domain name.ns.svc.cluster", f"{where}: {domain}")
        elif ":" in domain and domain.rpartition(":")[0] in ours:
            result.check("domains", False, "domain with port", f"{where}: {domain}")
        else:
            result.check("domains", False, detail=f"{where}: {domain}")
    extra = ours - {d.rpartition(":")[0] if ":" in d else d for d in host["domains"]} - set(host["domains"])
    addresses = {d for d in extra if d[0].isdigit()}
    if addresses and not any(d[0].isdigit() for d in host["domains"]):
        result.check("domains pilot adds none", False, "address domain", f"{where}: {sorted(addresses)}")
        extra -= addresses
    result.check("domains pilot adds none", not extra, "domains", f"{where}: {sorted(extra)}")


def compare_routes(result: Comparison, host: dict[str, Any], mine: dict[str, Any], where: str) -> None:
    ours = {json.dumps(r["match"], sort_keys=True): r.get("route", {}) for r in mine["routes"]}
    for route in host["routes"]:
        theirs = ours.get(json.dumps(route["match"], sort_keys=True))
        result.check("routes", theirs is not None, detail=f"{where}: {route['match']}")
        if theirs is None:
            continue
        result.check("route cluster", theirs.get("cluster") == route["cluster"], detail=where)
        catch_all = route["timeout"] is None and route["cluster"] == "PassthroughCluster"
        result.check(
            "route timeout",
            theirs.get("timeout") == route["timeout"],
            "catch-all timeout" if catch_all else "",
            f"{where}: {theirs.get('timeout')} != {route['timeout']}",
        )
        expected, actual = route["retry_policy"] or {}, theirs.get("retry_policy", {})
        for key in ("num_retries", "retriable_status_codes", "host_selection_retry_max_attempts"):
            result.check(f"retry {key}", actual.get(key) == expected.get(key), detail=where)
        result.check(
            "retry retry_host_predicate",
            [p["name"] for p in actual.get("retry_host_predicate", [])]
            == [p["name"] for p in expected.get("retry_host_predicate", [])],
            detail=where,
        )
        conditions = (expected.get("retry_on") or "").split(",")
        dropped = ",".join(c for c in conditions if c != "resource-exhausted")
        result.check(
            "retry retry_on",
            actual.get("retry_on") == expected.get("retry_on"),
            "retry_on" if actual.get("retry_on") == dropped else "",
            f"{where}: {actual.get('retry_on')} != {expected.get('retry_on')}",
        )


@pytest.mark.parametrize("dump", CASES, ids=lambda d: d.name)
def test_pilot_matches_published_dump(dump: Dump) -> None:
    result = compare(dump)
    kept = KEPT_BY_PILOT | (KEPT_FOR_OLD_ISTIO if dump.old else {})
    print(f"\n{dump.name}: {result.summary()}")
    for kind, count in sorted(Counter(kind for kind, _ in result.differences).items()):
        print(f"  {count} x {kind}: {kept.get(kind, 'NOT KEPT')}")
    unexpected = [f"{kind}: {detail}" for kind, detail in result.differences if kind not in kept]
    assert not unexpected, "\n".join(unexpected)
    assert result.total["listener names"] > 0 and result.matched["listener names"] > 0


def test_comparison_catches_a_difference() -> None:
    """The comparison itself can fail: a published value changed is reported as its kind."""
    result = Comparison()
    published = {"domains": ["reviews", "reviews:9080", "ratings"]}
    compare_domains(result, published, {"domains": ["reviews"]}, "x")
    assert [kind for kind, _ in result.differences] == ["domain with port", "domains"]
