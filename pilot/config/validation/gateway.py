"""Gateway checks, as Istio's ``ValidateGateway`` (pkg/config/validation) does."""

from __future__ import annotations

from pilot._gen import networking_pb2 as nw
from pilot.config.validation.common import (
    Report,
    at,
    check_ip,
    check_namespace_slash_host,
    check_port,
    check_unix_address,
    enum_name,
    is_dns1123_label,
    is_k8s_subdomain,
    item,
)
from pilot.config.validation.http import HTTP_PROTOCOLS, TLS_PROTOCOLS, parse_protocol
from pilot.config.validation.service_entry import UNIX_PREFIX

# Envoy's cipher suite names (Istio's security.ValidCipherSuites).
CIPHER_SUITES = frozenset(
    {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-RSA-AES256-SHA",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        "AES128-SHA",
        "AES256-SHA",
        "DES-CBC3-SHA",
        "ECDHE-PSK-AES128-CBC-SHA",
        "ECDHE-PSK-AES256-CBC-SHA",
        "ECDHE-PSK-CHACHA20-POLY1305",
        "PSK-AES128-CBC-SHA",
        "PSK-AES256-CBC-SHA",
    }
)


def validate_gateway(spec: nw.Gateway, name: str, path: str, report: Report) -> None:
    if not is_dns1123_label(name):
        report.error("metadata.name", f'invalid gateway name: "{name}"')
    servers_path = at(path, "servers")
    if not len(spec.servers):
        report.error(servers_path, "gateway must have at least one server")
    port_names: set[str] = set()
    for index, server in enumerate(spec.servers):
        server_path = item(servers_path, index)
        _server(server, server_path, report)
        if server.HasField("port"):
            if server.port.name in port_names:
                report.error(
                    at(server_path, "port.name"),
                    f"port names in servers must be unique: duplicate name {server.port.name}",
                )
            port_names.add(server.port.name)
            if parse_protocol(server.port.protocol) not in HTTP_PROTOCOLS and server.tls.https_redirect:
                report.warn(
                    at(server_path, "tls.httpsRedirect"),
                    "tls.httpsRedirect should only be used with http servers",
                )


IGNORED = "server ignored"


def unsupported_server(server: nw.Server) -> tuple[str, str] | None:
    """Why pilot cannot serve this server, as (field path under the server, message); None if it can.

    Translation leaves such servers out (pilot.translate.gateway); validation warns about them.
    """
    if server.bind.startswith(UNIX_PREFIX):
        return "bind", "binding a unix domain socket is not supported by pilot; " + IGNORED
    if not server.HasField("tls"):
        return None
    if server.HasField("port") and parse_protocol(server.port.protocol) in HTTP_PROTOCOLS:
        return None  # only httpsRedirect means anything on a plain HTTP port
    tls = server.tls
    if tls.mode == tls.AUTO_PASSTHROUGH:
        return "tls.mode", "AUTO_PASSTHROUGH needs SNI-DNAT clusters, which pilot does not build; " + IGNORED
    if tls.mode == tls.ISTIO_MUTUAL:
        return "tls.mode", "ISTIO_MUTUAL on a gateway server is not built yet (sidecars' mTLS is); " + IGNORED
    if tls.mode != tls.PASSTHROUGH and tls.credential_name:
        if credential_secret_name(tls.credential_name) is None:
            return (
                "tls.credentialName",
                f"Secret {tls.credential_name!r} cannot be found: pilot reads a Secret NAME (or "
                f"{KUBERNETES_CREDENTIAL}NAME) of the router's namespace NS, from the files "
                "ROOT/NS/NAME/tls.crt, tls.key, ca.crt; " + IGNORED,
            )
    return None


# Istio's credentials.KubernetesSecretType: the scheme of a credentialName that names a Secret.
KUBERNETES_CREDENTIAL = "kubernetes://"


def credential_secret_name(credential_name: str) -> str | None:
    """The Secret a gateway's ``credentialName`` names (in the router's namespace, as in Istio), or
    None when pilot cannot read it (another scheme, another namespace, not a Secret name)."""
    name = credential_name.removeprefix(KUBERNETES_CREDENTIAL)
    return name if is_k8s_subdomain(name) else None


def _server(server: nw.Server, path: str, report: Report) -> None:
    unsupported = unsupported_server(server)
    if unsupported is not None:
        report.warn(at(path, unsupported[0]), unsupported[1])
    if not len(server.hosts):
        report.error(at(path, "hosts"), "server config must contain at least one host")
    for index, host in enumerate(server.hosts):
        report.check_all(item(at(path, "hosts"), index), check_namespace_slash_host(host, is_gateway=True))
    port_ok = _port(server, at(path, "port"), report)
    _bind(server, path, report)
    if server.HasField("tls"):
        validate_server_tls(server.tls, at(path, "tls"), report)
    if not port_ok:
        return
    protocol = parse_protocol(server.port.protocol)
    if protocol in TLS_PROTOCOLS and not server.HasField("tls"):
        report.error(at(path, "tls"), "server must have TLS settings for HTTPS/TLS protocols")
    elif protocol not in TLS_PROTOCOLS and server.HasField("tls"):
        tls = server.tls
        if protocol in HTTP_PROTOCOLS:
            # Only an HTTPS redirect makes sense on a plain HTTP port.
            passthrough = tls.mode in (tls.PASSTHROUGH, tls.AUTO_PASSTHROUGH)
            if not passthrough or tls.ca_certificates or tls.private_key or tls.server_certificate:
                report.error(at(path, "tls"), "server cannot have TLS settings for plain text HTTP ports")
        else:
            report.error(at(path, "tls"), "server cannot have TLS settings for non HTTPS/TLS ports")


def _port(server: nw.Server, path: str, report: Report) -> bool:
    """Check the server's port; True when it has no error (so its protocol can be trusted)."""
    if not server.HasField("port"):
        report.error(path, "port is required")
        return False
    port, errors = server.port, len(report.items)
    if parse_protocol(port.protocol) is None:
        report.error(
            at(path, "protocol"),
            f'invalid protocol "{port.protocol}", supported protocols are HTTP, '
            "HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP",
        )
    if port.number > 0 or not server.bind.startswith(UNIX_PREFIX):
        report.check(at(path, "number"), check_port(port.number))
    if port.target_port > 0:
        report.error(at(path, "targetPort"), "targetPort has no impact on Gateways")
    if not port.name:
        report.error(at(path, "name"), "port name must be set")
    return len(report.items) == errors


def _bind(server: nw.Server, path: str, report: Report) -> None:
    bind = server.bind
    if bind.startswith(UNIX_PREFIX):
        report.check(at(path, "bind"), check_unix_address(bind[len(UNIX_PREFIX) :]))
        if server.HasField("port") and server.port.number != 0:
            report.error(at(path, "port.number"), "port number must be 0 for unix domain socket")
    elif bind:
        report.check(at(path, "bind"), check_ip(bind))


def validate_server_tls(tls: nw.ServerTLSSettings, path: str, report: Report) -> None:
    if tls.min_protocol_version in (tls.TLSV1_0, tls.TLSV1_1) and not len(tls.cipher_suites):
        report.warn(
            at(path, "minProtocolVersion"),
            "TLS version below TLSV1_2 require setting compatible ciphers "
            "as by default they no longer include compatible ciphers.",
        )
    invalid, valid, duplicate = set(), set(), set()
    for suite in tls.cipher_suites:
        if not valid_cipher_suite(suite):
            invalid.add(suite)
        elif suite in valid:
            duplicate.add(suite)
        valid.add(suite)
    if invalid:
        report.warn(
            at(path, "cipherSuites"), f"ignoring invalid cipher suites: [{' '.join(sorted(invalid))}]"
        )
    if duplicate:
        report.warn(
            at(path, "cipherSuites"), f"ignoring duplicate cipher suites: [{' '.join(sorted(duplicate))}]"
        )
    mode = enum_name(tls, "mode")
    if mode == "ISTIO_MUTUAL":
        # Istio's own certificates are used: none may be given.
        for field, name, what in (
            ("server_certificate", "serverCertificate", "server certificate"),
            ("private_key", "privateKey", "private key"),
            ("ca_certificates", "caCertificates", "CA bundle"),
            ("credential_name", "credentialName", "credentialName"),
        ):
            if getattr(tls, field):
                report.error(at(path, name), f"ISTIO_MUTUAL TLS cannot have associated {what}")
        return
    if mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH") and (
        tls.ca_crl or tls.server_certificate or tls.private_key or tls.ca_certificates or tls.credential_name
    ):
        report.warn(path, f"{mode} mode does not use certificates, they will be ignored")
    if mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL") and tls.credential_name:
        return  # credentials come from the named secret
    if mode == "SIMPLE":
        if not tls.server_certificate:
            report.error(at(path, "serverCertificate"), "SIMPLE TLS requires a server certificate")
        if not tls.private_key:
            report.error(at(path, "privateKey"), "SIMPLE TLS requires a private key")
    elif mode in ("MUTUAL", "OPTIONAL_MUTUAL"):
        if not tls.server_certificate:
            report.error(at(path, "serverCertificate"), "MUTUAL TLS requires a server certificate")
        if not tls.private_key:
            report.error(at(path, "privateKey"), "MUTUAL TLS requires a private key")
        if not tls.ca_certificates:
            report.error(at(path, "caCertificates"), "MUTUAL TLS requires a client CA bundle")
    if tls.ca_crl:
        if tls.credential_name:
            report.error(
                at(path, "caCrl"),
                "CRL is not supported with credentialName. CRL has to be specified in the credential",
            )
        if mode == "SIMPLE":
            report.error(at(path, "caCrl"), "CRL is not supported with SIMPLE TLS")


def valid_cipher_suite(suite: str) -> bool:
    """An Envoy cipher suite name, or an equal-preference group ``[A|B]`` of them."""
    if suite.startswith("[") and suite.endswith("]"):  # an equal-preference group: [A|B]
        return all(part in CIPHER_SUITES for part in suite[1:-1].split("|"))
    return suite in CIPHER_SUITES
