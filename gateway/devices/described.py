"""Drivers of radars integrated by description, not code (issue 19).

``can_dbc_radar`` (a vendor DBC and a signal mapping) and ``binary_radar`` (a
struct-like layout) get their codec compiled at config load
(``DeviceConfig.compiled_codec``, drivers/described); the drivers here only
move frames: record them raw, decode, publish through the shared
:class:`~gateway.devices.radar.PolarRadarDriver` path (stale check,
normalisation to ECEF, health), exactly as the project's own radars do.
Raw records: ``serial`` chunks as read; CAN batches in the can_radar record
format (gateway/devices/can_radar.py ``pack_raw_frames``).
"""

from __future__ import annotations

from drivers.base import Rejected, Role
from drivers.described import BinaryRadarCodec, DbcRadarCodec
from gateway.devices.base import RawFrame
from gateway.devices.can_radar import pack_raw_frames, unpack_raw_frames
from gateway.devices.radar import PolarRadarDriver
from gateway.transports import StreamTransport, create_transport
from gateway.transports.can import CAN_LINK_DROPS, FrameTransport
from hilgw.errors import TransportError
from hilgw.v1 import health_pb2

__all__ = ["BinaryRadarDriver", "DbcRadarDriver"]


class _DescribedDriver(PolarRadarDriver):
    def handle(self, events: list[object], t_rx: int) -> None:
        stats = self.ctx.stats
        for event in events:
            if isinstance(event, Rejected):
                stats.reject(event.reason)  # a codec rejection (all-rejected health)
                stats.last_error = str(event.error)
                self.drop_log.drop(event.reason, event.error)
            else:  # a TrackReportBatch
                self.publish_tracks(event.reports, t_rx)  # type: ignore[attr-defined]


class DbcRadarDriver(_DescribedDriver):
    """A CAN radar described by its vendor's DBC (protocol ``can_dbc_radar``)."""

    def _codec(self) -> DbcRadarCodec:
        return DbcRadarCodec(Role.GATEWAY, self.config.compiled_codec, id_offset=self.config.can_id_offset)

    async def run(self) -> None:
        transport = create_transport(self.config.transport)
        if not isinstance(transport, FrameTransport):  # the config check makes this unreachable
            raise TransportError(f"{self.config.id}: can_dbc_radar needs a CAN transport")
        codec = self._codec()
        seen: dict[str, int] = {}
        async with transport:
            self.ctx.stats.set_state(health_pb2.DEVICE_STATE_STARTING, f"open: {transport.describe}")
            while True:
                frames = await transport.recv_batch()
                t_rx = self.ctx.wall_ns()
                # Frames lost below the codec (kernel overflow, a full reader
                # queue) and bus errors: counted, never silent.
                for key, n in transport.counter_increments(seen).items():
                    self.ctx.stats.drop(CAN_LINK_DROPS.get(key, key), n)
                self.ctx.raw.publish(RawFrame(self.config.id, "can", t_rx, pack_raw_frames(frames)))
                self.receive(codec, frames, t_rx)

    def receive(self, codec: DbcRadarCodec, frames: list, t_rx: int) -> None:  # type: ignore[type-arg]
        """Decode one batch of frames received at ``t_rx`` and publish."""
        stats = self.ctx.stats
        stats.frames_in += len(frames)
        stats.bytes_in += sum(len(f.data) for f in frames)
        self.handle(list(codec.receive_frames(f._replace(timestamp_ns=t_rx) for f in frames)), t_rx)

    def open_session(self) -> None:
        """Nothing to reset: one track per frame, no state between frames (``hilgw replay``)."""

    def feed_raw(self, data: bytes, t_rx: int) -> None:
        """``hilgw replay``: one recorded record at its receive time."""
        self.receive(self._codec(), unpack_raw_frames(data, t_rx).frames, t_rx)


class BinaryRadarDriver(_DescribedDriver):
    """A serial radar described by a binary layout (protocol ``binary_radar``)."""

    _session: BinaryRadarCodec | None = None

    def open_session(self) -> None:
        """A fresh codec after (re)opening the line: no partial frame survives."""
        self._session = BinaryRadarCodec(Role.GATEWAY, self.config.compiled_codec, label=self.config.id)

    async def run(self) -> None:
        transport = create_transport(self.config.transport)
        if not isinstance(transport, StreamTransport):  # the config check makes this unreachable
            raise TransportError(f"{self.config.id}: binary_radar needs a stream transport")
        async with transport:
            self.ctx.stats.set_state(health_pb2.DEVICE_STATE_STARTING, f"open: {transport.describe}")
            self.open_session()
            while True:
                data = await transport.read()
                self.feed(data, self.ctx.wall_ns())

    def feed(self, data: bytes, t_rx: int) -> None:
        """One chunk read at ``t_rx`` (live and ``hilgw replay``)."""
        if self._session is None:
            self.open_session()
        codec = self._session
        assert codec is not None
        self.ctx.stats.bytes_in += len(data)
        self.ctx.raw.publish(RawFrame(self.config.id, "serial", t_rx, data))
        codec.receive_data(data, t_rx)
        events = codec.drain()
        self.ctx.stats.frames_in += sum(len(e.reports) if not isinstance(e, Rejected) else 1 for e in events)
        self.handle(list(events), t_rx)

    def feed_raw(self, data: bytes, t_rx: int) -> None:
        """``hilgw replay``: a recorded chunk is what :meth:`feed` took live."""
        self.feed(data, t_rx)
