"""Rebuild testdata/istio-dumps/ from Istio's published sidecar config dumps.

Run from a clone of istio/istio (``python3 extract.py ISTIO_CLONE OUT_DIR``). For each dump it writes
``NAME.published.json`` (the outbound names and fields tests/translate/test_istio_dumps.py compares,
trimmed from the dump) and ``NAME.mesh.yaml`` (the mesh the dump implies, as ServiceEntries and
DestinationRules). The config dumps hold no endpoints, so every EDS service gets one made-up
endpoint; ORIGINAL_DST services become ``resolution: NONE``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

# (name, commit, path, Istio version). The describe dumps were removed from istio/istio by #23730
# (d83a9b818786080886972e988ff2a2bddaac0792); the commit below is its parent.
SOURCES = (
    ("productpage-1.3", "285c0509f9f428e325ad9f378207b7e57e798525",
     "istioctl/cmd/testdata/describe/productpage-v1-7bbd79f8fd-k6j79.json", "1.3.0-rc.2"),
    ("productpage-1.4", "285c0509f9f428e325ad9f378207b7e57e798525",
     "istioctl/cmd/testdata/describe/productpage-v1-c7765c886-v99jb.json", "1.4-alpha.945b2e081e817e63fab6c1112c55d585073b0b7a"),
    ("authz-2024", "86c9f01fd735fb01d8192f5bcaf0d424afb7f14c",
     "istioctl/pkg/authz/testdata/configdump.yaml", "2024 sidecar (file last changed by istio/istio#53894)"),
)
HCM = "envoy.filters.network.http_connection_manager"
TCP = "envoy.filters.network.tcp_proxy"


def listener_of(entry: dict[str, Any]) -> dict[str, Any]:
    return entry.get("listener") or entry["active_state"]["listener"]


def network_filters(listener: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for chain in listener.get("filter_chains", []) for f in chain.get("filters", [])]


def typed(f: dict[str, Any]) -> dict[str, Any]:
    return f.get("typed_config") or f.get("config") or {}


def published(dump: dict[str, Any]) -> dict[str, Any]:
    configs = {c["@type"].rsplit(".", 1)[-1]: c for c in dump["configs"]}
    out: dict[str, Any] = {"clusters": [], "listeners": [], "routes": []}
    for entry in configs.get("ClustersConfigDump", {}).get("dynamic_active_clusters", []):
        c = entry["cluster"]
        if c["name"].startswith("outbound|"):
            out["clusters"].append({"name": c["name"], "type": c.get("type"), "connect_timeout": c.get("connect_timeout")})
    for entry in configs["ListenersConfigDump"].get("dynamic_active_listeners", []) + configs[
        "ListenersConfigDump"
    ].get("dynamic_listeners", []):
        l = listener_of(entry)
        if l.get("traffic_direction") == "INBOUND" or "address" not in l or l["name"] in ("virtualInbound", "connect_terminate"):
            continue
        if any(typed(f).get("stat_prefix") == "inbound_0.0.0.0_15020" or "inbound|" in str(typed(f).get("cluster", ""))
               or typed(f).get("stat_prefix", "").startswith("inbound") for f in network_filters(l)):
            continue  # 1.3/1.4 inbound listeners carry no traffic_direction
        hcms = [typed(f) for f in network_filters(l) if f["name"] in (HCM, "envoy.http_connection_manager")]
        tcps = [typed(f) for f in network_filters(l) if f["name"] in (TCP, "envoy.tcp_proxy")]
        out["listeners"].append({
            "name": l["name"],
            "http": [{"rds": h.get("rds", {}).get("route_config_name"), "stream_idle_timeout": h.get("stream_idle_timeout")} for h in hcms],
            "tcp_clusters": sorted({t["cluster"] for t in tcps if "cluster" in t}),
            "chains": [
                {"name": chain["name"], "match": chain.get("filter_chain_match", {})}
                for chain in l.get("filter_chains", []) if "name" in chain
            ],
        })
    for entry in configs.get("RoutesConfigDump", {}).get("dynamic_route_configs", []):
        rc = entry["route_config"]
        out["routes"].append({
            "name": rc["name"],
            "ignore_port_in_host_matching": rc.get("ignore_port_in_host_matching", False),
            "virtual_hosts": [
                {
                    "name": vh["name"],
                    "domains": vh["domains"],
                    "routes": [
                        {
                            "match": r["match"],
                            "cluster": r.get("route", {}).get("cluster"),
                            "timeout": r.get("route", {}).get("timeout"),
                            "retry_policy": r.get("route", {}).get("retry_policy"),
                        }
                        for r in vh["routes"]
                    ],
                }
                for vh in rc.get("virtual_hosts", [])
            ],
        })
    return out


def mesh(pub: dict[str, Any]) -> list[dict[str, Any]]:
    """ServiceEntries (one per host) and DestinationRules (one per host with subsets)."""
    ports: dict[str, dict[int, str]] = defaultdict(dict)
    subsets: dict[str, set[str]] = defaultdict(set)
    vips: dict[str, set[str]] = defaultdict(set)
    passthrough: set[str] = set()
    http: set[tuple[str, int]] = set()
    for rc in pub["routes"]:
        for vh in rc["virtual_hosts"]:
            host, _, port = vh["name"].rpartition(":")
            if host and port.isdigit():
                http.add((host, int(port)))
                vips[host].update(d for d in vh["domains"] if d[0].isdigit() and ":" not in d)
    for c in pub["clusters"]:
        _, port, subset, host = c["name"].split("|")
        ports[host][int(port)] = "HTTP" if (host, int(port)) in http else "TCP"
        if subset:
            subsets[host].add(subset)
        if c["type"] == "ORIGINAL_DST":
            passthrough.add(host)
    for l in pub["listeners"]:
        address, _, port = l["name"].rpartition("_")
        for cluster in l["tcp_clusters"]:
            if cluster.startswith("outbound|"):
                _, p, _, host = cluster.split("|")
                ports[host][int(p)] = "TCP"
                if address != "0.0.0.0":
                    vips[host].add(address)
        for h in l["http"]:
            rds = h["rds"] or ""
            host, _, p = rds.rpartition(":")
            if host:
                # An HTTP chain on an ADDRESS_PORT listener, routed by "host:port": istiod builds
                # these for ports it sniffs (no declared protocol), so the port declares none.
                ports[host][int(p)] = "AUTO"
                vips[host].add(address)
            elif rds.isdigit() and not any(int(rds) in ps and ps[int(rds)] == "HTTP" for ps in ports.values()):
                # The dump names only the port: a placeholder service stands for the services on it.
                ports[f"http-{rds}.placeholder.svc.cluster.local"][int(rds)] = "HTTP"
    docs: list[dict[str, Any]] = []
    n = 0
    for host in sorted(ports):
        parts = host.split(".")
        namespace = parts[1] if host.endswith(".svc.cluster.local") else "default"
        name = parts[0] if host.endswith(".svc.cluster.local") else host.replace(".", "-")
        spec: dict[str, Any] = {
            "hosts": [host],
            "location": "MESH_INTERNAL",
            "ports": [
                {"number": p, "name": f"port-{p}"} if proto == "AUTO" else {"number": p, "name": f"{proto.lower()}-{p}", "protocol": proto}
                for p, proto in sorted(ports[host].items())
            ],
        }
        if vips[host]:
            spec["addresses"] = sorted(vips[host])
        if host in passthrough:
            spec["resolution"] = "NONE"
        else:
            spec["resolution"] = "STATIC"
            spec["endpoints"] = []
            for s in sorted(subsets[host]) or ["v1"]:
                n += 1
                spec["endpoints"].append({"address": f"10.200.{n // 250}.{n % 250}", "labels": {"version": s}})
        docs.append({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                     "metadata": {"name": name, "namespace": namespace}, "spec": spec})
        if subsets[host]:
            docs.append({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                         "metadata": {"name": name, "namespace": namespace},
                         "spec": {"host": host, "subsets": [{"name": s, "labels": {"version": s}} for s in sorted(subsets[host])]}})
    return docs


def main(clone: Path, out: Path) -> None:
    for name, commit, path, version in SOURCES:
        text = subprocess.run(["git", "-C", str(clone), "show", f"{commit}:{path}"], check=True, capture_output=True, text=True).stdout
        pub = published(json.loads(text) if path.endswith(".json") else yaml.safe_load(text))
        pub["source"] = {"repository": "istio/istio", "commit": commit, "path": path, "istio_version": version}
        (out / f"{name}.published.json").write_text(json.dumps(pub, indent=1, sort_keys=True) + "\n")
        header = f"# The mesh of istio/istio@{commit}:{path} (Istio {version}),\n# rebuilt by extract.py.\n"
        (out / f"{name}.mesh.yaml").write_text(header + yaml.safe_dump_all(mesh(pub), sort_keys=False, default_flow_style=None, width=120))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
