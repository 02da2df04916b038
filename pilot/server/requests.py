"""What the server reads of ADS requests, as protocols mypy checks.

The generated ``DiscoveryRequest`` and ``DeltaDiscoveryRequest`` classes satisfy them (the
protobuf modules of xds-protos ship no type stubs, so mypy would otherwise see ``Any``).
https://www.envoyproxy.io/docs/envoy/latest/api-v3/service/discovery/v3/discovery.proto
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from envoy.config.core.v3 import base_pb2

__all__ = ["DeltaRequest", "ErrorDetail", "Request", "SotwRequest"]


class ErrorDetail(Protocol):
    """What a NACK carries (``google.rpc.Status``)."""

    @property
    def code(self) -> int: ...
    @property
    def message(self) -> str: ...


class Request(Protocol):
    """What the server reads of every request, whichever protocol."""

    @property
    def node(self) -> base_pb2.Node: ...
    @property
    def type_url(self) -> str: ...
    @property
    def response_nonce(self) -> str: ...
    @property
    def error_detail(self) -> ErrorDetail: ...
    def HasField(self, field_name: str) -> bool: ...  # noqa: N802 (protobuf's name)


class SotwRequest(Request, Protocol):
    """A ``DiscoveryRequest`` (state of the world)."""

    @property
    def version_info(self) -> str: ...
    @property
    def resource_names(self) -> Sequence[str]: ...


class DeltaRequest(Request, Protocol):
    """A ``DeltaDiscoveryRequest`` (incremental)."""

    @property
    def resource_names_subscribe(self) -> Sequence[str]: ...
    @property
    def resource_names_unsubscribe(self) -> Sequence[str]: ...
    @property
    def initial_resource_versions(self) -> Mapping[str, str]: ...
