"""VHDS through a real Envoy on delta ADS (node metadata ``VHDS: "true"``): a route configuration's
virtual hosts arrive as resources of their own, an edit sends only the virtual host it changed,
a removed service's virtual host is removed, a route configuration subscribed again gets its
virtual hosts again; traffic follows and Envoy rejects nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from pilot.localmesh.backend import Backend
from pilot.localmesh.loopback import HttpClient, free_port
from tests.support import wait_until
from tests.support.istio import Service, destination_rule, service_entry, split
from tests.support.mesh import Mesh, tally, wait_routed

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, mesh_backends: dict[str, Backend]) -> Iterator[Mesh]:
    started = Mesh(tmp_path_factory.mktemp("mesh-vhds"), mesh_backends, delta=True, metadata={"VHDS": "true"})
    try:
        yield started.start()
    finally:
        started.stop()


def _pushed_bytes(mesh: Mesh) -> dict[str, float]:
    """pilot's ``pilot_xds_push_bytes_total`` by type (all streams: the mesh has one Envoy)."""
    with HttpClient(mesh.pilot.http_port) as client:
        text = client.get("/metrics").body.decode()
    found = re.findall(r'pilot_xds_push_bytes_total\{type="(\w+)"\} ([0-9.e+]+)', text)
    return {kind: float(value) for kind, value in found}


def _virtual_hosts(mesh: Mesh, service: Service) -> dict[str, dict[str, Any]]:
    config = mesh.route_config(service) or {}
    return {v["name"]: v for v in config.get("virtual_hosts", [])}


def _vhost_name(service: Service) -> str:
    return f"{service.port}/{service.host}:{service.port}"


def _add_services(mesh: Mesh, names: list[str], port: int) -> list[Service]:
    """Services sharing one port, so one route configuration holds all their virtual hosts."""
    services = [Service(name, port) for name in names]
    ports = {v: mesh.backends[v].port for v in ("v1", "v2")}
    for svc in services:
        mesh.write(f"{svc.name}-service.yaml", service_entry(svc, ports), destination_rule(svc, ("v1", "v2")))
        mesh.write(f"{svc.name}-vs.yaml", split(svc, {"v1": 100, "v2": 0}))
    mesh.envoy.wait_listener(services[0].listener, timeout=20.0)
    wait_until(
        lambda: all(_vhost_name(s) in _virtual_hosts(mesh, s) for s in services),
        15.0,
        0.1,
        "every virtual host over VHDS",
    )
    return services


def test_edit_sends_only_the_changed_virtual_host(mesh: Mesh) -> None:
    services = _add_services(mesh, [f"vh{i}" for i in range(8)], free_port())
    edited = services[0]
    with mesh.client(edited) as client:
        wait_routed(client, lambda r: r.version == "v1", message="all to v1")
    config_before = mesh.route_config(edited) or {}
    before = _pushed_bytes(mesh)
    mesh.write(f"{edited.name}-vs.yaml", split(edited, {"v1": 0, "v2": 100}))
    with mesh.client(edited) as client:
        wait_routed(client, lambda r: r.version == "v2", message="all to v2")
        assert tally(client, 20) == {"v2": 20}
    with mesh.client(services[1]) as client:
        assert tally(client, 10) == {"v1": 10}
    after = _pushed_bytes(mesh)
    sent = {kind: after[kind] - before.get(kind, 0.0) for kind in after if after[kind] != before.get(kind)}
    # One virtual host, not the route configuration of eight: nothing but VHDS, under 1 KB.
    assert set(sent) == {"vhds"}, sent
    assert sent["vhds"] < 1000, sent
    assert len(str(config_before)) > 6000  # what RDS would have sent: eight virtual hosts
    mesh.assert_config_accepted()
    with HttpClient(mesh.pilot.http_port) as client:
        (row,) = client.get("/debug/syncz").json()
    assert row["vhds"]["status"] == "SYNCED" and row["vhds"]["last_nack"] is None, row["vhds"]


def test_removed_service_removes_its_virtual_host(mesh: Mesh) -> None:
    kept, gone = _add_services(mesh, ["rm-kept", "rm-gone"], free_port())
    (mesh.config_dir / f"{gone.name}-service.yaml").unlink()
    (mesh.config_dir / f"{gone.name}-vs.yaml").unlink()
    wait_until(lambda: _vhost_name(gone) not in _virtual_hosts(mesh, kept), 15.0, 0.1, "virtual host removed")
    assert _vhost_name(kept) in _virtual_hosts(mesh, kept)
    with mesh.client(kept) as client:
        assert tally(client, 10) == {"v1": 10}
    mesh.assert_config_accepted()


def test_route_configuration_subscribed_again_gets_its_virtual_hosts(mesh: Mesh) -> None:
    """A port's last service goes (Envoy drops the listener, its route configuration and their
    VHDS subscription) and comes back: the virtual hosts are sent again."""
    port = free_port()
    (svc,) = _add_services(mesh, ["again"], port)
    for suffix in ("service", "vs"):
        (mesh.config_dir / f"{svc.name}-{suffix}.yaml").unlink()
    wait_until(lambda: svc.listener not in mesh.envoy.active_listeners(), 15.0, 0.1, "listener gone")
    (svc,) = _add_services(mesh, ["again"], port)
    with mesh.client(svc) as client:
        wait_routed(client, lambda r: r.version == "v1", message="routed again")
    mesh.assert_config_accepted()


def test_a_restarted_pilot_keeps_the_virtual_hosts_current(mesh: Mesh) -> None:
    """Envoy reconnects (its VHDS request may come before its RDS one) and follows edits made
    while pilot was down and after."""
    (svc,) = _add_services(mesh, ["restart"], free_port())
    with mesh.client(svc) as client:
        wait_routed(client, lambda r: r.version == "v1", message="on v1")
    mesh.pilot.stop()
    mesh.write(f"{svc.name}-vs.yaml", split(svc, {"v1": 0, "v2": 100}))
    mesh.pilot.start()
    with mesh.client(svc) as client:
        wait_routed(client, lambda r: r.version == "v2", consecutive=20, message="on v2 after the restart")
        mesh.write(f"{svc.name}-vs.yaml", split(svc, {"v1": 100, "v2": 0}))
        wait_routed(client, lambda r: r.version == "v1", consecutive=20, message="an edit after the restart")
    mesh.assert_config_accepted()
