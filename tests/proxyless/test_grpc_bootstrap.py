"""``pilot bootstrap --grpc``: the gRPC xDS bootstrap (the e2e tests' client runs on one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pilot.cli import main
from pilot.grpc_bootstrap import (
    SERVER_LISTENER_TEMPLATE,
    build_grpc_bootstrap,
    tcp_server_uri,
    unix_server_uri,
)
from pilot.translate.proxy import Proxy

NODE = "sidecar~10.0.0.7~app-1.shop~shop.svc.cluster.local"


def test_shape() -> None:
    bootstrap = build_grpc_bootstrap(
        NODE, tcp_server_uri("127.0.0.1", 15010), labels={"app": "app", "version": "v1"}
    )
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
    assert "certificate_providers" not in bootstrap  # no certificate directory given
    # pilot reads that node as a proxyless gRPC application.
    assert Proxy.from_node(node["id"], node["metadata"]).proxyless_grpc


def test_ipv6_server_and_explicit_namespace() -> None:
    bootstrap = build_grpc_bootstrap(
        "plain-id", tcp_server_uri("::1", 15010), metadata={"NAMESPACE": "other"}
    )
    assert bootstrap["xds_servers"][0]["server_uri"] == "[::1]:15010"
    assert bootstrap["node"]["metadata"]["NAMESPACE"] == "other"
    assert build_grpc_bootstrap("plain-id", "h:1")["node"]["metadata"]["NAMESPACE"] == "default"
    assert unix_server_uri(Path("/run/agent/XDS")) == "unix:///run/agent/XDS"


def test_certificate_providers_are_istios_file_watcher(tmp_path: Path) -> None:
    bootstrap = build_grpc_bootstrap(NODE, "h:1", cert_dir=tmp_path / "certs")
    assert bootstrap["certificate_providers"] == {
        "default": {
            "plugin_name": "file_watcher",
            "config": {
                "certificate_file": str(tmp_path / "certs/cert-chain.pem"),
                "private_key_file": str(tmp_path / "certs/key.pem"),
                "ca_certificate_file": str(tmp_path / "certs/root-cert.pem"),
                "refresh_interval": "900s",
            },
        }
    }


def test_cli(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bootstrap", "--grpc", "--node-id", NODE, "--xds-address", "pilot.example:15010"]
    assert main([*argv, "--label", "version=v2", "--metadata", "CLUSTER_ID=c1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == build_grpc_bootstrap(
        NODE, "pilot.example:15010", labels={"version": "v2"}, metadata={"CLUSTER_ID": "c1"}
    )
    assert main([*argv, "--cert-dir", "/etc/certs"]) == 0
    providers = json.loads(capsys.readouterr().out)["certificate_providers"]
    assert providers["default"]["config"]["private_key_file"] == "/etc/certs/key.pem"


def test_cert_dir_needs_grpc(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bootstrap", "--node-id", NODE, "--xds-address", "127.0.0.1:15010", "--cert-dir", "/c"]
    assert main(argv) == 2
    assert "--grpc" in capsys.readouterr().err


def test_cli_rejects_a_bad_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bootstrap", "--grpc", "--node-id", NODE, "--xds-address", "nope"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err


def test_cli_rejects_delta(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bootstrap", "--grpc", "--delta", "--node-id", NODE, "--xds-address", "127.0.0.1:15010"]
    assert main(argv) == 2
    assert "state of the world" in capsys.readouterr().err
