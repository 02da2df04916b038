"""Gateway TLS certificates: ``credentialName`` read as files of the certificate folder, in the
router's namespace; and, for a router run by ``pilot agent``, every certificate file as the agent's
``file-cert:`` / ``file-root:`` SDS secrets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from pilot.config.parse import parse_text
from pilot.translate.snapshot import generate_messages
from tests import factories as f
from tests.translate.gateway_factories import INGRESS, SIMPLE, gw, listeners, server
from tests.translate.golden import ENVOY, envoy_validate, static_bootstrap
from tests.translate.test_mesh_tls import with_sds_cluster

AGENT_ROUTER = replace(INGRESS, mesh_certificates=True)
FOLDER = "/etc/pilot/gateway-certs/istio-system/edge-cert"


def context(tls: dict, view=INGRESS) -> tls_pb2.DownstreamTlsContext:
    objects = gw("a", server(443, "HTTPS", ("a.com",), tls=tls))
    (chain,) = listeners(objects, view=view)["0.0.0.0_443"].filter_chains
    out = tls_pb2.DownstreamTlsContext()
    assert chain.transport_socket.typed_config.Unpack(out)
    return out


@pytest.mark.parametrize("credential", ["edge-cert", "kubernetes://edge-cert"])
def test_credential_name_reads_the_secrets_files_in_the_routers_namespace(credential: str) -> None:
    common = context({"mode": "MUTUAL", "credentialName": credential}).common_tls_context
    (certificate,) = common.tls_certificates
    assert certificate.certificate_chain.filename == f"{FOLDER}/tls.crt"
    assert certificate.private_key.filename == f"{FOLDER}/tls.key"
    assert common.validation_context.trusted_ca.filename == f"{FOLDER}/ca.crt"


def test_a_router_with_the_agent_gets_the_files_as_sds_secrets() -> None:
    tls = {"mode": "MUTUAL", "credentialName": "edge-cert", "subjectAltNames": ["client.example.com"]}
    common = context(tls, AGENT_ROUTER).common_tls_context
    assert not common.tls_certificates and not common.HasField("validation_context")
    (certificate,) = common.tls_certificate_sds_secret_configs
    assert certificate.name == f"file-cert:{FOLDER}/tls.crt~{FOLDER}/tls.key"
    combined = common.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == f"file-root:{FOLDER}/ca.crt"
    (san,) = combined.default_validation_context.match_typed_subject_alt_names
    assert san.matcher.exact == "client.example.com"
    (simple,) = context(SIMPLE, AGENT_ROUTER).common_tls_context.tls_certificate_sds_secret_configs
    assert simple.name == "file-cert:/certs/cert.pem~/certs/key.pem"


def test_only_a_credential_name_pilot_cannot_read_is_warned_about_and_left_out() -> None:
    def warnings(credential: str) -> list[str]:
        spec = {
            "servers": [
                server(443, "HTTPS", ("a.com",), tls={"mode": "SIMPLE", "credentialName": credential})
            ]
        }
        document = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "g"},
            "spec": spec,
        }
        result = parse_text(yaml.safe_dump(document), "g.yaml")
        return [e.message for e in result.errors if e.severity == "warning"]

    assert warnings("edge-cert") == []
    (message,) = warnings("kubernetes-gateway://other/edge-cert")
    assert "kubernetes-gateway://other/edge-cert" in message and "ROOT/NS/NAME/tls.crt" in message
    tls = {"mode": "SIMPLE", "credentialName": "kubernetes-gateway://other/edge-cert"}
    assert listeners(gw("a", server(443, "HTTPS", ("a.com",), tls=tls))) == {}


@pytest.mark.skipif(not ENVOY.exists(), reason="no envoy binary in .venv")
def test_envoy_accepts_a_router_whose_certificate_files_are_not_there(tmp_path: Path) -> None:
    objects = (
        gw("a", server(443, "HTTPS", ("a.com",), tls={"mode": "MUTUAL", "credentialName": "edge-cert"})),
    )
    messages = generate_messages(AGENT_ROUTER, f.push_context(*objects))
    result = envoy_validate(with_sds_cluster(static_bootstrap(messages)), tmp_path)
    assert result.returncode == 0, f"envoy rejected:\n{result.stdout}\n{result.stderr}"
