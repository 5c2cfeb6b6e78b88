"""Driver of the land radar front-end on CAN / CAN FD (docs/icd/can-radar.md).

The loop: take every frame the transport has buffered in one ``recv_batch()``,
record the batch (one raw record, :func:`pack_raw_frames`), then hand it to
:meth:`CanRadarDriver.receive`: the codec (classic parts joined, completed
reports decoded in one vectorised pass), normalisation to ECEF with the same
:func:`gateway.normalise.normalise_polar` as the serial radar, publish.
Error frames, bus-off and frames the transport buffer could not take are
counted by the transport; their increments go into the same raw record (link
entries) and from there into this device's drop counters.

Replay (docs/recording.md): :meth:`CanRadarDriver.feed_raw` unpacks one
recorded record and calls the same :meth:`~CanRadarDriver.receive` with the
recorded receive time, so a replay publishes the ReportsIn of the live run.
For that the codec's clock is the batch receive time ``t_rx`` in both: live
frames are restamped with it (the reader thread's per-frame stamp is not
recorded), which moves reassembly time-outs by at most one batch latency.

Bus-off (docs/icd/can-radar.md §2): the transport ends the session, the
supervisor restarts the device with a new bus (RESTARTING), and until a frame
arrives on it the device stays DEGRADED ("CAN bus-off ...", DOWN after
``heartbeat_timeout_s``) rather than STARTING; the first frame after it puts
the device back UP. Every session ends with a record marked ``session_end``
(the codec was closed there), so a replay reopens the codec where live did.
"""

from __future__ import annotations

import logging
import struct
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from drivers.base import Rejected, Role
from drivers.can_radar import CanRadarCodec
from drivers.radar import Status, TrackReportBatch
from gateway.config import CanTransportConfig, DeviceConfig
from gateway.devices.base import DriverContext, RawFrame
from gateway.devices.radar import PolarRadarDriver
from gateway.fusion.api import SensorGeometry
from gateway.transports import create_transport
from gateway.transports.can import CAN_LINK_DROPS, FrameTransport
from hilgw.can import CanFrame
from hilgw.errors import RemoteProtocolError, TransportError
from hilgw.v1 import health_pb2

__all__ = ["LINK_EVENTS", "CanRadarDriver", "RawCanRecord", "pack_raw_frames", "unpack_raw_frames"]

log = logging.getLogger(__name__)

_RAW_HEAD = struct.Struct("<IB")
_U32 = struct.Struct("<I")
_FLAG_EXTENDED = 1 << 31
_FLAG_FD = 1 << 30
#: An entry that is not a frame but a link event of the session (the bit
#: SocketCAN uses for its error flag; CAN ids have 29 bits at most).
_FLAG_LINK = 1 << 29
_ID_MASK = _FLAG_LINK - 1
#: Link events by name -> code (the low bits of a link entry's id). Each
#: carries a u32 count: transport counter increments since the previous record
#: (``error_frame``, ``bus_off``, ``queue_full``, ``kernel_overflow``), or 1 for ``session_end``
#: (the transport session ended after this record; the codec was closed).
LINK_EVENTS: dict[str, int] = {
    "error_frame": 1,
    "bus_off": 2,
    "queue_full": 3,
    "session_end": 4,
    "kernel_overflow": 5,
}
_LINK_NAMES = {code: name for name, code in LINK_EVENTS.items()}
#: Transport counters copied into DeviceHealth drops, with their names there.
_TRANSPORT_DROPS = CAN_LINK_DROPS


def pack_raw_frames(
    frames: Sequence[CanFrame], link: Mapping[str, int] | None = None, *, session_end: bool = False
) -> bytes:
    """Frames as one recording record (docs/icd/can-radar.md §7): per frame a
    little-endian u32 id (bit 31 extended, bit 30 FD), a u8 length, the data.

    Then, only when there are any (so a plain batch is frames only), link
    entries: id ``1 << 29 | code`` (:data:`LINK_EVENTS`), length 4, a u32
    count; counts of 0 are left out. The inverse is :func:`unpack_raw_frames`.
    """
    out = bytearray()
    for f in frames:
        fid = f.arbitration_id | (_FLAG_EXTENDED if f.is_extended else 0) | (_FLAG_FD if f.is_fd else 0)
        out += _RAW_HEAD.pack(fid, len(f.data))
        out += f.data
    events = dict(link or {})
    if session_end:
        events["session_end"] = 1
    for name, n in events.items():
        if n:
            out += _RAW_HEAD.pack(_FLAG_LINK | LINK_EVENTS[name], _U32.size)
            out += _U32.pack(n)
    return bytes(out)


class RawCanRecord(NamedTuple):
    """One recording record unpacked (:func:`unpack_raw_frames`)."""

    frames: list[CanFrame]
    #: Link event counts by name (``error_frame``, ``bus_off``, ``queue_full``); absent = 0.
    link: dict[str, int]
    session_end: bool


def unpack_raw_frames(data: bytes, timestamp_ns: int = 0) -> RawCanRecord:
    """The inverse of :func:`pack_raw_frames`; every frame gets ``timestamp_ns``
    (the record's receive time: the format keeps none per frame).

    Raises :class:`RemoteProtocolError` (reason ``framing``) naming the byte
    offset of an entry that runs past the end or a link entry it does not know.
    """
    frames: list[CanFrame] = []
    link: dict[str, int] = {}
    session_end = False
    head, size, end = _RAW_HEAD.unpack_from, _RAW_HEAD.size, len(data)
    pos = 0
    while pos < end:
        if pos + size > end:
            raise RemoteProtocolError(
                f"raw CAN record: entry header at byte {pos} cut off ({end - pos} of {size} bytes)",
                reason="framing",
                offset=pos,
            )
        fid, n = head(data, pos)
        body = pos + size
        if body + n > end:
            raise RemoteProtocolError(
                f"raw CAN record: entry at byte {pos} says {n} data bytes, {end - body} left",
                reason="framing",
                offset=pos,
                value=n,
            )
        if fid & _FLAG_LINK:
            name = _LINK_NAMES.get(fid & _ID_MASK)
            if name is None or n != _U32.size:
                raise RemoteProtocolError(
                    f"raw CAN record: unknown link entry 0x{fid:08X} (length {n}) at byte {pos}",
                    reason="framing",
                    offset=pos,
                    value=fid,
                )
            count = _U32.unpack_from(data, body)[0]
            if name == "session_end":
                session_end = True
            else:
                link[name] = link.get(name, 0) + count
        else:
            frames.append(
                CanFrame(
                    fid & _ID_MASK,
                    data[body : body + n],
                    bool(fid & _FLAG_FD),
                    bool(fid & _FLAG_EXTENDED),
                    timestamp_ns,
                )
            )
        pos = body + n
    return RawCanRecord(frames, link, session_end)


class CanRadarDriver(PolarRadarDriver):
    def __init__(self, config: DeviceConfig, ctx: DriverContext, geometry: SensorGeometry) -> None:
        super().__init__(config, ctx, geometry)
        self._codec = self._new_codec()
        self._seen: Counter[str] = Counter()
        #: The last session ended in bus-off and no frame has arrived since.
        self._after_bus_off = False

    def _new_codec(self) -> CanRadarCodec:
        return CanRadarCodec(
            Role.GATEWAY,
            sensor_id=self.config.wire_sensor_id or 0,
            # The codec takes only the bus's frame format (ICD §3, issue 14).
            fd=isinstance(t := self.config.transport, CanTransportConfig) and t.fd,
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
                    self._take(frames, transport, self.ctx.wall_ns())
            finally:
                self._take([], transport, self.ctx.wall_ns(), session_end=True)

    def open_session(self) -> None:
        """A fresh codec, as after (re)opening the bus: no partial report survives."""
        self._codec = self._new_codec()
        self._seen = Counter()

    def _take(
        self, frames: list[CanFrame], transport: FrameTransport, t_rx: int, *, session_end: bool = False
    ) -> None:
        """Live: record what the bus gave at ``t_rx`` (frames and link events
        since the last record), then handle it exactly as replay will."""
        link = self._link_increments(transport)
        data = pack_raw_frames(frames, link, session_end=session_end)
        self.ctx.raw.publish(RawFrame(self.config.id, "can", t_rx, data))
        # The codec's clock is t_rx, as in replay (module docstring).
        stamped = [CanFrame(f[0], f[1], f[2], f[3], t_rx) for f in frames]
        self.receive(stamped, link, t_rx, session_end=session_end)

    def feed_raw(self, data: bytes, t_rx: int) -> None:
        """Handle one recorded raw record (``RawFrame.data`` as the live loop
        published it) at its receive time ``t_rx``: ``hilgw replay``."""
        try:
            rec = unpack_raw_frames(data, t_rx)
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(
                f"{self.config.id}: {exc}", reason=exc.reason, offset=exc.offset, value=exc.value
            ) from None
        self.receive(rec.frames, rec.link, t_rx, session_end=rec.session_end)
        if rec.session_end:  # live, the supervisor restarts run(), which opens a new session
            self.open_session()

    def receive(
        self, frames: list[CanFrame], link: Mapping[str, int], t_rx: int, *, session_end: bool = False
    ) -> None:
        """The decode path of live and replay alike: count the frames, decode
        them, publish reports and status; then count the link events; at the
        end of a session, close the codec (pending reports are ``incomplete``)."""
        stats = self.ctx.stats
        if frames:
            stats.frames_in += len(frames)
            stats.bytes_in += sum(len(f.data) for f in frames)
            for event in self._codec.receive_frames(frames):
                self._handle(event, t_rx)
        self._count_link(link)
        if session_end:
            for event in self._codec.close():
                self._handle(event, t_rx)

    def _handle(self, event: object, t_rx: int) -> None:
        stats = self.ctx.stats
        if isinstance(event, TrackReportBatch):
            arr = event.reports
            self.publish_tracks(arr, t_rx)
        elif isinstance(event, Status):
            self.apply_status(event, t_rx)
        elif isinstance(event, Rejected):
            stats.reject(event.reason)
            stats.last_error = str(event.error)
            self.drop_log.drop(event.reason, event.error)

    def _link_increments(self, transport: FrameTransport) -> dict[str, int]:
        """Transport counters gone up since the last record (the reader thread writes them)."""
        counters = transport.counters
        out: dict[str, int] = {}
        for key in _TRANSPORT_DROPS:
            now = counters[key]
            if now > self._seen[key]:
                out[key] = now - self._seen[key]
                self._seen[key] = now
        return out

    def _count_link(self, link: Mapping[str, int]) -> None:
        for key, n in link.items():
            if n > 0:
                self.ctx.stats.drop(_TRANSPORT_DROPS[key], n)
        if link.get("bus_off") and not self._after_bus_off:
            self._after_bus_off = True
            self.ctx.stats.set_state(health_pb2.DEVICE_STATE_DEGRADED, "CAN bus-off; restarting the bus")

    def mark_alive(self, t_rx: int) -> None:
        if self._after_bus_off:  # frames again after a bus-off: recovered
            self._after_bus_off = False
            self.ctx.stats.set_state(health_pb2.DEVICE_STATE_UP, "receiving again after CAN bus-off")
        super().mark_alive(t_rx)
