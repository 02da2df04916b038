"""Every file of the shared Istio corpus loads with no error, and its translation is accepted by a real
Envoy, for a sidecar and for a router with the labels the file's Gateways select.

Each file is translated together with synthetic ServiceEntries for the hosts it names
(tests/corpus.py), and checked with ``envoy --mode validate`` on a static bootstrap (the same check as
the golden tests). The sidecars: one in ``default`` (NONE mode), and for a file with Sidecars or
WorkloadEntries, the proxies they select or describe, in both interception modes.
``test_corpus_translates_in_both_modes`` translates every file for REDIRECT and NONE sidecars in
process (no Envoy), and checks that the kinds pilot translates carry no not-yet-supported warnings
but those of the fields it still does not translate. ``test_corpus_served_over_ads`` serves the whole
corpus from a real ``pilot serve`` to real Envoys (a REDIRECT and a NONE sidecar, and the routers)
and checks that nothing is NACKed.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format

from pilot.config import kinds
from pilot.config.gateway_api.convert import convert
from pilot.config.objects import ConfigObject
from pilot.config.parse import parse_text
from pilot.translate import hosts
from pilot.translate.context import PushContext
from pilot.translate.jwt_authn import JWT_AUTHN_FILTER
from pilot.translate.proxy import InterceptionMode, NodeType, Proxy, ProxyView
from pilot.translate.snapshot import generate_messages, inconsistencies
from pilot.translate.targets import ServiceTarget
from pilot.translate.views import view_of
from tests import factories
from tests.corpus import (
    CORPUS,
    all_files,
    gateway_api_files,
    gateway_selectors,
    served_files,
    store_objects,
    synthetic_service_entries,
)
from tests.support import EnvoyProcess, PilotProcess, failure_logs, wait_until
from tests.support.jwt_issuer import Issuer, IssuerThread
from tests.translate.golden import ENVOY, TEST_CERT, TEST_KEY, envoy_validate, static_bootstrap
from tests.translate.test_mesh_tls import with_sds_cluster

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"no corpus at {CORPUS}")

FILES = all_files()
SERVED_FILES = served_files()
GATEWAY_API_FILES = gateway_api_files()
DEFAULT_ROUTER_LABELS = (("istio", "ingressgateway"),)


def load(path: Path) -> list[ConfigObject]:
    result = parse_text(path.read_text(), str(path))
    problems = [str(e) for e in result.errors if e.severity == "error"]
    assert not result.fatal and not problems, "\n".join(problems)
    return list(result.objects)


def with_services(objects: list[ConfigObject]) -> list[ConfigObject]:
    entries = synthetic_service_entries(objects)
    if not entries:
        return objects
    return objects + load_text(yaml.safe_dump_all(entries), "synthetic.yaml")


def load_text(text: str, origin: str) -> list[ConfigObject]:
    result = parse_text(text, origin)
    problems = [str(e) for e in result.errors if e.severity == "error"]
    assert not result.fatal and not problems, "\n".join(problems)
    return list(result.objects)


def views(objects: list[ConfigObject], context: PushContext) -> list[ProxyView]:
    routers = gateway_selectors(objects) or [DEFAULT_ROUTER_LABELS]
    return (
        [factories.sidecar("default")]
        + selected_views(objects, context)
        + policy_views(objects, context)
        + peer_authentication_views(objects)
        + [ProxyView(NodeType.ROUTER, "istio-system", labels=labels) for labels in routers]
    )


def policy_views(objects: list[ConfigObject], context: PushContext) -> list[ProxyView]:
    """A REDIRECT sidecar each AuthorizationPolicy selects (its namespace, or ``default`` for the root
    namespace's, with its selector's labels), so its RBAC filters reach Envoy on virtualInbound."""
    out: list[ProxyView] = []
    for obj in objects:
        if obj.kind != "AuthorizationPolicy":
            continue
        spec: Any = obj.spec
        namespace = "default" if obj.namespace == context.mesh.root_namespace else obj.namespace
        node = f"sidecar~10.255.0.2~authz.{namespace}~{namespace}.svc.cluster.local"
        labels = dict(spec.selector.match_labels)
        proxy = Proxy.from_node(node, {"LABELS": labels, "INTERCEPTION_MODE": "REDIRECT"})
        view = view_of(proxy, context)
        if view not in out:
            out.append(view)
    return out


def peer_authentication_views(objects: list[ConfigObject]) -> list[ProxyView]:
    """For each PeerAuthentication, a REDIRECT sidecar under ``pilot agent`` (mesh certificates) in its
    namespace with its selector's labels, serving its ``portLevelMtls`` ports and 9080: the mTLS chains
    of each of its modes."""
    out = []
    for obj in objects:
        if kinds.PEER_AUTHENTICATION_INFO.holds(obj):
            ports = sorted({9080, *obj.spec.port_level_mtls})
            targets = tuple(
                ServiceTarget(f"pa.{obj.namespace}.svc.cluster.local", p, p, "HTTP") for p in ports
            )
            labels = tuple(sorted(obj.spec.selector.match_labels.items()))
            out.append(
                replace(
                    factories.sidecar(obj.namespace, InterceptionMode.REDIRECT),
                    labels=labels,
                    targets=targets,
                    mesh_certificates=True,
                )
            )
    return out


def selected_views(objects: list[ConfigObject], context: PushContext) -> list[ProxyView]:
    """The views of the sidecars the file's Sidecars and RequestAuthentications select (their namespace
    and selector labels) and of those at its WorkloadEntries' addresses, each in REDIRECT and NONE mode."""
    proxies: list[tuple[str, str, dict[str, str]]] = []
    for obj in objects:
        spec: Any = obj.spec
        if obj.kind == "Sidecar":
            proxies.append(("10.255.0.1", obj.namespace, dict(spec.workload_selector.labels)))
        elif obj.kind == "RequestAuthentication" and spec.HasField("selector"):
            proxies.append(("10.255.0.1", obj.namespace, dict(spec.selector.match_labels)))
        elif obj.kind == "WorkloadEntry" and hosts.is_ip(spec.address):
            proxies.append((spec.address, obj.namespace, {}))
    out: list[ProxyView] = []
    for ip, namespace, labels in proxies:
        for mode in (InterceptionMode.REDIRECT, InterceptionMode.NONE):
            node = f"sidecar~{ip}~corpus.{namespace}~{namespace}.svc.cluster.local"
            proxy = Proxy.from_node(node, {"LABELS": labels, "INTERCEPTION_MODE": str(mode)})
            view = view_of(proxy, context)
            if view not in out:
                out.append(view)
    return out


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_corpus_file_is_valid(path: Path) -> None:
    objects = load(path)
    served = path in SERVED_FILES or path in GATEWAY_API_FILES
    assert bool(objects) == served, f"{path.name}: objects {objects}"


@pytest.mark.skipif(not ENVOY.exists(), reason="no envoy binary in .venv")
@pytest.mark.parametrize("path", sorted({*SERVED_FILES, *GATEWAY_API_FILES}), ids=lambda p: p.stem)
def test_corpus_translation_accepted_by_envoy(path: Path, tmp_path: Path) -> None:
    objects = with_services(load(path))
    context = factories.push_context(*objects)
    for view in views(objects, context):
        messages = generate_messages(view, context)
        assert inconsistencies(messages) == [], f"{view}"
        bootstrap = static_bootstrap(messages)
        if view.mesh_certificates:
            bootstrap = with_sds_cluster(bootstrap)
        result = envoy_validate(bootstrap, tmp_path)
        assert result.returncode == 0, f"envoy rejected {path.name} for {view}:\n{result.stderr[-3000:]}"


# Fields of the kinds below that pilot still does not translate (pilot.config.validation.support).
STILL_WARNED = re.compile(r"^spec\.(serviceAccount|network|metadata|template|probe|ingress\[\d+\]\.tls)$")
TRANSLATED_KINDS = frozenset(
    {"Sidecar", "WorkloadEntry", "WorkloadGroup", "VirtualService", "DestinationRule"}
)


def test_corpus_translates_in_both_modes() -> None:
    """Every file, for a sidecar in ``default`` and those its Sidecars and WorkloadEntries select, in
    REDIRECT and NONE mode: a consistent snapshot, and no not-yet-supported warning on a Sidecar,
    WorkloadEntry, WorkloadGroup, ``sourceLabels`` or ``workloadSelector`` but the fields still not
    translated."""
    checked = 0
    for path in SERVED_FILES:
        result = parse_text(path.read_text(), str(path))
        unexpected = [
            str(problem)
            for problem in result.errors
            if problem.severity == "warning"
            and "not yet supported" in problem.message
            and problem.key is not None
            and problem.key.kind in TRANSLATED_KINDS
            and not STILL_WARNED.match(problem.path)
        ]
        assert unexpected == [], f"{path.name}: " + "; ".join(unexpected)
        objects = with_services(list(result.objects))
        context = factories.push_context(*objects)
        sidecars = [
            factories.sidecar("default", mode) for mode in (InterceptionMode.REDIRECT, InterceptionMode.NONE)
        ]
        for view in sidecars + selected_views(objects, context):
            assert inconsistencies(generate_messages(view, context)) == [], f"{path.name}: {view}"
            checked += 1
    assert checked >= 2 * len(SERVED_FILES)


def test_corpus_gateway_api_routes_attach_as_the_spec_says() -> None:
    """The whole corpus (each key from the file that sorts first, as the store keeps it): every route
    is Accepted by its parent, but for the one the spec refuses, with its reason. The mesh TLSRoute
    to the egress gateway (a ServiceEntry parent) becomes a ``tls`` route of cnn's host."""
    objects: dict[Any, ConfigObject] = {}
    for path in FILES:
        for obj in load(path):
            objects.setdefault(obj.key, obj)
    conversion = convert(store_objects(with_services(list(objects.values()))))
    status = conversion.status
    refused = {
        (key.kind, key.name, parent["parentRef"]["name"]): (condition["type"], condition["reason"])
        for key, value in status.items()
        for parent in value.get("parents", ())
        for condition in parent["conditions"]
        if condition["status"] != "True"
    }
    assert len(status) >= 15
    mesh = [
        o for o in conversion.objects if o.name == "edition-cnn-com-istio-autogenerated-k8s-gateway-mesh-tls"
    ]
    assert [json_format.MessageToDict(o.spec) for o in mesh] == [
        {
            "hosts": ["edition.cnn.com"],
            "tls": [
                {
                    "match": [{"sniHosts": ["edition.cnn.com"]}],
                    "route": [
                        {
                            "destination": {
                                "host": "cnn-egress-gateway-istio.default.svc.cluster.local",
                                "port": {"number": 443},
                            }
                        }
                    ],
                }
            ],
        }
    ]
    assert refused == {
        # Gateway default/cnn-egress-gateway comes from the HTTP variant of the file (it sorts first):
        # its only listener is HTTP, which a TLSRoute cannot attach to.
        ("TLSRoute", "forward-cnn-from-egress-gateway", "cnn-egress-gateway"): (
            "Accepted",
            "NotAllowedByListeners",
        ),
    }


# --- the whole corpus over ADS ---------------------------------------------------------------------

CERT_PATH = re.compile(r"(/etc/certs/[\w.-]+)")
# A gateway credentialName is read from ROOT/NS/NAME/tls.crt on the router's host, which this Envoy
# does not have: the test certificate files stand in for the Secret.
CREDENTIAL_NAME = re.compile(r"^([ \t]*)credentialName: [\w.-]+.*$", re.MULTILINE)
# A RequestAuthentication's jwksUri is fetched by pilot: pointed at a local JWKS server, never the
# Internet (its issuer-only rules fail OpenID discovery and so fail closed).
JWKS_URI = re.compile(r"^([ \t-]*)jwksUri: .*$", re.MULTILINE)


def _test_file(path: str) -> str:
    """A corpus certificate path → the test key or certificate (Envoy reads them on load)."""
    return str(TEST_KEY if "key" in Path(path).name else TEST_CERT)


def write_corpus(config_dir: Path, jwks_uri: str = "http://127.0.0.1:9/jwks.json") -> list[ConfigObject]:
    """The corpus (certificate paths pointed at the test files, JWKS URIs at ``jwks_uri``) and its
    synthetic ServiceEntries, as files of a config folder; returns every object."""
    objects: list[ConfigObject] = []
    for path in FILES:
        text = CERT_PATH.sub(lambda m: _test_file(m.group(1)), path.read_text())
        text = CREDENTIAL_NAME.sub(
            lambda m: f"{m.group(1)}serverCertificate: {TEST_CERT}\n{m.group(1)}privateKey: {TEST_KEY}", text
        )
        text = JWKS_URI.sub(lambda m: f'{m.group(1)}jwksUri: "{jwks_uri}"', text)
        (config_dir / path.name).write_text(text)
        objects += load_text(text, path.name)
    (config_dir / "zz-synthetic.yaml").write_text(yaml.safe_dump_all(synthetic_service_entries(objects)))
    return objects


def acked_everything(syncz: Any, node_id: str) -> bool:
    """pilot's /debug/syncz: the node acknowledged what it was last sent, and NACKed nothing."""
    text = repr(syncz)
    return node_id in text and "error_detail" not in text.lower() and "nack" not in text.lower()


def connection_managers(dump: Any) -> list[dict[str, Any]]:
    """Every HttpConnectionManager in an Envoy config_dump (listeners' filter chains, at any depth)."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if str(node.get("@type", "")).endswith("http_connection_manager.v3.HttpConnectionManager"):
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(dump)
    return found


def node_status(pilot: PilotProcess, node_id: str) -> dict[str, Any] | None:
    rows = [row for row in pilot.debug_json("/debug/syncz") if row.get("proxy") == node_id]
    return rows[-1] if rows else None


def settled(pilot: PilotProcess, envoy: EnvoyProcess) -> bool:
    """Envoy holds everything pilot sent (cds and lds acknowledged, eds and rds acknowledged or not
    asked for) and warms nothing; a NACK fails at once."""
    row = node_status(pilot, envoy.node_id)
    if row is None:
        return False
    nacks = {t: row[t]["last_nack"] for t in ("cds", "eds", "lds", "rds") if row[t]["last_nack"]}
    assert not nacks, f"{envoy.name} NACKed: {nacks}"
    assert envoy.rejected_updates() == {}, envoy.log_tail(30)
    statuses = {t: row[t]["status"] for t in ("cds", "eds", "lds", "rds")}
    if statuses["cds"] != "SYNCED" or statuses["lds"] != "SYNCED":
        return False
    if any(status not in ("SYNCED", "NOT SENT") for status in statuses.values()):
        return False
    warming = envoy.stats(r"^(cluster_manager\.warming_clusters|listener_manager\.total_listeners_warming)$")
    return warming != {} and not any(warming.values())


@pytest.mark.e2e
@pytest.mark.skipif(not ENVOY.exists(), reason="no envoy binary in .venv")
def test_corpus_served_over_ads(tmp_path: Path) -> None:
    """The whole corpus from one ``pilot serve``: a sidecar, then one router per Gateway selector (one
    at a time: routers of different Gateways bind the same ports), each ACKs everything it is sent."""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    with IssuerThread(Issuer("corpus", kid="corpus-key")) as jwks_server:
        serve_corpus(tmp_path, config_dir, jwks_server.jwks_uri)


def serve_corpus(tmp_path: Path, config_dir: Path, jwks_uri: str) -> None:
    objects = write_corpus(config_dir, jwks_uri)
    pilot = PilotProcess(config_dir, tmp_path / "pilot.log")
    failure_logs.watch(pilot)
    # One sidecar per interception mode, in ``default``, whose Sidecar (sidecar-default-import)
    # scopes it. REDIRECT: its port listeners bind nothing, only virtualOutbound (15001) and
    # virtualInbound (15006) do. NONE: its egress listeners bind 127.0.0.1, as Istio's do.
    nodes: list[tuple[str, str, dict[str, Any]]] = [
        (
            f"sidecar-{mode.lower()}",
            f"sidecar~127.0.0.1~corpus-{mode.lower()}.default~default.svc.cluster.local",
            {"INTERCEPTION_MODE": mode},
        )
        for mode in ("REDIRECT", "NONE")
    ]
    for index, selector in enumerate(gateway_selectors(objects)):
        node_id = f"router~127.0.0.1~gateway-{index}.istio-system~istio-system.svc.cluster.local"
        nodes.append((f"router-{index}", node_id, {"LABELS": dict(selector)}))
    try:
        pilot.start()
        for name, node_id, metadata in nodes:
            envoy = EnvoyProcess(node_id, pilot.xds_port, tmp_path, metadata=metadata, name=f"envoy-{name}")
            failure_logs.watch(envoy)
            try:
                envoy.start()
                wait_until(lambda envoy=envoy: settled(pilot, envoy), 30.0, 0.1, f"{name} in sync")
                managers = connection_managers(envoy.config_dump())
                assert managers or name != "sidecar", "the sidecar holds no HTTP connection manager"
                # istiod's: Envoy's 5-minute default would reset idle gRPC streams and websockets.
                idle = {m.get("stat_prefix"): m.get("stream_idle_timeout") for m in managers}
                assert set(idle.values()) <= {"0s"}, idle
                # req-authn-for-all (root namespace) applies to every gateway connection manager, with
                # the keys pilot fetched from the local JWKS server. (The sidecar has no mesh
                # certificates and the corpus's mesh-wide PeerAuthentication is STRICT: its inbound
                # chains refuse every connection, fail closed, and hold no connection manager.)
                if name.startswith("router") and managers:
                    assert "corpus-key" in str(
                        [
                            f
                            for m in managers
                            for f in m.get("http_filters", ())
                            if f["name"] == JWT_AUTHN_FILTER
                        ]
                    ), name
            finally:
                envoy.stop()
                failure_logs.unwatch(envoy)
    finally:
        pilot.stop()
        failure_logs.unwatch(pilot)
