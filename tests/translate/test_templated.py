"""Templated resources (pilot.translate.templated) parse as the messages the builders make.

Every resource build_snapshot sends is parsed from its bytes and compared with the message the
message path builds in a fresh context with route templates turned off: for the bench mesh
(bench/mesh.py), the translate scenarios and every file of the Istio corpus, for sidecars in both
interception modes, with and without mesh certificates, and the views the corpus's Sidecars and
WorkloadEntries select. So a template can never drift from the builder it stands for.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf.message import Message

from bench.mesh import BenchService, service_docs, virtual_service_doc
from pilot.cache.snapshot import Resource
from pilot.config.objects import ConfigObject
from pilot.config.parse import parse_text
from pilot.translate import route_templates
from pilot.translate.cluster_encoding import TemplatedCluster
from pilot.translate.context import PushContext
from pilot.translate.proxy import InterceptionMode, ProxyView
from pilot.translate.route_records import TemplatedRoutes
from pilot.translate.snapshot import generate_messages, generators_for
from pilot.xds import types
from tests import factories
from tests.corpus import CORPUS, served_files
from tests.push import test_incremental as incremental
from tests.test_corpus_envoy import selected_views, with_services
from tests.translate import test_pieces as pieces

KINDS: dict[str, type[Message]] = {
    types.CLUSTER: cluster_pb2.Cluster,
    types.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    types.LISTENER: listener_pb2.Listener,
    types.ROUTE: route_pb2.RouteConfiguration,
    types.VIRTUAL_HOST: route_components_pb2.VirtualHost,
}


def _sent(view: ProxyView, context: PushContext) -> tuple[dict[str, dict[str, Message]], int]:
    """What build_snapshot sends for ``view``, parsed back from its bytes, and how many resources
    (clusters and route pieces) were templated."""
    out: dict[str, dict[str, Message]] = {}
    templated = 0
    for type_url, generator in generators_for(view).items():
        encode = getattr(generator, "generate_encoded", None)
        items = encode(view, context) if encode is not None else generator.generate(view, context)
        out[type_url] = {}
        for name, item in items:
            templated += isinstance(item, TemplatedCluster)
            resource = Resource.from_message(type_url, name, item)
            out[type_url][name] = resource.unpack(KINDS[type_url]())
    pieces_of = context.scope_of(view).route_pieces
    templated += sum(
        isinstance(routes, TemplatedRoutes)
        for _, by_port in pieces_of.routes.values()
        for routes in by_port.values()
    )
    return out, templated


def _built(
    view: ProxyView, objects: list[ConfigObject], monkeypatch: pytest.MonkeyPatch
) -> dict[str, dict[str, Message]]:
    """The messages the builders make, in a fresh context, no route templated."""
    with monkeypatch.context() as patch:
        patch.setattr(route_templates, "_spec_shape", lambda vs, templates: None)
        context = PushContext.build(factories.store_snapshot(objects, 1))
        return {
            type_url: {name: message for name, message in items}
            for type_url, items in generate_messages(view, context).items()
        }


def _check(objects: list[ConfigObject], views: list[ProxyView], monkeypatch: pytest.MonkeyPatch) -> int:
    context = PushContext.build(factories.store_snapshot(objects, 1))
    templated = 0
    for view in views:
        sent, count = _sent(view, context)
        templated += count
        built = _built(view, objects, monkeypatch)
        assert sent.keys() == built.keys(), view
        for type_url, messages in built.items():
            assert sent[type_url].keys() == messages.keys(), (view, type_url)
            for name, message in messages.items():
                assert sent[type_url][name] == message, (view, types.short_name(type_url), name)
    return templated


def _sidecars(namespace: str) -> list[ProxyView]:
    out = []
    for mode in (InterceptionMode.NONE, InterceptionMode.REDIRECT):
        plain = factories.sidecar(namespace, mode)
        out += [plain, dataclasses.replace(plain, mesh_certificates=True)]
    return out


def _bench_mesh(count: int) -> list[ConfigObject]:
    documents = []
    for index in range(count):
        service = BenchService(index)
        documents += [*service_docs(service), virtual_service_doc(service, 60 + index % 3)]
    result = parse_text(yaml.safe_dump_all(documents, sort_keys=False), "bench.yaml")
    assert not result.errors
    return list(result.objects)


def test_the_bench_mesh_is_sent_as_built(monkeypatch: pytest.MonkeyPatch) -> None:
    # 24 services: three on each of the 8 ports, three VirtualService shapes (by weight).
    templated = _check(_bench_mesh(24), _sidecars("bench"), monkeypatch)
    assert templated > 0  # the clusters and the routes of the mesh are templated


@pytest.mark.parametrize("path", incremental.SCENARIOS, ids=lambda p: p.stem)
def test_translate_scenarios_are_sent_as_built(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _check(factories.load_yaml(path), [*pieces.VIEWS, *_sidecars("default")], monkeypatch)


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"no corpus at {CORPUS}")
@pytest.mark.parametrize("path", served_files(), ids=lambda p: p.stem)
def test_corpus_is_sent_as_built(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = with_services(factories.load_yaml(path))
    context = PushContext.build(factories.store_snapshot(objects, 1))
    _check(objects, [*_sidecars("default"), *selected_views(objects, context)], monkeypatch)
