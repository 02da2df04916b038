"""An AuthorizationPolicy that validation passes and translation cannot take: its workloads get a DENY
of everything, the view's Snapshot says which object and why (``Snapshot.problems``), the metric
counts it once per push context, and every other policy translates as before."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from pilot import metrics
from pilot._gen import security_pb2 as sec
from pilot.cache.snapshot import Snapshot
from pilot.config.objects import ConfigObject
from pilot.errors import TranslationError
from pilot.translate import authz_model, grpc_authz, grpc_listeners, views
from pilot.translate.context import PushContext
from pilot.translate.proxy import InterceptionMode, Proxy
from pilot.translate.snapshot import build_snapshot
from pilot.xds import types
from tests import factories as f
from tests.translate.test_authz_policies import authz

REFUSED = "x-refused-by-the-builder"


def refuse_marked_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """The builder refuses any rule that names header ``REFUSED``: a stand-in for a value only
    translation rejects (validation has no such rule, so the policy is served)."""
    real = authz_model.rule_policy

    def rule_policy(rule: sec.Rule, *args: Any) -> Any:
        if any(REFUSED in condition.key for condition in rule.when):
            raise TranslationError(f"the builder refuses header {REFUSED}")
        return real(rule, *args)

    monkeypatch.setattr(authz_model, "rule_policy", rule_policy)


def policy(name: str, **spec: Any) -> ConfigObject:
    return authz(name, spec, namespace="default")


REFUSED_RULE = {"when": [{"key": f"request.headers[{REFUSED}]", "values": ["1"]}]}
BAD = policy("bad", selector={"matchLabels": {"app": "reviews"}}, rules=[REFUSED_RULE])
GOOD = policy("good", rules=[{"from": [{"source": {"namespaces": ["default"]}}]}])


def rbac_policies(snapshot: Snapshot) -> dict[str, set[str]]:
    """The RBAC policy names of virtualInbound's HTTP RBAC filters, by action."""
    listener = listener_pb2.Listener()
    snapshot.resources(types.LISTENER)["virtualInbound"].unpack(listener)
    found: dict[str, set[str]] = {}
    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            manager = hcm_pb2.HttpConnectionManager()
            if not network_filter.typed_config.Unpack(manager):
                continue
            for http_filter in manager.http_filters:
                config = http_rbac_pb2.RBAC()
                if http_filter.name == "envoy.filters.http.rbac" and http_filter.typed_config.Unpack(config):
                    action = rbac_pb2.RBAC.Action.Name(config.rules.action)
                    found.setdefault(action, set()).update(config.rules.policies)
    return found


def failures() -> float:
    return (
        metrics.REGISTRY.get_sample_value("pilot_translation_failures_total", {"kind": "AuthorizationPolicy"})
        or 0.0
    )


def test_the_selected_workloads_deny_all_and_the_snapshot_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    refuse_marked_rules(monkeypatch)
    context = f.push_context(f.http_service("reviews"), BAD, GOOD)
    sidecar = f.sidecar("default", InterceptionMode.REDIRECT)
    before = failures()

    reviews = build_snapshot(dataclasses.replace(sidecar, labels=(("app", "reviews"),)), context)
    assert rbac_policies(reviews) == {
        "DENY": {"ns[default]-policy[bad]-untranslatable"},
        "ALLOW": {"ns[default]-policy[good]-rule[0]"},
    }
    assert list(reviews.problems) == [BAD.key]
    (reason,) = reviews.problems[BAD.key]
    assert f"the builder refuses header {REFUSED}" in reason
    assert "ns[default]-policy[bad]-untranslatable" in reason

    # A workload the bad policy does not select: untouched, and nothing to report.
    other = build_snapshot(dataclasses.replace(sidecar, labels=(("app", "ratings"),)), context)
    assert rbac_policies(other) == {"ALLOW": {"ns[default]-policy[good]-rule[0]"}}
    assert dict(other.problems) == {}
    # Found once per push context, however many views it selects.
    build_snapshot(dataclasses.replace(sidecar, labels=(("app", "reviews"), ("v", "2"))), context)
    assert failures() == before + 1


def test_without_a_refusal_there_is_no_problem() -> None:
    context = f.push_context(f.http_service("reviews"), BAD, GOOD)
    view = f.sidecar("default", InterceptionMode.REDIRECT)
    snapshot = build_snapshot(dataclasses.replace(view, labels=(("app", "reviews"),)), context)
    assert dict(snapshot.problems) == {}
    assert "DENY" not in rbac_policies(snapshot)


def test_kept_listeners_keep_their_problems_and_a_rebuild_clears_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refuse_marked_rules(monkeypatch)
    service = f.http_service("reviews")
    view = dataclasses.replace(f.sidecar("default", InterceptionMode.REDIRECT), labels=(("app", "reviews"),))
    first = PushContext.build(f.store_snapshot([service, BAD, GOOD], revision=1))
    built = build_snapshot(view, first)
    assert list(built.problems) == [BAD.key]

    # Nothing changed: every type is kept, and with the listeners the problems they were built with.
    same = PushContext.build(f.store_snapshot([service, BAD, GOOD], revision=2), first)
    assert build_snapshot(view, same, (first, built)).problems == built.problems

    fixed = PushContext.build(f.store_snapshot([service, GOOD], revision=3), same)
    assert dict(build_snapshot(view, fixed, (same, built)).problems) == {}


def test_a_grpc_server_denies_all_and_its_snapshot_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    refuse_marked_rules(monkeypatch)
    reviews = f.http_service("reviews", port=9080, protocol="GRPC", endpoints=[{"address": "10.0.0.1"}])
    context = f.push_context(reviews, policy("bad", rules=[REFUSED_RULE]), GOOD)
    before = failures()
    node = "sidecar~10.0.0.1~r.default~default.svc.cluster.local"
    server = views.view_of(Proxy.from_node(node, {"GENERATOR": "grpc"}), context)
    assert server.proxyless_grpc and server.targets

    built = build_snapshot(server, context)
    listener = listener_pb2.Listener()
    built.resources(types.LISTENER)[f"{grpc_listeners.SERVER_LISTENER_PREFIX}0.0.0.0:9080"].unpack(listener)
    manager = hcm_pb2.HttpConnectionManager()
    listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    deny, allow, _router = manager.http_filters
    config = http_rbac_pb2.RBAC()
    assert deny.name == grpc_authz.DENY_FILTER and deny.typed_config.Unpack(config)
    assert config.rules.action == rbac_pb2.RBAC.DENY
    assert dict(config.rules.policies) == {
        "ns[default]-policy[bad]-untranslatable": rbac_pb2.Policy(
            permissions=[rbac_pb2.Permission(any=True)], principals=[rbac_pb2.Principal(any=True)]
        )
    }
    assert allow.name == grpc_authz.ALLOW_FILTER
    (key,) = built.problems
    assert key.name == "bad"
    (reason,) = built.problems[key]
    assert f"the builder refuses header {REFUSED}" in reason
    assert failures() == before + 1

    # A gRPC client serving no port has no server listener to deny in, and nothing to report.
    client = views.view_of(
        Proxy.from_node("sidecar~10.0.0.9~c.default~default.svc.cluster.local", {"GENERATOR": "grpc"}),
        context,
    )
    assert client.proxyless_grpc and not client.targets
    assert dict(build_snapshot(client, context).problems) == {}
