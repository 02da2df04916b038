"""The agent's side of pilot's secure port: one TLS channel and the bearer token on every call.

The channel trusts only the mesh root and checks pilot's certificate for ``server_name`` (Istio's
ISTIOD_SAN, ``istiod.istio-system.svc`` by default) whatever address it dials, as Istio's agent
does for ``discoveryAddress``. The CSR and the ADS streams share it. The token is read from its
file on every call because the kubelet (or whoever stands in for it) rotates the file in place
(Istio's caclient reads ``./var/run/secrets/tokens/istio-token`` per request).
"""

from __future__ import annotations

from pathlib import Path

import grpc

from pilot.ca.tokens import MAX_TOKEN_BYTES
from pilot.errors import AuthenticationError

# Notice a dead pilot behind a silent network (no FIN) and reconnect, as Envoy's keepalive does.
_KEEPALIVE_MS = 30_000
_KEEPALIVE_TIMEOUT_MS = 10_000


def read_token(path: Path) -> str:
    """The token in ``path``, stripped; AuthenticationError saying why there is none."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise AuthenticationError(f"cannot read the token file {path}: {err.strerror or err}") from err
    if len(data) > MAX_TOKEN_BYTES:
        raise AuthenticationError(f"token file {path} holds {len(data)} bytes, more than a token")
    token = data.decode("utf-8", errors="replace").strip()
    if not token:
        raise AuthenticationError(f"token file {path} is empty")
    return token


def bearer_metadata(token_file: Path) -> tuple[tuple[str, str], ...]:
    """``authorization: Bearer TOKEN`` with the token as the file holds it now."""
    return (("authorization", f"Bearer {read_token(token_file)}"),)


def secure_channel(address: str, root_pem: bytes, server_name: str) -> grpc.aio.Channel:
    """A grpc.aio channel to ``address`` over TLS, trusting ``root_pem``, checking ``server_name``."""
    credentials = grpc.ssl_channel_credentials(root_certificates=root_pem)
    return grpc.aio.secure_channel(
        address,
        credentials,
        options=(
            ("grpc.ssl_target_name_override", server_name),
            ("grpc.default_authority", server_name),
            ("grpc.keepalive_time_ms", _KEEPALIVE_MS),
            ("grpc.keepalive_timeout_ms", _KEEPALIVE_TIMEOUT_MS),
            # xDS responses of a big mesh exceed gRPC's 4 MiB default.
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ),
    )
