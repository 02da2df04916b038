"""One mesh (pilot + Envoy + backends v1/v2/v3) per test module; each test brings its own service.

Sharing keeps the suite fast: pilot and Envoy start once per module, and a test only adds a
ServiceEntry on a fresh port (a new listener) plus the VirtualService it is about. A module that
wants the delta protocol too overrides ``mesh`` with ``params``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pilot.localmesh.backend import Backend
from tests.support.mesh import Mesh, start_backends, stop_backends


@pytest.fixture(scope="module")
def mesh_backends() -> Iterator[dict[str, Backend]]:
    backends = start_backends(("v1", "v2", "v3"))
    try:
        yield backends
    finally:
        stop_backends(backends)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, mesh_backends: dict[str, Backend]) -> Iterator[Mesh]:
    """pilot and a SotW Envoy sidecar, started once for the module."""
    started = Mesh(tmp_path_factory.mktemp("mesh"), mesh_backends)
    try:
        yield started.start()
    finally:
        started.stop()
