"""The config files of a folder: which files are config, and each read and parsed in a worker process.

A config file has a YAML or JSON suffix; hidden files and directories (``.x.yaml``, ``.git/``),
backups (``x.yaml~``) and editor lock/swap files are not. ``read_files`` runs in an executor (a
worker process in ``app``): it takes only picklable arguments and returns picklable results
(``ShippedResult``: the generated proto classes do not pickle), and never touches the store.

A file larger than ``limits.file_bytes`` is refused from its ``stat``, before it is read. Symlinks are
followed only to targets inside the folder (the folder's own real path): Kubernetes ConfigMap mounts
(``a.yaml -> ..data/a.yaml``, ``..data -> ..2024_01_01_...``) keep working, a link to a file elsewhere
on the host is an error on the link and is not read.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath

from pilot.config import kinds
from pilot.config.limits import ParseLimits
from pilot.config.objects import ConfigKey, ConfigObject, FieldError, ParseResult
from pilot.config.parse import parse_text, too_large

# The folder source's logger: a parse failure is reported where the folder's other messages are.
log = logging.getLogger("pilot.sources.files")

SUFFIXES = frozenset({".yaml", ".yml", ".json"})


def is_config_file(relative: PurePath) -> bool:
    """A file the source loads: a YAML/JSON suffix, nothing hidden on the way, not a backup."""
    name = relative.name
    if relative.suffix.lower() not in SUFFIXES:
        return False
    if any(part.startswith(".") for part in relative.parts):
        return False  # .x.yaml, emacs .#x.yaml locks, anything under .git/ or ..data/
    return not (name.endswith("~") or name.startswith("#"))


@dataclass(frozen=True, slots=True)
class ShippedObject:
    """A ConfigObject with its spec as proto wire bytes: the generated classes do not pickle."""

    key: ConfigKey
    api_version: str
    spec: bytes
    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]
    created: datetime | None


@dataclass(frozen=True, slots=True)
class ShippedResult:
    """A ParseResult as it crosses from a worker process to the loop."""

    result: ParseResult  # without its objects
    objects: tuple[ShippedObject, ...]

    @classmethod
    def of(cls, result: ParseResult) -> ShippedResult:
        objects = tuple(
            ShippedObject(
                obj.key,
                obj.api_version,
                obj.spec.SerializeToString(deterministic=True),
                obj.labels,
                obj.annotations,
                obj.created,
            )
            for obj in result.objects
        )
        return cls(dataclasses.replace(result, objects=()), objects)

    def unpack(self) -> ParseResult:
        objects = []
        for shipped in self.objects:
            spec = kinds.KINDS[shipped.key.kind].new_spec()
            spec.ParseFromString(shipped.spec)
            objects.append(
                ConfigObject(
                    shipped.key,
                    shipped.api_version,
                    spec,
                    self.result.origin,
                    labels=shipped.labels,
                    annotations=shipped.annotations,
                    created=shipped.created,
                )
            )
        return dataclasses.replace(self.result, objects=tuple(objects))


Read = ShippedResult | ParseResult | None  # what a worker returns for one file


def read_files(root: str, relatives: list[str], limits: ParseLimits) -> list[ShippedResult | None]:
    """Read and parse each file (paths relative to ``root``); None for one that is gone.

    Runs in an executor (a worker process in ``app``): it takes only picklable arguments and returns
    picklable results, and never touches the store.
    """
    real_root = os.path.realpath(root)
    results = [read_file(root, real_root, relative, limits) for relative in relatives]
    return [None if result is None else ShippedResult.of(result) for result in results]


def read_file(root: str, real_root: str, relative: str, limits: ParseLimits) -> ParseResult | None:
    """One file as a ParseResult whose origin is ``relative``: refused when it leads outside
    ``real_root`` or is larger than the limit (both checked before reading), None when it is gone."""
    full = os.path.join(root, relative)
    try:
        target = os.path.realpath(full, strict=True)
        if os.path.commonpath([real_root, target]) != real_root:
            message = "a symlink to a file outside the config folder; not loaded"
            return ParseResult(relative, errors=(FieldError(relative, message),), fatal=True)
        with open(target, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            if size > limits.file_bytes:
                return ParseResult(relative, errors=(too_large(relative, limits.file_bytes),), fatal=True)
            data = stream.read(limits.file_bytes + 1)  # it may grow after the fstat
        if len(data) > limits.file_bytes:
            return ParseResult(relative, errors=(too_large(relative, limits.file_bytes),), fatal=True)
        text = data.decode("utf-8")
    except FileNotFoundError:
        return None  # gone between the event and the read; its delete event follows
    except (OSError, UnicodeDecodeError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        message = f"cannot read file: {reason}"
        return ParseResult(relative, errors=(FieldError(relative, message),), fatal=True)
    try:
        return parse_text(text, relative, limits)
    except Exception as err:  # a parser bug must not stop the source
        log.exception("parsing %s failed", relative)
        message = f"internal parse error: {err}"
        return ParseResult(relative, errors=(FieldError(relative, message),), fatal=True)


__all__ = ["SUFFIXES", "Read", "ShippedObject", "ShippedResult", "is_config_file", "read_file", "read_files"]
