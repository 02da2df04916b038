"""Tiny TCP servers on 127.0.0.1 that answer every connection with their name, then close it.

Each runs an asyncio server on its own event loop in a daemon thread (like the HTTP backends), so a
synchronous test can count which server a proxied connection reached.
"""

from __future__ import annotations

import asyncio
import socket
import threading

from pilot.localmesh.loopback import LOOPBACK


class NameServer:
    """``start()`` binds a free port (``self.port``) and serves; ``stop()`` ends it. Safe to stop twice."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOOPBACK, 0))
        self.port: int = self._sock.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"tcp-{name}", daemon=True)

    def start(self, timeout: float = 10.0) -> NameServer:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"TCP server {self.name} did not start within {timeout}s")
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._run())
        finally:
            self._ready.set()
            loop.close()
            self._sock.close()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(self.name.encode() + b"\n")
            try:
                await writer.drain()
            finally:
                writer.close()

        server = await asyncio.start_server(answer, sock=self._sock)
        async with server:
            self._ready.set()
            await self._stopping.wait()

    def stop(self, timeout: float = 5.0) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and self._thread.is_alive():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:
                pass
        if self._thread.is_alive():
            self._thread.join(timeout)
        elif not self._thread.ident:
            self._sock.close()


def ask(port: int, timeout: float = 5.0) -> str:
    """Connect to 127.0.0.1:port and read the answer until the server closes ('' if none)."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        chunks = []
        while chunk := sock.recv(1024):
            chunks.append(chunk)
    return b"".join(chunks).decode().strip()
