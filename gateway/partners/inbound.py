"""A partner's own assessments as a low-trust source (docs/partners.md §6).

A partner publishes ``hilgw.v1.PartnerAssessment`` on ``<prefix>/inbound``
(the only topic its ACL lets it write). Each valid message becomes one batch
of ECEF sensor tracks from the fusion sensor ``partner:<id>``, whose markings
say ``low_trust``: a system track fed only by low-trust sources is never a
cue candidate unless ``[cue.rules] allow_low_trust_only`` says so
(gateway/cue/rules.py). What a partner claims is not believed more than the
profile's sigma floors allow.

Every message is counted on the source's DeviceStats (``frames_in``) and
every rejection by reason (``decode``, ``too_many_tracks``, ``shape``,
``not_finite``, ``stale``, ``future``): a hostile partner can waste its own
messages, never stop the gateway.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from google.protobuf.message import DecodeError

from gateway.bus import Topic
from gateway.devices.base import ReportsIn
from gateway.fusion.api import KIND_SENSOR_TRACK, ReportArrays
from gateway.health import DeviceStats
from gateway.sections.partners import PartnerConfig
from hilgw.v1 import health_pb2, partner_pb2

__all__ = ["InboundRejected", "PartnerInbound", "assessment_to_reports"]

_MAX_BYTES = 4 * 1024 * 1024
_FUTURE_S = 2.0  # clock disagreement tolerated before a message is "from the future"
_COLUMNS = ("track_ref", "x", "y", "z", "vx", "vy", "vz", "sigma_position_m", "sigma_velocity_mps")


class InboundRejected(Exception):
    """A partner message that is not accepted; ``reason`` is the counter name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def assessment_to_reports(
    payload: bytes, config: PartnerConfig, sensor_index: int, now_ns: int
) -> ReportArrays:
    """Validate one PartnerAssessment and turn it into sensor-track reports (pure)."""
    inb = config.inbound
    assert inb is not None
    if len(payload) > _MAX_BYTES:
        raise InboundRejected("too_large", f"{len(payload)} bytes (limit {_MAX_BYTES})")
    try:
        msg = partner_pb2.PartnerAssessment.FromString(payload)
    except DecodeError as exc:
        raise InboundRejected("decode", str(exc)) from None
    n = len(msg.track_ref)
    if n > inb.max_tracks:
        raise InboundRejected("too_many_tracks", f"{n} tracks (limit {inb.max_tracks})")
    lengths = {c: len(getattr(msg, c)) for c in _COLUMNS}
    if any(v != n for v in lengths.values()):
        raise InboundRejected("shape", f"column lengths differ: {lengths}")
    age_s = (now_ns - msg.time_ns) * 1e-9
    if age_s > inb.max_age_s:
        raise InboundRejected("stale", f"{age_s:.1f} s old (limit {inb.max_age_s} s)")
    if age_s < -_FUTURE_S:
        raise InboundRejected("future", f"{-age_s:.1f} s in the future")
    x = np.column_stack([np.asarray(getattr(msg, c), np.float64) for c in ("x", "y", "z", "vx", "vy", "vz")])
    sp = np.asarray(msg.sigma_position_m, np.float64)
    sv = np.asarray(msg.sigma_velocity_mps, np.float64)
    if not (np.isfinite(x).all() and np.isfinite(sp).all() and np.isfinite(sv).all()):
        raise InboundRejected("not_finite", "a state or sigma is NaN or infinite")
    if n and (np.abs(x[:, :3]).max() > 1e8 or np.abs(x[:, 3:]).max() > 1e5):
        raise InboundRejected("out_of_range", "position beyond 1e8 m or velocity beyond 1e5 m/s")
    # Never believe a partner more than the floors: a low-trust source must not
    # pull a fused track harder than its configured accuracy.
    sp = np.maximum(sp, inb.min_sigma_position_m)
    sv = np.maximum(sv, inb.min_sigma_velocity_mps)
    P = np.zeros((n, 6, 6))
    idx = np.arange(3)
    P[:, idx, idx] = (sp**2)[:, None]
    P[:, idx + 3, idx + 3] = (sv**2)[:, None]
    refs = np.asarray(msg.track_ref, np.uint64)
    return ReportArrays(
        sensor=np.full(n, sensor_index, np.int32),
        # The partner's reference, folded to 32 bits, keeps its track apart
        # from its other tracks in association (sensor_track_id).
        sensor_track_id=(refs ^ (refs >> np.uint64(32))).astype(np.uint32),
        kind=np.full(n, KIND_SENSOR_TRACK, np.int8),
        t_ns=np.full(n, msg.time_ns, np.int64),
        x=x,
        P=P,
        quality=np.full(n, 0.5),
        polar=np.full((n, 4), np.nan),
        polar_sigma=np.full((n, 4), np.nan),
    )


class PartnerInbound:
    """The handler of a partner's inbound topic: counts, validates, publishes reports."""

    def __init__(
        self,
        config: PartnerConfig,
        reports: Topic[ReportsIn],
        stats: DeviceStats,
        sensor_index: int,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config
        self.reports = reports
        self.stats = stats
        self.sensor_index = sensor_index
        self.device_id = f"partner:{config.id}"
        self.topic = f"{config.prefix}/inbound"
        self._wall_ns = wall_ns

    def __call__(self, topic: str, payload: bytes) -> None:
        st = self.stats
        now = self._wall_ns()
        st.frames_in += 1
        st.bytes_in += len(payload)
        st.last_frame_time_ns = now
        st.last_frame_mono = time.monotonic()
        try:
            arrays = assessment_to_reports(payload, self.config, self.sensor_index, now)
        except InboundRejected as exc:
            st.drop(exc.reason)
            st.last_error = str(exc)
            if st.frames_in == sum(st.drops.values()):
                st.set_state(health_pb2.DEVICE_STATE_DEGRADED, f"all input rejected ({exc.reason})")
            return
        st.set_state(health_pb2.DEVICE_STATE_UP)
        st.reports_out += len(arrays)
        if len(arrays):
            self.reports.publish(ReportsIn(self.device_id, now, arrays))
