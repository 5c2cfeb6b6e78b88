"""Radar events shared by every radar protocol: the batch of sensor-local tracks and the status.

The serial radar (docs/icd/serial-radar.md §5), the CAN radar
(docs/icd/can-radar.md §4) and the radars described by configuration
(drivers/described/) all decode to these, so the gateway normalises every
radar with the same code and no protocol package imports another's events.
Field ranges are the ICD's: ``Status`` (serial §5.2, CAN §4.2) carries the
same fields in both.

Events are frozen, slotted dataclasses validated on construction: a value the
ICD cannot carry raises :class:`LocalProtocolError` naming the field and the
value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from drivers.base import I64_MAX, U16_MAX, U32_MAX
from hilgw.errors import LocalProtocolError

__all__ = [
    "TRACK_BATCH_DTYPE",
    "SensorState",
    "Status",
    "TrackReportBatch",
    "bad_value",
    "check_bool",
    "check_int",
]


class SensorState(enum.IntEnum):
    """STATUS ``state`` values (serial ICD §5.2; the CAN ICD's State signal, §4.2)."""

    OK = 0
    DEGRADED = 1
    FAULT = 2
    INITIALISING = 3


#: Columns of :attr:`TrackReportBatch.reports` (SI float64 unless noted).
#: ``quality`` is a fraction 0..1; rate columns and their sigmas are 0 when
#: ``rates_valid`` is False.
TRACK_BATCH_DTYPE = np.dtype(
    [
        ("sensor_track_id", "<u4"),
        ("sequence", "<u4"),
        ("sensor_time_ns", "<i8"),
        ("range_m", "<f8"),
        ("azimuth_rad", "<f8"),
        ("elevation_rad", "<f8"),
        ("range_rate_mps", "<f8"),
        ("azimuth_rate_radps", "<f8"),
        ("elevation_rate_radps", "<f8"),
        ("sigma_range_m", "<f8"),
        ("sigma_azimuth_rad", "<f8"),
        ("sigma_elevation_rad", "<f8"),
        ("sigma_range_rate_mps", "<f8"),
        ("sigma_azimuth_rate_radps", "<f8"),
        ("sigma_elevation_rate_radps", "<f8"),
        ("quality", "<f8"),
        ("rates_valid", "?"),
        ("coasting", "?"),
    ]
)


def bad_value(cls: str, name: str, value: object, why: str) -> LocalProtocolError:
    return LocalProtocolError(f"{cls}.{name} = {value!r} {why}", reason="range", field=name, value=value)


def check_int(cls: str, name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise bad_value(cls, name, value, "is not an integer")
    v = int(value)
    if not lo <= v <= hi:
        raise bad_value(cls, name, value, f"outside [{lo}, {hi}]")
    return v


def check_bool(cls: str, name: str, value: object) -> None:
    if not isinstance(value, bool | np.bool_):
        raise bad_value(cls, name, value, "is not a bool")


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """Heartbeat and health of the radar front-end (ICD §5.2), sent at 1 Hz and on change."""

    sensor_time_ns: int
    state: SensorState
    time_sync_locked: bool
    radiating: bool
    track_count: int
    uptime_s: int
    fault_code: int = 0
    sensor_id: int | None = None
    sequence: int | None = None

    def __post_init__(self) -> None:
        cls = "Status"
        check_int(cls, "sensor_time_ns", self.sensor_time_ns, 0, I64_MAX)
        if isinstance(self.state, bool) or not isinstance(self.state, int):
            raise bad_value(cls, "state", self.state, "is not a SensorState")
        try:
            object.__setattr__(self, "state", SensorState(self.state))
        except ValueError:
            raise bad_value(cls, "state", self.state, "is not a SensorState") from None
        check_bool(cls, "time_sync_locked", self.time_sync_locked)
        check_bool(cls, "radiating", self.radiating)
        check_int(cls, "track_count", self.track_count, 0, U16_MAX)
        check_int(cls, "uptime_s", self.uptime_s, 0, U32_MAX)
        check_int(cls, "fault_code", self.fault_code, 0, U32_MAX)
        if self.sensor_id is not None:
            check_int(cls, "sensor_id", self.sensor_id, 0, U16_MAX)
        if self.sequence is not None:
            check_int(cls, "sequence", self.sequence, 0, U32_MAX)


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class TrackReportBatch:
    """A run of consecutive TRACK_REPORTs from one sensor, decoded at once (gateway hot path).

    ``reports`` is a :data:`TRACK_BATCH_DTYPE` array in arrival order; rows that
    failed a check were turned into :class:`~drivers.base.Rejected` events and
    are not here.
    """

    sensor_id: int
    reports: npt.NDArray[np.void]

    def __post_init__(self) -> None:
        if self.reports.dtype != TRACK_BATCH_DTYPE:
            raise LocalProtocolError(
                f"TrackReportBatch.reports has dtype {self.reports.dtype}, expected TRACK_BATCH_DTYPE",
                field="reports",
            )

    def __len__(self) -> int:
        return len(self.reports)

    def __repr__(self) -> str:
        return f"TrackReportBatch(sensor_id={self.sensor_id}, rows={len(self.reports)})"
