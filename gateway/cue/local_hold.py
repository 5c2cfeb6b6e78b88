"""The local hold-fire switch: HOLD without the broker (issue 23 §1, docs/cue-path.md §4).

A UNIX stream socket (``[cue] local_hold_socket``, mode 0600, so only the
gateway's own user, or root, can connect: the filesystem permission is the
authentication) and ``SIGUSR1``. A client writes one line, ``HOLD``; the
gateway puts the hold on the priority lane, journals it (fsync), cancels the
live cues, and answers ``OK HOLD <audit record count>`` once the HOLD is in
effect, or ``ERR <why>``. ``hilgw authority hold --local`` is such a client.
Nothing else can be asked through it: the switch can only lower the authority.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

__all__ = ["LocalHoldServer", "request_local_hold"]

log = logging.getLogger(__name__)

#: ``hold(source)`` returns once the HOLD is journaled and in effect; its text is the answer.
HoldFn = Callable[[str], Coroutine[Any, Any, str]]
_MAX_LINE = 64
_READ_TIMEOUT_S = 2.0


class LocalHoldServer:
    """Serves the socket and the signal while the cue path runs (``async with``)."""

    def __init__(self, socket_path: Path | None, hold: HoldFn, *, use_signal: bool = True) -> None:
        self.socket_path = socket_path
        self._hold = hold
        self._use_signal = use_signal
        self._server: asyncio.AbstractServer | None = None
        self._signal_installed = False
        self._tasks: set[asyncio.Task[str]] = set()
        self.requests = 0

    async def __aenter__(self) -> LocalHoldServer:
        if self.socket_path is not None:
            p = self.socket_path
            with contextlib.suppress(FileNotFoundError):
                if p.is_socket():  # a stale socket of a previous run; never remove anything else
                    p.unlink()
            old = os.umask(0o177)  # created 0600 from the start: no window where others may connect
            try:
                self._server = await asyncio.start_unix_server(self._client, path=str(p))
            finally:
                os.umask(old)
            os.chmod(p, 0o600)
        if self._use_signal:
            try:
                asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, self._on_signal)
                self._signal_installed = True
            except (NotImplementedError, RuntimeError, ValueError) as exc:  # not the main thread
                log.warning("cue path: SIGUSR1 local hold not installed: %s", exc)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._signal_installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            if self.socket_path is not None:
                with contextlib.suppress(OSError):
                    self.socket_path.unlink()

    def _on_signal(self) -> None:
        self.requests += 1
        task = asyncio.get_running_loop().create_task(self._hold("signal"), name="cue:local-hold")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(_READ_TIMEOUT_S):
                    line = await reader.readline()
            except (TimeoutError, ValueError, OSError):
                return
            if line[:_MAX_LINE].strip().upper() != b"HOLD":
                writer.write(b"ERR only HOLD can be asked here\n")
            else:
                self.requests += 1
                answer = await self._hold("socket")
                writer.write(answer.encode("ascii", "replace") + b"\n")
            with contextlib.suppress(OSError):
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


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
