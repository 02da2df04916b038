"""``pilot bootstrap --grpc``: the gRPC xDS bootstrap (the e2e tests' client runs on one)."""

from __future__ import annotations

import json

import pytest

from pilot.cli import main
from pilot.grpc_bootstrap import SERVER_LISTENER_TEMPLATE, build_grpc_bootstrap
from pilot.translate.proxy import Proxy

NODE = "sidecar~10.0.0.7~app-1.shop~shop.svc.cluster.local"


def test_shape() -> None:
    bootstrap = build_grpc_bootstrap(NODE, "127.0.0.1", 15010, labels={"app": "app", "version": "v1"})
    assert bootstrap["xds_servers"] == [
        {
            "server_uri": "127.0.0.1:15010",
            "channel_creds": [{"type": "insecure"}],
            "server_features": ["xds_v3"],
        }
    ]
    node = bootstrap["node"]
    assert node["id"] == NODE
    assert node["metadata"] == {
        "GENERATOR": "grpc",
        "NAMESPACE": "shop",
        "LABELS": {"app": "app", "version": "v1"},
    }
    assert bootstrap["server_listener_resource_name_template"] == SERVER_LISTENER_TEMPLATE
    assert "certificate_providers" not in bootstrap  # no TLS for proxyless clients yet
    # pilot reads that node as a proxyless gRPC application.
    assert Proxy.from_node(node["id"], node["metadata"]).proxyless_grpc


def test_ipv6_server_and_explicit_namespace() -> None:
    bootstrap = build_grpc_bootstrap("plain-id", "::1", 15010, metadata={"NAMESPACE": "other"})
    assert bootstrap["xds_servers"][0]["server_uri"] == "[::1]:15010"
    assert bootstrap["node"]["metadata"]["NAMESPACE"] == "other"
    assert build_grpc_bootstrap("plain-id", "h", 1)["node"]["metadata"]["NAMESPACE"] == "default"


def test_cli(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bootstrap", "--grpc", "--node-id", NODE, "--xds-address", "pilot.example:15010"]
    assert main([*argv, "--label", "version=v2", "--metadata", "CLUSTER_ID=c1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == build_grpc_bootstrap(
        NODE, "pilot.example", 15010, labels={"version": "v2"}, metadata={"CLUSTER_ID": "c1"}
    )


def test_cli_rejects_a_bad_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bootstrap", "--grpc", "--node-id", NODE, "--xds-address", "nope"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err


def test_cli_rejects_delta(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bootstrap", "--grpc", "--delta", "--node-id", NODE, "--xds-address", "127.0.0.1:15010"]
    assert main(argv) == 2
    assert "state of the world" in capsys.readouterr().err
