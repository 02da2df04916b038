"""/debug/* answers loopback peers, or a bearer token of pilot's own namespace; /ready and /metrics
answer anyone. The peer is the TCP peer: a real loopback request through app.serve, and the guard
with requests whose transport reports another peer (this machine may have no other address)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from pilot.app import serve
from pilot.ca.bearer import BearerAuthenticator
from pilot.ca.identity import ServiceAccount
from pilot.ca.tokens import FolderTokenAuthenticator, issue_token, load_or_create_signing_key
from pilot.debug.http import debug_guard, is_loopback
from pilot.settings import Settings

HOUR = datetime.timedelta(hours=1)
SYSTEM = "pilot-system"
CONFIG_PATHS = (
    "/debug/config_dump?proxyID=x",
    "/debug/configz",
    "/debug/syncz",
    "/debug/push_status",
    "/debug/sourcez",
)


def request(path: str, peer: Any, headers: dict[str, str] | None = None) -> web.Request:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: peer if name == "peername" else default
    return make_mocked_request("GET", path, headers=headers or {}, transport=transport)


async def reached(request: web.Request) -> web.StreamResponse:
    return web.Response(text="reached")


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    return tmp_path / "ca"


def token(ca_dir: Path, namespace: str) -> str:
    return issue_token(load_or_create_signing_key(ca_dir), ServiceAccount(namespace, "ops"), HOUR)


@pytest.mark.parametrize(
    ("peer", "loopback"),
    [
        (("127.0.0.1", 1), True),
        (("127.8.9.1", 1), True),
        (("::1", 1, 0, 0), True),
        (("::ffff:127.0.0.1", 1, 0, 0), True),
        (("10.0.0.5", 1), False),
        (("::ffff:10.0.0.5", 1, 0, 0), False),
        (("fe80::1%eth0", 1, 0, 2), False),
        ("/run/pilot.sock", False),
        (None, False),
    ],
)
def test_only_loopback_peers_are_loopback(peer: Any, loopback: bool):
    assert is_loopback(request("/debug/configz", peer)) is loopback


@pytest.mark.parametrize("path", CONFIG_PATHS)
async def test_a_remote_peer_without_a_token_is_refused_config(path: str, ca_dir: Path):
    guard = debug_guard(BearerAuthenticator(FolderTokenAuthenticator.from_ca_dir(ca_dir)), SYSTEM)
    response = await guard(request(path, ("10.0.0.5", 40000), {"X-Forwarded-For": "127.0.0.1"}), reached)
    assert response.status == 403
    # Without a CA there is no token to show: remote peers are refused all the same.
    response = await debug_guard(None, SYSTEM)(request(path, ("10.0.0.5", 40000)), reached)
    assert response.status == 403


@pytest.mark.parametrize("path", ["/ready", "/metrics"])
async def test_ready_and_metrics_answer_anyone(path: str):
    response = await debug_guard(None, SYSTEM)(request(path, ("10.0.0.5", 40000)), reached)
    assert response.status == 200


async def test_a_token_of_pilots_namespace_opens_debug_and_others_do_not(ca_dir: Path):
    guard = debug_guard(BearerAuthenticator(FolderTokenAuthenticator.from_ca_dir(ca_dir)), SYSTEM)
    remote = ("10.0.0.5", 40000)

    async def status(authorization: str) -> int:
        response = await guard(request("/debug/configz", remote, {"Authorization": authorization}), reached)
        return response.status

    assert await status(f"Bearer {token(ca_dir, SYSTEM)}") == 200
    assert await status(f"Bearer {token(ca_dir, 'alpha')}") == 403  # a workload: not all config
    assert await status("Bearer forged") == 401
    assert await status(token(ca_dir, SYSTEM)) == 401  # not "Bearer ..."


async def test_a_loopback_client_reads_debug_through_the_running_app(tmp_path: Path):
    settings = Settings(
        xds_host="127.0.0.1",
        xds_port=0,
        http_host="127.0.0.1",
        http_port=0,
        ca_dir=tmp_path / "ca",
        xds_tls_port=0,
        shutdown_grace=0.5,
    )
    async with serve(settings) as pilot, aiohttp.ClientSession() as session:
        for path in ("/debug/configz", "/debug/syncz", "/ready", "/metrics"):
            async with session.get(f"http://127.0.0.1:{pilot.http_port}{path}") as response:
                assert response.status == 200, path


def outward_address() -> str | None:
    """An address of this machine that is not loopback (the kernel's pick for a route outwards)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.123", 9))  # TEST-NET-1: no packet is sent by a UDP connect
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


async def test_a_real_remote_peer_is_refused_config_but_not_ready(tmp_path: Path):
    address = outward_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address")
    settings = Settings(
        xds_port=None, http_host="0.0.0.0", http_port=0, ca_dir=tmp_path / "ca", xds_tls_port=None
    )
    async with serve(settings) as pilot, aiohttp.ClientSession() as session:
        base = f"http://{address}:{pilot.http_port}"
        async with session.get(f"{base}/debug/configz") as response:
            assert response.status == 403
        async with session.get(
            f"{base}/debug/configz", headers={"Authorization": f"Bearer {token(tmp_path / 'ca', SYSTEM)}"}
        ) as response:
            assert response.status == 200
        async with session.get(f"{base}/ready") as response:
            assert response.status == 200
