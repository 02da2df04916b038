"""A served AuthorizationPolicy that translation refuses, through the whole process: /debug/configz
shows why on the object (and on no other policy), /debug/proxyz and ``pilot proxy-status PROXY``
on the proxy, /metrics counts it."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import grpc
import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from pilot.app import serve
from pilot.cache.snapshot import Snapshot
from pilot.config.objects import ConfigKey
from pilot.debug.untranslated import untranslated
from pilot.inspect import proxy_status
from pilot.inspect.proxy_status import ProxyStatusOptions
from pilot.translate.grpc_authz import DENY_FILTER
from pilot.translate.grpc_listeners import SERVER_LISTENER_PREFIX
from pilot.xds import types
from tests.server.ads_client import AdsClient
from tests.test_app import NODE, http_get, service_entry, settings
from tests.translate.test_problems import REFUSED, refuse_marked_rules

POLICIES = f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: bad, namespace: default}}
spec:
  rules:
  - when:
    - key: request.headers[{REFUSED}]
      values: ["1"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: good, namespace: default}}
spec:
  rules:
  - from:
    - source: {{namespaces: [default]}}
"""
SERVER = f"{SERVER_LISTENER_PREFIX}0.0.0.0:80"


async def test_configz_proxyz_and_metrics_say_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refuse_marked_rules(monkeypatch)
    (tmp_path / "service.yaml").write_text(service_entry("alpha"))
    (tmp_path / "authz.yaml").write_text(POLICIES)
    async with serve(settings(tmp_path)) as pilot:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{pilot.xds_port}") as channel:
            client = AdsClient(channel, NODE)
            await client.request(types.LISTENER)
            await client.recv()  # the proxy's view is built (what it holds: tests/translate/test_problems.py)

            _, configz = await http_get(pilot.http_port, "/debug/configz")
            objects = {o["name"]: o for o in configz["objects"] if o["kind"] == "AuthorizationPolicy"}
            found = objects["bad"]["untranslated"]
            assert found["key"] == "AuthorizationPolicy default/bad"
            assert found["views"] and all("default" in view for view in found["views"])
            (reason,) = found["reasons"]
            assert f"the builder refuses header {REFUSED}" in reason
            assert "untranslated" not in objects["good"]
            assert [entry["key"] for entry in configz["untranslated"]] == ["AuthorizationPolicy default/bad"]

            _, proxyz = await http_get(pilot.http_port, f"/debug/proxyz?proxyID={NODE}")
            assert [entry["name"] for entry in proxyz["untranslated"]] == ["bad"]
            options = ProxyStatusOptions(proxy=NODE, pilot=f"http://127.0.0.1:{pilot.http_port}")
            out = io.StringIO()
            await asyncio.to_thread(proxy_status.run, options, out)
            assert f"not translated: AuthorizationPolicy default/bad: {reason}" in out.getvalue()
            _, text = await http_get(pilot.http_port, "/metrics")
            assert 'pilot_translation_failures_total{kind="AuthorizationPolicy"}' in text
            client.close()


def test_untranslated_gathers_each_object_once_across_views() -> None:
    key = ConfigKey("AuthorizationPolicy", "default", "bad")
    one = Snapshot("3", {}, problems={key: ("why",)})
    two = Snapshot("4", {}, problems={key: ("why", "also")})
    (entry,) = untranslated([("view-b", two), ("view-a", one), ("view-c", Snapshot("4", {}))])
    assert entry == {
        "key": "AuthorizationPolicy default/bad",
        "kind": "AuthorizationPolicy",
        "namespace": "default",
        "name": "bad",
        "reasons": ["why", "also"],
        "views": ["view-a", "view-b"],
        "version": "4",
    }


async def test_a_proxyless_grpc_server_denies_all_and_configz_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse_marked_rules(monkeypatch)
    (tmp_path / "service.yaml").write_text(service_entry("alpha"))  # its endpoint is NODE's address
    (tmp_path / "authz.yaml").write_text(POLICIES)
    async with serve(settings(tmp_path)) as pilot:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{pilot.xds_port}") as channel:
            client = AdsClient(channel, NODE)
            client.node.metadata.update({"GENERATOR": "grpc"})
            await client.request(types.LISTENER, [SERVER])
            response = await client.recv()
            listener = listener_pb2.Listener()
            (resource,) = response.resources
            assert resource.Unpack(listener) and listener.name == SERVER
            manager = hcm_pb2.HttpConnectionManager()
            listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
            deny = rbac_pb2.RBAC()
            assert manager.http_filters[0].name == DENY_FILTER
            manager.http_filters[0].typed_config.Unpack(deny)
            assert list(deny.rules.policies) == ["ns[default]-policy[bad]-untranslatable"]
            assert deny.rules.policies["ns[default]-policy[bad]-untranslatable"].permissions[0].any

            _, configz = await http_get(pilot.http_port, "/debug/configz")
            [entry] = configz["untranslated"]
            assert entry["key"] == "AuthorizationPolicy default/bad"
            assert any("proxyless" in view or "grpc" in view for view in entry["views"]), entry["views"]
            (reason,) = entry["reasons"]
            assert f"the builder refuses header {REFUSED}" in reason
            client.close()
