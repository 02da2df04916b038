"""EDS: a ClusterLoadAssignment for every EDS cluster, and the endpoint lists DNS clusters inline.

Istio's EndpointBuilder (pilot/pkg/xds/endpoints/endpoint_builder.go): a subset cluster gets the
service's endpoints whose labels contain the subset's labels; endpoints are grouped by locality.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from pilot.config.addresses import is_ip
from pilot.translate.context import Endpoint, Service, ServicePort

log = logging.getLogger("pilot.translate.endpoints")

UNIX_PREFIX = "unix://"
# The label Istio's injector puts on a Pod with a sidecar (and a WorkloadEntry or ServiceEntry endpoint
# can carry): its endpoints get the metadata auto mTLS's transport socket match reads
# (Istio's model.TLSModeLabelName, endpoint_builder.go ``buildEnvoyLbEndpoint``).
TLS_MODE_LABEL = "security.istio.io/tlsMode"
TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match"
# Whether an endpoint's own PeerAuthentication is DISABLE on the port (its sidecar takes plain text only).
PlaintextOnly = Callable[[Endpoint, int], bool]


def locality(text: str) -> base_pb2.Locality:
    """``us-east/us-east-1a/rack1`` → region, zone, sub_zone."""
    region, zone, sub_zone = (text.split("/", 2) + ["", ""])[:3]
    return base_pb2.Locality(region=region, zone=zone, sub_zone=sub_zone)


def socket_address(address: str, port: int) -> address_pb2.Address:
    if address.startswith(UNIX_PREFIX):
        return address_pb2.Address(pipe=address_pb2.Pipe(path=address[len(UNIX_PREFIX) :]))
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=address, port_value=port))


def lb_endpoint(
    endpoint: Endpoint, port: ServicePort, plaintext_only: PlaintextOnly | None = None
) -> endpoint_components_pb2.LbEndpoint:
    """The endpoint, with the auto mTLS metadata when its labels say a sidecar runs there and its own
    PeerAuthentication is not DISABLE on the port (Istio's mtls_checker.go ``checkMtlsEnabled``)."""
    target_port = endpoint.port_for(port)
    out = endpoint_components_pb2.LbEndpoint()
    address = out.endpoint.address
    if endpoint.address.startswith(UNIX_PREFIX):
        address.pipe.path = endpoint.address[len(UNIX_PREFIX) :]
    else:
        address.socket_address.address = endpoint.address
        address.socket_address.port_value = target_port
    # Istio's IstioEndpoint.GetLoadBalancingWeight: the endpoint's weight, 1 when unset.
    out.load_balancing_weight.value = endpoint.weight or 1
    tls_mode = dict(endpoint.labels).get(TLS_MODE_LABEL)
    if tls_mode and not (plaintext_only is not None and plaintext_only(endpoint, target_port)):
        out.metadata.filter_metadata[TRANSPORT_SOCKET_MATCH].update({"tlsMode": tls_mode})
    return out


def selected_endpoints(
    service: Service, subset_labels: Mapping[str, str], *, ip_only: bool
) -> list[Endpoint]:
    """The service's endpoints carrying every subset label. EDS (``ip_only``) needs IP addresses:
    a hostname there would make Envoy reject the whole assignment, so it is dropped with a warning."""
    out = []
    for endpoint in service.endpoints:
        if not endpoint.has_labels(subset_labels):
            continue
        if ip_only and not (is_ip(endpoint.address) or endpoint.address.startswith(UNIX_PREFIX)):
            log.warning(
                "%s: endpoint %r is not an IP address; a STATIC ServiceEntry needs IPs",
                service.key,
                endpoint.address,
            )
            continue
        out.append(endpoint)
    return out


# The LbEndpoint of an (endpoint, service port), by their identities, made once per build and
# copied into each assignment that lists it (a service port's default and subset clusters share
# endpoints); an entry holds its endpoint and port, so no id is reused while it is in the table.
LbEndpoints = dict[tuple[int, int], tuple[endpoint_components_pb2.LbEndpoint, Endpoint, ServicePort]]


def _lb_endpoint(
    endpoint: Endpoint, port: ServicePort, plaintext_only: PlaintextOnly | None, made: LbEndpoints | None
) -> endpoint_components_pb2.LbEndpoint:
    if made is None:
        return lb_endpoint(endpoint, port, plaintext_only)
    # ``plaintext_only`` is not in the key: within one build it answers from the push context's
    # PeerAuthentications for the endpoint and its port alone, so one (endpoint, port) has one answer.
    key = (id(endpoint), id(port))
    entry = made.get(key)
    if entry is None:
        entry = made[key] = (lb_endpoint(endpoint, port, plaintext_only), endpoint, port)
    return entry[0]


def locality_lb_endpoints(
    endpoints: Iterable[Endpoint],
    port: ServicePort,
    plaintext_only: PlaintextOnly | None = None,
    made: LbEndpoints | None = None,
) -> list[endpoint_components_pb2.LocalityLbEndpoints]:
    """Endpoints grouped by locality, localities in order of first appearance; a locality's weight is
    the sum of its endpoints' (Istio's refreshWeight), which locality-weighted balancing needs."""
    groups: dict[str, list[endpoint_components_pb2.LbEndpoint]] = {}
    weights: dict[str, int] = {}
    for endpoint in endpoints:
        groups.setdefault(endpoint.locality, []).append(_lb_endpoint(endpoint, port, plaintext_only, made))
        # lb_endpoint's load_balancing_weight: the endpoint's weight, 1 when unset.
        weights[endpoint.locality] = weights.get(endpoint.locality, 0) + (endpoint.weight or 1)
    out = []
    for name, members in groups.items():
        group = endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=members)
        group.load_balancing_weight.value = weights[name]
        if name:
            group.locality.CopyFrom(locality(name))
        out.append(group)
    return out


def load_assignment(
    cluster_name: str,
    service: Service,
    port: ServicePort,
    subset_labels: Mapping[str, str],
    *,
    ip_only: bool,
    plaintext_only: PlaintextOnly | None = None,
    made: LbEndpoints | None = None,
) -> endpoint_pb2.ClusterLoadAssignment:
    """The assignment for one cluster; empty (but present) when no endpoint matches."""
    selected = selected_endpoints(service, subset_labels, ip_only=ip_only)
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=cluster_name, endpoints=locality_lb_endpoints(selected, port, plaintext_only, made)
    )
