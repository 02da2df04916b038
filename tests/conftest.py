"""Fixtures shared by every test directory: temporary config folders, backends, pilot, Envoy.

Everything a fixture starts is stopped in its teardown, also when the test fails. When a test
fails, the logs of the pilot and Envoy processes it used are attached to the report.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.support import Backend, EnvoyProcess, PilotProcess, failure_logs
from tests.support.mesh import start_backends, stop_backends


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for title, text in failure_logs.sections():
            report.sections.append((title, text))
    return report


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """An empty folder for Istio YAML."""
    path = tmp_path / "config"
    path.mkdir()
    return path


@pytest.fixture
def backends() -> Iterator[dict[str, Backend]]:
    """Backends ``v1``, ``v2`` and ``v3`` on free ports, stopped after the test."""
    started = start_backends(("v1", "v2", "v3"))
    try:
        yield started
    finally:
        stop_backends(started)


@pytest.fixture
def pilot_process(config_dir: Path, tmp_path: Path) -> Iterator[PilotProcess]:
    """``pilot serve`` watching ``config_dir``, ready (``/ready`` = 200) when the test starts."""
    pilot = PilotProcess(config_dir, tmp_path / "pilot.log")
    failure_logs.watch(pilot)
    try:
        yield pilot.start()
    finally:
        pilot.stop()
        failure_logs.unwatch(pilot)


@pytest.fixture
def envoy_process(pilot_process: PilotProcess, tmp_path: Path) -> Iterator[EnvoyProcess]:
    """A sidecar Envoy (node ``sidecar~127.0.0.1~test.default~...``) configured by ``pilot_process``."""
    envoy = EnvoyProcess(
        "sidecar~127.0.0.1~test.default~default.svc.cluster.local", pilot_process.xds_port, tmp_path
    )
    failure_logs.watch(envoy)
    try:
        envoy.start().wait_configured()
        yield envoy
    finally:
        envoy.stop()
        failure_logs.unwatch(envoy)
