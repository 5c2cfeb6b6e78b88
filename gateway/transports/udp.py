"""UDP unicast and multicast datagrams on asyncio's datagram endpoints."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import deque

from gateway.sections.transports import UdpTransportConfig
from gateway.transports.base import Address, DatagramTransport
from gateway.transports.sockdrops import KernelDrops, set_recv_buffer
from hilgw.errors import TransportError

#: Datagrams read from the socket at one readiness at most (see ``_Proto``): a
#: bound on the driver's turn (32 CAT048 datagrams of 40 records decode and
#: normalise in 2-6 ms here; 256 would be ~10,000 records in one turn, with
#: every other device read waiting behind it). What is left waits in the
#: socket for the next turn. At 50k reports/s 8, 16, 32, 64 and 256 all kept
#: up with no loss (benchmarks/RESULTS.md, issue 18).
DRAIN_MAX = 32


class _Proto(asyncio.DatagramProtocol):
    """Queues each datagram, and drains the socket at each readiness.

    asyncio's datagram transport reads one datagram per event-loop turn; at
    tens of thousands of datagrams a second that is a loop turn, a wake-up
    of the reader and a decode each (issue 18). Here the rest of what the
    socket holds (up to ``DRAIN_MAX``) is read at once with plain
    ``recvfrom`` on the same non-blocking socket, so the driver takes them as
    one batch (:meth:`UdpTransport.recv_batch`).
    """

    def __init__(self, owner: UdpTransport, sock: socket.socket) -> None:
        self.owner = owner
        self.sock = sock

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        owner = self.owner
        self._put(data, addr)
        recvfrom = self.sock.recvfrom
        for _ in range(DRAIN_MAX - 1):
            try:
                data, addr = recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # what asyncio's reader would hand to error_received
                self.error_received(exc)
                break
            self._put(data, addr)
        if owner._kernel is not None:
            # What the kernel dropped while this reader was behind arrived before
            # the datagram that ended the drain: counted now (one getsockopt, ~1 us).
            owner.kernel_dropped += owner._kernel.new()
        if owner._waiter is not None and not owner._waiter.done():
            owner._waiter.set_result(None)

    def _put(self, data: bytes, addr: tuple[str, int]) -> None:
        owner = self.owner
        q = owner._queue
        if len(q) >= owner.maxsize:
            # The receiver is behind: the oldest datagram goes, and is counted.
            q.popleft()
            owner.dropped += 1
        q.append((data, (str(addr[0]), int(addr[1]))))

    def error_received(self, exc: Exception) -> None:
        self.owner.errors += 1
        self.owner.last_error = exc


class UdpTransport(DatagramTransport):
    """Bound UDP socket; joins ``group`` on ``interface`` when configured.

    Datagrams wait in a bounded queue (``maxsize``); when it is full the oldest
    goes and :attr:`dropped` counts it. :meth:`recv_batch` takes every queued
    datagram at once (the socket is drained at each readiness, ``_Proto``).
    Datagrams the kernel dropped at a full receive buffer
    (``recv_buffer_bytes``; the reader was behind) are counted in
    :attr:`kernel_dropped` (Linux, gateway/transports/sockdrops.py).
    """

    def __init__(self, config: UdpTransportConfig, maxsize: int = 65536) -> None:
        self.config = config
        where = config.group or config.bind_host
        self.describe = f"udp {where}:{config.bind_port}"
        self.maxsize = maxsize
        self._queue: deque[tuple[bytes, Address]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self.dropped = 0
        self.kernel_dropped = 0
        self._kernel: KernelDrops | None = None
        #: SO_RCVBUF the kernel gave the socket (read back at open; 0 before).
        self.recv_buffer = 0
        self.errors = 0
        self.last_error: Exception | None = None

    @property
    def local_address(self) -> Address:
        if self._transport is None:
            raise TransportError(f"{self.describe}: not open")
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    async def open(self) -> None:
        c = self.config
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.recv_buffer = set_recv_buffer(sock, c.recv_buffer_bytes, self.describe)
            if c.group:
                sock.bind((c.group, c.bind_port))
                mreq = struct.pack("4s4s", socket.inet_aton(c.group), socket.inet_aton(c.interface))
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(c.interface))
            else:
                sock.bind((c.bind_host, c.bind_port))
            sock.setblocking(False)
            self._kernel = KernelDrops.of(sock)
            loop = asyncio.get_running_loop()
            self._transport, _ = await loop.create_datagram_endpoint(lambda: _Proto(self, sock), sock=sock)
        except OSError as exc:
            sock.close()
            self._close_kernel()
            raise TransportError(f"{self.describe}: cannot open: {exc}") from exc

    async def _wait(self) -> None:
        while not self._queue:
            if self._transport is None:
                raise TransportError(f"{self.describe}: recv before open")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def recv(self) -> tuple[bytes, Address]:
        await self._wait()
        return self._queue.popleft()

    async def recv_batch(self, max_datagrams: int = 1024) -> list[tuple[bytes, Address]]:
        """Every queued datagram (at most ``max_datagrams``), oldest first; waits for one."""
        await self._wait()
        q = self._queue
        if len(q) <= max_datagrams:
            out = list(q)
            q.clear()
            return out
        return [q.popleft() for _ in range(max_datagrams)]

    async def send(self, data: bytes, addr: Address | None = None) -> None:
        if self._transport is None:
            raise TransportError(f"{self.describe}: send before open")
        if addr is None:
            if self.config.remote_host is None or self.config.remote_port is None:
                raise TransportError(f"{self.describe}: no destination (remote_host/remote_port unset)")
            addr = (self.config.remote_host, self.config.remote_port)
        self._transport.sendto(data, addr)

    async def close(self) -> None:
        t, self._transport = self._transport, None
        if t is not None:
            t.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)  # a recv waiting now raises: not open
        self._close_kernel()

    def _close_kernel(self) -> None:
        k, self._kernel = self._kernel, None
        if k is not None:
            k.close()
