"""Summarize a py-spy ``--format raw`` (collapsed stacks) file: top frames by self and total time.

    .venv/bin/python -m bench.profile_summary bench/results/profile-1000x100-pilot-edits.txt [--top 25]

``python -m bench --profile python`` writes such files.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r" \(([^)]*)\)$")


def _frame(raw: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py)``: lines merged, paths shortened."""
    match = _LINE.search(raw)
    if match is None:
        return raw
    where = match.group(1).rsplit(":", 1)[0]
    parts = where.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else where
    return f"{raw[: match.start()]} ({short})"


def summarize(path: Path, top: int, grep: str | None = None) -> str:
    self_time: Counter[str] = Counter()
    total_time: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if frames and frames[0].startswith("thread "):
            frames = frames[1:]
        if grep is not None and not any(grep in f for f in frames):
            continue
        samples += count
        if frames:
            self_time[frames[-1]] += count
        for frame in set(frames):
            total_time[frame] += count
    lines = [f"{path.name}: {samples} samples"]
    lines.append(f"-- top {top} by self time")
    lines += [f"{100 * c / samples:6.1f}%  {f}" for f, c in self_time.most_common(top)]
    lines.append(f"-- top {top} by total time")
    lines += [f"{100 * c / samples:6.1f}%  {f}" for f, c in total_time.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--grep", default=None, help="only stacks with a frame containing this text")
    args = parser.parse_args(argv)
    for path in args.path:
        print(summarize(path, args.top, args.grep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
