"""Every rule shape pilot translates is accepted by a real Envoy (``envoy --mode validate``), on the
HTTP and the TCP chains of a REDIRECT sidecar's ``virtualInbound``: all of Source's, Operation's and
Istio's ``when`` keys with every wildcard form, in each action, dry run included."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilot.config.parse import parse_text
from pilot.translate.proxy import InterceptionMode
from pilot.translate.snapshot import generate_messages
from pilot.xds import types
from tests import factories
from tests.translate.golden import ENVOY, envoy_validate, static_bootstrap

WILD = '["v", "v-prefix-*", "*-suffix", "*"]'
RULE = f"""
  - from:
    - source:
        principals: {WILD}
        notPrincipals: {WILD}
        requestPrincipals: ["https://issuer.example/sub", "iss/*", "*sub", "*"]
        notRequestPrincipals: ["bad/sub"]
        namespaces: {WILD}
        notNamespaces: ["x"]
        ipBlocks: ["10.0.0.1", "10.1.0.0/16", "2001:db8::/32"]
        notIpBlocks: ["10.9.9.9"]
        remoteIpBlocks: ["192.0.2.0/24"]
        notRemoteIpBlocks: ["192.0.2.1"]
    - source:
        serviceAccounts: ["sa", "other/sa"]
        trustDomains: ["td.example", "*"]
    to:
    - operation:
        hosts: ["exact.example", "*.suffix.example", "prefix.*", "*"]
        notHosts: ["no.example"]
        methods: {WILD}
        notMethods: ["DELETE"]
        paths: ["/exact", "/prefix/*", "*/suffix", "*", "/t/{{*}}/x", "/t/{{**}}"]
        notPaths: ["/admin"]
        ports: ["80", "9080"]
        notPorts: ["1"]
    when:
    - {{key: "request.headers[x-a]", values: {WILD}, notValues: ["n"]}}
    - {{key: source.ip, values: ["10.0.0.0/8"]}}
    - {{key: remote.ip, notValues: ["10.0.0.1"]}}
    - {{key: source.namespace, values: ["ns-*"]}}
    - {{key: source.principal, values: ["cluster.local/ns/a/sa/b"]}}
    - {{key: request.auth.principal, values: ["iss/sub"]}}
    - {{key: request.auth.audiences, values: {WILD}}}
    - {{key: request.auth.presenter, values: ["azp"]}}
    - {{key: "request.auth.claims[groups]", values: ["g1", "g2*"]}}
    - {{key: "request.auth.claims[a][b]", notValues: ["x"]}}
    - {{key: destination.ip, values: ["10.0.0.0/8"]}}
    - {{key: destination.port, values: ["9080"]}}
    - {{key: connection.sni, values: ["*.example"]}}
    - {{key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: ["[update]", "x"]}}
"""


def policies(action: str, dry_run: bool = False) -> str:
    annotation = '\n  annotations: {"istio.io/dry-run": "true"}' if dry_run else ""
    return f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: all-{action.lower()}{"-dry" if dry_run else ""}
  namespace: default{annotation}
spec:
  action: {action}
  rules:{RULE}
"""


@pytest.mark.skipif(not ENVOY.exists(), reason="no envoy binary in .venv")
def test_every_rule_shape_in_every_action_is_accepted_by_envoy(tmp_path: Path) -> None:
    documents = [policies(a) for a in ("ALLOW", "DENY", "AUDIT")] + [policies("DENY", dry_run=True)]
    documents.append(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ext}\n"
        'spec: {action: CUSTOM, provider: {name: ext}, rules: [{to: [{operation: {paths: ["/x/*"]}}]}]}\n'
    )
    documents.append(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: nothing}\nspec: {}\n"
    )
    result = parse_text("---\n".join(documents), "authz.yaml")
    errors = [str(e) for e in result.errors if e.severity == "error"]
    assert not errors, errors
    context = factories.push_context(*result.objects)
    messages = generate_messages(factories.sidecar("default", InterceptionMode.REDIRECT), context)
    text = str(messages[types.LISTENER])
    # the passthrough chains: HTTP (bad CUSTOM, AUDIT, DENY, ALLOW in one HCM) and TCP
    assert "envoy.filters.http.rbac" in text and text.count("envoy.filters.network.rbac") == 4
    done = envoy_validate(static_bootstrap(messages), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]


EXT_AUTHZ_MESH = """apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    extensionProviders:
    - name: http
      envoyExtAuthzHttp:
        service: ext-authz.foo.svc.cluster.local
        port: 8000
        timeout: 2s
        pathPrefix: /check
        failOpen: true
        statusOnError: "503"
        includeRequestHeadersInCheck: [x-user, "x-pre*", "*-suffix"]
        includeAdditionalHeadersInCheck: {x-added: "1"}
        headersToUpstreamOnAllow: [x-verdict]
        headersToDownstreamOnDeny: [x-reason]
        headersToDownstreamOnAllow: [x-ok]
        includeRequestBodyInCheck: {maxRequestBytes: 1024, allowPartialMessage: true, packAsBytes: true}
    - name: grpc
      envoyExtAuthzGrpc:
        service: foo/ext-authz.foo.svc.cluster.local
        port: 8000
        timeout: 0.5s
        statusOnError: "403"
        includeRequestBodyInCheck: {maxRequestBytes: 512}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext-authz, namespace: foo}
spec:
  hosts: [ext-authz.foo.svc.cluster.local]
  ports: [{number: 8000, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
"""


# CUSTOM takes no identity conditions (validation rejects them, as Istio does).
CUSTOM_POLICY = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ext, namespace: default}}
spec:
  action: CUSTOM
  provider: {{name: {provider}}}
  rules:
  - from: [{{source: {{ipBlocks: ["10.0.0.0/8"], notRemoteIpBlocks: ["192.0.2.1"]}}}}]
    to: [{{operation: {{paths: ["/admin/*", "*/x", "/t/{{*}}/y"], methods: ["GET"], ports: ["80"]}}}}]
    when: [{{key: "request.headers[x-a]", values: ["v*"]}}]
  - to: [{{operation: {{ports: ["9000"]}}}}]
"""


@pytest.mark.skipif(not ENVOY.exists(), reason="no envoy binary in .venv")
@pytest.mark.parametrize("provider", ["http", "grpc"])
def test_custom_ext_authz_filters_are_accepted_by_envoy(tmp_path: Path, provider: str) -> None:
    documents = [
        EXT_AUTHZ_MESH,
        CUSTOM_POLICY.format(provider=provider),
        policies("DENY"),
    ]
    result = parse_text("---\n".join(documents), "authz.yaml")
    errors = [str(e) for e in result.errors if e.severity == "error"]
    assert not errors, errors
    context = factories.push_context(*result.objects)
    messages = generate_messages(factories.sidecar("default", InterceptionMode.REDIRECT), context)
    text = str(messages[types.LISTENER])
    assert "envoy.filters.http.ext_authz" in text
    assert ("envoy.filters.network.ext_authz" in text) == (provider == "grpc")
    done = envoy_validate(static_bootstrap(messages), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
