"""Kept route configurations: a sidecar's route configuration as its virtual hosts, each serialized once.

A route configuration without a Sidecar is kept from one push context to the next
(pilot.translate.pieces) as a ``KeptConfiguration``: its virtual hosts in order, each with what
made it (a VirtualService for a host that is no service, else the service) and the
VirtualServices looked at for its routes, and each already serialized as the configuration's
``virtual_hosts`` field. The configuration's bytes are the concatenation of its fields in
field-number order, which is what deterministic serialization writes
(https://protobuf.dev/programming-guides/encoding/#order): ``name`` (1), every virtual host (2),
then the rest (3 and up). So an edit of one VirtualService re-serializes the virtual hosts it
routes and joins the others' bytes, instead of building and serializing every virtual host again.
A virtual host whose routes are templated (``TemplatedRoutes``, pilot.translate.route_templates)
joins their bytes as its ``routes`` field; a route's own bytes are then not in field order.

When a VirtualService keeps its hosts but changes its routes, ``KeptConfiguration.patched`` makes
the configuration of the next context from the kept one: the same virtual hosts (their names and
domains come from hosts alone), with new routes for those that looked at the edited
VirtualService. It refuses (the caller then builds the configuration anew) when the edit changes
which VirtualServices have routes on the port, which decides which virtual hosts exist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import overload

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import wrappers_pb2

from pilot._gen import networking_pb2 as nw
from pilot.cache.snapshot import Encoded
from pilot.xds.protowire import varint

Routes = Sequence[rc.Route]
MAX_DIRECT_RESPONSE_BODY = 1024 * 1024  # Istio's DefaultMaxDirectResponseBodySizeBytes
_VIRTUAL_HOSTS_TAG = b"\x12"  # RouteConfiguration.virtual_hosts: field 2, length-delimited
_ROUTES_TAG = b"\x1a"  # VirtualHost.routes: field 3, length-delimited
_ATTEMPT_COUNT = rc.VirtualHost(include_request_attempt_count=True).SerializeToString()


# The fields of a route's action that name clusters: each templated route makes its own.
_OWN_ACTION = ("cluster", "weighted_clusters", "hash_policy", "request_mirror_policies")
ShapeKey = tuple[object, ...]  # pilot.translate.route_templates.templated_routes


class TemplatedRoutes(Sequence[rc.Route]):
    """The routes of one VirtualService on one port, serialized (``encoded``: each route's bytes);
    the messages are parsed on demand (never change them)."""

    __slots__ = ("_parsed", "encoded")

    def __init__(self, encoded: tuple[bytes, ...]) -> None:
        self.encoded = encoded
        self._parsed: tuple[rc.Route, ...] | None = None

    def _routes(self) -> tuple[rc.Route, ...]:
        if self._parsed is None:
            self._parsed = tuple(rc.Route.FromString(value) for value in self.encoded)
        return self._parsed

    @overload
    def __getitem__(self, index: int) -> rc.Route: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[rc.Route]: ...

    def __getitem__(self, index: int | slice) -> rc.Route | Sequence[rc.Route]:
        return self._routes()[index]

    def __len__(self) -> int:
        return len(self.encoded)

    def __iter__(self) -> Iterator[rc.Route]:
        return iter(self._routes())


@dataclass(frozen=True, slots=True)
class RouteTemplate:
    """A shape's routes without their own fields: for each, the index of its HTTPRoute, the route
    and its bytes."""

    specs: tuple[int, ...]
    routes: tuple[rc.Route, ...]
    encoded: tuple[bytes, ...]

    @classmethod
    def of(cls, made: list[tuple[int, rc.Route]]) -> RouteTemplate:
        routes = []
        for _, route in made:
            shared = rc.Route()
            shared.CopyFrom(route)
            shared.ClearField("metadata")
            shared.ClearField("decorator")
            if shared.HasField("route"):
                for name in _OWN_ACTION:
                    shared.route.ClearField(name)
            routes.append(shared)
        return cls(
            tuple(index for index, _ in made),
            tuple(routes),
            tuple(route.SerializeToString(deterministic=True) for route in routes),
        )


@dataclass(frozen=True, slots=True)
class VirtualServiceShape:
    """A VirtualServiceEntry's own part of its routes' shape: its HTTPRoutes serialized with hosts
    blanked (None: never templated), a route holding its metadata, its HTTPRoutes and each one's
    destinations (read out of the message once)."""

    entry: object
    blanks: tuple[bytes | None, ...] | None
    metadata: rc.Route
    http: tuple[nw.HTTPRoute, ...]
    destinations: tuple[tuple[nw.Destination, ...], ...]


@dataclass(frozen=True, slots=True)
class RouteTemplates:
    """The route templates of one scope (pilot.translate.route_templates): by shape, and each
    VirtualServiceEntry's own part of its shape, by id (holding the entry)."""

    shapes: dict[ShapeKey, RouteTemplate] = field(default_factory=dict)
    specs: dict[int, VirtualServiceShape] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VirtualHostRecord:
    """One virtual host of a route configuration, and what it was made from: ``maker`` is the
    VirtualServiceEntry of a host that is no service, or the Service; ``consulted`` the
    VirtualServiceEntries looked at for its routes."""

    name: str
    domains: tuple[str, ...]
    routes: Routes
    maker: object
    consulted: tuple[object, ...]
    _field: list[bytes] = field(default_factory=list, compare=False, repr=False)

    def message(self) -> rc.VirtualHost:
        return rc.VirtualHost(
            name=self.name, domains=self.domains, routes=self.routes, include_request_attempt_count=True
        )

    @property
    def encoded_field(self) -> bytes:
        """The ``virtual_hosts`` field of this virtual host: tag, length, message (made once)."""
        if not self._field:
            if isinstance(self.routes, TemplatedRoutes):
                # Fields in number order: name (1), domains (2), routes (3), then the rest (14).
                head = rc.VirtualHost(name=self.name, domains=self.domains).SerializeToString(
                    deterministic=True
                )
                routes = b"".join(b"".join((_ROUTES_TAG, varint(len(r)), r)) for r in self.routes.encoded)
                value = b"".join((head, routes, _ATTEMPT_COUNT))
            else:
                value = self.message().SerializeToString(deterministic=True)
            self._field.append(b"".join((_VIRTUAL_HOSTS_TAG, varint(len(value)), value)))
        return self._field[0]


def configuration_shell(name: str) -> route_pb2.RouteConfiguration:
    """Every field of a sidecar's route configuration but its virtual hosts."""
    return route_pb2.RouteConfiguration(
        name=name,
        validate_clusters=wrappers_pb2.BoolValue(value=False),
        # Domains carry no port: a Host header with any port (or none) matches its service.
        ignore_port_in_host_matching=True,
        max_direct_response_body_size_bytes=wrappers_pb2.UInt32Value(value=MAX_DIRECT_RESPONSE_BODY),
    )


_SHELL_FIELDS: dict[str, tuple[bytes, bytes]] = {}


def _shell_fields(name: str) -> tuple[bytes, bytes]:
    """The serialized fields of ``configuration_shell(name)`` before and after the virtual hosts."""
    found = _SHELL_FIELDS.get(name)
    if found is None:
        rest = configuration_shell(name)
        rest.ClearField("name")
        head = route_pb2.RouteConfiguration(name=name).SerializeToString(deterministic=True)
        found = _SHELL_FIELDS.setdefault(name, (head, rest.SerializeToString(deterministic=True)))
    return found


class EncodedRouteConfiguration(Encoded):
    """A route configuration serialized from kept virtual hosts, with their names (for
    pilot.translate.provenance) and the message itself on demand."""

    __slots__ = ("_build", "virtual_host_names")

    def __init__(
        self,
        value: bytes,
        virtual_host_names: tuple[str, ...],
        build: Callable[[], route_pb2.RouteConfiguration],
    ) -> None:
        super().__init__(value)
        self.virtual_host_names = virtual_host_names
        self._build = build

    def message(self) -> route_pb2.RouteConfiguration:
        return self._build()


@dataclass(frozen=True, slots=True, eq=False)
class KeptConfiguration:
    """A route configuration of a scope without Sidecar: its virtual hosts (the catch-all last);
    every VirtualServiceEntry looked at to make it, by id (holding them, so no id is reused while
    it is kept); the records that looked at each; and which of them had routes on the port when a
    host of theirs that is no service could have had a virtual host (``routed``)."""

    name: str
    records: tuple[VirtualHostRecord, ...]
    catch_all: VirtualHostRecord
    consulted: Mapping[int, object]
    routed: Mapping[int, bool]
    readers: Mapping[int, tuple[int, ...]]  # id of a consulted entry -> indexes of its records
    _made: list[object] = field(default_factory=list, repr=False)

    @classmethod
    def made(
        cls,
        name: str,
        records: Sequence[VirtualHostRecord],
        catch_all: VirtualHostRecord,
        consulted: Mapping[int, object],
        routed: Mapping[int, bool],
    ) -> KeptConfiguration:
        readers: dict[int, list[int]] = {}
        for index, record in enumerate(records):
            for vs in record.consulted:
                readers.setdefault(id(vs), []).append(index)
        return cls(
            name,
            tuple(records),
            catch_all,
            consulted,
            routed,
            {made: tuple(indexes) for made, indexes in readers.items()},
        )

    @property
    def configuration(self) -> route_pb2.RouteConfiguration:
        """The message (made once; never change it)."""
        for made in self._made:
            if isinstance(made, route_pb2.RouteConfiguration):
                return made
        config = configuration_shell(self.name)
        added = config.virtual_hosts
        for record in self.records:
            added.add(
                name=record.name, domains=record.domains, include_request_attempt_count=True
            ).routes.extend(record.routes)
        added.append(self.catch_all.message())
        self._made.append(config)
        return config

    @property
    def encoded(self) -> EncodedRouteConfiguration:
        """The serialized configuration (made once)."""
        for made in self._made:
            if isinstance(made, EncodedRouteConfiguration):
                return made
        head, tail = _shell_fields(self.name)
        value = b"".join((head, *(r.encoded_field for r in self.records), self.catch_all.encoded_field, tail))
        names = (*(r.name for r in self.records), self.catch_all.name)
        encoded = EncodedRouteConfiguration(value, names, lambda: self.configuration)
        self._made.append(encoded)
        return encoded

    def patched(
        self,
        replaced: Mapping[int, object],
        has_routes: Callable[[object], bool],
        remake: Callable[[VirtualHostRecord, object], VirtualHostRecord],
    ) -> KeptConfiguration | None:
        """This configuration after the VirtualServiceEntries ``replaced`` (id of the old entry ->
        the new one, of the same key and hosts) changed their routes; None when that changes which
        virtual hosts there are (an entry that had routes on the port has none, or the reverse).
        ``has_routes(new entry)``: whether it has routes on the port; ``remake(record, maker)``: the
        record again with ``maker`` (the new entry, or the same service), its routes made anew."""
        stale = [old for old in replaced if old in self.consulted]
        if not stale:
            return self
        routed = dict(self.routed)
        consulted = dict(self.consulted)
        readers = dict(self.readers)
        remade: set[int] = set()
        for old in stale:
            new = replaced[old]
            if old in routed:
                had = routed.pop(old)
                if has_routes(new) != had:
                    return None
                routed[id(new)] = had
            del consulted[old]
            consulted[id(new)] = new
            indexes = readers.pop(old, ())
            readers[id(new)] = indexes
            remade.update(indexes)
        records = list(self.records)
        for index in remade:
            record = records[index]
            records[index] = remake(record, replaced.get(id(record.maker), record.maker))
        return KeptConfiguration(self.name, tuple(records), self.catch_all, consulted, routed, readers)


__all__ = [
    "MAX_DIRECT_RESPONSE_BODY",
    "RouteTemplate",
    "RouteTemplates",
    "ShapeKey",
    "VirtualServiceShape",
    "TemplatedRoutes",
    "EncodedRouteConfiguration",
    "KeptConfiguration",
    "VirtualHostRecord",
    "configuration_shell",
]
