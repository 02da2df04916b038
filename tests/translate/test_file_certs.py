"""Certificate files of DestinationRule TLS (SIMPLE, MUTUAL): to a proxy run by ``pilot agent`` (node
metadata ``SDS``) as the agent's ``file-cert:`` / ``file-root:`` SDS secrets, as istiod sends them; to
other proxies as file data sources Envoy reads itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from pilot.translate.snapshot import generate_messages
from tests import factories as f
from tests.translate.golden import ENVOY, envoy_validate, static_bootstrap
from tests.translate.test_mesh_tls import (
    REVIEWS,
    TARGETS,
    clusters,
    objects,
    upstream,
    view,
    with_sds_cluster,
)

MUTUAL = {
    "mode": "MUTUAL",
    "clientCertificate": "/etc/certs/client.pem",
    "privateKey": "/etc/certs/client-key.pem",
    "caCertificates": "/etc/certs/ca.pem",
    "subjectAltNames": ["reviews.example.com"],
}


def rule(tls: dict):
    return f.destination_rule("reviews", host="reviews", trafficPolicy={"tls": tls})


def context(sds: bool, tls: dict) -> tls_pb2.UpstreamTlsContext:
    return upstream(clusters(view(sds), rule(tls))[f"outbound|9080||{REVIEWS}"].transport_socket)


def test_mutual_files_go_over_the_agents_sds_to_a_proxy_with_it() -> None:
    common = context(True, MUTUAL).common_tls_context
    assert not common.tls_certificates and not common.HasField("validation_context")
    (certificate,) = common.tls_certificate_sds_secret_configs
    assert certificate.name == "file-cert:/etc/certs/client.pem~/etc/certs/client-key.pem"
    combined = common.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == "file-root:/etc/certs/ca.pem"
    for config in (certificate, combined.validation_context_sds_secret_config):
        (service,) = config.sds_config.api_config_source.grpc_services
        assert service.envoy_grpc.cluster_name == "sds-grpc"
    (san,) = combined.default_validation_context.match_typed_subject_alt_names
    assert san.matcher.exact == "reviews.example.com"


def test_simple_without_ca_verifies_against_the_system_bundle_over_sds() -> None:
    common = context(True, {"mode": "SIMPLE"}).common_tls_context
    assert not common.tls_certificate_sds_secret_configs
    root = common.combined_validation_context.validation_context_sds_secret_config
    assert root.name == "file-root:/etc/ssl/certs/ca-certificates.crt"
    skipped = context(True, {"mode": "SIMPLE", "insecureSkipVerify": True}).common_tls_context
    assert not skipped.HasField("combined_validation_context")


def test_a_proxy_without_the_agent_keeps_inline_file_paths() -> None:
    common = context(False, MUTUAL).common_tls_context
    assert not common.tls_certificate_sds_secret_configs
    (certificate,) = common.tls_certificates
    assert certificate.certificate_chain.filename == "/etc/certs/client.pem"
    assert certificate.private_key.filename == "/etc/certs/client-key.pem"
    assert common.validation_context.trusted_ca.filename == "/etc/certs/ca.pem"


@pytest.mark.skipif(not ENVOY.exists(), reason="no envoy binary in .venv")
def test_envoy_accepts_file_secrets_whose_files_do_not_exist(tmp_path: Path) -> None:
    # With file data sources Envoy would reject this update (the files are missing); with SDS it
    # accepts it and keeps the cluster warming until the agent answers.
    messages = generate_messages(view(True, *TARGETS), f.push_context(*objects(rule(MUTUAL))))
    result = envoy_validate(with_sds_cluster(static_bootstrap(messages)), tmp_path)
    assert result.returncode == 0, f"envoy rejected:\n{result.stdout}\n{result.stderr}"
