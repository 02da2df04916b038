"""/debug/configz shows on an object the rejections that hold it back (pilot.push.holds)."""

from __future__ import annotations

from pilot.config.objects import ConfigKey
from pilot.config.parse import parse_text
from pilot.config.store import ConfigStore
from pilot.debug import rejections, views
from pilot.push.holds import ObjectRejection
from pilot.translate.snapshot import build_snapshot
from pilot.xds import types
from tests import factories as f
from tests.translate.test_virtual_hosts import VHDS_VIEW, vhds_objects


def test_configz_shows_a_rejection_on_its_object() -> None:
    alpha, beta = f.virtual_service("alpha", hosts=["alpha"]), f.virtual_service("beta", hosts=["beta"])
    rejection = ObjectRejection(
        key=ConfigKey("VirtualService", "default", "alpha"),
        origin="routes/alpha.yaml",
        view="sidecar/default/NONE",
        proxy="sidecar~10.0.0.1~a.default~default.svc.cluster.local",
        type_url=types.ROUTE,
        resource="9080",
        error="regex '/(ab|cd|ef){5}' RE2 program size of 45 > max program size of 20",
        at=1000.0,
        rejected_revision=7,
        held_revision=3,
    )
    body = views.configz(f.store_snapshot([alpha, beta]), [], rejections.located([rejection]))
    by_name = {o["name"]: o for o in body["objects"]}
    assert "rejected" not in by_name["beta"]
    [shown] = by_name["alpha"]["rejected"]
    assert shown == body["rejections"][0]
    assert shown["proxy"] == rejection.proxy and shown["resource"] == "9080" and shown["type"] == "rds"
    assert shown["origin"] == "routes/alpha.yaml" and "program size" in shown["error"]
    assert (shown["rejected_revision"], shown["held_revision"]) == (7, 3)


def test_configz_says_why_a_custom_authorization_policy_denies() -> None:
    """A CUSTOM policy naming a provider no MeshConfig defines: the object's warning in
    /debug/configz names the field and says it denies what its rules match instead."""
    text = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: foo}
spec:
  action: CUSTOM
  provider: {name: my-authz}
  rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]
"""
    store = ConfigStore()
    store.apply(parse_text(text, "authz.yaml"))
    body = views.configz(store.snapshot(), store.errors(), [])
    assert [(o["kind"], o["name"]) for o in body["objects"]] == [("AuthorizationPolicy", "ext")]
    (warning,) = body["errors"]
    assert (warning["origin"], warning["name"], warning["path"], warning["severity"]) == (
        "authz.yaml",
        "ext",
        "spec.provider.name",
        "warning",
    )
    assert '"my-authz"' in warning["message"] and "denied" in warning["message"]
    assert "extensionProviders" in warning["message"]


def test_config_dump_shows_a_vhds_route_configuration_as_envoy_holds_it() -> None:
    # Envoy merges the virtual hosts it took over VHDS into the route configuration it dumps.
    snapshot = build_snapshot(VHDS_VIEW, f.push_context(*vhds_objects()))
    (dumped,) = [c for c in views.config_dump(snapshot)["configs"] if c["@type"].endswith("RoutesConfigDump")]
    configs = {d["route_config"]["name"]: d["route_config"] for d in dumped["dynamic_route_configs"]}
    config = configs["9080"]
    assert "vhds" in config
    assert [v["name"] for v in config["virtual_hosts"]] == sorted(
        n for n in snapshot.resources(types.VIRTUAL_HOST) if n.startswith("9080/")
    )
