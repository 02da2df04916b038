"""MeshConfig ``extensionProviders``: Istio's checks of ext_authz providers (errors reject the mesh
config, translation-time problems are warnings), other provider kinds read and warned about, and a
CUSTOM AuthorizationPolicy naming no provider of the mesh config warned about by the store."""

from __future__ import annotations

import pytest

from pilot.config.objects import FieldError
from pilot.config.parse import parse_text
from pilot.config.store import ConfigStore

MESH = """apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |
    extensionProviders:
{providers}
"""


def mesh_problems(*providers: str) -> list[tuple[str, str, str]]:
    text = MESH.format(providers="\n".join(f"    - {p}" for p in providers))
    result = parse_text(text, "mesh.yaml")
    return [(e.path, e.message, e.severity) for e in result.errors]


def test_a_good_http_and_grpc_provider_have_no_problem():
    assert (
        mesh_problems(
            "{name: http, envoyExtAuthzHttp: {service: ext.foo.svc.cluster.local, port: 8000, timeout: 2s,"
            ' statusOnError: "503", pathPrefix: /check, failOpen: true}}',
            "{name: grpc, envoyExtAuthzGrpc: {service: foo/ext.foo.svc.cluster.local, port: 9000,"
            ' statusOnError: "403"}}',
            "{name: ip, envoyExtAuthzHttp: {service: 10.0.0.1, port: 80}}",
        )
        == []
    )


@pytest.mark.parametrize(
    ("provider", "path", "message"),
    [
        ("{envoyExtAuthzHttp: {service: a.b, port: 80}}", "name", "empty extension provider name"),
        (
            "{name: x, envoyExtAuthzHttp: {service: a.b, port: 0}}",
            "envoyExtAuthzHttp.port",
            "invalid service port",
        ),
        (
            "{name: x, envoyExtAuthzGrpc: {port: 80}}",
            "envoyExtAuthzGrpc.service",
            "service must not be empty",
        ),
        (
            "{name: x, envoyExtAuthzHttp: {service: 'bad host', port: 80}}",
            "envoyExtAuthzHttp.service",
            "invalid service fmt",
        ),
        (
            "{name: x, envoyExtAuthzHttp: {service: '/a.b', port: 80}}",
            "envoyExtAuthzHttp.service",
            "namespace/hostname",
        ),
        (
            "{name: x, envoyExtAuthzHttp: {service: a.b, port: 80, statusOnError: '999'}}",
            "envoyExtAuthzHttp.statusOnError",
            "unsupported statusOnError value 999",
        ),
        (
            "{name: x, envoyExtAuthzGrpc: {service: a.b, port: 80, statusOnError: abc}}",
            "envoyExtAuthzGrpc.statusOnError",
            "invalid statusOnError value abc",
        ),
        (
            "{name: x, envoyExtAuthzHttp: {service: a.b, port: 80, pathPrefix: check}}",
            "envoyExtAuthzHttp.pathPrefix",
            "pathPrefix should begin with `/`",
        ),
        ("{name: x}", "", "unsupported provider: none of its kinds is set"),
    ],
)
def test_errors_name_the_provider_and_field(provider: str, path: str, message: str):
    found = mesh_problems(provider)
    where = "data.mesh.extensionProviders[0]" + (f".{path}" if path else "")
    assert [(p, s) for p, m, s in found if message in m] == [(where, "error")], found


def test_a_duplicate_name_is_an_error_on_the_second():
    found = mesh_problems(
        "{name: x, envoyExtAuthzHttp: {service: a.b, port: 80}}",
        "{name: x, envoyExtAuthzGrpc: {service: a.b, port: 80}}",
    )
    assert found == [
        (
            "data.mesh.extensionProviders[1].name",
            "invalid extension provider x: duplicate extension provider name x",
            "error",
        )
    ]


def test_what_only_translation_refuses_is_a_warning_saying_the_policies_deny():
    found = mesh_problems(
        "{name: Upper, envoyExtAuthzHttp: {service: a.b, port: 80}}",
        "{name: star, envoyExtAuthzHttp: {service: a.b, port: 80, headersToUpstreamOnAllow: [x, '*']}}",
    )
    assert [(p, s) for p, _, s in found] == [
        ("data.mesh.extensionProviders[0].name", "warning"),
        ("data.mesh.extensionProviders[1].envoyExtAuthzHttp.headersToUpstreamOnAllow[1]", "warning"),
    ]
    assert all("deny the requests their rules match" in m for _, m, _ in found)


def test_other_provider_kinds_load_with_a_not_supported_warning():
    found = mesh_problems(
        "{name: zipkin, zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}}"
    )
    assert found == [
        ("data.mesh.extensionProviders[0].zipkin", "not yet supported by pilot; ignored", "warning")
    ]


POLICY = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ext, namespace: foo}}
spec:
  action: CUSTOM
  provider: {{name: {name}}}
  rules: [{{}}]
"""


def _provider_warnings(store: ConfigStore) -> list[FieldError]:
    return [e for e in store.errors() if e.path == "spec.provider.name"]


def test_the_store_warns_on_a_custom_policy_naming_no_provider_of_the_mesh():
    store = ConfigStore()
    store.apply(parse_text(POLICY.format(name="ext"), "policy.yaml"))
    (warning,) = _provider_warnings(store)
    assert (warning.origin, str(warning.key), warning.severity) == (
        "policy.yaml",
        "AuthorizationPolicy foo/ext",
        "warning",
    )
    assert 'provider "ext"' in warning.message and "extensionProviders: none" in warning.message
    assert "denied" in warning.message
    mesh = MESH.format(providers="    - {name: ext, envoyExtAuthzHttp: {service: a.b, port: 80}}")
    store.apply(parse_text(mesh, "mesh.yaml"))
    assert _provider_warnings(store) == []
    store.apply(parse_text(POLICY.format(name="other"), "policy.yaml"))
    (warning,) = _provider_warnings(store)
    assert 'provider "other"' in warning.message and "extensionProviders: ext)" in warning.message


def test_a_tracing_provider_of_that_name_does_not_count():
    store = ConfigStore()
    store.apply(parse_text(POLICY.format(name="zipkin"), "policy.yaml"))
    store.apply(parse_text(MESH.format(providers="    - {name: zipkin, zipkin: {port: 1}}"), "mesh.yaml"))
    assert len(_provider_warnings(store)) == 1


SERVICE = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext, namespace: {namespace}}}
spec:
  hosts: [ext.example]
  ports: [{{number: 80, name: http}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""


def _service_warnings(store: ConfigStore) -> list[tuple[str, str]]:
    return [(e.path, e.message) for e in store.errors() if e.path.endswith(".service")]


def test_the_store_warns_on_a_provider_whose_service_is_not_in_the_registry():
    store = ConfigStore()
    mesh = MESH.format(
        providers="    - {name: ext, envoyExtAuthzHttp: {service: ext.example, port: 80}}\n"
        "    - {name: grpc, envoyExtAuthzGrpc: {service: bar/ext.example, port: 80}}"
    )
    store.apply(parse_text(mesh, "mesh.yaml"))
    found = _service_warnings(store)
    assert [path for path, _ in found] == [
        "data.mesh.extensionProviders[0].envoyExtAuthzHttp.service",
        "data.mesh.extensionProviders[1].envoyExtAuthzGrpc.service",
    ]
    assert "no ServiceEntry or Service defines ext.example" in found[0][1]
    assert "denied" in found[0][1]
    store.apply(parse_text(SERVICE.format(namespace="foo"), "foo.yaml"))
    assert [path for path, _ in _service_warnings(store)] == [
        "data.mesh.extensionProviders[1].envoyExtAuthzGrpc.service"  # bar/: foo's does not count
    ]
    store.apply(parse_text(SERVICE.format(namespace="bar"), "bar.yaml"))
    ((path, message),) = _service_warnings(store)  # the bare host is now ambiguous
    assert path == "data.mesh.extensionProviders[0].envoyExtAuthzHttp.service"
    assert "namespaces ['bar', 'foo']" in message
