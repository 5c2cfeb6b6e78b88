"""The local hold-fire switch: HOLD without the broker (issue 23 §1, docs/cue-path.md §4).

A UNIX stream socket (``[cue] local_hold_socket``, mode 0600, so only the
gateway's own user, or root, can connect: the filesystem permission is the
authentication) and ``SIGUSR1``. A client writes one line, ``HOLD``; the
gateway answers ``OK HOLD <audit record count>`` once the HOLD is journaled
and in effect, or ``ERR <why>``. ``hilgw authority hold --local`` is such a
client. Nothing else can be asked through it: the switch can only lower the
authority.

Why another process, not the event loop nor a thread: a hold-fire switch
must work when the gateway is busiest (a flood on the broker) on a host with
no core to spare. Any thread of the gateway needs the GIL, which the loop's
thread holds while it parses the flood and keeps while the kernel has it
waiting for a CPU; a hold thread measured 93–352 ms p99 that way. The socket
is therefore served by :mod:`gateway.cue.hold_proc`, a small process of its
own (SCHED_FIFO when the unit grants CAP_SYS_NICE), which *latches* the cue
path by incrementing a counter in shared memory (:class:`HoldLatch`: no cue
leaves from that instant; it only forbids, so it may act before the
journal) and then has this process journal the HOLD on the loop's priority
lane. ``SIGUSR1`` is a Python signal handler (main thread, next bytecode):
it latches the in-process flag, with the GIL.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import ctypes
import logging
import mmap
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

__all__ = ["HoldLatch", "LocalHoldServer", "request_local_hold"]

log = logging.getLogger(__name__)

#: ``submit(source, future, count)``: called in the loop; sets the future's result
#: (the answer line) once the HOLD is journaled and in effect; ``count`` is the
#: shared latch counter this HOLD set (0: none, the signal).
SubmitFn = Callable[[str, "concurrent.futures.Future[str] | None", int], None]
_ANSWER_TIMEOUT_S = 5.0
_START_TIMEOUT_S = 10.0


class HoldLatch:
    """The latch the hold process sets without this process's GIL (shared memory).

    Two 64-bit words in a memfd: the number of HOLDs latched (written by the hold
    process only) and the wall ns of the last. Latched while more HOLDs were
    latched than this process has journaled (``ack``): a HOLD latched while an
    earlier one is being journaled stays latched until its own turn.
    """

    def __init__(self) -> None:
        self.fd = os.memfd_create("hilgw-hold-latch", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, 16)
        self._mm = mmap.mmap(self.fd, 16)
        self._count = ctypes.c_uint64.from_buffer(self._mm, 0)
        self._at = ctypes.c_uint64.from_buffer(self._mm, 8)
        self.acked = 0

    def close_fd(self) -> None:
        """Close the memfd once the hold process has it (the mapping stays valid)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @property
    def count(self) -> int:
        """HOLDs latched by the hold process so far."""
        return int(self._count.value)

    @property
    def last_ns(self) -> int:
        """Wall ns at which the hold process latched the last HOLD."""
        return int(self._at.value)

    def pending(self) -> bool:
        """A HOLD is latched and not yet journaled: no cue may leave."""
        return int(self._count.value) > self.acked

    def ack(self, count: int) -> None:
        """HOLDs up to ``count`` are journaled and in effect."""
        self.acked = max(self.acked, count)


class LocalHoldServer:
    """Runs the hold process for the socket, and SIGUSR1, while the cue path runs (``async with``)."""

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
        #: Set by the hold process (None without a socket: the signal latches in-process).
        self.hold_latch = HoldLatch() if socket_path is not None else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pair: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._old_handler: object = None
        self.requests = 0
        #: The hold process ended while the cue path runs (health: /healthz says so).
        self.down = False
        self._stopping = False
        #: How the hold process is scheduled ("SCHED_FIFO 10" or why not); None before it said.
        self.priority: str | None = None
        #: Wall ns of the latest latches by the hold process (benchmarks/operator/flood.py).
        self.latched_ns: collections.deque[int] = collections.deque(maxlen=1024)

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
            mine, theirs = socket.socketpair()
            assert self.hold_latch is not None
            try:
                fds = (sock.fileno(), theirs.fileno(), self.hold_latch.fd)
                self._proc = subprocess.Popen(  # noqa: ASYNC220  # once at start; fds must pass
                    [sys.executable, "-m", "gateway.cue.hold_proc", *map(str, fds)],
                    pass_fds=fds,
                    stdin=subprocess.DEVNULL,
                )
            finally:
                sock.close()  # the hold process has it now; this process only unlinks the path
                theirs.close()
                self.hold_latch.close_fd()  # the mapping stays
            self._pair = mine
            first = await asyncio.wait_for(asyncio.to_thread(self._readline), _START_TIMEOUT_S)
            self.priority = first.removeprefix("PRIO ").strip()
            if self.priority.startswith("SCHED_OTHER"):
                log.warning(
                    "cue path: local hold process not raised to real-time priority: %s", self.priority
                )
            else:
                log.info("cue path: local hold process runs %s", self.priority)
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
        self._stopping = True
        if self._pair is not None:
            with contextlib.suppress(OSError):
                self._pair.shutdown(socket.SHUT_RDWR)  # EOF: the hold process ends
        if self._proc is not None:
            try:
                await asyncio.to_thread(self._proc.wait, 2.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                await asyncio.to_thread(self._proc.wait, 2.0)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)
        if self._pair is not None:
            self._pair.close()
        if self.socket_path is not None:
            with contextlib.suppress(OSError):
                self.socket_path.unlink()

    def _hold(self, source: str, fut: concurrent.futures.Future[str] | None, count: int = 0) -> None:
        """Latch at once (any thread), then queue the audited HOLD in the loop."""
        self.requests += 1
        self._latch()
        loop = self._loop
        if loop is None or loop.is_closed():
            if fut is not None:
                fut.set_result("ERR cue path not running (it starts in HOLD)")
            return
        try:
            loop.call_soon_threadsafe(self._submit, source, fut, count)
        except RuntimeError:  # the loop is closing
            if fut is not None and not fut.done():
                fut.set_result("ERR cue path stopping (HOLD until restart)")

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._hold("signal", None)

    def _readline(self) -> str:
        """One line from the hold process ("" at its end); blocking, off the loop."""
        assert self._pair is not None
        buf = b""
        while not buf.endswith(b"\n"):
            try:
                data = self._pair.recv(1)  # lines are short and rare: no buffering across calls
            except OSError:
                return ""
            if not data:
                return ""
            buf += data
        return buf.decode("ascii", "replace")

    def _serve(self) -> None:
        """The hold process latched a HOLD: journal it through the loop, send the answer back."""
        assert self._pair is not None
        while True:
            line = self._readline()
            if not line:
                if not self._stopping:
                    self.down = True
                    log.error("cue path: the local hold switch's process ended; its socket no longer holds")
                return
            word, _, rest = line.strip().partition(" ")
            if word != "LATCH":
                continue
            count_s, _, ns_s = rest.partition(" ")
            count, ns = int(count_s), int(ns_s)
            self.latched_ns.append(ns)
            fut: concurrent.futures.Future[str] = concurrent.futures.Future()
            self._hold("socket", fut, count)
            try:
                answer = fut.result(_ANSWER_TIMEOUT_S)
            except concurrent.futures.TimeoutError:
                answer = f"ERR latched (no cue leaves) but not journaled after {_ANSWER_TIMEOUT_S} s"
            with contextlib.suppress(OSError):
                self._pair.sendall(f"{count} {answer}\n".encode("ascii", "replace"))


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
