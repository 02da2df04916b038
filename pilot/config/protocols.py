"""Istio's port protocols (``protocol.Instance``): one table for validation, sources and translation."""

from __future__ import annotations

import enum


class Protocol(enum.StrEnum):
    """Istio's protocol.Instance; UNSUPPORTED is an unknown or missing protocol."""

    HTTP = "HTTP"
    HTTP2 = "HTTP2"
    GRPC = "GRPC"
    GRPC_WEB = "GRPC-Web"
    HTTP_PROXY = "HTTP_PROXY"
    HTTPS = "HTTPS"
    TLS = "TLS"
    TCP = "TCP"
    UDP = "UDP"
    MONGO = "Mongo"
    REDIS = "Redis"
    MYSQL = "MySQL"
    THRIFT = "Thrift"
    UNSUPPORTED = "UnsupportedProtocol"

    @property
    def is_http(self) -> bool:
        return self in (Protocol.HTTP, Protocol.HTTP2, Protocol.GRPC, Protocol.GRPC_WEB)

    @property
    def is_http2(self) -> bool:
        return self in (Protocol.HTTP2, Protocol.GRPC)

    @property
    def is_tls(self) -> bool:
        """TLS the proxy does not terminate: routed by SNI (VirtualService ``tls`` routes)."""
        return self in (Protocol.HTTPS, Protocol.TLS)


_BY_LOWER_NAME = {p.value.lower(): p for p in Protocol if p is not Protocol.UNSUPPORTED}


def parse_protocol(text: str) -> Protocol:
    """Istio's ``protocol.Parse``: case-insensitive; anything unknown is UNSUPPORTED."""
    return _BY_LOWER_NAME.get(text.lower(), Protocol.UNSUPPORTED)


def port_protocol(protocol: str, name: str) -> Protocol:
    """The declared protocol, else the one the port name starts with (``http-web`` → HTTP)."""
    if protocol:
        return parse_protocol(protocol)
    return parse_protocol(name.split("-", 1)[0])
