"""An object's ``metadata``: its identity (name, namespace), labels, annotations and creation time, as
Kubernetes has them.

``creationTimestamp`` (RFC 3339, as the API server writes it) decides precedence where several objects
compete, as istiod's ``sortConfigByCreationTime`` does (pilot/pkg/model/config.go): oldest first, then
by name, then by namespace. An object without one (most files in a folder) has none, which sorts first
as Go's zero time does in istiod; among such objects name and namespace decide, so the order depends
only on the objects themselves: the same at start-up and while running, whichever file was read first.

Other metadata (uid, resourceVersion, managedFields, ... as ``kubectl get -o yaml`` writes) is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pilot.config.objects import DEFAULT_NAMESPACE, ConfigKey, Severity
from pilot.config.schema import describe
from pilot.config.validation.common import check_label_key, is_dns1123_label, is_k8s_label, is_k8s_subdomain
from pilot.config.yamlpos import YamlPath


@dataclass(frozen=True, slots=True)
class MetadataProblem:
    path: str
    where: YamlPath  # relative to the object, for its line
    message: str
    severity: Severity = "error"


@dataclass(slots=True)
class Metadata:
    """What ``metadata`` says; ``key`` is None when the object cannot be identified."""

    key: ConfigKey | None = None
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    created: datetime | None = None  # metadata.creationTimestamp, in UTC
    problems: list[MetadataProblem] = field(default_factory=list)

    def problem(self, path: str, where: YamlPath, message: str, severity: Severity = "error") -> None:
        self.problems.append(MetadataProblem(path, where, message, severity))


def read_metadata(kind: str, metadata: dict[str, Any]) -> Metadata:
    """Identify an object of ``kind`` from its ``metadata`` mapping."""
    meta = Metadata()
    name, namespace = metadata.get("name"), metadata.get("namespace")
    if namespace is None:
        namespace = DEFAULT_NAMESPACE
    if not isinstance(name, str) or not name:
        if name is None or name == "":
            hint = " (generateName is not supported)" if "generateName" in metadata else ""
            meta.problem("metadata.name", ("metadata", "name"), f"required: a {kind} needs a name{hint}")
        else:
            meta.problem(
                "metadata.name", ("metadata", "name"), f"must be a non-empty string, got {describe(name)}"
            )
    elif not isinstance(namespace, str) or not is_dns1123_label(namespace):
        shown = f'"{namespace}"' if isinstance(namespace, str) else describe(namespace)
        meta.problem(
            "metadata.namespace",
            ("metadata", "namespace"),
            f"invalid namespace {shown}: must be a DNS-1123 label",
        )
    else:
        meta.key = ConfigKey(kind, namespace, name)
        if not is_k8s_subdomain(name):
            meta.problem(
                "metadata.name",
                ("metadata", "name"),
                f'invalid name "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            )
        if not is_k8s_label(namespace):
            # Istio itself accepts it (its samples use "nsA"); Kubernetes would not.
            meta.problem(
                "metadata.namespace",
                ("metadata", "namespace"),
                f'namespace "{namespace}" is not a lowercase RFC 1123 label; Kubernetes would reject it',
                "warning",
            )
    meta.labels = _string_map(meta, metadata, "labels", check_values=True)
    meta.annotations = _string_map(meta, metadata, "annotations", check_values=False)
    meta.created = _creation_time(meta, metadata.get("creationTimestamp"))
    return meta


def _creation_time(meta: Metadata, raw: Any) -> datetime | None:
    """``creationTimestamp`` as a UTC datetime; None when absent. A value that is not RFC 3339 is a
    warning (the API server never writes one) and counts as absent."""
    if raw is None:
        return None
    where = ("metadata", "creationTimestamp")
    if isinstance(raw, str) and "T" in raw.upper():
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
    meta.problem(
        "metadata.creationTimestamp",
        where,
        f"expected an RFC 3339 time such as 2021-01-01T00:00:00Z, got {describe(raw)}; ignored",
        "warning",
    )
    return None


def _string_map(
    meta: Metadata, metadata: dict[str, Any], name: str, check_values: bool
) -> tuple[tuple[str, str], ...]:
    raw = metadata.get(name)
    path = f"metadata.{name}"
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        meta.problem(path, ("metadata", name), f"expected a mapping, got {describe(raw)}")
        return ()
    out: list[tuple[str, str]] = []
    for key, value in raw.items():
        entry, where = f"{path}[{key}]", ("metadata", name, key)
        if not isinstance(value, str):
            meta.problem(entry, where, f"expected a string, got {describe(value)}")
            continue
        if (problem := check_label_key(key)) is not None:
            meta.problem(entry, where, problem)
        if check_values and not _is_label_value(value):
            meta.problem(entry, where, f'invalid tag value: "{value}"')
        out.append((key, value))
    return tuple(sorted(out))


def _is_label_value(value: str) -> bool:
    return value == "" or (len(value) <= 63 and "/" not in value and check_label_key(value) is None)
