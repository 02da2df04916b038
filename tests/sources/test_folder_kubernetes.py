"""The folder source reads Kubernetes Services, EndpointSlices and Pods as the cluster source does
(pilot.config.kube_core): Istio's bookinfo.yaml, a ``kubectl get -o yaml`` dump, Pods as endpoints and
as proxy identities; the other Kubernetes kinds are skipped without a word."""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilot.config.kube_services import services_in, synthetic_key
from pilot.config.objects import ConfigKey, ConfigObject, ParseResult
from pilot.config.parse import parse_text
from pilot.config.store import ConfigStore
from pilot.sources.files import FolderSource
from pilot.sources.folder_services import service_origin
from pilot.translate.clusters import build_clusters
from pilot.translate.context import PushContext
from pilot.translate.proxy import InterceptionMode, NodeType, Proxy, ProxyView
from pilot.translate.snapshot import generate_messages, inconsistencies
from pilot.translate.views import identified, view_of
from pilot.xds import types
from tests.corpus import CORPUS
from tests.sources.test_files import eventually, running
from tests.sources.test_kube import client, kube, source_for  # noqa: F401 (fixtures)
from tests.sources.test_kube import running as kube_running
from tests.support.kube_api import FakeKubeApi, endpoint_slice, pod, service
from tests.translate.golden import ENVOY, envoy_validate, static_bootstrap

BOOKINFO = CORPUS / "bookinfo__bookinfo.yaml"
BOOKINFO_SERVICES = ("details", "productpage", "ratings", "reviews")


def host(name: str) -> str:
    return f"{name}.default.svc.cluster.local"


def entries(store: ConfigStore) -> dict[str, Any]:
    """Synthetic ServiceEntry name → spec."""
    return {obj.name: obj.spec for obj in services_in(store.snapshot().objects.values())}


def outbound_clusters(store: ConfigStore) -> dict[str, Any]:
    """The outbound clusters of Kubernetes services a sidecar in ``default`` gets: name → cluster."""
    context = PushContext.build(store.snapshot())
    view = ProxyView(NodeType.SIDECAR, "default")
    return {name: cluster for name, cluster in build_clusters(view, context) if ".svc.cluster.local" in name}


def pod_yaml(name: str, ip: str, labels: dict[str, str], account: str = "", **extra: Any) -> dict[str, Any]:
    obj = pod(name, ip=ip, labels=labels)
    obj["spec"]["serviceAccountName"] = account or f"bookinfo-{labels['app']}"
    obj["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": 9080}]
    obj["status"].update(extra)
    return obj


REVIEWS_PODS = [
    pod_yaml("reviews-v1-a", "10.1.0.1", {"app": "reviews", "version": "v1"}),
    pod_yaml("reviews-v2-b", "10.1.0.2", {"app": "reviews", "version": "v2"}),
    pod_yaml("reviews-v3-c", "10.1.0.3", {"app": "reviews", "version": "v3"}),
]


async def test_bookinfo_gives_the_same_services_and_clusters_as_the_cluster_source(
    tmp_path: Path,
    kube: FakeKubeApi,  # noqa: F811
    client: Any,  # noqa: F811
) -> None:
    text = BOOKINFO.read_text(encoding="utf-8")
    (tmp_path / "bookinfo.yaml").write_text(text, encoding="utf-8")
    folder_store = ConfigStore()
    async with running(FolderSource(tmp_path, folder_store)):
        folder_entries = entries(folder_store)
        folder_clusters = outbound_clusters(folder_store)
    for document in yaml.safe_load_all(text):
        if document and document["kind"] == "Service":
            kube.apply(document)
    kube_store = ConfigStore()
    async with kube_running(source_for(kube_store, client)):
        kube_entries = entries(kube_store)
        kube_clusters = outbound_clusters(kube_store)

    assert sorted(folder_entries) == [f"(svc){name}" for name in BOOKINFO_SERVICES]
    assert folder_entries == kube_entries  # the same conversion, field for field
    assert sorted(folder_clusters) == sorted(f"outbound|9080||{host(name)}" for name in BOOKINFO_SERVICES)
    assert folder_clusters == kube_clusters
    reviews = folder_entries["(svc)reviews"]
    assert [(p.number, p.name, p.protocol) for p in reviews.ports] == [(9080, "http", "HTTP")]
    assert len(reviews.endpoints) == 0  # no Pods in the folder: the cluster, no endpoints


@pytest.mark.skipif(not ENVOY.exists(), reason="no envoy binary in .venv")
@pytest.mark.parametrize("mode", [InterceptionMode.REDIRECT, InterceptionMode.NONE], ids=lambda m: m.value)
async def test_bookinfo_services_are_accepted_by_envoy_in_both_interception_modes(
    tmp_path: Path, mode: InterceptionMode
) -> None:
    """Istio's bookinfo.yaml as a folder: its Services' translation, with Istio's destination rules and
    a VirtualService, for a sidecar of each interception mode, passes a real Envoy's validation."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "bookinfo.yaml").write_text(BOOKINFO.read_text(encoding="utf-8"), encoding="utf-8")
    for extra in ("bookinfo__destination-rule-all.yaml", "bookinfo__virtual-service-reviews-80-20.yaml"):
        if (CORPUS / extra).exists():
            (config / extra).write_text((CORPUS / extra).read_text(encoding="utf-8"), encoding="utf-8")
    store = ConfigStore()
    async with running(FolderSource(config, store)):
        context = PushContext.build(store.snapshot())
    messages = generate_messages(ProxyView(NodeType.SIDECAR, "default", mode), context)
    clusters = {name for name, _ in messages[types.CLUSTER]}
    assert {f"outbound|9080||{host(name)}" for name in BOOKINFO_SERVICES} <= clusters
    assert inconsistencies(messages) == []
    result = envoy_validate(static_bootstrap(messages), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


def test_bookinfo_parses_without_a_word_about_the_kinds_it_skips(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pilot.config.parse")
    result = parse_text(BOOKINFO.read_text(encoding="utf-8"), "bookinfo.yaml")
    assert result.errors == ()  # Deployments and ServiceAccounts: neither errors nor warnings
    assert not result.partial and not result.fatal
    assert [core.key.name for core in result.core] == ["details", "ratings", "reviews", "productpage"]
    skipped = [r for r in caplog.records if "skipping" in r.getMessage()]
    assert {r.levelno for r in skipped} == {logging.DEBUG}
    assert {r.getMessage().split("skipping ")[1].split(":")[0] for r in skipped} == {
        "v1 ServiceAccount",
        "apps/v1 Deployment",
    }


async def test_pods_give_endpoints_to_a_service_without_endpoint_slices(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As the EndpointSlice controller would: ready Pods with an IP whose labels hold the selector."""
    (tmp_path / "bookinfo.yaml").write_text(BOOKINFO.read_text(encoding="utf-8"), encoding="utf-8")
    not_ready = pod_yaml("reviews-v4-d", "10.1.0.4", {"app": "reviews", "version": "v4"})
    not_ready["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    pending = pod_yaml("reviews-v5-e", "10.1.0.5", {"app": "reviews", "version": "v5"})
    del pending["status"]["podIP"]
    other = pod_yaml("ratings-v1-f", "10.1.0.9", {"app": "ratings", "version": "v1"})
    pods = tmp_path / "pods.yaml"
    pods.write_text(yaml.safe_dump_all([*REVIEWS_PODS, not_ready, pending, other]), encoding="utf-8")
    store = ConfigStore()
    async with running(FolderSource(tmp_path, store)):
        reviews = entries(store)["(svc)reviews"]
        assert [(e.address, dict(e.ports), e.labels["version"]) for e in reviews.endpoints] == [
            ("10.1.0.1", {"http": 9080}, "v1"),
            ("10.1.0.2", {"http": 9080}, "v2"),
            ("10.1.0.3", {"http": 9080}, "v3"),
        ]
        assert [e.address for e in entries(store)["(svc)ratings"].endpoints] == ["10.1.0.9"]
        # bookinfo's Deployments and ServiceAccounts: not a warning, not an error.
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
        assert store.errors() == []
        assert store.get(synthetic_key("default", "reviews")).origin == service_origin("default", "reviews")  # type: ignore[union-attr]

        # A Pod going away (its file edited) takes its endpoint with it.
        pods.write_text(yaml.safe_dump_all(REVIEWS_PODS[:2]), encoding="utf-8")
        await eventually(
            lambda: len(entries(store)["(svc)reviews"].endpoints) == 2, "reviews down to two endpoints"
        )
        assert entries(store)["(svc)ratings"].endpoints == []
        # The Service's file deleted: its ServiceEntry goes, the Pods stay.
        (tmp_path / "bookinfo.yaml").unlink()
        await eventually(lambda: not entries(store), "every Service gone")
        assert ConfigKey("Pod", "default", "reviews-v1-a") in store.snapshot().objects


async def test_a_kubectl_list_dump(tmp_path: Path) -> None:
    """``kubectl get svc,endpointslices,pods,deploy -o yaml``: one ``kind: List`` of every kind."""
    reviews = service("reviews", cluster_ip="10.96.1.5")
    reviews["spec"]["ports"] = [{"name": "http", "port": 9080, "targetPort": 9080, "protocol": "TCP"}]
    dump = {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": [
            reviews,
            endpoint_slice(
                "reviews-abc",
                "reviews",
                endpoints=[("10.1.0.1", "reviews-v1-a", True), ("10.1.0.2", None, False)],
            ),
            *REVIEWS_PODS[:1],
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "reviews-v1"}, "spec": {}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"}, "data": {}},
        ],
    }
    (tmp_path / "dump.yaml").write_text(yaml.safe_dump(dump), encoding="utf-8")
    store = ConfigStore()
    # Parsed in a worker process, as ``pilot serve`` does: the records and identities cross it.
    spawn = multiprocessing.get_context("spawn")
    source = FolderSource(tmp_path, store, executor=lambda: ProcessPoolExecutor(1, mp_context=spawn))
    async with running(source):
        assert [e for e in store.errors() if e.severity == "error"] == []
        entry = entries(store)["(svc)reviews"]
        assert list(entry.addresses) == ["10.96.1.5"]
        # From the EndpointSlice (its ready endpoint), with the labels of the Pod it names.
        assert [(e.address, dict(e.ports), dict(e.labels)) for e in entry.endpoints] == [
            ("10.1.0.1", {"http": 9080}, {"app": "reviews", "version": "v1"})
        ]
        identity = store.get(ConfigKey("Pod", "default", "reviews-v1-a"))
        assert identity is not None and identity.origin == "dump.yaml"
        assert identity.spec.service_account == "bookinfo-reviews"  # type: ignore[attr-defined]


def bad_service(port: object) -> str:
    return f"""\
apiVersion: v1
kind: Service
metadata:
  name: reviews
spec:
  selector:
    app: reviews
  ports:
  - name: http
    port: {port}
"""


@pytest.mark.parametrize(
    ("port", "message"),
    [
        (70000, "must be between 1 and 65535, got 70000"),
        ("http", "must be a port number, got a string"),
        ("null", "required: a port number"),
    ],
)
def test_a_bad_service_port_names_file_object_and_field(port: object, message: str) -> None:
    result = parse_text(bad_service(port), "svc.yaml")
    assert [str(error) for error in result.errors] == [
        f"svc.yaml:10: Service default/reviews: spec.ports[0].port: {message}"
    ]
    assert result.rejected == {ConfigKey("Service", "default", "reviews")} and result.core == ()


def test_bad_endpoint_slice_and_pod_fields_are_errors() -> None:
    text = """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: reviews-abc
  labels: {kubernetes.io/service-name: reviews}
addressType: IPv4
endpoints:
- addresses: [not-an-ip]
ports:
- {name: http, port: 0}
---
apiVersion: v1
kind: Pod
metadata:
  name: reviews-v1
spec:
  containers:
  - name: app
    ports: [{containerPort: 99999}]
status:
  podIP: 10.1.0.300
"""
    result = parse_text(text, "bad.yaml")
    assert [str(error) for error in result.errors] == [
        "bad.yaml:8: EndpointSlice default/reviews-abc: endpoints[0].addresses[0]: "
        '"not-an-ip" is not an IPv4 address',
        "bad.yaml:10: EndpointSlice default/reviews-abc: ports[0].port: must be between 1 and 65535, got 0",
        "bad.yaml:19: Pod default/reviews-v1: spec.containers[0].ports[0].containerPort: "
        "must be between 1 and 65535, got 99999",
        'bad.yaml:21: Pod default/reviews-v1: status.podIP: "10.1.0.300" is not an IP address',
    ]
    assert result.objects == () and result.core == ()


async def test_a_bad_service_keeps_its_last_good_version(tmp_path: Path) -> None:
    file = tmp_path / "svc.yaml"
    file.write_text(bad_service(9080), encoding="utf-8")
    store = ConfigStore()
    async with running(FolderSource(tmp_path, store)):
        assert [p.number for p in entries(store)["(svc)reviews"].ports] == [9080]
        file.write_text(bad_service(70000), encoding="utf-8")
        await eventually(lambda: any(e.origin == "svc.yaml" for e in store.errors()), "the error reported")
        assert [p.number for p in entries(store)["(svc)reviews"].ports] == [9080]


async def test_a_service_in_two_files_is_a_duplicate_on_the_later_one(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(bad_service(9080), encoding="utf-8")
    (tmp_path / "b.yaml").write_text(bad_service(8080), encoding="utf-8")
    store = ConfigStore()
    async with running(FolderSource(tmp_path, store)):
        assert [p.number for p in entries(store)["(svc)reviews"].ports] == [9080]
        (message,) = [str(e) for e in store.errors()]
        assert message.startswith(
            "b.yaml: Service default/reviews: duplicate of the object already loaded from a.yaml"
        )
        (tmp_path / "a.yaml").unlink()
        await eventually(lambda: [p.number for p in entries(store)["(svc)reviews"].ports] == [8080], "b wins")
        assert store.errors() == []


# -- Pods as proxy identity ---------------------------------------------------------------------------------


def source_labels_route() -> ConfigObject:
    """Traffic to ratings from reviews v2 only: a selector on ``app`` and ``version``."""
    route = {
        "match": [{"sourceLabels": {"app": "reviews", "version": "v2"}}],
        "route": [{"destination": {"host": "ratings"}}],
    }
    document = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "ratings"},
        "spec": {"hosts": ["ratings"], "http": [route]},
    }
    text = yaml.safe_dump(document)
    (obj,) = parse_text(text, "vs.yaml").objects
    return obj


def test_a_proxy_without_labels_is_known_by_its_pod() -> None:
    result = parse_text(yaml.safe_dump_all(REVIEWS_PODS), "pods.yaml")
    store = ConfigStore()
    store.apply(result)
    store.apply(ParseResult("vs.yaml", objects=(source_labels_route(),)))
    context = PushContext.build(store.snapshot())
    node = "sidecar~10.1.0.2~reviews-v2-b.default~default.svc.cluster.local"

    proxy = identified(Proxy.from_node(node, {}), context)
    assert dict(proxy.labels) == {"app": "reviews", "version": "v2"}
    assert proxy.service_account == "bookinfo-reviews"
    assert view_of(Proxy.from_node(node, {}), context).labels == (("app", "reviews"), ("version", "v2"))
    # The node's own metadata wins, as in Istio; a node naming no known Pod stays as it is.
    sent = Proxy.from_node(node, {"LABELS": {"app": "reviews", "version": "v1"}, "SERVICE_ACCOUNT": "x"})
    assert identified(sent, context) is sent
    assert view_of(sent, context).labels == ()  # v1 satisfies no selector: nothing of it decides
    stranger = Proxy.from_node("sidecar~10.1.0.7~nobody.default~default.svc.cluster.local", {})
    assert view_of(stranger, context).labels == ()


async def test_with_kube_a_proxy_is_known_by_its_pod(kube: FakeKubeApi, client: Any) -> None:  # noqa: F811
    kube.apply(pod_yaml("reviews-v2-b", "10.1.0.2", {"app": "reviews", "version": "v2"}))
    store = ConfigStore()
    async with kube_running(source_for(store, client)):
        store.apply(ParseResult("vs.yaml", objects=(source_labels_route(),)))
        context = PushContext.build(store.snapshot())
        proxy = identified(
            Proxy.from_node("sidecar~10.1.0.2~reviews-v2-b.default~default.svc.cluster.local", {}), context
        )
        assert dict(proxy.labels) == {"app": "reviews", "version": "v2"}
        assert proxy.service_account == "bookinfo-reviews"
        # A status-only update changes nothing in the store (no push); a relabel does.
        revision = store.revision
        moved = pod_yaml("reviews-v2-b", "10.1.0.2", {"app": "reviews", "version": "v2"}, phase="Failed")
        kube.apply(moved)
        kube.apply(pod_yaml("reviews-v2-b", "10.1.0.2", {"app": "reviews", "version": "v3"}, phase="Failed"))
        key = ConfigKey("Pod", "default", "reviews-v2-b")
        await eventually(
            lambda: dict(store.get(key).spec.labels).get("version") == "v3",  # type: ignore[union-attr, attr-defined]
            "the relabel applied",
        )
        assert store.revision == revision + 1
        kube.delete("Pod", "default", "reviews-v2-b")
        await eventually(
            lambda: ConfigKey("Pod", "default", "reviews-v2-b") not in store.snapshot().objects, "gone"
        )
