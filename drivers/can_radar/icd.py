"""The CAN radar ICD (docs/icd/can-radar.md) as data: the two shipped DBC
files, loaded once with cantools and compiled once into numpy layouts.

Message and signal names below are the DBC's; every bit position, scale and
range comes from the DBC files next to this module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from hilgw.can import MessageLayout, compile_message, load_packaged_dbc

__all__ = [
    "CLASSIC_DB",
    "CLASSIC_PARTS",
    "COUNTER_MODULUS",
    "FD_DB",
    "FD_STATUS",
    "FD_TRACK",
    "LAYOUTS",
    "MEAS_TIME_MODULUS_US",
    "STATUS",
    "STATUS_TIME_MODULUS_US",
    "ColumnSpec",
    "FrameKind",
    "load_database",
]


def load_database(name: str) -> Any:
    """Load a DBC file shipped in this package with cantools (``strict`` checks on)."""
    return load_packaged_dbc("drivers.can_radar", name)


#: The classic CAN 2.0 database (ICD §4) and the CAN FD one (ICD §5), loaded once.
CLASSIC_DB: Any = load_database("can_radar.dbc")
FD_DB: Any = load_database("can_radar_fd.dbc")

#: Compiled layouts of every message of both files, by arbitration id.
LAYOUTS: dict[int, MessageLayout] = {
    m.frame_id: compile_message(m) for db in (CLASSIC_DB, FD_DB) for m in db.messages
}


def _by_name(name: str) -> MessageLayout:
    for layout in LAYOUTS.values():
        if layout.name == name:
            return layout
    raise ImportError(f"DBC lacks message {name}")


#: The five parts of a classic track report, in part order (ICD §4.1).
CLASSIC_PARTS: tuple[MessageLayout, ...] = tuple(
    _by_name(n)
    for n in ("RADAR_TRK_POS", "RADAR_TRK_VEL", "RADAR_TRK_RATE", "RADAR_TRK_ACC", "RADAR_TRK_TIME")
)
STATUS = _by_name("RADAR_STATUS")
FD_TRACK = _by_name("RADAR_TRK_FD")
FD_STATUS = _by_name("RADAR_STATUS_FD")

# The join key every part carries (ICD §4.1): equal start bits in all five.
_KEY_SIGNALS = ("TrackId", "Counter")
for _part in CLASSIC_PARTS:
    for _sig in _KEY_SIGNALS:
        if _part.signals[_sig] != CLASSIC_PARTS[0].signals[_sig]:
            raise ImportError(f"{_part.name}.{_sig} is not where RADAR_TRK_POS has it")
TRACK_ID = CLASSIC_PARTS[0].signals["TrackId"]
COUNTER = CLASSIC_PARTS[0].signals["Counter"]
#: The rolling counter wraps at 2^length (16 for the 4-bit counter).
COUNTER_MODULUS = 1 << COUNTER.length
#: Classic time stamps are UTC µs modulo 2^length (ICD §4.3).
MEAS_TIME_MODULUS_US = 1 << CLASSIC_PARTS[4].signals["MeasTimeUs"].length
STATUS_TIME_MODULUS_US = 1 << STATUS.signals["SensorTimeUs"].length


class FrameKind(enum.IntEnum):
    """What an arbitration id carries (ICD §3)."""

    TRK_POS = 0
    TRK_VEL = 1
    TRK_RATE = 2
    TRK_ACC = 3
    TRK_TIME = 4
    STATUS = 5
    FD_TRACK = 6
    FD_STATUS = 7


#: Arbitration id -> kind; part kinds 0..4 are also the part index.
KIND_BY_ID: dict[int, FrameKind] = {
    **{p.frame_id: FrameKind(i) for i, p in enumerate(CLASSIC_PARTS)},
    STATUS.frame_id: FrameKind.STATUS,
    FD_TRACK.frame_id: FrameKind.FD_TRACK,
    FD_STATUS.frame_id: FrameKind.FD_STATUS,
}


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """How one column of ``TRACK_BATCH_DTYPE`` maps to a DBC signal.

    ``mode`` says how an SI value is quantised on encode (as in the serial
    ICD): ``round`` to nearest, ``ceil`` for sigmas (never understate an
    uncertainty; a positive sigma is at least one LSB), ``bam`` for binary
    angles (2π wraps to 0), ``int`` for integers taken as they are, ``bool``.
    ``rate`` marks columns that must be 0 when ``rates_valid`` is False.
    """

    column: str
    signal: str
    mode: str
    rate: bool = False


#: Scaled columns, shared by the classic parts and the FD frame (same signal names).
SCALED_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("range_m", "Range", "round"),
    ColumnSpec("azimuth_rad", "Azimuth", "bam"),
    ColumnSpec("elevation_rad", "Elevation", "round"),
    ColumnSpec("range_rate_mps", "RangeRate", "round"),
    ColumnSpec("azimuth_rate_radps", "AzimuthRate", "round", rate=True),
    ColumnSpec("elevation_rate_radps", "ElevationRate", "round", rate=True),
    ColumnSpec("sigma_range_m", "SigmaRange", "ceil"),
    ColumnSpec("sigma_azimuth_rad", "SigmaAzimuth", "ceil"),
    ColumnSpec("sigma_elevation_rad", "SigmaElevation", "ceil"),
    ColumnSpec("sigma_range_rate_mps", "SigmaRangeRate", "ceil"),
    ColumnSpec("sigma_azimuth_rate_radps", "SigmaAzimuthRate", "ceil", rate=True),
    ColumnSpec("sigma_elevation_rate_radps", "SigmaElevationRate", "ceil", rate=True),
    ColumnSpec("quality", "Quality", "round"),
)

#: Signal name -> index of the classic part that carries it.
CLASSIC_PART_OF: dict[str, int] = {
    name: i for i, part in enumerate(CLASSIC_PARTS) for name in part.signals if name not in _KEY_SIGNALS
}
