"""What the serial and the CAN radar drivers do alike with decoded events.

Both codecs yield the same ``TrackReportBatch`` (``TRACK_BATCH_DTYPE``) and
``Status`` events (docs/icd/serial-radar.md, docs/icd/can-radar.md), so the
stale check, normalisation, publishing and the health mapping live here once.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import numpy.typing as npt

from drivers.radar import SensorState, Status
from gateway.config import DeviceConfig
from gateway.devices.base import DeviceDriver, DriverContext, DriverServices, ReportsIn
from gateway.fusion.api import SensorGeometry
from gateway.normalise import normalise_polar
from hilgw.geo import site_geometry
from hilgw.v1 import health_pb2

_STATE_FROM_STATUS: dict[int, int] = {
    SensorState.OK: health_pb2.DEVICE_STATE_UP,
    SensorState.DEGRADED: health_pb2.DEVICE_STATE_DEGRADED,
    SensorState.FAULT: health_pb2.DEVICE_STATE_DEGRADED,  # link alive, device unhealthy
    SensorState.INITIALISING: health_pb2.DEVICE_STATE_STARTING,
}


class PolarRadarDriver(DeviceDriver):
    """Base of the drivers whose codec yields polar track batches and STATUS."""

    geometry: SensorGeometry

    def __init__(self, config: DeviceConfig, ctx: DriverContext, geometry: SensorGeometry) -> None:
        super().__init__(config, ctx)
        self.geometry = geometry

    @classmethod
    def build(cls, config: DeviceConfig, ctx: DriverContext, services: DriverServices) -> Self:
        """The sensor's geometry from its ``[site]`` (the config requires one),
        registered with the fusion engine before the driver exists."""
        s = config.site
        if s is None:  # the config's protocol check makes this unreachable
            raise ValueError(f"{config.id}: a radar needs a site")
        geometry = site_geometry(config.id, s.lat_deg, s.lon_deg, s.alt_m, s.yaw_deg, s.pitch_deg, s.roll_deg)
        ctx.sensor_index = services.add_sensor(geometry)
        return cls(config, ctx, geometry)

    def publish_tracks(self, arr: npt.NDArray[np.void], t_rx: int) -> None:
        """Drop stale rows (counted), normalise the rest in one call, publish."""
        stats = self.ctx.stats
        self.mark_alive(t_rx)
        # Stale: sensor time too far from the gateway clock (either way). The
        # age grows with the distance from t_rx, so when the oldest and the
        # newest rows are fresh all are (the usual case: two reductions
        # instead of a mask, issue 18); the same float test either way.
        max_age = self.config.max_report_age_s
        times = arr["sensor_time_ns"]
        if len(arr) and not (
            abs(t_rx - int(times.min())) * 1e-9 <= max_age and abs(t_rx - int(times.max())) * 1e-9 <= max_age
        ):
            fresh = np.abs(t_rx - times.astype(np.int64)) * 1e-9 <= max_age
            stats.drop("stale", int(len(arr) - np.count_nonzero(fresh)))
            arr = arr[fresh]
        if len(arr):
            reports = normalise_polar(self.geometry, self.ctx.sensor_index, arr)
            stats.reports_out += len(arr)
            self.ctx.reports.publish(ReportsIn(self.config.id, t_rx, reports, source=arr))

    def apply_status(self, event: Status, t_rx: int) -> None:
        """The device's own STATUS becomes the device state in health."""
        stats = self.ctx.stats
        self.mark_alive(t_rx)
        stats.device_time_ns = event.sensor_time_ns
        state = _STATE_FROM_STATUS.get(int(event.state), int(health_pb2.DEVICE_STATE_DEGRADED))
        detail = f"device {event.state.name}"
        if event.fault_code:
            detail += f", fault code {event.fault_code}"
        if not event.time_sync_locked:
            detail += ", time sync lost"
        stats.set_state(state, detail)

    def mark_alive(self, t_rx: int) -> None:
        stats = self.ctx.stats
        stats.last_frame_time_ns = t_rx
        stats.last_frame_mono = self.ctx.mono()
        if stats.state in (health_pb2.DEVICE_STATE_STARTING, health_pb2.DEVICE_STATE_DOWN):
            stats.set_state(health_pb2.DEVICE_STATE_UP, "receiving")
