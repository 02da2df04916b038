"""Protocol sniffing on an outbound port whose protocol is not declared (an unnamed or unknown-protocol
service port): plaintext HTTP goes to the port's HTTP connection manager, anything else to the
port's TCP filter chains.

Istio's listener.go, ``buildSidecarOutboundListener`` for ``ListenerProtocolAuto`` and
``buildListenerFromEntry``: the TCP filter chains of the port's services, plus an HTTP chain matched
by ``transport_protocol: raw_buffer`` and ``application_protocols: [http/1.1, h2c]`` (what the HTTP
inspector sets; Istio's plaintextHTTPALPNs without HTTP/1.0), the TLS and HTTP inspectors as listener
filters, ``listener_filters_timeout: 0s`` (mesh ``protocolDetectionTimeout``'s default: no timeout)
and ``continue_on_listener_filters_timeout``. A chain that matches everything becomes the
listener's ``default_filter_chain``, so a connection that starts to match the HTTP chain's criteria
and then misses them still has a chain (istio/istio#26079).

One addition: istiod binds a listener per service address, so its TCP chains carry no destination
match; pilot's listener is shared by the port's services and their chains match the service
addresses (tcp_routes.py). Envoy picks the most specific destination first and never backtracks, so
for each address matched an HTTP chain is added with the same addresses, and a copy of the TCP
chain that also says ``raw_buffer``: plaintext that is not HTTP still reaches the service.
"""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.listener.http_inspector.v3 import http_inspector_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
HTTP_INSPECTOR = "envoy.filters.listener.http_inspector"
RAW_BUFFER = "raw_buffer"  # Envoy's transport protocol of a connection that is not TLS
PLAINTEXT_HTTP_ALPNS = ("http/1.1", "h2c")


def _typed(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _http_chain(manager: lc.Filter, prefix_ranges: list[address_pb2.CidrRange]) -> lc.FilterChain:
    chain = lc.FilterChain(filters=[manager])
    match = chain.filter_chain_match
    match.transport_protocol = RAW_BUFFER
    match.application_protocols.extend(PLAINTEXT_HTTP_ALPNS)
    match.prefix_ranges.extend(prefix_ranges)
    return chain


def _is_match_all(chain: lc.FilterChain) -> bool:
    return not chain.HasField("filter_chain_match") or chain.filter_chain_match == lc.FilterChainMatch()


def sniff(
    listener: listener_pb2.Listener,
    manager: lc.Filter,
    tcp_chains: list[lc.FilterChain],
    fallthrough: lc.FilterChain | None,
) -> None:
    """Fill ``listener`` (named and addressed already) with the chains of a sniffed port: the TCP
    chains, the HTTP chain(s) around ``manager`` (the port's HTTP connection manager), and as default
    chain the TCP chain that matches everything, else ``fallthrough`` (None: no default chain)."""
    default: lc.FilterChain | None = None
    by_address: dict[bytes, address_pb2.CidrRange] = {}
    for chain in tcp_chains:
        if _is_match_all(chain):
            if default is None:
                default = chain
            continue
        listener.filter_chains.append(chain)
        match = chain.filter_chain_match
        if match.prefix_ranges and not match.server_names and not match.transport_protocol:
            plaintext = listener.filter_chains.add()
            plaintext.CopyFrom(chain)
            plaintext.filter_chain_match.transport_protocol = RAW_BUFFER
            for prefix in match.prefix_ranges:
                by_address.setdefault(prefix.SerializeToString(deterministic=True), prefix)
    listener.filter_chains.append(_http_chain(manager, []))
    if by_address:
        listener.filter_chains.append(_http_chain(manager, list(by_address.values())))
    default = default or fallthrough
    if default is not None:
        listener.default_filter_chain.CopyFrom(default)
        listener.default_filter_chain.ClearField("filter_chain_match")
    listener.listener_filters.add(name=TLS_INSPECTOR, typed_config=_typed(tls_inspector_pb2.TlsInspector()))
    listener.listener_filters.add(
        name=HTTP_INSPECTOR, typed_config=_typed(http_inspector_pb2.HttpInspector())
    )
    listener.listener_filters_timeout.CopyFrom(duration_pb2.Duration())
    listener.continue_on_listener_filters_timeout = True


__all__ = ["HTTP_INSPECTOR", "PLAINTEXT_HTTP_ALPNS", "RAW_BUFFER", "TLS_INSPECTOR", "sniff"]
