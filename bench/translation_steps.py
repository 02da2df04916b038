"""Where a full build's CPU time goes, step by step, on the mesh of bench.translation.

    .venv/bin/python -m bench.translation_steps --services 1000 --repeat 8

The steps of ``build_snapshot`` from scratch (pilot/translate/snapshot.py), each timed alone in
process CPU time (``time.process_time``): the push context, each generator (serialized where it
serializes: ``generate_encoded``), the consistency check, provenance, the untranslated objects and
the serialization into a ``Snapshot``. Per step the minimum and the median of ``--repeat`` builds
(the first is a warm-up); on a shared machine the minimum is the steadier figure.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from bench.mesh import write_mesh
from bench.sidecar_scope import git_commit
from bench.translation import load_store, views
from pilot.cache.snapshot import Snapshot
from pilot.translate.context import PushContext
from pilot.translate.problems import translation_problems
from pilot.translate.provenance import provenance
from pilot.translate.snapshot import EncodedMessages, generators_for, inconsistencies
from pilot.xds import types

T = TypeVar("T")


def _steps(store_snapshot: Any, view: Any) -> dict[str, float]:
    out: dict[str, float] = {}

    def timed(step: str, run: Callable[[], T]) -> T:
        start = time.process_time()
        made = run()
        out[step] = (time.process_time() - start) * 1000
        return made

    context = timed("context", lambda: PushContext.build(store_snapshot))
    messages: EncodedMessages = {}
    for type_url, generator in generators_for(view).items():
        encode = getattr(generator, "generate_encoded", None)
        make = encode if encode is not None else generator.generate
        messages[type_url] = timed(
            types.short_name(type_url),
            lambda make=make: list(make(view, context)),  # type: ignore[misc]
        )
    timed("consistency", lambda: inconsistencies(messages))
    origins = timed("provenance", lambda: MappingProxyType(provenance(view, context, messages)))
    untaken = timed("problems", lambda: translation_problems(view, context))
    timed(
        "serialization",
        lambda: Snapshot.from_messages(context.version, messages, origins=origins, problems=untaken),
    )
    out["total"] = sum(out.values())
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=1000, help="K (default 1000)")
    parser.add_argument("--repeat", type=int, default=8, help="timed builds (default 8)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pilot-bench-steps-") as tmp:
        write_mesh(Path(tmp), args.services)
        store = load_store(Path(tmp))
    gc.freeze()
    view = views(1)[0]
    snapshot = store.snapshot()
    _steps(snapshot, view)  # warm-up
    rows = [_steps(snapshot, view) for _ in range(args.repeat)]
    print(f"commit {git_commit()}: K={args.services}, CPU ms of {args.repeat} full builds")
    print(f"{'step':>24} {'min':>8} {'median':>8}")
    for step in rows[0]:
        values = [row[step] for row in rows]
        print(f"{step:>24} {min(values):>8.1f} {statistics.median(values):>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
