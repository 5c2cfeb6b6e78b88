"""Events of the serial radar codec (docs/icd/serial-radar.md §5), in SI units.

Events are frozen, slotted dataclasses validated on construction: a NaN, an
infinity or a value the ICD cannot carry raises :class:`LocalProtocolError`
naming the field and the value. Construction also quantises each field to its
wire LSB once, so encoding is a single ``struct.pack``.

``sensor_id`` and ``sequence`` come from the frame header on receive; on send
the codec writes its own (a ``sensor_id`` set on the event must match the
codec's; ``sequence`` is assigned by the codec and ignored on the event).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drivers.base import I64_MAX, U16_MAX, U32_MAX
from drivers.radar import TRACK_BATCH_DTYPE, TrackReportBatch, bad_value, check_bool, check_int
from drivers.serial_radar.icd import CEIL_SLACK, TRACK_SCALED, ScaledField

__all__ = ["TrackReport", "batch_reports", "quantise"]


def quantise(spec: ScaledField, value: float, *, cls: str = "TrackReport") -> int:
    """Raw wire value of ``value`` for field ``spec`` (ICD §5.1), or LocalProtocolError.

    ``round`` is to nearest (ties to even, as ``numpy.rint``), ``ceil`` rounds
    sigmas up so quantisation never understates an uncertainty, ``bam`` maps
    [0, 2π] onto [0, 2^32] and wraps 2^32 to 0.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise bad_value(cls, spec.attr, value, "is not a number")
    v = float(value)
    if not math.isfinite(v):
        raise bad_value(cls, spec.attr, value, "is not finite")
    scaled = v / spec.lsb
    if spec.mode == "ceil":
        # Any positive sigma, however small, is at least one LSB on the wire.
        raw = max(math.ceil(scaled - CEIL_SLACK), 1) if v > 0 else math.ceil(scaled)
    else:
        raw = round(scaled)
    if not spec.lo <= raw <= spec.hi:
        raise bad_value(
            cls, spec.attr, value, f"outside [{spec.lo * spec.lsb:.9g}, {spec.hi * spec.lsb:.9g}] {spec.unit}"
        )
    return raw & 0xFFFFFFFF if spec.mode == "bam" else raw


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackReport:
    """One sensor-local track (ICD §5.1): polar position and rates in the sensor's frame.

    Frame: forward/right/up of the sensor; ``azimuth_rad = atan2(right, forward)``
    in [0, 2π] (clockwise seen from above), ``elevation_rad`` in [-π/2, π/2].
    All sigmas are 1-σ and must be > 0 (rate sigmas may be 0 only when
    ``rates_valid`` is False). When ``rates_valid`` is False the two angle
    rates and their sigmas must be 0. ``quality`` is a fraction in [0, 1].
    """

    sensor_track_id: int
    sensor_time_ns: int
    range_m: float
    azimuth_rad: float
    elevation_rad: float
    range_rate_mps: float
    sigma_range_m: float
    sigma_azimuth_rad: float
    sigma_elevation_rad: float
    sigma_range_rate_mps: float
    quality: float
    azimuth_rate_radps: float = 0.0
    elevation_rate_radps: float = 0.0
    sigma_azimuth_rate_radps: float = 0.0
    sigma_elevation_rate_radps: float = 0.0
    rates_valid: bool = False
    coasting: bool = False
    sensor_id: int | None = None
    sequence: int | None = None
    #: Raw wire values of the scaled fields, in TRACK_SCALED order (set on construction).
    wire: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cls = "TrackReport"
        check_int(cls, "sensor_track_id", self.sensor_track_id, 0, U32_MAX)
        check_int(cls, "sensor_time_ns", self.sensor_time_ns, 0, I64_MAX)
        check_bool(cls, "rates_valid", self.rates_valid)
        check_bool(cls, "coasting", self.coasting)
        if self.sensor_id is not None:
            check_int(cls, "sensor_id", self.sensor_id, 0, U16_MAX)
        if self.sequence is not None:
            check_int(cls, "sequence", self.sequence, 0, U32_MAX)
        raws = []
        for spec in TRACK_SCALED:
            value = getattr(self, spec.attr)
            if spec.rate and not self.rates_valid:
                # ICD §5.1: rate fields are sent as 0 when the rates are not valid.
                if value != 0:
                    raise bad_value(cls, spec.attr, value, "must be 0 when rates_valid is False")
                raws.append(0)
                continue
            raws.append(quantise(spec, value))
        object.__setattr__(self, "wire", tuple(raws))

    @classmethod
    def from_row(cls, row: Any, sensor_id: int | None = None) -> TrackReport:
        """Build an event from one row of a :data:`TRACK_BATCH_DTYPE` array."""
        kw: dict[str, Any] = {name: row[name].item() for name in TRACK_BATCH_DTYPE.names or ()}
        return cls(sensor_id=sensor_id, **kw)


def batch_reports(batch: TrackReportBatch) -> list[TrackReport]:
    """A batch as individual events (slow path: for tests, logging and tools)."""
    return [TrackReport.from_row(row, batch.sensor_id) for row in batch.reports]
