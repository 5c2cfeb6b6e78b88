"""In-memory transports for tests: two ends joined back to back in one process.

The in-process counterpart of python-can's ``virtual`` bus: every driver can be
tested without a port, a socket or a clock.
"""

from __future__ import annotations

import asyncio

from gateway.transports.base import Address, DatagramTransport, StreamTransport
from hilgw.errors import TransportError

_EOF = b""


class MemoryStream(StreamTransport):
    """One end of an in-memory byte pipe; make both ends with :func:`stream_pair`."""

    def __init__(self, name: str = "memory") -> None:
        self.describe = f"memory {name}"
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.peer: MemoryStream | None = None
        self._open = False

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        if self._open and self.peer is not None:
            self.peer._inbox.put_nowait(_EOF)
        self._open = False

    async def read(self) -> bytes:
        data = await self._inbox.get()
        if data == _EOF:
            raise TransportError(f"{self.describe}: peer closed the stream")
        return data

    async def write(self, data: bytes) -> None:
        if not self._open or self.peer is None:
            raise TransportError(f"{self.describe}: write on a closed stream")
        if data:
            self.peer._inbox.put_nowait(bytes(data))

    def feed(self, data: bytes) -> None:
        """Inject bytes as if the peer had written them (tests)."""
        self._inbox.put_nowait(bytes(data))


def stream_pair(name: str = "memory") -> tuple[MemoryStream, MemoryStream]:
    a, b = MemoryStream(f"{name}/a"), MemoryStream(f"{name}/b")
    a.peer, b.peer = b, a
    return a, b


class MemoryDatagram(DatagramTransport):
    """One end of an in-memory datagram link; make both with :func:`datagram_pair`."""

    def __init__(self, addr: Address) -> None:
        self.addr = addr
        self.describe = f"memory-dgram {addr[0]}:{addr[1]}"
        self._inbox: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.peer: MemoryDatagram | None = None

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def recv(self) -> tuple[bytes, Address]:
        return await self._inbox.get()

    async def send(self, data: bytes, addr: Address | None = None) -> None:
        if self.peer is None:
            raise TransportError(f"{self.describe}: no peer")
        self.peer._inbox.put_nowait((bytes(data), self.addr))


def datagram_pair() -> tuple[MemoryDatagram, MemoryDatagram]:
    a, b = MemoryDatagram(("memory", 1)), MemoryDatagram(("memory", 2))
    a.peer, b.peer = b, a
    return a, b
