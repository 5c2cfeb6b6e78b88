"""Driver of the land radar front-end on a serial line (docs/icd/serial-radar.md).

The loop: read a chunk, hand it to the codec, take every complete event in one
``drain()`` (runs of track reports come as one numpy batch), normalise the
batch to ECEF in one vectorised call, publish it. No per-report Python work
here beyond what the protocol forces.
"""

from __future__ import annotations

import logging

import numpy as np

from drivers.base import Rejected, Role
from drivers.radar import Status, TrackReportBatch
from drivers.serial_radar import SerialRadarCodec
from gateway.config import DeviceConfig
from gateway.devices.base import DriverContext, RawFrame
from gateway.devices.radar import PolarRadarDriver
from gateway.fusion.api import SensorGeometry
from gateway.transports import StreamTransport, create_transport
from hilgw.errors import TransportError
from hilgw.v1 import health_pb2

log = logging.getLogger(__name__)


class SerialRadarDriver(PolarRadarDriver):
    def __init__(self, config: DeviceConfig, ctx: DriverContext, geometry: SensorGeometry) -> None:
        super().__init__(config, ctx, geometry)
        self._last_seq: int | None = None
        self._codec = SerialRadarCodec(Role.GATEWAY, sensor_id=config.wire_sensor_id)

    async def run(self) -> None:
        transport = create_transport(self.config.transport)
        if not isinstance(transport, StreamTransport):
            raise TransportError(f"{self.config.id}: serial_radar needs a stream transport")
        async with transport:
            self.ctx.stats.set_state(health_pb2.DEVICE_STATE_STARTING, f"open: {transport.describe}")
            self.open_session()
            while True:
                data = await transport.read()
                self.feed(data, self.ctx.wall_ns())

    def open_session(self) -> None:
        """A fresh codec, as after (re)opening the line: a reopened line may
        start mid-stream, so no frame state or sequence is carried over."""
        self._codec = SerialRadarCodec(Role.GATEWAY, sensor_id=self.config.wire_sensor_id)
        self._last_seq = None

    def feed(self, data: bytes, t_rx: int) -> None:
        """Handle one chunk read from the line at ``t_rx`` (UTC ns): count it,
        publish it raw, decode, publish reports. ``hilgw replay`` calls this
        with recorded chunks and times (docs/recording.md)."""
        self.ctx.stats.bytes_in += len(data)
        self.ctx.raw.publish(RawFrame(self.config.id, "serial", t_rx, data))
        self._codec.receive_data(data)
        for event in self._codec.drain():
            self._handle(event, t_rx)

    def _handle(self, event: object, t_rx: int) -> None:
        stats = self.ctx.stats
        if isinstance(event, TrackReportBatch):
            arr = event.reports
            stats.frames_in += len(arr)
            self._count_gaps(arr["sequence"])
            self.publish_tracks(arr, t_rx)
        elif isinstance(event, Status):
            stats.frames_in += 1
            if event.sequence is not None:
                self._count_gaps(np.array([event.sequence], np.uint32))
            self.apply_status(event, t_rx)
        elif isinstance(event, Rejected):
            stats.frames_in += 1
            stats.reject(event.reason)
            stats.last_error = str(event.error)
            self.drop_log.drop(event.reason, event.error)

    def _count_gaps(self, seq: np.ndarray) -> None:
        """Count frames lost upstream from the u32 wire sequence (ICD §6.2).

        A jump of more than 2^16 is taken as a device restart (sequence reset),
        not as loss; a backwards step (impossible on a serial line) likewise.
        """
        seq = seq.astype(np.uint32, copy=False)
        lost = 0
        if self._last_seq is not None:
            lost += _lost_in_step((int(seq[0]) - self._last_seq) % (1 << 32))
        if len(seq) > 1:
            step = seq[1:] - seq[:-1]  # uint32: wraps mod 2^32 as the sequence does
            # The usual batch has no gap: one test instead of the count's five calls (issue 18).
            if not (step == 1).all():
                lost += int(np.where((step > 1) & (step < (1 << 16)), step - 1, 0).sum())
        if lost:
            self.ctx.stats.drop("sequence_gap", lost)
        self._last_seq = int(seq[-1])


def _lost_in_step(step: int) -> int:
    """Frames lost between two sequence numbers ``step`` apart (mod 2^32)."""
    return step - 1 if 1 < step < (1 << 16) else 0
