"""Connection lifecycle of the real app: the gRPC options for long-lived streams, and the maximum
connection age that makes proxies reconnect (and so spread over replicas) without losing config."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
import yaml

from pilot import app
from pilot.app import GRPC_OPTIONS, grpc_options, serve
from pilot.localmesh.config_files import write_atomically
from pilot.settings import Settings
from pilot.xds import types
from tests.server.ads_client import DEADLINE, AdsClient, DeltaClient, DeltaXds, SotwXds, XdsClient
from tests.server.envoy_like import EnvoyLike

NODE = "sidecar~10.0.0.1~app-1.default~default.svc.cluster.local"


@pytest.fixture(params=["sotw", "delta"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_grpc_options_suit_many_long_lived_streams() -> None:
    options = dict(GRPC_OPTIONS)
    # Keepalive pings every 30 s, 10 s to answer (Istio's GRPC_KEEPALIVE_INTERVAL / _TIMEOUT), also
    # on connections with no call and no data.
    assert options["grpc.keepalive_time_ms"] == 30_000
    assert options["grpc.keepalive_timeout_ms"] == 10_000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.http2.max_pings_without_data"] == 0
    # The proxies' own keepalives (Envoy: 30 s) are accepted, and never punished with GOAWAY.
    assert options["grpc.http2.min_ping_interval_without_data_ms"] <= 10_000
    assert options["grpc.http2.max_ping_strikes"] == 0
    assert options["grpc.max_concurrent_streams"] == 100_000
    assert options["grpc.max_receive_message_length"] == 4 * app.MiB
    assert options["grpc.max_send_message_length"] > 4 * app.MiB


def test_max_connection_age_options() -> None:
    assert grpc_options(Settings(max_connection_age=None)) == GRPC_OPTIONS
    default = dict(grpc_options(Settings()))
    assert default["grpc.max_connection_age_ms"] == 1_800_000  # Istio's charts: 30 m
    assert default["grpc.max_connection_age_grace_ms"] == 10_000
    # The grace never outlasts the age itself.
    short = dict(grpc_options(Settings(max_connection_age=2.0)))
    assert (short["grpc.max_connection_age_ms"], short["grpc.max_connection_age_grace_ms"]) == (2000, 2000)


def write_config(config_dir: Path) -> None:
    docs = [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": "reviews", "namespace": "default"},
            "spec": {
                "hosts": ["reviews.default.svc.cluster.local"],
                "location": "MESH_INTERNAL",
                "ports": [{"number": 9080, "name": "http", "protocol": "HTTP"}],
                "resolution": "STATIC",
                "endpoints": [{"address": "10.1.0.1"}, {"address": "10.1.0.2"}],
            },
        }
    ]
    write_atomically(config_dir / "reviews.yaml", yaml.safe_dump_all(docs))


def xds_client(channel: grpc.aio.Channel, protocol: str) -> XdsClient:
    if protocol == "sotw":
        return SotwXds(AdsClient(channel, NODE))
    return DeltaXds(DeltaClient(channel, NODE))


async def test_max_connection_age_ends_the_stream_and_a_reconnect_gets_config_again(
    tmp_path: Path, protocol: str
) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    write_config(config_dir)
    settings = Settings(
        config_dir=config_dir,
        xds_host="127.0.0.1",
        xds_port=0,
        http_host="127.0.0.1",
        http_port=0,
        debounce_after=0.05,
        max_connection_age=1.0,
    )
    async with serve(settings) as pilot:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{pilot.xds_port}")
        clients: list[XdsClient] = []
        try:
            clients.append(xds_client(channel, protocol))
            first = await EnvoyLike(clients[0]).start()
            assert "outbound|9080||reviews.default.svc.cluster.local" in first.values[types.CLUSTER]
            connected = time.monotonic()

            # After the age (+/-10% jitter) the server sends GOAWAY; once the grace (here as long as
            # the age) is over it closes the connection, and the stream ends as UNAVAILABLE.
            assert await clients[0].status() == grpc.StatusCode.UNAVAILABLE
            assert 0.8 <= time.monotonic() - connected <= 8.0

            # The proxy reconnects (the channel opens a new connection) and gets its config again.
            clients.append(xds_client(channel, protocol))
            again = await EnvoyLike(clients[1]).start()
            assert again.values == first.values
            end = time.monotonic() + DEADLINE
            while len(pilot.ads.connections()) != 1:  # the old stream is unregistered
                assert time.monotonic() < end, pilot.ads.connections()
                await asyncio.sleep(0.01)
        finally:
            for client in clients:
                client.close()
            await channel.close(None)
