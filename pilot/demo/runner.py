"""``pilot demo``: a canary rollout you can watch, on one machine, with a real Envoy.

It renders the bundled config into a temporary folder, starts three backend versions, ``pilot
serve`` and an Envoy sidecar, then sends steady traffic through Envoy and prints, once a second,
the share of requests each version served. Every third of the run it rewrites the VirtualService
(80/20 -> all v2 -> jason to v3) and reports how long the edit took to reach the traffic.
Everything it started is stopped on the way out, whatever the way out is.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from pilot.demo.options import DemoOptions
from pilot.demo.scenario import (
    JASON,
    PHASES,
    SERVICE_FILE,
    SERVICE_HOST,
    VERSIONS,
    VIRTUAL_SERVICE_FILE,
    render,
)
from pilot.demo.traffic import EditWatch, Tally
from pilot.localmesh.backend import Backend
from pilot.localmesh.config_files import write_atomically
from pilot.localmesh.control_plane import PilotProcess
from pilot.localmesh.envoy import EnvoyProcess
from pilot.localmesh.loopback import LOOPBACK, HttpClient, free_port
from pilot.localmesh.polling import Timeout, wait_until
from pilot.localmesh.process_group import interrupts_ignored, sigterm_as_interrupt
from pilot.xds.names import listener_name

__all__ = ["Demo"]

NODE_ID = "sidecar~127.0.0.1~demo.default~default.svc.cluster.local"
# Seconds of traffic per printed line; a shorter rest (at an edit, at the end) is printed only
# when it is at least MIN_WINDOW long, as a handful of requests would make a misleading line.
WINDOW = 1.0
MIN_WINDOW = 0.5


class Demo:
    def __init__(self, options: DemoOptions, out: TextIO | None = None) -> None:
        self.options = options
        self.out = out or sys.stdout
        self.pilot: PilotProcess | None = None
        self.envoy: EnvoyProcess | None = None
        self.phase_tallies = [Tally() for _ in PHASES]
        self.watches: list[EditWatch] = []
        # Template values: the service port and each backend's port, picked at start-up.
        self.ports: dict[str, int] = {}

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def run(self) -> int:
        code = 0
        started: list[str] = []
        with tempfile.TemporaryDirectory(prefix="pilot-demo-") as tmp, sigterm_as_interrupt():
            workdir = Path(tmp)
            stack = contextlib.ExitStack()  # closing it stops every process started
            try:
                client = self._start(workdir, stack, started)
                stack.callback(client.close)
                self._drive(client, workdir / "config" / VIRTUAL_SERVICE_FILE)
            except KeyboardInterrupt:
                self.say("\ninterrupted")
            except (OSError, RuntimeError, Timeout) as err:
                self.say(f"\npilot demo could not run: {err}")
                self._print_logs()
                code = 1
            finally:
                # A second Ctrl-C must not cut the clean-up short and leave Envoy running.
                with interrupts_ignored():
                    if started:
                        self.say(f"stopping {', '.join(started)}")
                    stack.close()
            self._summary()
        return code

    # --- start-up ----------------------------------------------------------------------------

    def _start(self, workdir: Path, stack: contextlib.ExitStack, started: list[str]) -> HttpClient:
        options = self.options
        config_dir = workdir / "config"
        config_dir.mkdir()
        backends = {version: stack.enter_context(Backend(version)) for version in VERSIONS}
        started.append(f"{len(backends)} backends")
        listen_port = options.listen_port or free_port()
        self.ports = {"SERVICE_PORT": listen_port}
        self.ports.update({f"{v.upper()}_PORT": b.port for v, b in backends.items()})
        write_atomically(config_dir / SERVICE_FILE, render(SERVICE_FILE, self.ports))
        write_atomically(config_dir / VIRTUAL_SERVICE_FILE, render(PHASES[0].template, self.ports))

        self.pilot = PilotProcess(
            config_dir, workdir / "pilot.log", xds_port=options.xds_port, http_port=options.http_port
        )
        stack.callback(self.pilot.stop)
        self.pilot.start()
        started.append(f"pilot (pid {self.pilot.pid})")
        self.envoy = EnvoyProcess(NODE_ID, self.pilot.xds_port, workdir)
        stack.callback(self.envoy.stop)
        self.envoy.start()
        started.append(f"envoy (pid {self.envoy.pid})")

        backend_list = ", ".join(f"{v} on :{b.port}" for v, b in backends.items())
        self.say(
            f"pilot demo: Envoy on {LOOPBACK}:{listen_port} routes 'Host: {SERVICE_HOST}' to three backends"
        )
        self.say(f"  backends {backend_list}")
        self.say(f"  config   {config_dir}  (edit it while the demo runs, if you like)")
        self.say(
            f"  pilot    pid {self.pilot.pid}  xDS {LOOPBACK}:{self.pilot.xds_port}  "
            f"debug http://{LOOPBACK}:{self.pilot.http_port}/debug/syncz"
        )
        self.say(f"  envoy    pid {self.envoy.pid}  admin http://{LOOPBACK}:{self.envoy.admin_port}/")

        self.envoy.wait_listener(listener_name(listen_port), timeout=30.0)
        client = HttpClient(listen_port, authority=SERVICE_HOST, timeout=2.0)
        try:
            wait_until(
                lambda: client.get("/").version is not None,
                30.0,
                0.1,
                f"a reply through Envoy on port {listen_port}",
                ignore=(OSError, http.client.HTTPException),
            )
        except BaseException:
            client.close()
            raise
        return client

    def _print_logs(self) -> None:
        for proc in (self.pilot, self.envoy):
            if proc is not None:
                self.say(f"--- last lines of {proc.log_path.name}:\n{proc.log_tail(30)}")

    # --- traffic -----------------------------------------------------------------------------

    def _drive(self, client: HttpClient, vs_path: Path) -> None:
        options = self.options
        until = "until Ctrl-C" if options.duration is None else f"for {options.duration:g}s"
        self.say(f"sending {options.rate:g} requests/s {until}; every 4th carries 'end-user: jason'.")
        self.say(
            "each line: the share of replies per version over the last second (bar: 1 = v1, 2 = v2, 3 = v3)."
        )
        self.say()
        self.say(f"phase 1: {PHASES[0].title}")
        interval = 1.0 / options.rate
        start = time.monotonic()
        end = start + options.duration if options.duration is not None else math.inf
        next_edit = start + options.phase_length
        window_started = start
        next_send = start
        phase = 0
        window = Tally()
        watch: EditWatch | None = None
        sent_count = 0
        while (now := time.monotonic()) < end:
            if phase + 1 < len(PHASES) and now >= next_edit:
                # Close the window first, so that every printed line belongs to one phase.
                if now - window_started >= MIN_WINDOW:
                    self._print_window(now - start, window)
                window, window_started = Tally(), now
                phase += 1
                watch = self._edit(vs_path, phase)
                next_edit += options.phase_length
            elif now - window_started >= WINDOW:
                self._print_window(now - start, window)
                window, window_started = Tally(), now
            if watch is not None and not watch.reported and watch.settled(now):
                self._report(watch)
            jason = sent_count % 4 == 3
            sent_at = time.monotonic()
            version = _version_served(client, jason)
            received_at = time.monotonic()
            sent_count += 1
            window.add(version)
            self.phase_tallies[phase].add(version)
            if watch is not None:
                watch.observe(sent_at, received_at, version, jason)
            next_send += interval
            pause = next_send - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing the request rate, not waiting for anything
            elif pause < -1.0:
                next_send = time.monotonic()  # fell behind (a slow reply): do not burst to catch up
        if time.monotonic() - window_started >= MIN_WINDOW:
            self._print_window(time.monotonic() - start, window)

    def _edit(self, vs_path: Path, phase: int) -> EditWatch:
        write_atomically(vs_path, render(PHASES[phase].template, self.ports))
        watch = EditWatch(PHASES[phase], time.monotonic())
        self.watches.append(watch)
        self.say()
        self.say(f"phase {phase + 1}: {PHASES[phase].title}")
        self.say(f"  edit: rewrote VirtualService {SERVICE_HOST} in {vs_path.name}")
        return watch

    def _report(self, watch: EditWatch) -> None:
        watch.reported = True
        self.say(f"  propagation: {watch.describe()}")

    def _print_window(self, elapsed: float, window: Tally) -> None:
        shares = "  ".join(f"{v} {window.share(v):4.0%}" for v in VERSIONS)
        failed = f"  {window.errors} failed" if window.errors else ""
        self.say(f"  t={elapsed:4.0f}s  {shares}  |{window.bar(VERSIONS)}|  {window.total:3d} req{failed}")

    def _summary(self) -> None:
        for watch in self.watches:
            if not watch.reported:
                self._report(watch)
        if not any(t.total for t in self.phase_tallies):
            return
        self.say()
        self.say("summary: share of replies per version")
        for index, tally in enumerate(self.phase_tallies):
            if not tally.total:
                continue
            shares = "  ".join(f"{v} {tally.share(v):6.1%}" for v in VERSIONS)
            self.say(f"  phase {index + 1}  {shares}   {tally.total} requests, {tally.errors} failed")
        for index, watch in enumerate(self.watches):
            self.say(f"  edit {index + 1}: {watch.describe()}")


def _version_served(client: HttpClient, jason: bool) -> str | None:
    """The backend version that answered one request; None for an error of any kind."""
    try:
        reply = client.get("/", JASON if jason else None)
    except (OSError, http.client.HTTPException):
        return None
    return reply.version if reply.status == 200 else None
