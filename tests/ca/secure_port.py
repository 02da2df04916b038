"""A pilot with the secure port, and a client channel to it as istio-agent makes one: TLS that trusts
only the CA directory's root-cert.pem and checks istiod's name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from pilot.ca.server_credentials import ISTIOD_HOST
from pilot.settings import Settings


def secure_settings(ca_dir: Path, **overrides: Any) -> Settings:
    """Loopback, free ports, the plain port off, the secure port on, quick pushes and stops."""
    values: dict[str, Any] = {
        "xds_host": "127.0.0.1",
        "xds_port": None,
        "xds_tls_port": 0,
        "ca_dir": ca_dir,
        "http_host": "127.0.0.1",
        "http_port": 0,
        "debounce_after": 0.01,
        "debounce_max": 1.0,
        "shutdown_grace": 0.5,
    }
    values.update(overrides)
    return Settings(**values)


def secure_channel(ca_dir: Path, port: int) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(root_certificates=(ca_dir / "root-cert.pem").read_bytes())
    return grpc.aio.secure_channel(
        f"127.0.0.1:{port}", credentials, options=[("grpc.ssl_target_name_override", ISTIOD_HOST)]
    )
