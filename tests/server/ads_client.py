"""Small real ADS clients for protocol tests: grpc.aio streams to the server over 127.0.0.1.

:class:`AdsClient` speaks state of the world (DiscoveryRequest/DiscoveryResponse) and
:class:`DeltaClient` incremental xDS (DeltaDiscoveryRequest/DeltaDiscoveryResponse), with the same
verbs (request, recv, ack, nack, expect_silence, close). :class:`SotwXds` and :class:`DeltaXds`
wrap them behind one protocol-neutral interface (:class:`XdsClient`) that also models what the
proxy holds, so protocol tests can be parametrized over both.
"""

from __future__ import annotations

import abc
import asyncio
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

from pilot.cache.snapshot import Snapshot, content_version
from pilot.xds import types

# Generous: the machine is shared and slow at times; a healthy answer takes milliseconds.
DEADLINE = 10.0

# A type the test snapshots never hold, used as a barrier: its requests (always with an empty
# nonce) are answered in order after anything the server meant to send before it.
PROBE_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

DEFAULT_NODE = "sidecar~10.0.0.1~app-1.default~default.svc.cluster.local"


class AdsClient:
    """One StreamAggregatedResources call. Sends ``node`` on the first request only (later
    requests may omit it, as Envoy's do), and remembers the last ACKed version per type so that a
    NACK reports it the way Envoy does."""

    def __init__(self, channel: grpc.aio.Channel, node_id: str = DEFAULT_NODE) -> None:
        self.node = base_pb2.Node(id=node_id, cluster="test")
        self.call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        self.acked_versions: dict[str, str] = {}
        self._sent_first = False
        self.probes = itertools.count(1)

    async def send(self, request: discovery_pb2.DiscoveryRequest) -> None:
        await self.call.write(request)

    async def request(
        self,
        type_url: str,
        names: Iterable[str] = (),
        *,
        nonce: str = "",
        version: str | None = None,
        error: str | None = None,
        node: bool | None = None,
    ) -> None:
        """Send a DiscoveryRequest. ``version`` defaults to the last version ACKed for the type."""
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            resource_names=list(names),
            response_nonce=nonce,
            version_info=self.acked_versions.get(type_url, "") if version is None else version,
        )
        if node or (node is None and not self._sent_first):
            request.node.CopyFrom(self.node)
        if error is not None:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        self._sent_first = True
        await self.send(request)

    async def recv(self, timeout: float = DEADLINE) -> discovery_pb2.DiscoveryResponse:
        message = await asyncio.wait_for(self.call.read(), timeout)
        if message is grpc.aio.EOF:  # type: ignore[attr-defined]
            raise AssertionError("the server ended the stream")
        assert isinstance(message, discovery_pb2.DiscoveryResponse)
        return message

    async def ack(self, response: discovery_pb2.DiscoveryResponse, names: Iterable[str] = ()) -> None:
        self.acked_versions[response.type_url] = response.version_info
        await self.request(response.type_url, names, nonce=response.nonce)

    async def nack(
        self, response: discovery_pb2.DiscoveryResponse, message: str, names: Iterable[str] = ()
    ) -> None:
        # A NACK carries the rejected nonce and the version the client still runs.
        await self.request(response.type_url, names, nonce=response.nonce, error=message)

    async def expect_silence(self) -> None:
        """Assert the server sent nothing since the last ``recv``: ask for a probe resource and
        check that its (empty) answer is the very next message. No sleeping, no guessing."""
        name = f"probe-{next(self.probes)}"
        await self.request(PROBE_TYPE, [name])
        response = await self.recv()
        assert response.type_url == PROBE_TYPE, (
            f"expected no response, got {response.type_url} version {response.version_info} "
            f"with {len(response.resources)} resources"
        )

    async def status(self) -> grpc.StatusCode:
        """Wait for the server to end the stream; return its status code."""
        return await asyncio.wait_for(self.call.code(), DEADLINE)

    def close(self) -> None:
        self.call.cancel()


class DeltaClient:
    """One DeltaAggregatedResources call: the incremental sibling of :class:`AdsClient`. Sends
    ``node`` on the first request only, as Envoy does with set_node_on_first_message_only."""

    def __init__(self, channel: grpc.aio.Channel, node_id: str = DEFAULT_NODE) -> None:
        self.node = base_pb2.Node(id=node_id, cluster="test")
        self.call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources()
        self._sent_first = False
        self.probes = itertools.count(1)

    async def send(self, request: discovery_pb2.DeltaDiscoveryRequest) -> None:
        await self.call.write(request)

    async def request(
        self,
        type_url: str,
        subscribe: Iterable[str] = (),
        unsubscribe: Iterable[str] = (),
        *,
        nonce: str = "",
        initial_versions: Mapping[str, str] | None = None,
        error: str | None = None,
        node: bool | None = None,
    ) -> None:
        request = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            initial_resource_versions=dict(initial_versions or {}),
            response_nonce=nonce,
        )
        if node or (node is None and not self._sent_first):
            request.node.CopyFrom(self.node)
        if error is not None:
            request.error_detail.CopyFrom(status_pb2.Status(code=13, message=error))
        self._sent_first = True
        await self.send(request)

    async def recv(self, timeout: float = DEADLINE) -> discovery_pb2.DeltaDiscoveryResponse:
        message = await asyncio.wait_for(self.call.read(), timeout)
        if message is grpc.aio.EOF:  # type: ignore[attr-defined]
            raise AssertionError("the server ended the stream")
        assert isinstance(message, discovery_pb2.DeltaDiscoveryResponse)
        return message

    async def ack(
        self,
        response: discovery_pb2.DeltaDiscoveryResponse,
        subscribe: Iterable[str] = (),
        unsubscribe: Iterable[str] = (),
    ) -> None:
        await self.request(response.type_url, subscribe, unsubscribe, nonce=response.nonce)

    async def nack(
        self,
        response: discovery_pb2.DeltaDiscoveryResponse,
        message: str,
        subscribe: Iterable[str] = (),
    ) -> None:
        await self.request(response.type_url, subscribe, nonce=response.nonce, error=message)

    async def expect_silence(self) -> None:
        """Assert the server sent nothing since the last ``recv`` (see AdsClient.expect_silence):
        a probe name of a type the server never has is answered at once (as removed)."""
        name = f"probe-{next(self.probes)}"
        await self.request(PROBE_TYPE, [name])
        response = await self.recv()
        assert response.type_url == PROBE_TYPE, (
            f"expected no response, got {response.type_url} with {len(response.resources)} resources "
            f"and {len(response.removed_resources)} removed"
        )

    async def status(self) -> grpc.StatusCode:
        return await asyncio.wait_for(self.call.code(), DEADLINE)

    def close(self) -> None:
        self.call.cancel()


# -- protocol-neutral clients ---------------------------------------------------------------------

MESSAGES: dict[str, type[Message]] = {
    types.CLUSTER: cluster_pb2.Cluster,
    types.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    types.LISTENER: listener_pb2.Listener,
    types.ROUTE: route_pb2.RouteConfiguration,
}


def resource_name(type_url: str, value: bytes) -> str:
    """The name inside a serialized resource of one of the four ADS types."""
    message = MESSAGES[type_url].FromString(value)
    return str(message.cluster_name if type_url == types.ENDPOINT else message.name)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Update:
    """One response of either protocol: the resources it carries (name -> content version, in the
    order sent), and the names it removes (delta only)."""

    type_url: str
    nonce: str
    version: str  # version_info, or system_version_info
    resources: dict[str, str]
    removed: list[str]
    size: int = field(default=0, compare=False)  # bytes of the serialized response
    values: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)  # name -> Any.value

    @property
    def names(self) -> list[str]:
        return list(self.resources)


def versions(snapshot: Snapshot, type_url: str) -> dict[str, str]:
    """name -> version of every resource of ``type_url`` in ``snapshot`` (what a proxy should hold)."""
    return {name: r.version for name, r in snapshot.resources(type_url).items()}


class XdsClient(abc.ABC):
    """A proxy as the tests see it, whichever protocol it speaks: it subscribes and unsubscribes,
    receives :class:`Update` values, ACKs (which applies an update to what it ``held``s) or
    NACKs (which does not), and checks for silence. Requests carry the node on the first one only."""

    protocol: str

    def __init__(self) -> None:
        self.subscribed: dict[str, set[str]] = {}  # type -> explicit names ("*" never stored)
        self._held: dict[str, dict[str, str]] = {}

    def held(self, type_url: str) -> dict[str, str]:
        """name -> version of what this proxy holds of ``type_url`` (after the updates it ACKed)."""
        return dict(sorted(self._held.get(type_url, {}).items()))

    def wildcard(self, type_url: str) -> bool:
        return type_url in types.WILDCARD_TYPES and not self.subscribed.get(type_url)

    @abc.abstractmethod
    async def subscribe(self, type_url: str, names: Iterable[str] = (), *, node: bool | None = None) -> None:
        """Subscribe to more names (none: the first, wildcard, request of LDS or CDS)."""

    @abc.abstractmethod
    async def unsubscribe(self, type_url: str, names: Iterable[str]) -> None: ...

    @abc.abstractmethod
    async def recv(self, timeout: float = DEADLINE) -> Update: ...

    async def nack(self, update: Update, message: str, invalid: Iterable[str]) -> None:
        """Reject ``update`` because of its ``invalid`` resources. Like Envoy's CDS and LDS, the
        proxy still applies the rest of it (and its removals)."""
        self._apply(update, frozenset(invalid))
        await self._send_nack(update, message)

    async def ack(self, update: Update) -> None:
        self._apply(update, frozenset())
        await self._send_ack(update)

    @abc.abstractmethod
    def _apply(self, update: Update, invalid: frozenset[str]) -> None:
        """Take ``update`` into what the proxy holds, except its ``invalid`` resources."""

    @abc.abstractmethod
    async def _send_ack(self, update: Update) -> None: ...

    @abc.abstractmethod
    async def _send_nack(self, update: Update, message: str) -> None: ...

    @abc.abstractmethod
    async def expect_silence(self) -> None: ...

    async def probe(self) -> None:
        """Ask for a probe resource: its answer comes after everything the server meant to send
        before it (the barrier behind ``expect_silence`` and ``drain``)."""
        await self._probe()

    async def drain(self) -> list[Update]:
        """ACK every response until the server has nothing more to send (a probe's answer comes
        back, as in expect_silence); return them in order."""
        await self._probe()
        updates = []
        while (update := await self.recv()).type_url != PROBE_TYPE:
            await self.ack(update)
            updates.append(update)
        return updates

    @abc.abstractmethod
    async def _probe(self) -> None: ...

    @abc.abstractmethod
    async def status(self) -> grpc.StatusCode: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def _forget(self, type_url: str, names: Iterable[str]) -> None:
        held = self._held.get(type_url, {})
        for name in names:
            held.pop(name, None)


class SotwXds(XdsClient):
    protocol = "sotw"

    def __init__(self, raw: AdsClient) -> None:
        super().__init__()
        self.raw = raw
        self._nonces: dict[str, str] = {}

    async def subscribe(self, type_url: str, names: Iterable[str] = (), *, node: bool | None = None) -> None:
        wanted = self.subscribed.setdefault(type_url, set())
        wanted.update(names)
        # Envoy's SotW requests carry the whole subscription and the type's latest nonce.
        await self.raw.request(type_url, sorted(wanted), nonce=self._nonces.get(type_url, ""), node=node)

    async def unsubscribe(self, type_url: str, names: Iterable[str]) -> None:
        names = set(names)
        wanted = self.subscribed.setdefault(type_url, set())
        wanted -= names
        self._forget(type_url, names)
        await self.raw.request(type_url, sorted(wanted), nonce=self._nonces.get(type_url, ""))

    async def recv(self, timeout: float = DEADLINE) -> Update:
        response = await self.raw.recv(timeout)
        self._nonces[response.type_url] = response.nonce
        resources: dict[str, str] = {}
        values: dict[str, bytes] = {}
        for resource in response.resources:
            assert resource.type_url == response.type_url
            name = resource_name(response.type_url, resource.value)
            assert name not in resources, f"{name} twice in one response"
            resources[name] = content_version(resource.value)
            values[name] = resource.value
        version = response.version_info
        return Update(response.type_url, response.nonce, version, resources, [], response.ByteSize(), values)

    def _apply(self, update: Update, invalid: frozenset[str]) -> None:
        held = self._held.setdefault(update.type_url, {})
        valid = {n: v for n, v in update.resources.items() if n not in invalid}
        if self.wildcard(update.type_url):
            # A LDS/CDS response is the whole state of the world: what is not in it is removed;
            # an invalid resource the proxy had keeps its old version.
            kept = {n: held[n] for n in invalid if n in held}
            self._held[update.type_url] = valid | kept
        else:
            wanted = self.subscribed.get(update.type_url, set())
            held.update((n, v) for n, v in valid.items() if n in wanted)

    async def _send_ack(self, update: Update) -> None:
        self.raw.acked_versions[update.type_url] = update.version
        wanted = sorted(self.subscribed.get(update.type_url, ()))
        await self.raw.request(update.type_url, wanted, nonce=update.nonce)

    async def _send_nack(self, update: Update, message: str) -> None:
        wanted = sorted(self.subscribed.get(update.type_url, ()))
        await self.raw.request(update.type_url, wanted, nonce=update.nonce, error=message)

    async def expect_silence(self) -> None:
        await self.raw.expect_silence()

    async def _probe(self) -> None:
        await self.raw.request(PROBE_TYPE, [f"probe-{next(self.raw.probes)}"])

    async def status(self) -> grpc.StatusCode:
        return await self.raw.status()

    def close(self) -> None:
        self.raw.close()


class DeltaXds(XdsClient):
    protocol = "delta"

    def __init__(self, raw: DeltaClient) -> None:
        super().__init__()
        self.raw = raw

    async def subscribe(self, type_url: str, names: Iterable[str] = (), *, node: bool | None = None) -> None:
        names = list(names)
        self.subscribed.setdefault(type_url, set()).update(names)
        await self.raw.request(type_url, names, node=node)

    async def unsubscribe(self, type_url: str, names: Iterable[str]) -> None:
        names = list(names)
        self.subscribed.setdefault(type_url, set()).difference_update(names)
        self._forget(type_url, names)
        await self.raw.request(type_url, unsubscribe=names)

    async def recv(self, timeout: float = DEADLINE) -> Update:
        response = await self.raw.recv(timeout)
        return delta_update(response)

    def _apply(self, update: Update, invalid: frozenset[str]) -> None:
        held = self._held.setdefault(update.type_url, {})
        wanted = self.subscribed.get(update.type_url, set())
        # Envoy keeps what it asked for, and everything when its subscription is the wildcard.
        held.update(
            (n, v)
            for n, v in update.resources.items()
            if n not in invalid and (self.wildcard(update.type_url) or n in wanted)
        )
        for name in update.removed:
            held.pop(name, None)

    async def _send_ack(self, update: Update) -> None:
        await self.raw.request(update.type_url, nonce=update.nonce)

    async def _send_nack(self, update: Update, message: str) -> None:
        await self.raw.request(update.type_url, nonce=update.nonce, error=message)

    async def expect_silence(self) -> None:
        await self.raw.expect_silence()

    async def _probe(self) -> None:
        await self.raw.request(PROBE_TYPE, [f"probe-{next(self.raw.probes)}"])

    async def status(self) -> grpc.StatusCode:
        return await self.raw.status()

    def close(self) -> None:
        self.raw.close()


def delta_update(response: discovery_pb2.DeltaDiscoveryResponse) -> Update:
    """An :class:`Update` from a DeltaDiscoveryResponse, checking each Resource's name and version
    against its content."""
    resources: dict[str, str] = {}
    values: dict[str, bytes] = {}
    for resource in response.resources:
        assert resource.resource.type_url == response.type_url
        if response.type_url in MESSAGES:
            assert resource_name(response.type_url, resource.resource.value) == resource.name
        assert resource.version == content_version(resource.resource.value)
        assert resource.name not in resources, f"{resource.name} twice in one response"
        resources[resource.name] = resource.version
        values[resource.name] = resource.resource.value
    removed = list(response.removed_resources)
    assert not set(removed) & set(resources), "a name both updated and removed"
    return Update(
        response.type_url,
        response.nonce,
        response.system_version_info,
        resources,
        removed,
        response.ByteSize(),
        values,
    )
