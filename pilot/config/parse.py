"""YAML (or JSON) text → validated ``ConfigObject``s, the way Istio reads its config.

``parse_text`` never raises on user input: every problem is a ``FieldError`` naming the file, the
object (kind namespace/name), the field path and its line. How problems affect the store:

- the text cannot be read (YAML syntax error, over a ``ParseLimits`` bound for the file): ``fatal``,
  the store keeps everything it had;
- an object of a supported kind with an error (an object over the hosts or routes limit too): its key
  is in ``rejected``, the store keeps its last good version;
- a document that cannot be identified (no kind, no valid name): an error, and the result is
  ``partial``: the other documents still count, and the store keeps every object the file held
  before that is not in the result (that document may be one of them); so does a file with no
  document at all (emptied);
- a kind of Istio or the Gateway API that pilot does not serve (EnvoyFilter, AuthorizationPolicy, UDPRoute,
  ...): skipped with a warning naming the kind; a kind no Istio group has (``VirtualServce``) under an
  Istio apiVersion: an error, and ``partial``;
- a Kubernetes Service (v1), EndpointSlice (discovery.k8s.io/v1) or Pod (v1): checked as Kubernetes
  would (pilot.config.kube_core) and kept as a record in ``ParseResult.core``, with an error naming the
  field when it is invalid; a Pod also gives its identity object (kind Pod);
- any other kind (Deployment, ServiceAccount, another ConfigMap, ...): skipped with a debug log line.

A ``kind: List`` with ``items`` (as ``kubectl get -o json`` writes) is read item by item.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from pilot.config import kinds, kube_core
from pilot.config.gateway_api.openapi import check_spec
from pilot.config.limits import DEFAULT_LIMITS, ParseLimits
from pilot.config.metadata import Metadata, read_metadata
from pilot.config.objects import ConfigKey, ConfigObject, FieldError, ParseResult, Severity
from pilot.config.schema import Checked, check_message, describe
from pilot.config.validation import validate
from pilot.config.yamlpos import Document, Problem, YamlPath, format_path, load_documents

log = logging.getLogger("pilot.config.parse")

MAX_TEXT_BYTES = DEFAULT_LIMITS.file_bytes

_TOP_LEVEL_FIELDS = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
_CONFIG_MAP_FIELDS = frozenset({"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"})


def parse_text(text: str, origin: str, limits: ParseLimits = DEFAULT_LIMITS) -> ParseResult:
    """Parse every document of ``text`` (read from ``origin``) into validated objects. Never raises."""
    if len(text) > limits.file_bytes or len(text.encode("utf-8", "surrogatepass")) > limits.file_bytes:
        return _fatal(origin, too_large(origin, limits.file_bytes))
    loaded = load_documents(text, limits.depth, limits.objects_per_file)
    if loaded.fatal is not None:
        return _fatal(origin, FieldError(origin, loaded.fatal.message, line=loaded.fatal.line))
    parser = _Parser(origin, limits)
    for document in loaded.documents:
        try:
            parser.document(document)
        except Exception:  # a bug in pilot, not in the config: keep the last good version of everything
            log.exception("%s:%d: internal error while parsing a document", origin, document.line)
            message = "internal error while parsing this document (see pilot's log)"
            return _fatal(origin, *parser.errors, FieldError(origin, message, line=document.line))
    # Nothing at all in the file (emptied, or every document blank): not a reason to drop what it held.
    empty = all(document.value is None for document in loaded.documents)
    return ParseResult(
        origin,
        tuple(parser.objects),
        _bounded(origin, parser.errors, limits.errors_per_file),
        frozenset(parser.rejected),
        partial=parser.partial or empty,
        core=tuple(parser.core),
        skipped=tuple(parser.skipped),
    )


def too_large(origin: str, limit: int) -> FieldError:
    """The error for a file of more than ``limit`` bytes (sources say it before reading the file)."""
    shown = f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit} bytes"
    return FieldError(origin, f"file is larger than {shown}; not loaded")


def _bounded(origin: str, errors: list[FieldError], limit: int) -> tuple[FieldError, ...]:
    """At most ``limit`` problems: the first ones (errors before warnings), then a count of the rest."""
    if len(errors) <= limit:
        return tuple(errors)
    ranked = sorted(errors, key=lambda error: error.severity != "error")[: limit - 1]
    more = len(errors) - len(ranked)
    return (*ranked, FieldError(origin, f"{more} more problems not shown (at most {limit} per file)"))


def _fatal(origin: str, *errors: FieldError) -> ParseResult:
    return ParseResult(origin, errors=errors, fatal=True)


@dataclass(slots=True)
class _Object:
    """One object being read: where it is in its document, what it is, and what is wrong with it."""

    origin: str
    document: Document
    prefix: YamlPath  # of the object in its document: () or ("items", i)
    problems: Sequence[Problem] = ()  # the document's YAML problems inside this object
    key: ConfigKey | None = None
    errors: list[FieldError] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)
    # Paths whose (invalid) values the converted spec lacks: its checks say nothing near them.
    dropped: list[str] = field(default_factory=list)

    def line(self, where: YamlPath = ()) -> int:
        return self.document.line_of((*self.prefix, *where))

    def error(self, path: str, message: str, where: YamlPath, severity: Severity = "error") -> None:
        self.errors.append(FieldError(self.origin, message, self.key, path, self.line(where), severity))

    def line_of_display(self, path: str) -> int:
        """The line of a display path such as ``spec.http[0].route``, or of its nearest ancestor."""
        while path:
            line = self.lines.get(path)
            if line is not None:
                return line
            path = _parent(path)
        return self.line()

    @property
    def failed(self) -> bool:
        return any(error.severity == "error" for error in self.errors)


@dataclass(slots=True)
class _Parser:
    origin: str
    limits: ParseLimits
    objects: list[ConfigObject] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)
    rejected: set[ConfigKey] = field(default_factory=set)
    core: list[kube_core.CoreObject] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # kinds of other APIs (Deployment, ...), one per object
    seen: dict[ConfigKey, int] = field(default_factory=dict)
    # A document that may be a served object but cannot be identified (see ParseResult.partial).
    partial: bool = False

    def document(self, document: Document) -> None:
        value = document.value
        if value is None:
            return  # an empty document
        if not isinstance(value, dict):
            message = f"a document must be a mapping, got {describe(value)}"
            self.errors.append(FieldError(self.origin, message, line=document.line))
            self.partial = True
            return
        kind, items = value.get("kind"), value.get("items")
        if isinstance(kind, str) and kind.endswith("List") and isinstance(items, list):
            # Each item's problems, grouped once (not searched for per item: a List may be long).
            inside: dict[YamlPath, list[Problem]] = {}
            for problem in document.problems:
                if problem.path[:1] != ("items",) or len(problem.path) < 2:
                    self.errors.append(self._problem(problem, None))
                else:
                    inside.setdefault(problem.path[:2], []).append(problem)
            for index, entry in enumerate(items):
                prefix: YamlPath = ("items", index)
                self.object(_Object(self.origin, document, prefix, inside.get(prefix, ())), entry)
            return
        self.object(_Object(self.origin, document, (), document.problems), value)

    def _problem(self, problem: Problem, key: ConfigKey | None, path: str = "") -> FieldError:
        return FieldError(self.origin, problem.message, key, path, problem.line, problem.severity)

    def object(self, obj: _Object, value: Any) -> None:
        if not isinstance(value, dict):
            message = f"an object must be a mapping, got {describe(value)}"
            self.errors.append(
                FieldError(self.origin, message, path=format_path(obj.prefix), line=obj.line())
            )
            self.partial = True
            return
        identity = self._identity(obj, value)
        if identity is None:
            self.partial = True
            return
        api_version, kind, metadata = identity
        core = kube_core.CORE_KINDS.get((api_version, kind))
        if core is not None:
            self._core(obj, core, value, metadata)
            return
        mesh = kinds.is_mesh_config_map(api_version, kind, metadata.get("name"))
        resolved = kinds.resolve(api_version, kind)
        info = kinds.KINDS[kinds.MESH_CONFIG] if mesh else (resolved.info or resolved.wrong_version)
        if info is None:
            self._skip(obj, api_version, kind, metadata, resolved)
            return
        meta = read_metadata(info.kind, metadata)
        obj.key = meta.key
        self._identify(obj, meta)
        if resolved.wrong_version is not None:
            supported = ", ".join(info.api_versions())
            message = f'unsupported apiVersion "{api_version}" for {kind}; supported: {supported}'
            obj.error("apiVersion", message, ("apiVersion",))
        for unknown in sorted(set(value) - (_CONFIG_MAP_FIELDS if mesh else _TOP_LEVEL_FIELDS)):
            obj.error(unknown, "unknown field; ignored", (unknown,), "warning")
        if not mesh and self._over_limits(obj, value.get("spec")):
            spec = None  # refused before the costly checks
        else:
            spec = self._mesh_spec(obj, value) if mesh else self._spec(obj, info, value.get("spec"))
        self._finish(obj, info, api_version, spec, meta)

    def _identify(self, obj: _Object, meta: Metadata) -> None:
        """The problems of ``obj``'s metadata and of its YAML (duplicate keys, ...)."""
        for item in meta.problems:
            obj.error(item.path, item.message, item.where, item.severity)
            if item.severity == "error" and item.path in ("metadata.name", "metadata.namespace"):
                self.partial = True  # not the name of the object it was: keep that one
        if meta.key is None:
            self.partial = True
        prefix_length = len(obj.prefix)
        for problem in obj.problems:
            path = format_path(problem.path[prefix_length:])
            obj.errors.append(self._problem(problem, obj.key, path))
            if problem.severity == "error":
                obj.dropped.append(path)

    def _over_limits(self, obj: _Object, spec: Any) -> bool:
        """Too many hosts or routes for ``limits``: an error on the object, which is then rejected."""
        if not isinstance(spec, dict):
            return False
        hosts = _length(spec.get("hosts"))
        servers = spec.get("servers")
        if isinstance(servers, list):
            hosts += sum(_length(server.get("hosts")) for server in servers if isinstance(server, dict))
        routes = sum(_length(spec.get(section)) for section in ("http", "tls", "tcp"))
        over = False
        for what, count, limit in (
            ("hosts", hosts, self.limits.hosts_per_object),
            ("routes", routes, self.limits.routes_per_object),
        ):
            if count > limit:
                message = f"has {count} {what}, more than the limit of {limit}; not loaded"
                obj.error("spec", message, ("spec",))
                over = True
        return over

    def _skip(
        self, obj: _Object, api_version: str, kind: str, metadata: dict[str, Any], resolved: kinds.Resolved
    ) -> None:
        """A document pilot does not serve: a warning for Istio's kinds, an error for a kind typo."""
        where = _join(format_path(obj.prefix), "kind")
        name, namespace = metadata.get("name"), metadata.get("namespace")
        named = f"{namespace}/{name}" if isinstance(namespace, str) and namespace else f"{name}"
        if resolved.unknown:
            # A kind typo: it may be an object pilot serves, so the origin keeps what it had.
            self.partial = True
            group = kinds.split_api_version(api_version)[0]
            known = ", ".join(kinds.kinds_of_group(group))
            message = (
                f'unknown kind "{kind}" for apiVersion {api_version} (object {named}); known kinds: {known}'
            )
            self.errors.append(FieldError(self.origin, message, path=where, line=obj.line(("kind",))))
        elif resolved.not_served:
            message = f"{kind} {named} ({api_version}) is not served by pilot; skipped"
            self.errors.append(
                FieldError(self.origin, message, path=where, line=obj.line(("kind",)), severity="warning")
            )
        else:
            line = obj.line()
            log.debug("%s:%d: skipping %s %s: not served by pilot", self.origin, line, api_version, kind)
            self.skipped.append(kind)

    def _identity(self, obj: _Object, value: dict[str, Any]) -> tuple[str, str, dict[str, Any]] | None:
        """``apiVersion``, ``kind`` and ``metadata``, or None (with errors) when one is missing or wrong."""
        api_version, kind, metadata = value.get("apiVersion"), value.get("kind"), value.get("metadata")
        problems = [
            (name, "required" if raw is None else f"must be a string, got {describe(raw)}")
            for name, raw in (("apiVersion", api_version), ("kind", kind))
            if not isinstance(raw, str) or not raw
        ]
        if not isinstance(metadata, dict):
            problems.append(
                (
                    "metadata",
                    "required" if metadata is None else f"must be a mapping, got {describe(metadata)}",
                )
            )
        for name, message in problems:
            path = _join(format_path(obj.prefix), name)
            self.errors.append(FieldError(self.origin, message, path=path, line=obj.line((name,))))
        if problems or not isinstance(api_version, str) or not isinstance(kind, str):
            return None
        return api_version, kind, cast(dict[str, Any], metadata)

    def _spec(self, obj: _Object, info: kinds.KindInfo, raw: Any) -> Message | None:
        where = (*obj.prefix, "spec")
        data = {} if raw is None else raw
        if info.schema is not None:  # no proto: the kind's schema, the spec kept as a Struct
            return self._convert(
                obj, info, check_spec(info.schema, data, "spec", where, obj.document.line_of)
            )
        descriptor = cast(Descriptor, info.message.DESCRIPTOR)
        return self._convert(obj, info, check_message(data, descriptor, "spec", where, obj.document.line_of))

    def _mesh_spec(self, obj: _Object, value: dict[str, Any]) -> Message | None:
        """The ``mesh`` key of the istio ConfigMap: MeshConfig as a YAML string, read like a spec."""
        info = kinds.KINDS[kinds.MESH_CONFIG]
        data = value.get("data")
        if data is not None and not isinstance(data, dict):
            obj.error("data", f"expected a mapping, got {describe(data)}", ("data",))
            return None
        where: YamlPath = ("data", kinds.MESH_CONFIG_MAP_KEY)
        text = None if data is None else data.get(kinds.MESH_CONFIG_MAP_KEY)
        if text is not None and not isinstance(text, str):
            obj.error("data.mesh", f"expected a string holding YAML, got {describe(text)}", where)
            return None
        mesh_line = obj.line(where)
        obj.lines["data.mesh"] = mesh_line
        # Inside a block scalar ("mesh: |") a line of the string is a line of the file; otherwise use mesh's.
        block_start = obj.document.block_starts.get((*obj.prefix, *where))

        def outer(inner_line: int | None) -> int:
            return mesh_line if block_start is None or inner_line is None else block_start + inner_line - 1

        loaded = load_documents(text or "")
        if loaded.fatal is not None:
            message, line = loaded.fatal.message, outer(loaded.fatal.line)
            obj.errors.append(FieldError(self.origin, message, obj.key, "data.mesh", line))
            return None
        documents = [document for document in loaded.documents if document.value is not None]
        if len(documents) > 1:
            obj.error("data.mesh", "must hold a single YAML document", where)
            return None
        inner = documents[0] if documents else None
        for problem in () if inner is None else inner.problems:
            path = _join("data.mesh", format_path(problem.path))
            obj.errors.append(
                FieldError(self.origin, problem.message, obj.key, path, outer(problem.line), problem.severity)
            )

        def line_of(path: YamlPath) -> int:
            return mesh_line if inner is None else outer(inner.line_of(path))

        descriptor = cast(Descriptor, info.message.DESCRIPTOR)
        return self._convert(
            obj,
            info,
            check_message({} if inner is None else inner.value, descriptor, "data.mesh", (), line_of),
        )

    def _convert(self, obj: _Object, info: kinds.KindInfo, checked: Checked) -> Message | None:
        obj.lines.update(checked.lines)
        for issue in checked.issues:
            if issue.dropped and issue.severity == "error":
                obj.dropped.append(issue.path)
            line = issue.line if issue.line is not None else obj.line()
            obj.errors.append(
                FieldError(self.origin, issue.message, obj.key, issue.path, line, issue.severity)
            )
        # Even with schema errors the valid rest is converted, so that its own checks run too.
        spec = info.new_spec()
        try:
            json_format.ParseDict(checked.value, spec)
        except (json_format.ParseError, ValueError, TypeError, OverflowError) as err:
            if checked.ok:  # the schema walk should have caught it: say something rather than nothing
                obj.errors.append(
                    FieldError(self.origin, f"invalid spec: {err}", obj.key, info.spec_path, obj.line())
                )
            return None
        return spec

    def _finish(
        self,
        obj: _Object,
        info: kinds.KindInfo,
        api_version: str,
        spec: Message | None,
        meta: Metadata,
    ) -> None:
        key = obj.key
        candidate = None
        if key is not None and spec is not None:
            candidate = ConfigObject(
                key,
                api_version,
                spec,
                self.origin,
                labels=meta.labels,
                annotations=meta.annotations,
                created=meta.created,
            )
            dropped = _Dropped(obj.dropped)
            for error in validate(candidate):
                if not dropped.related(error.path):
                    obj.errors.append(replace(error, line=obj.line_of_display(error.path)))
        if not self._settle(obj) or key is None:
            return
        if candidate is None or obj.failed:
            self.rejected.add(key)
        else:
            self.objects.append(candidate)

    def _settle(self, obj: _Object) -> bool:
        """Record ``obj``'s problems; False when it has no key or repeats an earlier object's (ignored)."""
        key = obj.key
        obj.errors.sort(key=lambda error: error.line or 0)  # stable: same-line problems keep their order
        if key is not None and key in self.seen:
            message = f"duplicate of the object at line {self.seen[key]}; ignored"
            self.errors.extend([*obj.errors, FieldError(self.origin, message, key, line=obj.line())])
            return False
        self.errors.extend(obj.errors)
        if key is None:
            return False
        self.seen[key] = obj.line()
        return True

    def _core(self, obj: _Object, kind: str, value: dict[str, Any], metadata: dict[str, Any]) -> None:
        """A Kubernetes Service, EndpointSlice or Pod: its record (and a Pod's identity object), or errors
        naming the fields Kubernetes would refuse."""
        meta = read_metadata(kind, metadata)
        obj.key = meta.key
        self._identify(obj, meta)
        record, problems = kube_core.READERS[kind](value)
        for problem in problems:
            obj.error(problem.path, problem.message, problem.where)
        if not self._settle(obj) or obj.key is None:
            return
        key = obj.key
        if obj.failed:
            self.rejected.add(key)
            return
        self.core.append(kube_core.CoreObject(key, record))
        if isinstance(record, kube_core.PodRecord):
            self.objects.append(kube_core.pod_identity(key.namespace, key.name, record, self.origin))


class _Dropped:
    """Paths whose values the converted spec lacks; ``related`` in time linear in the path's depth
    (an object may have thousands of dropped values and thousands of validation errors)."""

    def __init__(self, paths: Sequence[str]) -> None:
        self._paths = set(paths)
        self._ancestors = {ancestor for path in paths for ancestor in _ancestors(path)}

    def related(self, path: str) -> bool:
        """``path`` is a dropped path, inside one, or contains one."""
        if not self._paths:
            return False
        return (
            path in self._paths
            or path in self._ancestors
            or any(ancestor in self._paths for ancestor in _ancestors(path))
        )


def _ancestors(path: str) -> Iterator[str]:
    """``spec.http[0].route`` → ``spec.http[0]``, ``spec.http``, ``spec`` (not ``""``)."""
    while path:
        path = _parent(path)
        if path:
            yield path


def _length(value: Any) -> int:
    return len(value) if isinstance(value, list) else 0


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _parent(path: str) -> str:
    """``spec.http[0].route`` → ``spec.http[0]`` → ``spec.http`` → ``spec`` → ``""``."""
    if path.endswith("]"):
        return path[: path.rfind("[")]
    dot = path.rfind(".")
    return path[:dot] if dot >= 0 else ""
