"""ConfigStore: every config object pilot serves, with the last good version of each.

Sources write whole origins (a file, a watched Kubernetes object) with ``apply``; the store
works out what changed, bumps its revision and tells subscribers. Readers take a ``snapshot``:
an immutable view at one revision, which is what a push translates from.

Not thread-safe: call it from the event loop that runs the sources.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pilot.config.objects import ConfigEvent, ConfigKey, ConfigObject, FieldError, ParseResult

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
        self._objects: dict[ConfigKey, ConfigObject] = {}
        self._owner: dict[ConfigKey, str] = {}
        self._by_origin: dict[str, dict[ConfigKey, ConfigObject]] = {}
        self._errors: dict[str, tuple[FieldError, ...]] = {}
        self._subscribers: list[Subscriber] = []
        self._snapshot: StoreSnapshot | None = None

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
        """Every current problem, by origin: parse errors, validation errors, warnings."""
        return [err for origin in sorted(self._errors) for err in self._errors[origin]]

    def origins(self) -> list[str]:
        return sorted(set(self._by_origin) | set(self._errors))

    def apply(self, result: ParseResult) -> ConfigEvent | None:
        """Replace everything from ``result.origin`` with ``result``, keeping last good versions.

        A fatal result (the origin could not be read) changes no object. A rejected key keeps the
        object it had. Returns the event sent to subscribers, or None when nothing changed.
        """
        origin = result.origin
        errors = list(result.errors)
        if result.fatal:
            self._errors[origin] = tuple(errors)
            kept = len(self._by_origin.get(origin, {}))
            if kept:
                log.warning("%s could not be loaded; keeping its %d last good objects", origin, kept)
            return None
        old = self._by_origin.get(origin, {})
        new: dict[ConfigKey, ConfigObject] = {}
        for obj in result.objects:
            owner = self._owner.get(obj.key)
            if owner is not None and owner != origin:
                message = f"duplicate of the object already loaded from {owner}; ignored"
                errors.append(FieldError(origin, message, obj.key))
                continue
            new[obj.key] = obj
        for key in result.rejected:
            if key in old and key not in new:
                new[key] = old[key]
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
        changed = {key for key in old.keys() | new.keys() if not _same(old.get(key), new.get(key))}
        if not changed:
            # Keep the stored (older-revision) objects for unchanged keys.
            return None
        self._revision += 1
        for key in old.keys() - new.keys():
            del self._objects[key]
            del self._owner[key]
        stored: dict[ConfigKey, ConfigObject] = {}
        for key, obj in new.items():
            if key in changed:
                obj = dataclasses.replace(obj, origin=origin, revision=self._revision)
                self._objects[key] = obj
                self._owner[key] = origin
            else:
                obj = old[key]
            stored[key] = obj
        if stored:
            self._by_origin[origin] = stored
        else:
            self._by_origin.pop(origin, None)
        event = ConfigEvent(self._revision, frozenset(changed))
        for subscriber in self._subscribers:
            subscriber(event)
        return event


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
