"""FolderSource: Istio YAML/JSON files in a folder (recursively), loaded once and then watched.

Each file is one origin in the store, named by its path relative to the folder (``team/reviews.yaml``),
so errors and /debug output never show where the folder sits on the host. A change re-reads the
whole file and ``store.apply``s it (the store works out what changed and keeps last good objects);
a deleted file is ``store.remove_origin``. A file that cannot be read or parsed is recorded as a
fatal result, so its error shows in /debug/configz while its last good objects keep being served.
A file emptied of every document keeps its objects too (``ParseResult.partial``): deleting the file
is what removes them.

Kubernetes Services, EndpointSlices and Pods (Istio's ``bookinfo.yaml``, a ``kubectl get -o yaml``
dump) are joined across files into one ServiceEntry per Service, each an origin of its own
(pilot.sources.folder_services).

Reading, parsing and validating run in an executor (pilot.sources.config_files), never on the event
loop that serves xDS and HTTP. ``app`` gives a process pool: parsing is pure-Python and libyaml work
that holds the GIL for up to a second at a time on a large file, which stalls the loop even from
another thread.

Editors save through temp files and renames, and watchers report those in bursts of added,
modified and deleted events; rather than trust the event kind, each touched path is looked at on
disk and loaded or forgotten accordingly; only config files are loaded (``is_config_file``).
Kubernetes ConfigMap mounts swap a hidden ``..data`` symlink; an event there triggers a full rescan.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path, PurePath

from watchfiles import awatch

from pilot.config.limits import DEFAULT_LIMITS, ParseLimits
from pilot.config.objects import FieldError, ParseResult
from pilot.config.store import ConfigStore
from pilot.errors import ConfigError
from pilot.sources.config_files import Read, ShippedResult, is_config_file, read_files
from pilot.sources.folder_services import FolderServices

log = logging.getLogger("pilot.sources.files")

# watchfiles yields once no new change arrived for STEP_MS (so an edit is seen ~10-20 ms later),
# or after DEBOUNCE_MS of continuous changes. Pushes are debounced again by the Pusher. Its thread
# wakes (and takes the GIL) every STEP_MS: at 10 ms that is 0.3% of a core while idle, at 20 ms
# 0.2%, and an edit is seen 15 ms sooner on average (an atomic save's events come within 1 ms).
STEP_MS = 10
DEBOUNCE_MS = 400
# Files read by one executor job: few and small enough that workers share a burst and a large file
# is read alone (an edit of a small file must not wait for it), enough to amortise a job.
BATCH_FILES = 32
BATCH_BYTES = 256 * 1024
# Files applied to (or removed from) the store between two yields to the event loop.
YIELD_EVERY = 16


class FolderSource:
    """Loads ``path`` recursively into ``store``, sets ``synced``, then follows changes.

    Origins are file paths relative to ``path`` (``reviews.yaml``, ``team/a.yaml``).
    ``executor`` makes the executor that reads and parses files (None: the loop's default thread
    pool); a new one is made if the last one broke (a worker process killed, say by the OOM killer).
    """

    def __init__(
        self,
        path: Path | str,
        store: ConfigStore,
        *,
        limits: ParseLimits = DEFAULT_LIMITS,
        executor: Callable[[], Executor] | None = None,
        force_polling: bool | None = None,
        step_ms: int = STEP_MS,
        cluster_domain: str = "cluster.local",
    ) -> None:
        self.path = Path(path)
        self.synced = asyncio.Event()
        self._store = store
        self._absolute = Path(os.path.abspath(self.path))
        self._limits = limits
        self._make_executor = executor
        # Two executors: one for files larger than BATCH_BYTES, one for the rest, so that an edit of
        # a small file never waits for a large one to be parsed.
        self._executors: dict[bool, Executor] = {}
        self._force_polling = force_polling
        self._step_ms = step_ms
        self._known: set[PurePath] = set()  # relative paths currently applied to the store
        # Each path's latest load or forget: a result read before a newer change of its file is dropped.
        self._generation: dict[PurePath, int] = {}
        # Every folder above a path in ``_generation``: forgetting a path that is neither (an
        # editor's temporary file, renamed away) touches nothing, without a walk of every path.
        self._folders: set[PurePath] = set()
        self._changes: set[asyncio.Task[None]] = set()  # batches of changes being read
        # Kubernetes core objects: what each file holds, which files hold each, and their join.
        self._services = FolderServices(cluster_domain)

    async def run(self) -> None:
        """Initial load, ``synced``, then watch until cancelled. Raises ConfigError only if the folder
        itself is missing (one bad file is data, never an exception)."""
        if not self._absolute.is_dir():
            raise ConfigError(f"config dir {self.path} is not a directory")
        try:
            await self._rescan()
            log.info(
                "loaded %d files from %s (%d objects)",
                len(self._known),
                self.path,
                len(self._store.snapshot().objects),
            )
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
        finally:
            for task in self._changes:
                task.cancel()
            if self._changes:
                await asyncio.wait(self._changes)
            for executor in self._executors.values():
                executor.shutdown(wait=False, cancel_futures=True)
            self._executors.clear()

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
            # Not awaited: a small edit must not wait behind a large file still being parsed.
            task = asyncio.create_task(self.apply_changes([path for _, path in changes]))
            self._changes.add(task)
            task.add_done_callback(self._changed)

    def _changed(self, task: asyncio.Task[None]) -> None:
        self._changes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("applying changes in %s failed", self.path, exc_info=task.exception())

    async def apply_changes(self, paths: Iterable[str]) -> None:
        """Bring the store in line with the disk for every touched path (absolute paths)."""
        load, forget, rescan = await asyncio.to_thread(self._classify, sorted(set(paths)))
        for index, relative in enumerate(forget):
            self._forget(relative)
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # a burst of deletes: let xDS and HTTP in between
        await self._load(load, in_order=False)
        if rescan:
            await self._rescan()
        self._services.flush(self._store)

    def _classify(self, paths: list[str]) -> tuple[list[PurePath], list[PurePath], bool]:
        """Touched paths as files to load, paths to forget, and whether to rescan (a thread's work:
        it looks at the disk)."""
        rescan = False
        load: list[PurePath] = []
        forget: list[PurePath] = []
        for raw in paths:
            relative = self._relative(raw)
            if relative is None:
                continue
            if relative.parts[0].startswith(".."):
                rescan = True  # Kubernetes ConfigMap mount: the ..data symlink was swapped
                continue
            full = self._absolute / relative
            if full.is_dir() and not full.is_symlink():
                load.extend(self._walk(full))  # a folder moved in
            elif full.is_file() and is_config_file(relative):
                load.append(relative)
            else:
                forget.append(relative)  # deleted or renamed away: a file, or a folder of files
        return load, forget, rescan

    # -- loading --------------------------------------------------------------------------------

    async def _rescan(self) -> None:
        known = set(self._known)  # files applied after the walk are not for this rescan to forget
        found = await asyncio.to_thread(self._files_under, self._absolute)
        await self._load(found, in_order=True)
        for gone in sorted(known - set(found)):
            self._forget(gone)
        self._services.flush(self._store)

    def _files_under(self, top: Path) -> list[PurePath]:
        return list(self._walk(top))

    def _walk(self, top: Path) -> Iterator[PurePath]:
        """Config files under ``top`` in sorted order, relative to the root, skipping hidden folders."""
        for directory, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                relative = PurePath(os.path.relpath(os.path.join(directory, name), self._absolute))
                if is_config_file(relative) and (self._absolute / relative).is_file():
                    yield relative

    async def _load(self, relatives: list[PurePath], *, in_order: bool) -> None:
        """Read and parse ``relatives`` off the loop, in batches that the executor's workers share,
        and apply each result to the store unless its file changed again meanwhile: in the order
        given (``in_order``: a full scan), or each batch as soon as it is read."""
        if not relatives:
            return
        generations = {relative: self._next_generation(relative) for relative in relatives}
        batches = await asyncio.to_thread(self._batches, relatives)
        reads = [
            asyncio.ensure_future(self._read([r.as_posix() for r in batch], large))
            for batch, large in batches
        ]

        async def apply(batch: list[PurePath], read: asyncio.Future[Sequence[Read]]) -> None:
            for index, (relative, result) in enumerate(zip(batch, await read, strict=True)):
                if index % YIELD_EVERY == YIELD_EVERY - 1:
                    await asyncio.sleep(0)
                if self._generation.get(relative) != generations[relative]:
                    continue  # a newer change of this file is being (or was) handled
                if result is None:
                    self._forget(relative)
                else:
                    self._apply(relative, result.unpack() if isinstance(result, ShippedResult) else result)

        try:
            if in_order:
                for (batch, _), read in zip(batches, reads, strict=True):
                    await apply(batch, read)
            else:
                pairs = zip(batches, reads, strict=True)
                await asyncio.gather(*(apply(batch, read) for (batch, _), read in pairs))
        finally:
            for read in reads:
                read.cancel()

    def _next_generation(self, relative: PurePath) -> int:
        generation = self._generation.get(relative, 0) + 1
        self._generation[relative] = generation
        if generation == 1:
            self._folders.update(relative.parents)
        return generation

    def _batches(self, relatives: list[PurePath]) -> list[tuple[list[PurePath], bool]]:
        """``relatives`` in jobs of at most BATCH_FILES files and BATCH_BYTES bytes; a larger file is
        a job of its own, marked large."""
        batches: list[tuple[list[PurePath], bool]] = []
        size = 0
        for relative in relatives:
            try:
                length = os.stat(self._absolute / relative).st_size
            except OSError:
                length = 0
            if length > BATCH_BYTES:
                batches.append(([relative], True))
                continue
            last = batches[-1] if batches else None
            if last is None or last[1] or len(last[0]) >= BATCH_FILES or size + length > BATCH_BYTES:
                batches.append(([], False))
                size = 0
            batches[-1][0].append(relative)
            size += length
        return batches

    async def _read(self, names: list[str], large: bool) -> Sequence[Read]:
        loop = asyncio.get_running_loop()
        if self._make_executor is not None and large not in self._executors:
            self._executors[large] = self._make_executor()
        executor = self._executors.get(large)
        root = str(self._absolute)
        try:
            return await loop.run_in_executor(executor, read_files, root, names, self._limits)
        except BrokenProcessPool:
            # The worker died (killed, out of memory): say so on each file, and start a new worker.
            log.error("the process reading %d config files died; their last good objects stay", len(names))
            broken = self._executors.pop(large, None)
            if broken is not None:
                broken.shutdown(wait=False, cancel_futures=True)
            message = "internal error: the process reading this file died (see pilot's log)"
            return [ParseResult(name, errors=(FieldError(name, message),), fatal=True) for name in names]

    def _apply(self, relative: PurePath, result: ParseResult) -> None:
        self._known.add(relative)
        for error in result.errors:
            if error.severity == "error":
                log.warning("%s", error)
            else:
                log.info("%s", error)
        event = self._store.apply(result)
        self._services.apply(relative, result)
        if result.fatal:
            log.warning("%s not loaded; its last good objects stay", result.origin)
        elif event is not None:
            log.info(
                "applied %s: %d objects, %d changed at revision %d",
                result.origin,
                len(result.objects),
                len(event.changed),
                event.revision,
            )

    def _forget(self, relative: PurePath) -> None:
        """``relative`` is gone: drop it, or every file under it if it was a folder."""
        if relative in self._generation:  # a file: no need to look through every path (bursts of deletes)
            affected = [relative]
        elif relative in self._folders:
            affected = [path for path in self._generation if relative in path.parents]
        else:
            # No file was ever under it: a save's temporary file, renamed away (with 3000 files,
            # walking every path's parents took 10 to 45 ms of the event loop per edit).
            affected = []
        for path in affected:
            self._next_generation(path)  # a read of it still under way is now stale
        gone = [path for path in affected if path in self._known]
        for known in sorted(gone):
            self._known.discard(known)
            self._services.apply(known, None)
            event = self._store.remove_origin(known.as_posix())
            log.info(
                "removed %s%s",
                known.as_posix(),
                f": {len(event.changed)} objects deleted" if event is not None else "",
            )

    def _relative(self, raw: str) -> PurePath | None:
        try:
            relative = PurePath(raw).relative_to(self._absolute)
        except ValueError:
            return None
        return relative if relative.parts else None


__all__ = [
    "FolderSource",
]
