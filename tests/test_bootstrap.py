"""pilot.bootstrap: the generated bootstrap is what Envoy accepts and what makes it dial pilot.

Validation is by the real binary (``envoy --mode validate``), and one test runs a real Envoy
against a bare gRPC listener to see the first ADS request it sends: node and type as configured.
"""

from __future__ import annotations

import argparse
import json
import queue
import subprocess
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.resource_monitors.downstream_connections.v3 import (  # noqa: F401 -- registers the Any type
    downstream_connections_pb2,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401 -- registers the Any type
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format

from pilot.bootstrap import XDS_CLUSTER, build_bootstrap, parse_address, run
from tests.support import EnvoyProcess, find_envoy

NODE = "sidecar~127.0.0.1~reviews-1.default~default.svc.cluster.local"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


def validate(bootstrap: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(bootstrap))
    return subprocess.run(
        [str(find_envoy()), "--mode", "validate", "-c", str(path), "-l", "warning", "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_sotw_bootstrap_shape() -> None:
    boot = build_bootstrap(NODE, "127.0.0.1", 15010, admin_port=15000, metadata={"LABELS": {"app": "r"}})
    assert boot["node"] == {"id": NODE, "cluster": "pilot-xds", "metadata": {"LABELS": {"app": "r"}}}
    ads = boot["dynamic_resources"]["ads_config"]
    assert ads["api_type"] == "GRPC"
    assert ads["transport_api_version"] == "V3"
    assert ads["set_node_on_first_message_only"] is True
    assert ads["grpc_services"][0]["envoy_grpc"]["cluster_name"] == XDS_CLUSTER
    for key in ("lds_config", "cds_config"):
        assert boot["dynamic_resources"][key] == {"ads": {}, "resource_api_version": "V3"}
    (cluster,) = boot["static_resources"]["clusters"]
    assert cluster["name"] == XDS_CLUSTER
    assert cluster["type"] == "STATIC"
    assert cluster["connect_timeout"] == "1s"
    (options,) = cluster["typed_extension_protocol_options"].values()
    assert options["@type"] == "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    assert "http2_protocol_options" in options["explicit_http_config"]
    assert boot["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15000}


def test_delta_and_hostname_and_no_admin() -> None:
    boot = build_bootstrap(NODE, "istiod.istio-system.svc", 15010, delta=True)
    assert boot["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"
    assert boot["static_resources"]["clusters"][0]["type"] == "STRICT_DNS"
    assert "admin" not in boot
    assert "metadata" not in boot["node"]


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_is_a_valid_bootstrap_proto(delta: bool) -> None:
    boot = build_bootstrap(NODE, "127.0.0.1", 15010, delta=delta, admin_port=0, metadata={"A": "b"})
    message = json_format.ParseDict(boot, bootstrap_pb2.Bootstrap())
    assert message.node.id == NODE
    assert message.dynamic_resources.ads_config.set_node_on_first_message_only


@pytest.mark.parametrize(
    ("delta", "host"),
    [(False, "127.0.0.1"), (True, "127.0.0.1"), (False, "localhost"), (True, "::1")],
    ids=["sotw-ip", "delta-ip", "sotw-name", "delta-ipv6"],
)
def test_envoy_validates_bootstrap(tmp_path: Path, delta: bool, host: str) -> None:
    boot = build_bootstrap(NODE, host, 15010, delta=delta, admin_port=0, metadata={"LABELS": {"a": "b"}})
    result = validate(boot, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_validation_catches_a_broken_bootstrap(tmp_path: Path) -> None:
    # Guards the test above: validation must actually look at what we generate.
    boot = build_bootstrap(NODE, "127.0.0.1", 15010)
    boot["dynamic_resources"]["ads_config"]["api_type"] = "NOT_AN_API_TYPE"
    assert validate(boot, tmp_path).returncode != 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:15010", ("127.0.0.1", 15010)), ("istiod:15012", ("istiod", 15012)), ("[::1]:9", ("::1", 9))],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["istiod", ":15010", "istiod:", "istiod:abc", "istiod:70000"])
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_run_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(node_id=NODE, xds_address="127.0.0.1:15010", delta=True, admin_port=15000)
    assert run(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == build_bootstrap(NODE, "127.0.0.1", 15010, delta=True, admin_port=15000)


def test_run_prints_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(
        node_id=NODE, xds_address="127.0.0.1:15010", delta=False, admin_port=None, output="yaml"
    )
    assert run(args) == 0
    assert yaml.safe_load(capsys.readouterr().out) == build_bootstrap(NODE, "127.0.0.1", 15010)


def test_cli_labels_and_metadata_become_node_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    from pilot.cli import main

    assert (
        main(
            [
                "bootstrap",
                "--node-id",
                NODE,
                "--xds-address",
                "pilot:15010",
                "--label",
                "istio=ingressgateway",
                "--label",
                "app=gw",
                "--metadata",
                "INTERCEPTION_MODE=NONE",
            ]
        )
        == 0
    )
    node = json.loads(capsys.readouterr().out)["node"]
    labels = {"istio": "ingressgateway", "app": "gw"}
    assert node["metadata"] == {"INTERCEPTION_MODE": "NONE", "LABELS": labels}


def test_cli_service_account_and_interception_become_istios_node_metadata(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pilot.cli import main
    from pilot.translate.proxy import InterceptionMode, Proxy

    argv = ["bootstrap", "--node-id", NODE, "--xds-address", "pilot:15010", "--label", "app=reviews"]
    argv += ["--service-account", "bookinfo-reviews", "--interception", "REDIRECT"]
    assert main(argv) == 0
    node = json.loads(capsys.readouterr().out)["node"]
    assert node["metadata"] == {
        "LABELS": {"app": "reviews"},
        "SERVICE_ACCOUNT": "bookinfo-reviews",
        "INTERCEPTION_MODE": "REDIRECT",
    }
    # What pilot reads back from such a node.
    proxy = Proxy.from_node(node["id"], node["metadata"])
    assert proxy.service_account == "bookinfo-reviews"
    assert proxy.interception_mode is InterceptionMode.REDIRECT
    assert proxy.labels == {"app": "reviews"}


def test_cli_rejects_an_unknown_interception_mode(capsys: pytest.CaptureFixture[str]) -> None:
    from pilot.cli import main

    with pytest.raises(SystemExit):
        main(["bootstrap", "--node-id", NODE, "--xds-address", "pilot:15010", "--interception", "TPROXY"])
    assert "--interception" in capsys.readouterr().err


def test_cli_rejects_a_label_without_a_value(capsys: pytest.CaptureFixture[str]) -> None:
    from pilot.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["bootstrap", "--node-id", NODE, "--xds-address", "pilot:15010", "--label", "istio"])
    assert exit_info.value.code == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_run_reports_a_bad_address(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(node_id=NODE, xds_address="no-port", delta=False, admin_port=None)
    assert run(args) == 2
    assert "HOST:PORT" in capsys.readouterr().err


class FirstRequests:
    """A bare ADS endpoint that records what Envoy sends and never answers (so Envoy keeps asking)."""

    def __init__(self) -> None:
        self.received: queue.Queue[Any] = queue.Queue()

    def handler(self) -> Any:
        def record(requests: Any, context: grpc.ServicerContext) -> Any:
            for request in requests:
                self.received.put(request)
            return iter(())

        return grpc.method_handlers_generic_handler(
            "envoy.service.discovery.v3.AggregatedDiscoveryService",
            {
                "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                    record,
                    request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                    response_serializer=discovery_pb2.DiscoveryResponse.SerializeToString,
                ),
                "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                    record,
                    request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
                    response_serializer=discovery_pb2.DeltaDiscoveryResponse.SerializeToString,
                ),
            },
        )


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_envoy_dials_ads_with_its_node(tmp_path: Path, delta: bool) -> None:
    recorder = FirstRequests()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((recorder.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    envoy = EnvoyProcess(NODE, port, tmp_path, delta=delta, metadata={"LABELS": {"app": "reviews"}})
    try:
        envoy.start()
        first = recorder.received.get(timeout=30)
    finally:
        envoy.stop()
        server.stop(grace=None)
    expected = discovery_pb2.DeltaDiscoveryRequest if delta else discovery_pb2.DiscoveryRequest
    assert isinstance(first, expected)
    # Envoy opens with CDS (clusters before the listeners that name them) and sends its node,
    # which set_node_on_first_message_only keeps to this first request.
    # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#aggregated-discovery-service
    assert first.type_url == CLUSTER_TYPE
    assert first.node.id == NODE
    assert first.node.cluster == "pilot-xds"
    assert first.node.metadata["LABELS"]["app"] == "reviews"
