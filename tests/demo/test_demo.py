"""``pilot demo`` end to end: it runs, shows the split follow both edits, and leaves nothing behind."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

WINDOW = re.compile(r"t=\s*(\d+)s\s+v1\s+(\d+)%\s+v2\s+(\d+)%\s+v3\s+(\d+)%")
PHASE = re.compile(r"^phase (\d):")


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, read from /proc (parent pid is field 4 of stat)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


class Demo:
    """``python -m pilot demo`` in its own session; its output lines and every child it ever had."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pilot", "demo", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self.children: set[int] = set()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _watch(self) -> None:
        while self.proc.poll() is None:
            self.children |= descendants(self.proc.pid)
            time.sleep(0.2)  # sampling the process tree while the demo runs

    def next_line(self, deadline: float) -> str | None:
        try:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("the demo's output stalled:\n" + self.text()) from None
        if line is not None:
            self.output.append(line)
        return line

    def finish(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.next_line(deadline) is not None:
            pass
        code = self.proc.wait(max(0.0, deadline - time.monotonic()))
        self._watcher.join(5)
        return code

    def text(self) -> str:
        return "\n".join(self.output)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in self.children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def demo_factory() -> Iterator[type[Demo]]:
    started: list[Demo] = []

    class Tracked(Demo):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    yield Tracked
    for demo in started:
        demo.kill()


def windows_by_phase(text: str) -> dict[int, list[tuple[int, int, int]]]:
    phases: dict[int, list[tuple[int, int, int]]] = {}
    phase = 0
    for line in text.splitlines():
        if match := PHASE.match(line):
            phase = int(match.group(1))
        elif (match := WINDOW.search(line)) and phase:
            v1, v2, v3 = (int(match.group(i)) for i in (2, 3, 4))
            phases.setdefault(phase, []).append((v1, v2, v3))
    return phases


def assert_all_gone(demo: Demo) -> None:
    printed = {int(p) for p in re.findall(r"pid (\d+)", demo.text())}
    # The demo names its pilot and Envoy, and they were its children (the sampling saw them).
    assert len(printed) >= 2 and printed <= demo.children, (printed, demo.children)
    survivors = {pid for pid in demo.children if alive(pid)}
    assert not survivors, f"processes left running: {survivors}"


def test_demo_shows_the_split_follow_the_edits(demo_factory: type[Demo]) -> None:
    demo = demo_factory("--duration", "12")
    code = demo.finish(timeout=90)
    text = demo.text()
    assert code == 0, text
    phases = windows_by_phase(text)
    assert set(phases) == {1, 2, 3}, text
    # Phase 1 is 80/20: over its windows, v1 serves most but not all requests.
    first = phases[1]
    v1_share = sum(w[0] for w in first) / len(first)
    assert 65 <= v1_share <= 95, text
    assert all(w[2] == 0 for w in first), text
    # Phase 2 ends with everything on v2; phase 3 sends jason's quarter to v3.
    assert phases[2][-1] == (0, 100, 0), text
    v1, v2, v3 = phases[3][-1]
    assert v1 == 0 and 15 <= v3 <= 35 and v2 + v3 == 100, text
    assert text.count("propagation:") >= 2, text
    assert re.search(r"first v3 reply \d+\.\d+s after the write", text), text
    assert_all_gone(demo)


def test_demo_stops_everything_on_ctrl_c(demo_factory: type[Demo]) -> None:
    demo = demo_factory()
    deadline = time.monotonic() + 60
    while (line := demo.next_line(deadline)) is not None and not WINDOW.search(line):
        pass
    assert line is not None, demo.text()
    os.kill(demo.proc.pid, signal.SIGINT)
    assert demo.finish(timeout=30) == 0, demo.text()
    assert "interrupted" in demo.text()
    assert_all_gone(demo)
