"""The control plane dies (SIGKILL) and comes back: Envoy serves on, reconnects and follows edits.

Envoy keeps the last config it accepted while the ADS stream is down, and re-opens the stream
with backoff; the restarted pilot re-reads the folder and answers the reconnecting stream as a
new one. https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#xds-protocol
"""

from __future__ import annotations

import json

import pytest

from tests.support import wait_until
from tests.support.istio import split
from tests.support.mesh import Mesh, tally, wait_routed

pytestmark = pytest.mark.e2e


def test_envoy_survives_and_follows_a_restarted_control_plane(mesh: Mesh) -> None:
    svc = mesh.add_service("phoenix", ("v1", "v2", "v3"))
    mesh.write("phoenix-vs.yaml", split(svc, {"v1": 100}))
    with mesh.client(svc) as client:
        wait_routed(client, lambda r: r.version == "v1", consecutive=30, message="all on v1")
        assert mesh.envoy.connected()

        mesh.pilot.kill()
        wait_until(lambda: not mesh.envoy.connected(), 15.0, 0.1, "Envoy noticing the lost stream")
        # Envoy serves on with the config it has; an edit made now has nobody to push it.
        assert tally(client, 50) == {"v1": 50}
        mesh.write("phoenix-vs.yaml", split(svc, {"v2": 100}))
        assert tally(client, 20) == {"v1": 20}

        mesh.pilot.start()  # same ports, same folder
        wait_until(mesh.envoy.connected, 20.0, 0.1, "Envoy reconnecting")
        wait_until(lambda: mesh.envoy.node_id in json.dumps(mesh.pilot.debug_json("/debug/syncz")),
                   15.0, 0.1, "the proxy in the new pilot's /debug/syncz")
        # The edit made while pilot was down arrives with the restarted pilot's first push...
        wait_routed(client, lambda r: r.version == "v2", consecutive=30, message="all on v2 after restart")
        # ...and a new edit follows as usual.
        mesh.write("phoenix-vs.yaml", split(svc, {"v3": 100}))
        wait_routed(client, lambda r: r.version == "v3", consecutive=30, message="all on v3 after an edit")
    mesh.assert_config_accepted()
