"""Transport interfaces: a small Protocol per kind, as python-can's BusABC.

Three kinds carry every device protocol:

* :class:`StreamTransport`: an ordered byte stream (serial line, TCP, pty).
* :class:`DatagramTransport`: whole datagrams (UDP unicast/multicast).
* frame transports (CAN) live in :mod:`gateway.transports.can`.

A transport only moves bytes: it never parses them (the codec does, in the
driver). Errors are translated once, here at the I/O boundary, into
:class:`hilgw.errors.TransportError`. ``close()`` is idempotent.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from hilgw.errors import TransportError

__all__ = ["DatagramTransport", "StreamTransport", "Transport", "TransportError"]

Address = tuple[str, int]


class Transport:
    """Common lifecycle: ``async with transport:`` opens and closes it."""

    #: Short human-readable name for logs and health ("serial /dev/ttyUSB0").
    describe: str = "transport"

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class StreamTransport(Transport):
    """An ordered byte stream."""

    async def read(self) -> bytes:
        """Return the next chunk of bytes (never empty).

        Raises :class:`TransportError` when the peer closed the stream or the
        device went away (a serial adapter unplugged).
        """
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        """Write all of ``data`` (waits for buffer space, bounded by the OS)."""
        raise NotImplementedError


class DatagramTransport(Transport):
    """Whole datagrams, each returned as it arrived."""

    #: Datagrams lost before :meth:`recv` took them (a full queue), since open.
    dropped: int = 0
    #: Datagrams the kernel dropped at a full socket receive buffer, since open.
    kernel_dropped: int = 0

    async def recv(self) -> tuple[bytes, Address]:
        raise NotImplementedError

    async def recv_batch(self, max_datagrams: int = 1024) -> list[tuple[bytes, Address]]:
        """Every datagram already received (at most ``max_datagrams``, in order of
        arrival); waits for at least one. This default returns one."""
        return [await self.recv()]

    async def send(self, data: bytes, addr: Address | None = None) -> None:
        raise NotImplementedError
