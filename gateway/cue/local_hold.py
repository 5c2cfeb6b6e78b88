"""The local hold-fire switch: HOLD without the broker (issue 23 §1, docs/cue-path.md §4).

A UNIX stream socket (``[cue] local_hold_socket``, mode 0600, so only the
gateway's own user, or root, can connect: the filesystem permission is the
authentication) and ``SIGUSR1``. A client writes one line, ``HOLD``; the
gateway answers ``OK HOLD <audit record count>`` once the HOLD is journaled
and in effect, or ``ERR <why>``. ``hilgw authority hold --local`` is such a
client. Nothing else can be asked through it: the switch can only lower the
authority.

Why a thread and a plain signal handler, not the event loop: a hold-fire
switch must work when the loop is busiest (a flood of commands on the
broker). The socket is served by its own thread and SIGUSR1 by a Python
signal handler (main thread, next bytecode); both first *latch* the cue path
(``latch()``: no cue leaves from that instant; it only forbids, so it may act
before the journal), then hand the audited HOLD to the loop's priority lane.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

__all__ = ["LocalHoldServer", "request_local_hold"]

log = logging.getLogger(__name__)

#: ``submit(source, future)``: called in the loop; sets the future's result (the
#: answer line) once the HOLD is journaled and in effect.
SubmitFn = Callable[[str, "concurrent.futures.Future[str] | None"], None]
_MAX_LINE = 64
_IO_TIMEOUT_S = 2.0
_ANSWER_TIMEOUT_S = 5.0


class LocalHoldServer:
    """Serves the socket (a thread) and SIGUSR1 while the cue path runs (``async with``)."""

    def __init__(
        self,
        socket_path: Path | None,
        latch: Callable[[], None],
        submit: SubmitFn,
        *,
        use_signal: bool = True,
    ) -> None:
        self.socket_path = socket_path
        self._latch = latch
        self._submit = submit
        self._use_signal = use_signal
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._old_handler: object = None
        self.requests = 0

    async def __aenter__(self) -> LocalHoldServer:
        self._loop = asyncio.get_running_loop()
        if self.socket_path is not None:
            p = self.socket_path
            with contextlib.suppress(FileNotFoundError):
                if p.is_socket():  # a stale socket of a previous run; never remove anything else
                    p.unlink()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)  # created 0600 from the start: no window where others may connect
            try:
                sock.bind(str(p))
            finally:
                os.umask(old)
            os.chmod(p, 0o600)
            sock.listen(8)
            sock.settimeout(0.2)  # the thread checks its stop flag this often
            self._sock = sock
            self._thread = threading.Thread(target=self._serve, name="cue-local-hold", daemon=True)
            self._thread.start()
        if self._use_signal:
            try:
                self._old_handler = signal.signal(signal.SIGUSR1, self._on_signal)
            except ValueError as exc:  # not the main thread (tests running the path in a thread)
                log.warning("cue path: SIGUSR1 local hold not installed: %s", exc)
                self._use_signal = False
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._use_signal:
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signal.SIGUSR1, self._old_handler)  # type: ignore[arg-type]
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)
        if self._sock is not None:
            self._sock.close()
            if self.socket_path is not None:
                with contextlib.suppress(OSError):
                    self.socket_path.unlink()

    def _hold(self, source: str, fut: concurrent.futures.Future[str] | None) -> None:
        """Latch at once (any thread), then queue the audited HOLD in the loop."""
        self.requests += 1
        self._latch()
        loop = self._loop
        if loop is None or loop.is_closed():
            if fut is not None:
                fut.set_result("ERR cue path not running (it starts in HOLD)")
            return
        try:
            loop.call_soon_threadsafe(self._submit, source, fut)
        except RuntimeError:  # the loop is closing
            if fut is not None and not fut.done():
                fut.set_result("ERR cue path stopping (HOLD until restart)")

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._hold("signal", None)

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                self._client(conn)

    def _client(self, conn: socket.socket) -> None:
        conn.settimeout(_IO_TIMEOUT_S)
        try:
            line = conn.recv(_MAX_LINE)
        except OSError:
            return
        if line.strip().upper() != b"HOLD":
            answer = "ERR only HOLD can be asked here"
        else:
            fut: concurrent.futures.Future[str] = concurrent.futures.Future()
            self._hold("socket", fut)
            try:
                answer = fut.result(_ANSWER_TIMEOUT_S)
            except concurrent.futures.TimeoutError:
                answer = f"ERR latched (no cue leaves) but not journaled after {_ANSWER_TIMEOUT_S} s"
        with contextlib.suppress(OSError):
            conn.sendall(answer.encode("ascii", "replace") + b"\n")


async def request_local_hold(socket_path: Path, timeout_s: float) -> str:
    """Client side (``hilgw authority hold --local``): the gateway's answer line."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
        try:
            writer.write(b"HOLD\n")
            await writer.drain()
            return (await reader.readline()).decode("ascii", "replace").strip()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
