"""ConfigStore: every config object pilot serves, with the last good version of each.

Sources write whole origins (a file, a watched Kubernetes object) with ``apply``; the store
works out what changed, bumps its revision and tells subscribers. Readers take a ``snapshot``:
an immutable view at one revision, which is what a push translates from.

An object leaves only by an explicit act: its origin removed, or an origin read cleanly that no
longer holds it and has no error at all. A fatal result (unreadable file) keeps all of the origin's
objects, a rejected object keeps its last good version, and a result with an error, or ``partial``
(a document pilot cannot identify, an emptied file), keeps every object it lacks; the reason is kept
with the origin's errors.

Two origins holding the same object: the origin that sorts first (as strings; for the folder source,
the file path relative to the config folder) wins, whatever the order they were read in, so start-up
and a running pilot agree. The other copy is kept aside, reported as an error on its own origin, and
served when the winner lets go of the object.

Not thread-safe: call it from the event loop that runs the sources.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pilot.config.objects import ConfigEvent, ConfigKey, ConfigObject, FieldError, ParseResult
from pilot.config.validation.provider_references import reference_problems

log = logging.getLogger("pilot.config.store")

Subscriber = Callable[[ConfigEvent], None]


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    """The store's objects at one revision. Immutable and safe to share across a push."""

    revision: int
    objects: Mapping[ConfigKey, ConfigObject]

    def of_kind(self, kind: str) -> Iterator[ConfigObject]:
        return (obj for key, obj in self.objects.items() if key.kind == kind)


class ConfigStore:
    def __init__(self) -> None:
        self._revision = 0
        self._objects: dict[ConfigKey, ConfigObject] = {}  # served: each key's winning copy
        self._by_origin: dict[str, dict[ConfigKey, ConfigObject]] = {}  # what each origin holds
        self._holders: dict[ConfigKey, set[str]] = {}  # origins holding each key
        self._errors: dict[str, tuple[FieldError, ...]] = {}
        self._subscribers: list[Subscriber] = []
        self._snapshot: StoreSnapshot | None = None
        # The problems between objects (a CUSTOM policy naming a provider the mesh config lacks), of
        # one revision: found once per revision, however often errors() is asked.
        self._references: tuple[int, tuple[FieldError, ...]] = (-1, ())

    @property
    def revision(self) -> int:
        return self._revision

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` after every change, in the order of ``apply``/``remove_origin``."""
        self._subscribers.append(subscriber)

    def snapshot(self) -> StoreSnapshot:
        if self._snapshot is None or self._snapshot.revision != self._revision:
            self._snapshot = StoreSnapshot(self._revision, MappingProxyType(dict(self._objects)))
        return self._snapshot

    def get(self, key: ConfigKey) -> ConfigObject | None:
        return self._objects.get(key)

    def errors(self) -> list[FieldError]:
        """Every current problem, by origin: parse errors, validation errors, warnings, duplicates,
        and problems between served objects."""
        others: dict[str, list[FieldError]] = {}  # duplicates and problems between objects
        for key, holders in self._holders.items():
            if len(holders) > 1:
                winner = min(holders)
                for origin in sorted(holders - {winner}):
                    others.setdefault(origin, []).append(_duplicate(origin, key, winner))
        for error in self._reference_errors():
            others.setdefault(error.origin, []).append(error)
        origins = sorted(set(self._errors) | set(others))
        return [
            err
            for origin in origins
            for err in (*self._errors.get(origin, ()), *sorted(others.get(origin, ()), key=_by_key))
        ]

    def _reference_errors(self) -> tuple[FieldError, ...]:
        revision, found = self._references
        if revision != self._revision:
            found = tuple(reference_problems(self._objects.values()))
            self._references = (self._revision, found)
        return found

    def origins(self) -> list[str]:
        return sorted(set(self._by_origin) | set(self._errors))

    def apply(self, result: ParseResult) -> ConfigEvent | None:
        """Replace everything from ``result.origin`` with ``result``, keeping last good versions.

        A fatal result (the origin could not be read) changes no object. A rejected key keeps the
        object it had; a partial result keeps every object it lacks. Returns the event sent to
        subscribers, or None when nothing served changed.
        """
        origin = result.origin
        errors = list(result.errors)
        old = self._by_origin.get(origin, {})
        if result.fatal:
            self._errors[origin] = tuple(errors)
            if old:
                log.warning("%s could not be loaded; keeping its %d last good objects", origin, len(old))
            return None
        new = {obj.key: obj for obj in result.objects}
        # Only an origin read cleanly (no error at all) says that an object it lacks is gone.
        clean = not result.partial and not any(error.severity == "error" for error in result.errors)
        kept = [key for key in old if key not in new and (not clean or key in result.rejected)]
        for key in kept:
            new[key] = old[key]
        missing = [key for key in kept if key not in result.rejected]
        if missing:
            shown = ", ".join(str(key) for key in sorted(missing)[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            message = (
                f"{len(missing)} objects this file held ({shown}{more}) are not in it now but stay served "
                "at their last good version, because the file has errors or no document at all; delete "
                "the file, or remove them from a file that loads without errors"
            )
            errors.append(FieldError(origin, message, severity="warning"))
            log.warning("%s: %s", origin, message)
        for key in new:
            holders = self._holders.get(key, set())
            if holders and origin not in holders:
                winner = min(holders | {origin})
                loser = origin if winner != origin else min(holders)
                log.warning("%s", _duplicate(loser, key, winner))
        self._errors[origin] = tuple(errors)
        return self._replace(origin, old, new)

    def remove_origin(self, origin: str) -> ConfigEvent | None:
        """The origin is gone (file deleted): drop its objects and errors."""
        self._errors.pop(origin, None)
        old = self._by_origin.get(origin, {})
        return self._replace(origin, old, {})

    def _replace(
        self, origin: str, old: Mapping[ConfigKey, ConfigObject], new: dict[ConfigKey, ConfigObject]
    ) -> ConfigEvent | None:
        # Keep the held copy of an unchanged object (it has the origin and revision it was stored with).
        held = {key: old[key] if key in old and _same(old[key], obj) else obj for key, obj in new.items()}
        if held:
            self._by_origin[origin] = held
        else:
            self._by_origin.pop(origin, None)
        for key in old.keys() - held.keys():
            holders = self._holders[key]
            holders.discard(origin)
            if not holders:
                del self._holders[key]
        for key in held.keys() - old.keys():
            self._holders.setdefault(key, set()).add(origin)
        # What each touched key serves now: the copy of the origin that sorts first.
        served: dict[ConfigKey, ConfigObject | None] = {}
        for key in old.keys() | held.keys():
            holding = self._holders.get(key)
            served[key] = self._by_origin[min(holding)][key] if holding else None
        changed = {
            key
            for key, obj in served.items()
            if not _same(self._objects.get(key), obj)
            or (obj is not None and self._objects[key].origin != min(self._holders[key]))
        }
        if not changed:
            return None
        self._revision += 1
        for key in changed:
            obj = served[key]
            if obj is None:
                del self._objects[key]
                continue
            winner = min(self._holders[key])
            stored = dataclasses.replace(obj, origin=winner, revision=self._revision)
            self._objects[key] = stored
            self._by_origin[winner][key] = stored
        event = ConfigEvent(self._revision, frozenset(changed))
        for subscriber in self._subscribers:
            subscriber(event)
        return event


def _duplicate(origin: str, key: ConfigKey, winner: str) -> FieldError:
    message = f"duplicate of the object already loaded from {winner}, whose path sorts first; ignored"
    return FieldError(origin, message, key)


def _by_key(error: FieldError) -> tuple[str, str, str]:
    key = error.key
    return ("", "", "") if key is None else (key.kind, key.namespace, key.name)


def _same(a: ConfigObject | None, b: ConfigObject | None) -> bool:
    if a is None or b is None:
        return a is b
    return (
        a.api_version == b.api_version
        and a.labels == b.labels
        and a.annotations == b.annotations
        and type(a.spec) is type(b.spec)
        and a.spec == b.spec
    )
