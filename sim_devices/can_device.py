"""The device end of a CAN bus for the emulators: the gateway's transport plus error frames.

Shared by the CAN radar and launcher emulators (their ``can_bus_off`` fault).
"""

from __future__ import annotations

import asyncio
from typing import Any

import can

from gateway.sections.transports import CanTransportConfig
from gateway.transports.can import CanTransport
from hilgw.errors import TransportError

__all__ = ["EmulatorCanTransport"]

#: Data of a SocketCAN error frame: CAN_ERR_DLC = 8 bytes (linux/can/error.h);
#: bus-off carries no detail in them.
_ERROR_FRAME_DATA = bytes(8)


class EmulatorCanTransport(CanTransport):
    """The gateway's CAN transport plus what only the device end does: error frames.

    It keeps the ``can.Bus`` it opens (through ``bus_factory``) so that
    :meth:`send_error_frame` can put a SocketCAN-style error frame on it.
    """

    def __init__(self, config: CanTransportConfig) -> None:
        self._raw_bus: can.BusABC | None = None
        super().__init__(config, bus_factory=self._open_bus)

    def _open_bus(self, **kwargs: Any) -> can.BusABC:
        self._raw_bus = can.Bus(**kwargs)
        return self._raw_bus

    async def send_error_frame(self, error_class: int, data: bytes = _ERROR_FRAME_DATA) -> None:
        """An error frame whose id carries ``error_class`` (linux/can/error.h bits, e.g. CAN_ERR_BUSOFF).

        The ``virtual`` and ``udp_multicast`` buses carry it to the other ends as
        a frame with ``is_error_frame`` set; on ``socketcan`` python-can sends it
        with ``CAN_ERR_FLAG`` (a ``vcan`` should pass it on; a real controller
        does not send error frames for software).
        """
        bus = self._raw_bus
        if bus is None:
            raise TransportError(f"{self.describe}: error frame before open")
        msg = can.Message(
            arbitration_id=error_class,
            is_error_frame=True,
            is_extended_id=False,
            dlc=len(data),
            data=data,
        )
        try:
            await asyncio.to_thread(bus.send, msg, self.config.send_timeout_s)
        except (can.CanError, OSError, ValueError) as exc:
            raise TransportError(f"{self.describe}: error frame not sent: {exc}") from exc

    async def close(self) -> None:
        await super().close()
        self._raw_bus = None
