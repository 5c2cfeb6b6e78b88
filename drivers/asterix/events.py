"""Events of the ASTERIX codec (docs/icd/asterix.md).

All quantities are SI: metres, m/s, radians, seconds; times are UTC
nanoseconds resolved from the ASTERIX time of day (seconds since midnight UTC)
with the receive time (docs/icd/asterix.md, "Time of day"). Optional items
that are absent are ``None`` in the per-record events and NaN (or -1 for
integers) in the batch arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hilgw.errors import LocalProtocolError

#: One row per CAT062 record; see SystemTrack062 for the meaning of each field.
SYSTEM_TRACK_DTYPE = np.dtype(
    [
        ("sac", "u1"),
        ("sic", "u1"),
        ("track_number", "u2"),
        ("t_ns", "i8"),
        ("lat_rad", "f8"),
        ("lon_rad", "f8"),
        ("x_m", "f8"),
        ("y_m", "f8"),
        ("vx_mps", "f8"),
        ("vy_mps", "f8"),
        ("flight_level_m", "f8"),
        ("geo_alt_m", "f8"),
        ("sigma_x_m", "f8"),
        ("sigma_y_m", "f8"),
        ("sigma_vx_mps", "f8"),
        ("sigma_vy_mps", "f8"),
        ("tentative", "?"),
        ("coasting", "?"),
        ("ended", "?"),
        ("simulated", "?"),
        ("measured_height_m", "f8"),
        ("altitude_source", "u1"),
        ("monosensor", "?"),
    ]
)

#: One row per CAT048 record; see TargetReport048.
TARGET_REPORT_DTYPE = np.dtype(
    [
        ("sac", "u1"),
        ("sic", "u1"),
        ("t_ns", "i8"),
        ("range_m", "f8"),
        ("azimuth_rad", "f8"),
        ("height_m", "f8"),
        ("track_number", "i4"),
        ("ground_speed_mps", "f8"),
        ("heading_rad", "f8"),
    ]
)


def _finite(name: str, value: float | None) -> None:
    if value is not None and not math.isfinite(value):
        raise LocalProtocolError(f"{name} must be finite", field=name, value=value)


@dataclass(frozen=True, slots=True)
class SystemTrack062:
    """One CAT062 system track record (I062/010, 040, 070, 080, 105 and/or 100, ...).

    ``lat_rad``/``lon_rad``: I062/105, WGS-84. ``x_m``/``y_m``: I062/100,
    Cartesian in the SDPS system plane (its reference point is configuration,
    not on the wire). ``vx_mps``/``vy_mps``: I062/185 (east, north in that
    plane). ``flight_level_m``: I062/136 as pressure altitude in metres
    (FL x 100 ft). ``geo_alt_m``: I062/130, WGS-84 geometric altitude.
    ``sigma_*``: I062/500 APC and ATV (1-sigma). Flags from I062/080:
    ``tentative`` (CNF), ``coasting`` (CST), ``ended`` (TSE), ``simulated`` (SIM).
    ``measured_height_m``: I062/340 HEIGHT, the last 3-D radar height (the one
    height item CAT062 allows above I062/130's 150,000 ft). ``altitude_source``:
    I062/080 SRC, the source of I062/130 (0 no source, 2 3-D radar, ...).
    ``monosensor``: I062/080 MON, the track is built from one sensor only
    (1 monosensor, 0 multisensor).

    The standard's ranges are checked on encoding (CAT062 ed. 1.21): I062/130
    within -1,500..150,000 ft, I062/136 within FL -15..1,500; a value outside
    is a LocalProtocolError, so the sender omits the item instead.
    """

    sac: int
    sic: int
    track_number: int
    t_ns: int
    lat_rad: float | None = None
    lon_rad: float | None = None
    x_m: float | None = None
    y_m: float | None = None
    vx_mps: float | None = None
    vy_mps: float | None = None
    flight_level_m: float | None = None
    geo_alt_m: float | None = None
    sigma_x_m: float | None = None
    sigma_y_m: float | None = None
    sigma_vx_mps: float | None = None
    sigma_vy_mps: float | None = None
    tentative: bool = False
    coasting: bool = False
    ended: bool = False
    simulated: bool = False
    measured_height_m: float | None = None
    altitude_source: int = 0
    monosensor: bool = False

    def __post_init__(self) -> None:
        for name in (
            "measured_height_m",
            "lat_rad",
            "lon_rad",
            "x_m",
            "y_m",
            "vx_mps",
            "vy_mps",
            "flight_level_m",
            "geo_alt_m",
            "sigma_x_m",
            "sigma_y_m",
            "sigma_vx_mps",
            "sigma_vy_mps",
        ):
            _finite(name, getattr(self, name))
        if (self.lat_rad is None) != (self.lon_rad is None):
            raise LocalProtocolError("lat_rad and lon_rad go together (I062/105)", field="lat_rad")
        if (self.x_m is None) != (self.y_m is None):
            raise LocalProtocolError("x_m and y_m go together (I062/100)", field="x_m")
        if (self.vx_mps is None) != (self.vy_mps is None):
            raise LocalProtocolError("vx_mps and vy_mps go together (I062/185)", field="vx_mps")
        if not 0 <= self.altitude_source <= 7:
            raise LocalProtocolError(
                "altitude_source is I062/080 SRC (0..7)", field="altitude_source", value=self.altitude_source
            )


@dataclass(frozen=True, slots=True)
class TargetReport048:
    """One CAT048 monoradar target report (I048/010, 140, 040, 110, 161, 200).

    ``range_m``/``azimuth_rad``: I048/040 (rho, theta; azimuth clockwise from
    north). ``height_m``: I048/110 3-D radar height. ``track_number``:
    I048/161. ``ground_speed_mps``/``heading_rad``: I048/200.
    """

    sac: int
    sic: int
    t_ns: int
    range_m: float
    azimuth_rad: float
    height_m: float | None = None
    track_number: int | None = None
    ground_speed_mps: float | None = None
    heading_rad: float | None = None

    def __post_init__(self) -> None:
        for name in ("range_m", "azimuth_rad", "height_m", "ground_speed_mps", "heading_rad"):
            _finite(name, getattr(self, name))
        if (self.ground_speed_mps is None) != (self.heading_rad is None):
            raise LocalProtocolError("ground speed and heading go together (I048/200)", field="heading_rad")


@dataclass(frozen=True, slots=True)
class ServiceMessage034:
    """CAT034 radar service message: the radar's heartbeat.

    ``message_type`` (I034/000): 1 north marker, 2 sector crossing, 3
    geographical filtering, 4 jamming strobe, 5 solar storm, 6 SSR jamming
    strobe, 7 Mode S jamming strobe. ``sector_azimuth_rad``: I034/020.
    """

    sac: int
    sic: int
    message_type: int
    t_ns: int
    sector_azimuth_rad: float | None = None

    def __post_init__(self) -> None:
        _finite("sector_azimuth_rad", self.sector_azimuth_rad)


@dataclass(frozen=True, slots=True)
class ServiceMessage065:
    """CAT065 SDPS service status: the system-track source's heartbeat.

    ``message_type`` (I065/000): 1 SDPS status, 2 end of batch, 3 service
    status report. ``service_id``: I065/015. ``nogo``: I065/040 NOGO (0
    operational, 1 degraded, 2 NOGO) or None. ``batch_number``: I065/020.
    """

    sac: int
    sic: int
    service_id: int
    message_type: int
    t_ns: int
    nogo: int | None = None
    batch_number: int | None = None


@dataclass(frozen=True, slots=True)
class SystemTrackBatch:
    """All valid CAT062 records of one datagram (``SYSTEM_TRACK_DTYPE`` rows), in wire order."""

    rows: npt.NDArray[np.void]
    t_rx_ns: int

    def __len__(self) -> int:
        return int(self.rows.shape[0])


@dataclass(frozen=True, slots=True)
class TargetReportBatch:
    """All valid CAT048 records of one datagram (``TARGET_REPORT_DTYPE`` rows), in wire order."""

    rows: npt.NDArray[np.void]
    t_rx_ns: int

    def __len__(self) -> int:
        return int(self.rows.shape[0])


AsterixRecordEvent = SystemTrack062 | TargetReport048 | ServiceMessage034 | ServiceMessage065
