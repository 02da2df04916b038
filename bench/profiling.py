"""``py-spy record`` on a measured process for the duration of a phase (``--profile``)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


class PySpy:
    """``py-spy record`` on a process for the duration of a ``with`` block (collapsed stacks)."""

    def __init__(self, pid: int, out: Path | None, native: bool = False) -> None:
        self.pid, self.out, self.native = pid, out, native
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PySpy:
        if self.out is not None:
            exe = Path(sys.executable).with_name("py-spy")
            command = [
                str(exe),
                "record",
                "--pid",
                str(self.pid),
                "--format",
                "raw",
                "--rate",
                "250",
                "--output",
                str(self.out),
                "--nonblocking",
            ]
            if self.native:
                command.append("--native")
            self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
