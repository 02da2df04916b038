"""Sidecar checks, as Istio's ``ValidateSidecar`` (pkg/config/validation/validation.go) does.

Egress hosts are ``namespace/dnsName`` (``./``, ``*/``, ``~ns/`` excludes); at most one egress listener
has no port and it comes last; ports (and unix socket binds) are unique per direction; a port-0 egress
listener binds a unix socket and captures with DEFAULT or NONE; an ingress ``defaultEndpoint`` is a
loopback or wildcard ``host:port`` or a unix socket; ``egressProxy`` needs ALLOW_ANY.
"""

from __future__ import annotations

from pilot._gen import networking_pb2 as nw
from pilot.config.validation.common import (
    Report,
    at,
    check_fqdn,
    check_ip,
    check_namespace_slash_host,
    check_port,
    check_port_name,
    check_unix_address,
    check_workload_selector,
    enum_name,
    item,
)
from pilot.config.validation.destination_rule import validate_connection_pool
from pilot.config.validation.destinations import validate_destination
from pilot.config.validation.gateway import validate_server_tls
from pilot.config.validation.http import HTTP_PROTOCOLS, TLS_PROTOCOLS, check_protocol, parse_protocol
from pilot.config.validation.service_entry import UNIX_PREFIX

# What an ingress defaultEndpoint may name besides a unix socket: the workload's own loopback, or any.
DEFAULT_ENDPOINT_HOSTS = ("127.0.0.1", "0.0.0.0", "::1", "::")
DEFAULT_ENDPOINT_MESSAGE = (
    "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,"
    "unix://filepath or unset"
)
# MeshConfig's ALLOW_ANY_DYNAMIC_DNS: a number the Sidecar's own enum lacks.
ALLOW_ANY_DYNAMIC_DNS = 3


def validate_sidecar(spec: nw.Sidecar, namespace: str, path: str, report: Report) -> None:
    if spec.HasField("workload_selector"):
        check_workload_selector(spec.workload_selector, "sidecar", at(path, "workloadSelector"), report)
    if (
        not len(spec.egress)
        and not len(spec.ingress)
        and not spec.HasField("outbound_traffic_policy")
        and not spec.HasField("inbound_connection_pool")
    ):
        report.error(path, "sidecar: empty configuration provided")
        return
    ingress_ports: set[int] = set()
    for index, ingress in enumerate(spec.ingress):
        _ingress(ingress, ingress_ports, item(at(path, "ingress"), index), report)
    if spec.HasField("inbound_connection_pool"):
        validate_connection_pool(spec.inbound_connection_pool, at(path, "inboundConnectionPool"), report)
    _egress(spec, namespace, at(path, "egress"), report)
    if spec.HasField("outbound_traffic_policy"):
        _outbound_traffic_policy(spec.outbound_traffic_policy, at(path, "outboundTrafficPolicy"), report)


def _port(port: nw.SidecarPort, path: str, report: Report) -> None:
    """Name (optional), protocol and, unless 0 (a unix socket), the number."""
    if port.name:
        report.check(at(path, "name"), check_port_name(port.name))
    report.check(at(path, "protocol"), check_protocol(port.protocol))
    if port.target_port > 0:
        report.error(at(path, "targetPort"), "targetPort has no impact on Sidecars")


def _ingress(ingress: nw.IstioIngressListener, ports: set[int], path: str, report: Report) -> None:
    port_path = at(path, "port")
    if not ingress.HasField("port"):
        report.error(port_path, "sidecar: port is required for ingress listeners")
        return
    port = ingress.port
    _port(port, port_path, report)
    report.check(at(port_path, "number"), check_port(port.number))
    if ingress.bind:
        report.check(at(path, "bind"), check_ip(ingress.bind))
    if port.number in ports:
        report.error(at(port_path, "number"), "sidecar: ports on IP bound listeners must be unique")
    ports.add(port.number)
    if ingress.default_endpoint:
        _default_endpoint(ingress.default_endpoint, at(path, "defaultEndpoint"), report)
    protocol = parse_protocol(port.protocol)
    if ingress.HasField("tls"):
        _ingress_tls(ingress.tls, protocol, at(path, "tls"), report)
    if ingress.HasField("connection_pool"):
        pool_path = at(path, "connectionPool")
        validate_connection_pool(ingress.connection_pool, pool_path, report)
        if ingress.connection_pool.HasField("http") and protocol not in HTTP_PROTOCOLS:
            report.warn(
                at(pool_path, "http"),
                f"sidecar: HTTP connection pool settings are configured for port {port.number} "
                f'("{port.name}") but its protocol is not HTTP ({port.protocol}); '
                "only TCP settings will apply",
            )


def _default_endpoint(endpoint: str, path: str, report: Report) -> None:
    if endpoint.startswith(UNIX_PREFIX):
        report.check(path, check_unix_address(endpoint[len(UNIX_PREFIX) :]))
        return
    split = split_host_port(endpoint)
    if isinstance(split, str):
        report.error(path, split)
        return
    host, port = split
    if host and host not in DEFAULT_ENDPOINT_HOSTS:
        report.error(path, DEFAULT_ENDPOINT_MESSAGE)
    if not port.isascii() or not port.isdigit():
        report.error(path, f"sidecar: defaultEndpoint port ({port}) is not a number")
    else:
        report.check(path, check_port(int(port)))


def split_host_port(address: str) -> tuple[str, str] | str:
    """Go's ``net.SplitHostPort``: (host, port), or the problem. IPv6 hosts are in brackets."""
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            return f"address {address}: missing ']' in address"
        rest = address[end + 1 :]
        if not rest.startswith(":"):
            return f"address {address}: missing port in address"
        host, port = address[1:end], rest[1:]
    else:
        colons = address.count(":")
        if colons == 0:
            return f"address {address}: missing port in address"
        if colons > 1:
            return f"address {address}: too many colons in address"
        host, _, port = address.partition(":")
    if "[" in port or "]" in port:
        return f"address {address}: unexpected bracket in address"
    return host, port


def _ingress_tls(tls: nw.ServerTLSSettings, protocol: str | None, path: str, report: Report) -> None:
    if len(tls.subject_alt_names):
        report.error(at(path, "subjectAltNames"), "sidecar: subjectAltNames is not supported in ingress tls")
    if tls.https_redirect:
        report.error(at(path, "httpsRedirect"), "sidecar: httpsRedirect is not supported")
    if tls.credential_name:
        report.error(at(path, "credentialName"), "sidecar: credentialName is not currently supported")
    mode = enum_name(tls, "mode")
    if mode in ("ISTIO_MUTUAL", "AUTO_PASSTHROUGH"):
        report.error(
            at(path, "mode"), f"configuration is invalid: cannot set mode to {mode} in sidecar ingress tls"
        )
    if protocol not in TLS_PROTOCOLS:
        report.error(path, "server cannot have TLS settings for non HTTPS/TLS ports")
    validate_server_tls(tls, path, report)


def _egress(spec: nw.Sidecar, namespace: str, path: str, report: Report) -> None:
    ports: set[int] = set()
    sockets: set[str] = set()
    catch_all = False
    last = len(spec.egress) - 1
    for index, egress in enumerate(spec.egress):
        egress_path = item(path, index)
        if not egress.HasField("port"):
            # One catch-all listener (no port) at most, and it must be the last.
            if catch_all:
                report.error(egress_path, "sidecar: egress can have only one listener with empty port")
                continue
            if index == last:
                catch_all = True
            else:
                report.error(
                    egress_path,
                    "sidecar: the egress listener with empty port should be the last listener in the list",
                )
        else:
            _egress_port(egress, ports, sockets, egress_path, report)
        _egress_hosts(egress, namespace, at(egress_path, "hosts"), report)


def _egress_port(
    egress: nw.IstioEgressListener, ports: set[int], sockets: set[str], path: str, report: Report
) -> None:
    port, port_path, bind = egress.port, at(path, "port"), egress.bind
    _port(port, port_path, report)
    if port.number == 0:
        # Port 0: the listener binds a unix domain socket.
        if not bind.startswith(UNIX_PREFIX):
            report.error(
                at(path, "bind"), "sidecar: ports with 0 value must have a unix domain socket bind address"
            )
        else:
            report.check(at(path, "bind"), check_unix_address(bind[len(UNIX_PREFIX) :]))
        if enum_name(egress, "capture_mode") not in ("DEFAULT", "NONE"):
            report.error(
                at(path, "captureMode"),
                "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners",
            )
        if bind in sockets:
            report.error(at(path, "bind"), "sidecar: unix domain socket values for listeners must be unique")
        sockets.add(bind)
        return
    report.check(at(port_path, "number"), check_port(port.number))
    if bind:
        report.check(at(path, "bind"), check_ip(bind))
    if port.number in ports:
        report.error(at(port_path, "number"), "sidecar: ports on IP bound listeners must be unique")
    ports.add(port.number)


def _egress_hosts(egress: nw.IstioEgressListener, namespace: str, path: str, report: Report) -> None:
    if not len(egress.hosts):
        report.error(path, "sidecar: egress listener must contain at least one host")
        return
    # namespace → the dnsNames imported from it, for Istio's duplicate warnings.
    imported: dict[str, set[str]] = {}
    for index, host in enumerate(egress.hosts):
        host_path = item(path, index)
        host_namespace, slash, name = host.partition("/")
        if slash and not host_namespace.startswith("~"):
            if host_namespace == ".":
                host_namespace = namespace
            names = imported.setdefault(host_namespace, set())
            if (name != "*" and (name in names or "*" in names)) or (name == "*" and names):
                report.warn(host_path, f"duplicated egress host: {host}")
            names.add(name)
        report.check_all(host_path, check_namespace_slash_host(host, False))
    if "*" in imported.get("*", ()) and len(imported) != 1:
        report.warn(path, "`*/*` host select all resources, no other hosts can be added")


def _outbound_traffic_policy(policy: nw.OutboundTrafficPolicy, path: str, report: Report) -> None:
    if policy.mode == ALLOW_ANY_DYNAMIC_DNS:
        report.error(
            at(path, "mode"),
            "sidecar: ALLOW_ANY_DYNAMIC_DNS mode is only supported in MeshConfig, not in Sidecar resource",
        )
        return
    if not policy.HasField("egress_proxy"):
        return
    proxy_path = at(path, "egressProxy")
    if policy.mode != nw.OutboundTrafficPolicy.ALLOW_ANY:
        report.error(
            proxy_path, "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode"
        )
        return
    report.check(at(proxy_path, "host"), check_fqdn(policy.egress_proxy.host))
    if not policy.egress_proxy.HasField("port"):
        report.error(at(proxy_path, "port"), "sidecar: egress_proxy port must be non-nil")
        return
    validate_destination(policy.egress_proxy, proxy_path, report)
