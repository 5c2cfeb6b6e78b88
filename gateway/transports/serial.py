"""Serial lines through pyserial-asyncio-fast.

``url`` is anything pyserial's ``serial_for_url`` takes: a device path
(``/dev/ttyUSB0``, a pty slave ``/dev/pts/7``) or a URL such as
``socket://127.0.0.1:7001`` (a serial-over-TCP server, or an emulator).
"""

from __future__ import annotations

import asyncio
import contextlib

import serial
import serial_asyncio_fast

from gateway.sections.transports import SerialTransportConfig
from gateway.transports.base import StreamTransport
from hilgw.errors import TransportError

_READ_CHUNK = 65536

#: serial_asyncio_fast reads 1 KiB per readiness callback (its ``_max_read_size``,
#: a TODO upstream), about 16 serial-radar frames: at 10k reports/s every pty
#: read hit that cap, so each 16 reports paid a wake-up, a read, a decode, a
#: normalisation and an MQTT message. One read per wake-up of everything the
#: line discipline holds (n_tty: up to 4 KiB) cuts those per-batch costs by up
#: to 4 (benchmarks/RESULTS.md, issue 18). pyserial with ``timeout = 0`` does
#: a single ``os.read`` per call, so no call ever waits for more.
_READ_PER_WAKEUP = 65536


class SerialTransport(StreamTransport):
    def __init__(self, config: SerialTransportConfig) -> None:
        self.config = config
        self.describe = f"serial {config.url} @{config.baudrate}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        c = self.config
        try:
            self._reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                url=c.url,
                baudrate=c.baudrate,
                bytesize=c.bytesize,
                parity=c.parity,
                stopbits=c.stopbits,
                rtscts=c.rtscts,
                limit=1 << 20,
            )
        except (OSError, serial.SerialException, ValueError) as exc:
            raise TransportError(f"{self.describe}: cannot open: {exc}") from exc
        _read_more_per_wakeup(self._writer.transport)

    @property
    def read_per_wakeup(self) -> int:
        """Bytes the line's transport reads per readiness callback (0: unknown)."""
        t = self._writer.transport if self._writer is not None else None
        return int(getattr(t, "_max_read_size", 0))

    async def read(self) -> bytes:
        if self._reader is None:
            raise TransportError(f"{self.describe}: read before open")
        try:
            data = await self._reader.read(_READ_CHUNK)
        except (OSError, serial.SerialException) as exc:
            raise TransportError(f"{self.describe}: read failed: {exc}") from exc
        if not data:
            raise TransportError(f"{self.describe}: device closed (unplugged or peer gone)")
        return data

    async def write(self, data: bytes) -> None:
        if self._writer is None:
            raise TransportError(f"{self.describe}: write before open")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (OSError, serial.SerialException, ConnectionError) as exc:
            raise TransportError(f"{self.describe}: write failed: {exc}") from exc

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            # Closing a port that already went away may fail: nothing to do then.
            with contextlib.suppress(OSError, TimeoutError, serial.SerialException):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


def _read_more_per_wakeup(transport: asyncio.BaseTransport) -> None:
    # A private attribute of serial_asyncio_fast's SerialTransport (no public
    # setter); if a release renames it the reads stay correct, only smaller.
    if hasattr(transport, "_max_read_size"):
        transport._max_read_size = _READ_PER_WAKEUP
