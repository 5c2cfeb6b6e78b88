"""UDP unicast and multicast datagrams on asyncio's datagram endpoints."""

from __future__ import annotations

import asyncio
import socket
import struct

from gateway.sections.transports import UdpTransportConfig
from gateway.transports.base import Address, DatagramTransport
from gateway.transports.sockdrops import KernelDrops
from hilgw.errors import TransportError


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        owner = self.owner
        if owner._kernel is not None:
            # What the kernel dropped while this reader was behind arrived before
            # this datagram: counted with it (one getsockopt, ~1 us).
            owner.kernel_dropped += owner._kernel.new()
        q = owner._queue
        if q.full():
            # The receiver is behind: the oldest datagram goes, and is counted.
            q.get_nowait()
            owner.dropped += 1
        q.put_nowait((data, (str(addr[0]), int(addr[1]))))

    def error_received(self, exc: Exception) -> None:
        self.owner.errors += 1
        self.owner.last_error = exc


class UdpTransport(DatagramTransport):
    """Bound UDP socket; joins ``group`` on ``interface`` when configured.

    Datagrams wait in a bounded queue (``maxsize``); when it is full the oldest
    goes and :attr:`dropped` counts it. Datagrams the kernel dropped at a full
    receive buffer (``recv_buffer_bytes``; the reader was behind) are counted
    in :attr:`kernel_dropped` (Linux, gateway/transports/sockdrops.py).
    """

    def __init__(self, config: UdpTransportConfig, maxsize: int = 65536) -> None:
        self.config = config
        where = config.group or config.bind_host
        self.describe = f"udp {where}:{config.bind_port}"
        self._queue: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue(maxsize)
        self._transport: asyncio.DatagramTransport | None = None
        self.dropped = 0
        self.kernel_dropped = 0
        self._kernel: KernelDrops | None = None
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
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, c.recv_buffer_bytes)
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
            self._transport, _ = await loop.create_datagram_endpoint(lambda: _Proto(self), sock=sock)
        except OSError as exc:
            sock.close()
            self._close_kernel()
            raise TransportError(f"{self.describe}: cannot open: {exc}") from exc

    async def recv(self) -> tuple[bytes, Address]:
        if self._transport is None:
            raise TransportError(f"{self.describe}: recv before open")
        return await self._queue.get()

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
        self._close_kernel()

    def _close_kernel(self) -> None:
        k, self._kernel = self._kernel, None
        if k is not None:
            k.close()
