"""Config objects as the store holds them, and the errors that bad ones produce.

Errors are data (``FieldError``), never exceptions: one bad object must not cost the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Generic, Literal

from google.protobuf.message import Message

if TYPE_CHECKING:
    # PEP 696's default (typing's own from Python 3.13): a bare ``ConfigObject`` is a
    # ``ConfigObject[Message]``. Only the checker needs it; at run time a TypeVar is a TypeVar.
    from typing_extensions import TypeVar

    from pilot.config.kube_core import CoreObject

    SpecT = TypeVar("SpecT", bound=Message, covariant=True, default=Message)
else:
    from typing import TypeVar

    SpecT = TypeVar("SpecT", bound=Message, covariant=True)

DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True, slots=True, order=True)
class ConfigKey:
    """Identity of one config object: ``VirtualService default/reviews``."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ConfigObject(Generic[SpecT]):
    """One validated object. Immutable; ``spec`` must never be mutated once stored.

    ``spec`` is the generated proto message for the kind (pilot._gen), ``origin`` where it came
    from (a file path, or ``kube:...``), ``revision`` the store revision at which it last changed.
    ``created`` is ``metadata.creationTimestamp`` (None when absent): where several objects compete
    for one host, ``precedence`` orders them as istiod does (pilot.config.metadata says how).
    ``ConfigObject[VirtualService]`` is one whose spec is a VirtualService: narrow a plain
    ``ConfigObject`` to it by kind with ``pilot.config.kinds.KindInfo.holds``.
    """

    key: ConfigKey
    api_version: str
    spec: SpecT
    origin: str
    revision: int = 0
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    created: datetime | None = None

    @property
    def precedence(self) -> tuple[bool, datetime, str, str]:
        """istiod's configCompareByCreationTime (pilot/pkg/model/config.go): creation time (none
        first, as Go's zero time), then name, then namespace; smaller wins."""
        return precedence(self.created, self.key)

    @property
    def kind(self) -> str:
        return self.key.kind

    @property
    def namespace(self) -> str:
        return self.key.namespace

    @property
    def name(self) -> str:
        return self.key.name


_ZERO_TIME = datetime.min


def precedence(created: datetime | None, key: ConfigKey) -> tuple[bool, datetime, str, str]:
    """The sort key of an object created at ``created`` with ``key`` (``ConfigObject.precedence``)."""
    return (
        created is not None,
        (created.replace(tzinfo=None) if created else _ZERO_TIME),
        key.name,
        key.namespace,
    )


Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class FieldError:
    """A problem in user config, naming where it is: file, object, field path, line.

    ``path`` is a dotted field path in the YAML's own (camelCase) names, such as
    ``spec.http[0].route[1].weight``; empty when the whole document is at fault.
    """

    origin: str
    message: str
    key: ConfigKey | None = None
    path: str = ""
    line: int | None = None
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.origin if self.line is None else f"{self.origin}:{self.line}"
        parts = [where]
        if self.key is not None:
            parts.append(str(self.key))
        if self.path:
            parts.append(self.path)
        text = ": ".join(parts) + f": {self.message}"
        return text if self.severity == "error" else f"{text} (warning)"


@dataclass(frozen=True, slots=True)
class ParseResult:
    """What a source got out of one origin (one file, one watch event).

    ``objects`` passed parsing and validation. ``rejected`` names the objects that were recognised
    but are invalid: the store keeps their last good version. ``fatal`` means the origin could not
    be read at all (a YAML syntax error): the store keeps everything it had from that origin.
    ``partial`` means the origin holds something that may be a served object pilot cannot identify
    (no valid kind or name, a kind typo) or holds nothing at all: the store keeps the last good
    version of every object the result lacks, since only a deleted origin, or one read cleanly
    without an object, removes that object.

    ``core``: the Kubernetes Services, EndpointSlices and Pods the origin holds, as records that the
    folder source joins across files into ServiceEntries (pilot.config.kube_services); a Pod is also in
    ``objects``, as its identity. Invalid ones are in ``rejected`` like any object.

    ``skipped``: the kind of every object of another API the origin holds (a Deployment, a
    ServiceAccount), which pilot does not read, one entry per object (``pilot validate`` counts them).
    """

    origin: str
    objects: tuple[ConfigObject, ...] = ()
    errors: tuple[FieldError, ...] = ()
    rejected: frozenset[ConfigKey] = field(default_factory=frozenset)
    fatal: bool = False
    partial: bool = False
    core: tuple[CoreObject, ...] = ()
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ConfigEvent:
    """The store changed: the keys that were added, updated or deleted at ``revision``."""

    revision: int
    changed: frozenset[ConfigKey]
