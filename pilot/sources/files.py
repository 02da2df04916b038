"""FolderSource: Istio YAML/JSON files in a folder (recursively), loaded once and then watched.

Each file is one origin in the store: a change re-reads the whole file and ``store.apply``s it
(the store works out what changed and keeps last good objects); a deleted file is
``store.remove_origin``. A file that cannot be read or parsed is recorded as a fatal result, so its
error shows in /debug/configz while its last good objects keep being served.

Editors save through temp files and renames, and watchers report those in bursts of added,
modified and deleted events; rather than trust the event kind, each touched path is looked at on
disk and loaded or forgotten accordingly. Hidden files and directories (``.x.yaml``, ``.git/``),
backups (``x.yaml~``) and editor lock/swap files are ignored. Kubernetes ConfigMap mounts swap a
hidden ``..data`` symlink; an event there triggers a full rescan.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePath

from watchfiles import awatch

from pilot.config.objects import FieldError, ParseResult
from pilot.config.parse import parse_text
from pilot.config.store import ConfigStore
from pilot.errors import ConfigError

log = logging.getLogger("pilot.sources.files")

SUFFIXES = frozenset({".yaml", ".yml", ".json"})

# watchfiles yields once no new change arrived for STEP_MS (so an edit is seen ~20-40 ms later),
# or after DEBOUNCE_MS of continuous changes. Pushes are debounced again by the Pusher.
STEP_MS = 20
DEBOUNCE_MS = 400


def is_config_file(relative: PurePath) -> bool:
    """A file the source loads: a YAML/JSON suffix, nothing hidden on the way, not a backup."""
    name = relative.name
    if relative.suffix.lower() not in SUFFIXES:
        return False
    if any(part.startswith(".") for part in relative.parts):
        return False  # .x.yaml, emacs .#x.yaml locks, anything under .git/ or ..data/
    return not (name.endswith("~") or name.startswith("#"))


class FolderSource:
    """Loads ``path`` recursively into ``store``, sets ``synced``, then follows changes.

    Origins are file paths spelled from ``path`` as given (``config/reviews.yaml`` for
    ``FolderSource("config", ...)``), so messages name files the way the operator does.
    """

    def __init__(
        self,
        path: Path | str,
        store: ConfigStore,
        *,
        force_polling: bool | None = None,
        step_ms: int = STEP_MS,
    ) -> None:
        self.path = Path(path)
        self.synced = asyncio.Event()
        self._store = store
        self._absolute = Path(os.path.abspath(self.path))
        self._force_polling = force_polling
        self._step_ms = step_ms
        self._known: set[PurePath] = set()  # relative paths currently applied to the store

    async def run(self) -> None:
        """Initial load, ``synced``, then watch until cancelled. Raises ConfigError only if the folder
        itself is missing (one bad file is data, never an exception)."""
        if not self._absolute.is_dir():
            raise ConfigError(f"config dir {self.path} is not a directory")
        self._rescan()
        log.info("loaded %d files from %s (%d objects)", len(self._known), self.path,
                 len(self._store.snapshot().objects))
        self.synced.set()
        # awatch's worker thread only notices cancellation through its stop event, checked every
        # step: stop it explicitly, or cancelling would wait for the watcher's 5 s timeout.
        stop = asyncio.Event()
        watcher = asyncio.create_task(self._watch(stop), name=f"watch {self.path}")
        try:
            await asyncio.wait({watcher})
        finally:
            stop.set()
            await asyncio.wait({watcher})
        watcher.result()

    async def _watch(self, stop: asyncio.Event) -> None:
        async for changes in awatch(
            self._absolute,
            watch_filter=None,  # we filter ourselves: directory events matter (renamed folders)
            step=self._step_ms,
            debounce=DEBOUNCE_MS,
            stop_event=stop,
            force_polling=self._force_polling,
            recursive=True,
        ):
            self.apply_changes(path for _, path in changes)

    def apply_changes(self, paths: Iterable[str]) -> None:
        """Bring the store in line with the disk for every touched path (absolute paths)."""
        rescan = False
        for raw in sorted(set(paths)):
            relative = self._relative(raw)
            if relative is None:
                continue
            if relative.parts[0].startswith(".."):
                rescan = True  # Kubernetes ConfigMap mount: the ..data symlink was swapped
                continue
            full = self._absolute / relative
            if full.is_dir():
                for found in self._walk(full):  # a folder moved in
                    self._load(found)
            elif full.is_file() and is_config_file(relative):
                self._load(relative)
            else:
                self._forget(relative)  # deleted or renamed away: a file, or a folder of files
        if rescan:
            self._rescan()

    # -- loading --------------------------------------------------------------------------------

    def _rescan(self) -> None:
        found = list(self._walk(self._absolute))
        for relative in found:
            self._load(relative)
        for gone in sorted(self._known - set(found)):
            self._forget(gone)

    def _walk(self, top: Path) -> Iterator[PurePath]:
        """Config files under ``top`` in sorted order, relative to the root, skipping hidden folders."""
        for directory, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                relative = PurePath(os.path.relpath(os.path.join(directory, name), self._absolute))
                if is_config_file(relative) and (self._absolute / relative).is_file():
                    yield relative

    def _load(self, relative: PurePath) -> None:
        origin = self._origin(relative)
        try:
            text = (self._absolute / relative).read_text(encoding="utf-8")
        except FileNotFoundError:
            self._forget(relative)  # gone between the event and the read; its delete event follows
            return
        except (OSError, UnicodeDecodeError) as err:
            result = ParseResult(origin, errors=(FieldError(origin, f"cannot read file: {err}"),), fatal=True)
        else:
            try:
                result = parse_text(text, origin=origin)
            except Exception as err:  # a parser bug must not stop the source
                log.exception("parsing %s failed", origin)
                result = ParseResult(origin, errors=(FieldError(origin, f"internal parse error: {err}"),),
                                     fatal=True)
        self._known.add(relative)
        for error in result.errors:
            if error.severity == "error":
                log.warning("%s", error)
            else:
                log.info("%s", error)
        event = self._store.apply(result)
        if result.fatal:
            log.warning("%s not loaded; its last good objects stay", origin)
        elif event is not None:
            log.info("applied %s: %d objects, %d changed at revision %d", origin, len(result.objects),
                     len(event.changed), event.revision)

    def _forget(self, relative: PurePath) -> None:
        """``relative`` is gone: drop it, or every file under it if it was a folder."""
        gone = [known for known in self._known if known == relative or relative in known.parents]
        for known in sorted(gone):
            self._known.discard(known)
            event = self._store.remove_origin(self._origin(known))
            log.info("removed %s%s", self._origin(known),
                     f": {len(event.changed)} objects deleted" if event is not None else "")

    def _origin(self, relative: PurePath) -> str:
        return str(self.path / relative)

    def _relative(self, raw: str) -> PurePath | None:
        try:
            relative = PurePath(raw).relative_to(self._absolute)
        except ValueError:
            return None
        return relative if relative.parts else None


__all__ = ["FolderSource", "SUFFIXES", "is_config_file"]
