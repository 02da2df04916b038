"""``pilot serve``'s flags of the mesh CA and the secure port, as Settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilot.cli import build_parser, settings_from


def test_serve_flags_of_the_secure_port():
    args = [
        "serve",
        "--xds-port",
        "0",
        "--ca-dir",
        "ca",
        "--workload-cert-ttl",
        "2m",
        "--xds-tls-host",
        "a.example",
    ]
    built = settings_from(build_parser().parse_args(args))
    assert built.xds_port is None  # 0: the plain port is off
    assert (built.ca_dir, built.workload_cert_ttl, built.xds_tls_port) == (Path("ca"), 120.0, 15012)
    assert built.xds_tls_hosts == ("a.example",)
    off = settings_from(build_parser().parse_args(["serve", "--xds-tls-port", "0"]))
    assert off.xds_tls_port is None and off.ca_dir is None and off.workload_cert_ttl == 24 * 3600
    with pytest.raises(ValueError, match="workload_cert_ttl"):
        settings_from(build_parser().parse_args(["serve", "--workload-cert-ttl", "2400h"]))
