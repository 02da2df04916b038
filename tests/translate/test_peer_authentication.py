"""The effective PeerAuthentication: Istio's ComposePeerAuthentication cases
(pilot/pkg/security/authn/policy_applier_test.go ``TestComposePeerAuthentication``) and
GetNamespaceMutualTLSMode (pilot/pkg/model/authentication_test.go)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from google.protobuf import json_format

from pilot._gen import security_pb2
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.translate.peer_authentication import (
    EffectivePolicy,
    MtlsMode,
    PeerAuthentications,
    compose,
    index_of,
)

ROOT = "root-namespace"
NOW = datetime(2026, 1, 1, 12, 0, 0)
STRICT, PERMISSIVE, DISABLE = MtlsMode.STRICT, MtlsMode.PERMISSIVE, MtlsMode.DISABLE


def policy(
    name: str,
    namespace: str,
    mode: str | None = None,
    selector: dict[str, str] | None = None,
    ports: dict[int, str | None] | None = None,
    age: int = 0,
) -> ConfigObject[security_pb2.PeerAuthentication]:
    """A PeerAuthentication created ``age`` seconds before NOW."""
    spec: dict[str, Any] = {}
    if mode is not None:
        spec["mtls"] = {"mode": mode}
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    if ports is not None:
        spec["portLevelMtls"] = {str(p): ({"mode": m} if m else {}) for p, m in ports.items()}
    return ConfigObject(
        key=ConfigKey("PeerAuthentication", namespace, name),
        api_version="security.istio.io/v1",
        spec=json_format.ParseDict(spec, security_pb2.PeerAuthentication()),
        origin="test",
        created=NOW - timedelta(seconds=age),
    )


FOO = {"app": "foo"}
CASES: list[tuple[str, list[ConfigObject[security_pb2.PeerAuthentication]], EffectivePolicy]] = [
    ("no config", [], EffectivePolicy(PERMISSIVE)),
    ("mesh only", [policy("default", ROOT, "STRICT")], EffectivePolicy(STRICT)),
    (
        "mesh vs namespace",
        [policy("default", ROOT, "STRICT", selector={}), policy("default", "my-ns", "PERMISSIVE")],
        EffectivePolicy(PERMISSIVE),
    ),
    (
        "ignore non-empty selector in root namespace",
        [policy("default", ROOT, "STRICT", selector=FOO)],
        EffectivePolicy(PERMISSIVE),
    ),
    (
        "workload vs namespace config",
        [policy("default", "my-ns"), policy("foo", "my-ns", "DISABLE", selector=FOO)],
        EffectivePolicy(DISABLE),
    ),
    (
        "workload vs mesh config",
        [policy("default", "my-ns", "PERMISSIVE"), policy("default", ROOT, "DISABLE")],
        EffectivePolicy(PERMISSIVE),
    ),
    (
        "multiple mesh policy: the oldest, then the first name",
        [
            policy("now", ROOT, "DISABLE"),
            policy("second ago", ROOT, "PERMISSIVE", age=1),
            policy("second later", ROOT, "STRICT", age=1),
        ],
        EffectivePolicy(PERMISSIVE),
    ),
    (
        "multiple namespace policy",
        [
            policy("now", "my-ns", "DISABLE"),
            policy("second ago", "my-ns", "PERMISSIVE", age=1),
            policy("second later", "my-ns", "STRICT", age=1),
        ],
        EffectivePolicy(PERMISSIVE),
    ),
    (
        "multiple workload policy",
        [
            policy("now", "my-ns", "DISABLE", selector=FOO),
            policy("second ago", "my-ns", "PERMISSIVE", selector=FOO, age=1),
            policy("second later", "my-ns", "STRICT", selector={"stage": "prod"}, age=1),
        ],
        EffectivePolicy(PERMISSIVE),
    ),
    ("inheritance: default mesh", [policy("default", ROOT, "UNSET")], EffectivePolicy(PERMISSIVE)),
    (
        "inheritance: mesh to workload",
        [policy("default", ROOT, "STRICT"), policy("foo", "my-ns", selector=FOO)],
        EffectivePolicy(STRICT),
    ),
    (
        "inheritance: namespace to workload",
        [policy("default", "my-ns", "STRICT"), policy("foo", "my-ns", "UNSET", selector=FOO)],
        EffectivePolicy(STRICT),
    ),
    (
        "inheritance: mesh to namespace to workload",
        [
            policy("default", ROOT, "STRICT"),
            policy("default", "my-ns", "UNSET"),
            policy("foo", "my-ns", selector=FOO),
        ],
        EffectivePolicy(STRICT),
    ),
    (
        "port level: UNSET takes the workload's mode",
        [
            policy("default", ROOT, "STRICT"),
            policy(
                "foo", "my-ns", "PERMISSIVE", selector=FOO, ports={80: "STRICT", 90: None, 100: "DISABLE"}
            ),
        ],
        EffectivePolicy(PERMISSIVE, ((80, STRICT), (90, PERMISSIVE), (100, DISABLE))),
    ),
    (
        "port level of a workload policy that inherits",
        [policy("default", "my-ns", "STRICT"), policy("foo", "my-ns", selector=FOO, ports={8080: "DISABLE"})],
        EffectivePolicy(STRICT, ((8080, DISABLE),)),
    ),
]


@pytest.mark.parametrize(("configs", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_compose_follows_istios_precedence_and_inheritance(
    configs: list[ConfigObject[security_pb2.PeerAuthentication]], want: EffectivePolicy
) -> None:
    assert compose(ROOT, configs) == want
    assert compose(ROOT, list(reversed(configs))) == want  # the order given does not matter


def test_a_workload_gets_its_namespaces_and_the_root_namespaces_policies_that_select_it() -> None:
    index = PeerAuthentications.build(
        ROOT,
        [
            policy("mesh", ROOT, "STRICT"),
            policy("other", "other-ns", "DISABLE"),
            policy("foo", "my-ns", "DISABLE", selector=FOO, ports={9090: "STRICT"}),
            policy("bar", "my-ns", "PERMISSIVE", selector={"app": "bar", "version": "v1"}),
        ],
    )
    assert index.for_workload("my-ns", {"app": "foo", "version": "v1"}) == EffectivePolicy(
        DISABLE, ((9090, STRICT),)
    )
    assert index.for_workload("my-ns", {"app": "foo"}).for_port(9090) is STRICT
    assert index.for_workload("my-ns", {"app": "foo"}).for_port(80) is DISABLE
    # bar's selector needs both labels.
    assert index.for_workload("my-ns", {"app": "bar"}) == EffectivePolicy(STRICT)
    assert index.for_workload("my-ns", {"app": "bar", "version": "v1"}) == EffectivePolicy(PERMISSIVE)
    assert index.for_workload("other-ns", FOO) == EffectivePolicy(DISABLE)
    assert index.for_workload("third", FOO) == EffectivePolicy(STRICT)
    assert PeerAuthentications.build(ROOT, []).for_workload("my-ns", FOO) == EffectivePolicy()


def test_namespace_modes_are_istios_get_namespace_mutual_tls_mode() -> None:
    index = PeerAuthentications.build(
        ROOT,
        [
            policy("mesh", ROOT, "STRICT"),
            policy("a", "unset-ns", "UNSET"),
            policy("a", "disabled", "DISABLE"),
            policy("foo", "workload-only", "DISABLE", selector=FOO),
        ],
    )
    assert index.namespace_mode("disabled") is DISABLE
    assert index.namespace_mode("unset-ns") is STRICT  # UNSET inherits the mesh's
    assert index.namespace_mode("workload-only") is STRICT  # workload policies are not the namespace's
    assert index.namespace_mode(ROOT) is STRICT
    no_mesh = PeerAuthentications.build(ROOT, [policy("a", "unset-ns")])
    assert no_mesh.namespace_mode("unset-ns") is PERMISSIVE
    assert no_mesh.namespace_mode("elsewhere") is None  # istiod's MTLSUnknown
    assert PeerAuthentications.build(ROOT, [policy("m", ROOT)]).mesh_mode() is PERMISSIVE


def test_the_policies_that_lose_are_named(caplog: pytest.LogCaptureFixture) -> None:
    index = PeerAuthentications.build(
        ROOT,
        [
            policy("old", ROOT, "STRICT", age=10),
            policy("new", ROOT, "DISABLE"),
            policy("selects", ROOT, "DISABLE", selector=FOO),
            policy("a", "ns", "STRICT"),
            policy("b", "ns", "DISABLE"),
            policy("w", "ns", "DISABLE", selector=FOO),
        ],
    )
    assert [f"{k.namespace}/{k.name}" for k in index.ignored()] == ["ns/b", f"{ROOT}/new", f"{ROOT}/selects"]
    assert "PeerAuthentication ns/b ignored" in caplog.text
    assert index.mesh_mode() is STRICT


def test_the_index_is_built_once_per_policy_tuple() -> None:
    objects = (policy("mesh", ROOT, "STRICT"),)
    assert index_of(ROOT, objects) is index_of(ROOT, objects)
    assert index_of("istio-system", objects) is not index_of(ROOT, objects)
    assert index_of(ROOT, (policy("mesh", ROOT, "STRICT"),)) is not index_of(ROOT, objects)
