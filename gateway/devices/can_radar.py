"""Driver of the land radar front-end on CAN / CAN FD (docs/icd/can-radar.md).

The loop: take every frame the transport has buffered in one ``recv_batch()``,
hand the list to the codec (classic parts joined, completed reports decoded
in one vectorised pass), normalise each batch to ECEF with the same
:func:`gateway.normalise.normalise_polar` as the serial radar, publish.
Error frames, bus-off and frames the transport buffer could not take are
counted by the transport and copied into this device's drop counters.

Bus-off (docs/icd/can-radar.md §2): the transport ends the session, the
supervisor restarts the device with a new bus (RESTARTING), and until a frame
arrives on it the device stays DEGRADED ("CAN bus-off ...", DOWN after
``heartbeat_timeout_s``) rather than STARTING; the first frame after it puts
the device back UP.
"""

from __future__ import annotations

import logging
import struct
from collections import Counter

from drivers.base import Rejected, Role
from drivers.can_radar import CanFrame, CanRadarCodec, Status, TrackReportBatch
from gateway.config import DeviceConfig
from gateway.devices.base import DriverContext, RawFrame
from gateway.devices.radar import PolarRadarDriver
from gateway.fusion.api import SensorGeometry
from gateway.transports import create_transport
from gateway.transports.can import FrameTransport
from hilgw.errors import TransportError
from hilgw.v1 import health_pb2

__all__ = ["CanRadarDriver", "pack_raw_frames"]

log = logging.getLogger(__name__)

_RAW_HEAD = struct.Struct("<IB")
_FLAG_EXTENDED = 1 << 31
_FLAG_FD = 1 << 30
#: Transport counters copied into DeviceHealth drops, with their names there.
_TRANSPORT_DROPS = {"error_frame": "can_error_frame", "bus_off": "can_bus_off", "queue_full": "queue_full"}


def pack_raw_frames(frames: list[CanFrame]) -> bytes:
    """Frames as one recording record (docs/icd/can-radar.md §7): per frame a
    little-endian u32 id (bit 31 extended, bit 30 FD), a u8 length, the data."""
    out = bytearray()
    for f in frames:
        fid = f.arbitration_id | (_FLAG_EXTENDED if f.is_extended else 0) | (_FLAG_FD if f.is_fd else 0)
        out += _RAW_HEAD.pack(fid, len(f.data))
        out += f.data
    return bytes(out)


class CanRadarDriver(PolarRadarDriver):
    def __init__(self, config: DeviceConfig, ctx: DriverContext, geometry: SensorGeometry) -> None:
        super().__init__(config, ctx)
        self.geometry = geometry
        self._codec = self._new_codec()
        self._seen: Counter[str] = Counter()
        #: The last session ended in bus-off and no frame has arrived since.
        self._after_bus_off = False

    def _new_codec(self) -> CanRadarCodec:
        return CanRadarCodec(
            Role.GATEWAY,
            sensor_id=self.config.wire_sensor_id or 0,
            id_offset=self.config.can_id_offset,
        )

    async def run(self) -> None:
        transport = create_transport(self.config.transport)
        if not isinstance(transport, FrameTransport):
            raise TransportError(f"{self.config.id}: can_radar needs a CAN transport")
        async with transport:
            if self._after_bus_off:
                self.ctx.stats.set_state(
                    health_pb2.DEVICE_STATE_DEGRADED,
                    f"CAN bus-off; reopened {transport.describe}, no frame yet",
                )
            else:
                self.ctx.stats.set_state(health_pb2.DEVICE_STATE_STARTING, f"open: {transport.describe}")
            self.open_session()
            try:
                while True:
                    frames = await transport.recv_batch()
                    self.feed(frames, self.ctx.wall_ns())
                    self._sync_counters(transport)
            finally:
                self._sync_counters(transport)
                for event in self._codec.close():
                    self._handle(event, self.ctx.wall_ns())

    def open_session(self) -> None:
        """A fresh codec, as after (re)opening the bus: no partial report survives."""
        self._codec = self._new_codec()
        self._seen = Counter()

    def feed(self, frames: list[CanFrame], t_rx: int) -> None:
        """Handle frames received by ``t_rx`` (UTC ns): count, record, decode, publish.
        ``hilgw replay`` can call this with recorded frames and times."""
        stats = self.ctx.stats
        stats.frames_in += len(frames)
        stats.bytes_in += sum(len(f.data) for f in frames)
        self.ctx.raw.publish(RawFrame(self.config.id, "can", t_rx, pack_raw_frames(frames)))
        for event in self._codec.receive_frames(frames):
            self._handle(event, t_rx)

    def _handle(self, event: object, t_rx: int) -> None:
        stats = self.ctx.stats
        if isinstance(event, TrackReportBatch):
            arr = event.reports
            self.publish_tracks(arr, t_rx)
        elif isinstance(event, Status):
            self.apply_status(event, t_rx)
        elif isinstance(event, Rejected):
            stats.drop(event.reason)
            stats.last_error = str(event.error)
            log.debug("%s: %s", self.config.id, event.error)

    def _sync_counters(self, transport: FrameTransport) -> None:
        counters = transport.counters
        for key, name in _TRANSPORT_DROPS.items():
            delta = counters[key] - self._seen[key]
            if delta > 0:
                self.ctx.stats.drop(name, delta)
                self._seen[key] = counters[key]
        if counters["bus_off"] and not self._after_bus_off:
            self._after_bus_off = True
            self.ctx.stats.set_state(health_pb2.DEVICE_STATE_DEGRADED, "CAN bus-off; restarting the bus")

    def mark_alive(self, t_rx: int) -> None:
        if self._after_bus_off:  # frames again after a bus-off: recovered
            self._after_bus_off = False
            self.ctx.stats.set_state(health_pb2.DEVICE_STATE_UP, "receiving again after CAN bus-off")
        super().mark_alive(t_rx)
