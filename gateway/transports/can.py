"""CAN and CAN FD through python-can: any interface by name (docs/icd/can-radar.md §2).

A frame transport: ``await recv()`` one :class:`~hilgw.can.CanFrame`,
``await recv_batch()`` everything buffered (the drivers' hot path), ``await
send(frame)``. The ``can.Bus`` is built from :class:`gateway.config.CanTransportConfig`
(interface, channel, bitrate, FD and data bitrate, own-message echo,
filters, interface options); the ``virtual`` interface joins buses of one
process by channel name and serves the tests.

Why a reader thread of our own and not ``can.Notifier``: a notifier's
thread can die on a backend exception and leave an ``AsyncBufferedReader``
waiting for ever, or report the error only to a listener that may not look
(python-can issues 1865 and 1667). Here one daemon thread calls
``bus.recv(timeout)`` in a loop, and whatever ends it (an exception from the
backend, a bus-off error frame, a bus state of ERROR) is kept and raised from
the next ``recv()`` as :class:`TransportError`, so the supervisor sees the
failure and restarts the device with a new bus. Error frames and bus-off
events are counted in :attr:`CanTransport.counters`; frames the bounded
buffer cannot take are dropped and counted there too (``queue_full``).

Frames the kernel dropped before the reader read them (the socket's receive
buffer full while the reader thread waited for a CPU) are counted too, as
``kernel_overflow``, for buses on a Linux socket (``socketcan``,
``udp_multicast``): see :class:`KernelDrops`.

The receive buffer of such a socket is asked for (``recv_buffer_bytes``,
read back into :attr:`CanTransport.recv_buffer` and logged): python-can leaves
a ``udp_multicast`` bus at the OS default, 166 CAN FD frames, which a reader
thread waiting 30 ms for the GIL overflowed at 5,600 frames/s (issue 18).

``fd`` is passed to ``can.Bus`` both ways, never left to the interface's
default: ``udp_multicast`` defaults to FD and would hand a classic radar
every FD frame on its group (issue 14).

``udp_multicast`` isolation: python-can binds every such bus to the wildcard
address on one port (43113 unless ``options.port``), and Linux delivers a
datagram to every socket bound there that joined *any* group, so two buses
on two groups heard each other's frames. After opening we clear
``IP_MULTICAST_ALL`` (``IPV6_MULTICAST_ALL``) on the bus's socket
(ip(7): with it cleared the socket receives only the groups it joined
itself), so a bus hears its own group only. Where that option does not
exist (not Linux), :mod:`gateway.config` refuses two ``udp_multicast``
devices on different groups of one port instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

import can

from gateway.sections.transports import CanTransportConfig
from gateway.transports.base import Transport
from gateway.transports.sockdrops import KernelDrops, set_recv_buffer
from hilgw.can import CanFrame
from hilgw.errors import TransportError

__all__ = [
    "CAN_ERR_BUSOFF",
    "CAN_LINK_DROPS",
    "MULTICAST_ISOLATION",
    "CanTransport",
    "FrameTransport",
    "KernelDrops",
    "isolate_multicast",
]

log = logging.getLogger(__name__)

#: SocketCAN error class bit for bus-off in an error frame's id (linux/can/error.h).
CAN_ERR_BUSOFF = 0x00000040
#: linux/in.h IP_MULTICAST_ALL and linux/in6.h IPV6_MULTICAST_ALL (the socket module has neither).
_IP_MULTICAST_ALL = 49
_IPV6_MULTICAST_ALL = 29
#: Whether a udp_multicast bus can be kept to its own group here (see the module docstring).
MULTICAST_ISOLATION = sys.platform == "linux"


#: Frames read between two looks at the kernel's drop count while the bus is busy
#: (it is also read whenever a poll finds the bus idle).
_DROPS_EVERY = 1024


def isolate_multicast(bus: can.BusABC) -> None:
    """Make a ``udp_multicast`` bus receive only the group it joined (Linux, ip(7)).

    Raises ``OSError`` if the socket refuses; does nothing for a bus without a
    socket (``fileno() < 0``) or where the option does not exist.
    """
    if not MULTICAST_ISOLATION:
        return
    fd = bus.fileno()
    if fd < 0:
        return
    # A second handle on the same socket: the option is set on the socket, not the handle.
    with socket.socket(fileno=os.dup(fd)) as sock:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_MULTICAST_ALL, 0)
        else:
            sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)


#: Link counters as a device names them among its drops (DeviceHealth).
CAN_LINK_DROPS = {
    "error_frame": "can_error_frame",
    "bus_off": "can_bus_off",
    "queue_full": "queue_full",
    "kernel_overflow": "kernel_overflow",
}


class FrameTransport(Transport):
    """Whole CAN frames (the third transport kind, next to stream and datagram)."""

    #: Link events by name (``error_frame``, ``bus_off``, ``queue_full``,
    #: ``kernel_overflow``), totals since open.
    counters: Counter[str]

    async def recv(self) -> CanFrame:
        raise NotImplementedError

    async def recv_batch(self, max_frames: int = 4096) -> list[CanFrame]:
        raise NotImplementedError

    def counter_increments(self, seen: dict[str, int]) -> dict[str, int]:
        """Link counters gone up since ``seen`` (updated in place; the reader
        thread writes the counters): what a device adds to its drops."""
        out: dict[str, int] = {}
        for key, now in list(self.counters.items()):
            if now > seen.get(key, 0):
                out[key] = now - seen.get(key, 0)
                seen[key] = now
        return out

    async def send(self, frame: CanFrame) -> None:
        raise NotImplementedError

    async def send_many(self, frames: Iterable[CanFrame]) -> None:
        raise NotImplementedError


class _ReaderStopped(Exception):
    """The reader thread ended for a reason that is not a backend exception."""


class CanTransport(FrameTransport):
    """A python-can bus with a supervised reader thread.

    ``bus_factory`` replaces ``can.Bus(**kwargs)`` (tests use it to inject a
    failing backend); it gets the keyword arguments built from the config.
    """

    def __init__(
        self, config: CanTransportConfig, *, bus_factory: Callable[..., can.BusABC] | None = None
    ) -> None:
        self.config = config
        self.describe = f"can {config.interface}:{config.channel}" + (" fd" if config.fd else "")
        self._factory = bus_factory or can.Bus
        self._bus: can.BusABC | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._queue: deque[CanFrame] = deque()
        self._signalled = False
        self._ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: BaseException | None = None
        #: Written only by the reader thread: ``error_frame``, ``bus_off``, ``queue_full``,
        #: ``kernel_overflow`` (frames the kernel dropped: :class:`KernelDrops`).
        self.counters: Counter[str] = Counter()
        self._drops: KernelDrops | None = None
        #: Set by the reader when a counter went up with no frame to carry it: the
        #: next recv_batch() returns (empty) so the driver copies the count now.
        self._counted = False
        self.frames_in = 0
        #: SO_RCVBUF the kernel gave the bus's socket (read back at open; 0: none asked or no socket).
        self.recv_buffer = 0

    def bus_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``can.Bus`` from the config."""
        c = self.config
        kw: dict[str, Any] = {"interface": c.interface, "receive_own_messages": c.receive_own_messages}
        if c.channel is not None:
            kw["channel"] = c.channel
        if c.bitrate is not None:
            kw["bitrate"] = c.bitrate
        kw["fd"] = c.fd  # explicit both ways: udp_multicast defaults to FD
        if c.data_bitrate is not None:
            kw["data_bitrate"] = c.data_bitrate
        if c.filters:
            kw["can_filters"] = [
                {"can_id": f.can_id, "can_mask": f.can_mask, "extended": f.extended} for f in c.filters
            ]
        kw.update(c.options)
        return kw

    async def open(self) -> None:
        if self._bus is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._failure = None
        self._stop.clear()
        try:
            # Opening some interfaces (USB adapters, vector) blocks: not on the loop.
            self._bus = await asyncio.to_thread(self._factory, **self.bus_kwargs())
        except (can.CanError, OSError, ValueError, ImportError, NotImplementedError) as exc:
            raise TransportError(f"{self.describe}: cannot open: {exc}") from exc
        if self.config.interface == "udp_multicast":
            try:
                isolate_multicast(self._bus)
            except OSError as exc:
                bus, self._bus = self._bus, None
                bus.shutdown()
                raise TransportError(
                    f"{self.describe}: cannot keep the bus to its own group (IP_MULTICAST_ALL): {exc}"
                ) from exc
        self._size_recv_buffer(self._bus)
        self._drops = KernelDrops.of(self._bus)
        self._thread = threading.Thread(
            target=self._read_loop, name=f"can-reader {self.describe}", daemon=True
        )
        self._thread.start()

    def _size_recv_buffer(self, bus: can.BusABC) -> None:
        """Ask for ``recv_buffer_bytes`` on a bus with a Linux socket (socketcan,
        udp_multicast): the frames it holds while the reader thread waits for
        the GIL or a CPU. Sets :attr:`recv_buffer` to what the kernel gave
        (0: not a socket, or not asked)."""
        self.recv_buffer = 0
        if not self.config.recv_buffer_bytes or sys.platform != "linux":
            return
        try:
            fd = bus.fileno()
        except (NotImplementedError, OSError, ValueError):
            return
        if fd < 0:
            return
        try:
            # A second handle on the same socket: the option is the socket's, not the handle's.
            with socket.socket(fileno=os.dup(fd)) as sock:
                self.recv_buffer = set_recv_buffer(sock, self.config.recv_buffer_bytes, self.describe)
        except OSError as exc:  # not a socket (a serial adapter), or the option refused
            log.info("%s: receive buffer left as it is: %s", self.describe, exc)

    # --- the reader thread --------------------------------------------------------

    def _read_loop(self) -> None:
        bus = self._bus
        assert bus is not None
        poll = self.config.poll_s
        limit = self.config.queue_size
        queue, counters, stop = self._queue, self.counters, self._stop
        drops = self._drops
        since_look = 0
        try:
            while not stop.is_set():
                msg = bus.recv(timeout=poll)
                if drops is not None:
                    since_look += 1
                    if msg is None or since_look >= _DROPS_EVERY:
                        since_look = 0
                        if n := drops.new():
                            counters["kernel_overflow"] += n
                            self._counted = True
                            if not self._signalled:
                                self._signalled = True
                                self._wake()
                if msg is None:
                    if _bus_off_state(bus):
                        counters["bus_off"] += 1
                        raise TransportError(f"{self.describe}: bus state is ERROR (bus-off)")
                    continue
                if msg.is_error_frame:
                    counters["error_frame"] += 1
                    if msg.arbitration_id & CAN_ERR_BUSOFF:
                        counters["bus_off"] += 1
                        raise TransportError(
                            f"{self.describe}: bus-off (error frame 0x{msg.arbitration_id:X})"
                        )
                    continue
                if len(queue) >= limit:
                    counters["queue_full"] += 1
                    continue
                # Stamped with the gateway's UTC clock here, not msg.timestamp:
                # backends differ (kernel, adapter or monotonic clocks).
                queue.append(
                    CanFrame(
                        msg.arbitration_id,
                        bytes(msg.data),
                        bool(msg.is_fd),
                        bool(msg.is_extended_id),
                        time.time_ns(),
                    )
                )
                if not self._signalled:
                    self._signalled = True
                    self._wake()
        except BaseException as exc:  # kept and raised from recv(): nothing ends silently
            self._failure = exc
        finally:
            if drops is not None and (n := drops.new()):
                counters["kernel_overflow"] += n
            if self._failure is None and not stop.is_set():
                self._failure = _ReaderStopped("reader thread ended")
            self._wake()

    def _wake(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            # RuntimeError: the loop closed between the check and the call.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._ready.set)

    # --- async API ----------------------------------------------------------------

    def _raise_failure(self) -> None:
        exc = self._failure
        if isinstance(exc, TransportError):
            raise exc
        if exc is not None:
            raise TransportError(f"{self.describe}: reader failed: {exc!r}") from exc
        if self._bus is None:
            raise TransportError(f"{self.describe}: not open")

    async def recv_batch(self, max_frames: int = 4096) -> list[CanFrame]:
        """Every buffered frame (at most ``max_frames``); waits for at least one,
        or for a counter that went up (then it may be empty: the drivers copy
        the counters after each batch, and a loss must show while the bus is
        quiet too, not only with the next frame).

        Raises :class:`TransportError` once the reader has failed (after
        handing out the frames it had buffered).
        """
        queue = self._queue
        while True:
            if queue:
                n = min(len(queue), max_frames)
                out = [queue.popleft() for _ in range(n)]
                self.frames_in += n
                self._counted = False  # the driver copies the counters with these frames
                return out
            self._raise_failure()
            if self._counted:
                self._counted = False
                return []
            self._ready.clear()
            self._signalled = False
            if queue or self._failure is not None or self._counted:
                continue
            await self._ready.wait()

    async def recv(self) -> CanFrame:
        """The next frame; raises :class:`TransportError` once the reader has failed."""
        while not self._queue:
            self._raise_failure()
            self._ready.clear()
            self._signalled = False
            if self._queue or self._failure is not None:
                continue
            await self._ready.wait()
        self.frames_in += 1
        return self._queue.popleft()

    async def send(self, frame: CanFrame) -> None:
        await self.send_many((frame,))

    async def send_many(self, frames: Iterable[CanFrame]) -> None:
        """Send frames in order from one worker thread (bus.send may block on a full TX queue)."""
        bus = self._bus
        if bus is None:
            raise TransportError(f"{self.describe}: send before open")
        msgs = [self._message(f) for f in frames]
        timeout = self.config.send_timeout_s

        def _send_all() -> None:
            for msg in msgs:
                bus.send(msg, timeout=timeout)

        try:
            await asyncio.to_thread(_send_all)
        except (can.CanError, OSError, ValueError) as exc:
            raise TransportError(f"{self.describe}: send failed: {exc}") from exc

    def _message(self, f: CanFrame) -> can.Message:
        return can.Message(
            arbitration_id=f.arbitration_id,
            data=f.data,
            is_fd=f.is_fd,
            is_extended_id=f.is_extended,
            bitrate_switch=f.is_fd and self.config.data_bitrate is not None,
        )

    async def close(self) -> None:
        bus, self._bus = self._bus, None
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, 2 * self.config.poll_s + 1.0)
        drops, self._drops = self._drops, None
        if drops is not None:
            drops.close()
        if bus is not None:
            with contextlib.suppress(can.CanError, OSError):  # a bus that already went away
                bus.shutdown()
        self._queue.clear()


def _bus_off_state(bus: can.BusABC) -> bool:
    try:
        return bool(bus.state == can.BusState.ERROR)
    except (NotImplementedError, can.CanError, OSError):
        return False  # the backend cannot tell: rely on error frames
