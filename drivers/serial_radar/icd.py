"""Wire constants of the serial radar ICD (docs/icd/serial-radar.md), as data.

Every offset, size, LSB and valid raw range used by the scalar codec
(:mod:`drivers.serial_radar.messages`) and the batch codec
(:mod:`drivers.serial_radar.batch`) comes from here, and each constant names
the ICD section it implements. All multi-byte fields are little-endian (§2).
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass

import numpy as np

from drivers.base import U16_MAX, U32_MAX

#: Protocol version carried in every header (§4).
PROTOCOL_VERSION = 1


class MessageType(enum.IntEnum):
    """Header ``msg_type`` values (§4.1)."""

    TRACK_REPORT = 0x01
    STATUS = 0x02


# -- §4 common header: version u8, msg_type u8, sensor_id u16, sequence u32 --
HEADER = struct.Struct("<BBHI")
HEADER_SIZE = HEADER.size  # 8
SEQUENCE_MODULUS = 1 << 32  # sequence is u32 and wraps (§4)

# -- §5.1 TRACK_REPORT -------------------------------------------------------
#: Binary angle LSB: 2π / 2^32 rad (§5.1). Exact: 2π scaled by a power of two.
BAM_LSB = 2.0 * math.pi / 2.0**32
RANGE_LSB = 0.01  # m
RANGE_RATE_LSB = 0.001  # m/s
ANGLE_RATE_LSB = 1e-7  # rad/s
SIGMA_RANGE_LSB = 0.01  # m
SIGMA_ANGLE_LSB = 1e-6  # rad
SIGMA_RANGE_RATE_LSB = 0.001  # m/s
SIGMA_ANGLE_RATE_LSB = 1e-6  # rad/s
QUALITY_LSB = 0.01  # fraction (1 %)
QUALITY_MAX_RAW = 100

ELEVATION_MAX_RAW = 1 << 30  # π/2 in binary angle units
TRACK_FLAG_RATES_VALID = 0x01
TRACK_FLAG_COASTING = 0x02
TRACK_FLAGS_DEFINED = TRACK_FLAG_RATES_VALID | TRACK_FLAG_COASTING

I32_MIN = -(1 << 31)
I32_MAX = (1 << 31) - 1

TRACK_REPORT = struct.Struct("<BBHIqIIIiiiiHHHHHHBB")
TRACK_REPORT_SIZE = TRACK_REPORT.size  # 58 bytes, header included

#: The TRACK_REPORT payload as a numpy record (§5.1 table), for one
#: ``np.frombuffer`` over many concatenated payloads.
TRACK_WIRE_DTYPE = np.dtype(
    [
        ("version", "u1"),
        ("msg_type", "u1"),
        ("sensor_id", "<u2"),
        ("sequence", "<u4"),
        ("sensor_time_ns", "<i8"),
        ("sensor_track_id", "<u4"),
        ("range", "<u4"),
        ("azimuth", "<u4"),
        ("elevation", "<i4"),
        ("range_rate", "<i4"),
        ("azimuth_rate", "<i4"),
        ("elevation_rate", "<i4"),
        ("sigma_range", "<u2"),
        ("sigma_azimuth", "<u2"),
        ("sigma_elevation", "<u2"),
        ("sigma_range_rate", "<u2"),
        ("sigma_azimuth_rate", "<u2"),
        ("sigma_elevation_rate", "<u2"),
        ("quality", "u1"),
        ("flags", "u1"),
    ]
)
if TRACK_WIRE_DTYPE.itemsize != TRACK_REPORT_SIZE:  # the two views of §5.1 must agree
    raise ImportError("TRACK_WIRE_DTYPE does not match the TRACK_REPORT struct")


@dataclass(frozen=True, slots=True)
class ScaledField:
    """One scaled numeric field of TRACK_REPORT (a row of the §5.1 table).

    ``wire`` is the field name in :data:`TRACK_WIRE_DTYPE`, ``attr`` the SI
    attribute of the event / batch column. ``mode`` is how SI values are
    quantised on encode: ``round`` (to nearest, ties to even), ``ceil`` (sigmas:
    never understate an uncertainty) or ``bam`` (binary angle, wraps mod 2^32).
    ``lo``/``hi`` bound the raw value; ``rate`` marks fields only meaningful
    when the rates_valid flag is set.
    """

    wire: str
    attr: str
    offset: int
    lsb: float
    lo: int
    hi: int
    unit: str
    mode: str = "round"
    rate: bool = False


#: Scaled fields of TRACK_REPORT in wire order (§5.1).
TRACK_SCALED: tuple[ScaledField, ...] = (
    ScaledField("range", "range_m", 20, RANGE_LSB, 0, U32_MAX, "m"),
    # hi is 2^32 (= 2π), which wraps to raw 0 on the wire.
    ScaledField("azimuth", "azimuth_rad", 24, BAM_LSB, 0, U32_MAX + 1, "rad", "bam"),
    ScaledField("elevation", "elevation_rad", 28, BAM_LSB, -ELEVATION_MAX_RAW, ELEVATION_MAX_RAW, "rad"),
    ScaledField("range_rate", "range_rate_mps", 32, RANGE_RATE_LSB, I32_MIN, I32_MAX, "m/s"),
    ScaledField(
        "azimuth_rate", "azimuth_rate_radps", 36, ANGLE_RATE_LSB, I32_MIN, I32_MAX, "rad/s", rate=True
    ),
    ScaledField(
        "elevation_rate", "elevation_rate_radps", 40, ANGLE_RATE_LSB, I32_MIN, I32_MAX, "rad/s", rate=True
    ),
    ScaledField("sigma_range", "sigma_range_m", 44, SIGMA_RANGE_LSB, 1, U16_MAX, "m", "ceil"),
    ScaledField("sigma_azimuth", "sigma_azimuth_rad", 46, SIGMA_ANGLE_LSB, 1, U16_MAX, "rad", "ceil"),
    ScaledField("sigma_elevation", "sigma_elevation_rad", 48, SIGMA_ANGLE_LSB, 1, U16_MAX, "rad", "ceil"),
    ScaledField(
        "sigma_range_rate", "sigma_range_rate_mps", 50, SIGMA_RANGE_RATE_LSB, 1, U16_MAX, "m/s", "ceil"
    ),
    ScaledField(
        "sigma_azimuth_rate",
        "sigma_azimuth_rate_radps",
        52,
        SIGMA_ANGLE_RATE_LSB,
        1,
        U16_MAX,
        "rad/s",
        "ceil",
        rate=True,
    ),
    ScaledField(
        "sigma_elevation_rate",
        "sigma_elevation_rate_radps",
        54,
        SIGMA_ANGLE_RATE_LSB,
        1,
        U16_MAX,
        "rad/s",
        "ceil",
        rate=True,
    ),
    ScaledField("quality", "quality", 56, QUALITY_LSB, 0, QUALITY_MAX_RAW, "1"),
)
TRACK_TIME_OFFSET = 8
TRACK_ID_OFFSET = 16
TRACK_FLAGS_OFFSET = 57

#: Ceil quantisation subtracts this (in LSBs) first so that a value that is
#: already a multiple of the LSB (e.g. one just decoded) re-encodes to the same
#: raw value despite float rounding in ``raw * lsb / lsb``.
CEIL_SLACK = 1e-6

# -- §5.2 STATUS -------------------------------------------------------------
STATUS = struct.Struct("<BBHIqIIHBB")
STATUS_SIZE = STATUS.size  # 28 bytes, header included
STATUS_FLAG_TIME_LOCKED = 0x01
STATUS_FLAG_RADIATING = 0x02
STATUS_FLAGS_DEFINED = STATUS_FLAG_TIME_LOCKED | STATUS_FLAG_RADIATING
STATUS_TIME_OFFSET = 8
STATUS_UPTIME_OFFSET = 16
STATUS_FAULT_OFFSET = 20
STATUS_TRACK_COUNT_OFFSET = 24
STATUS_STATE_OFFSET = 26
STATUS_FLAGS_OFFSET = 27

#: Payload size of each message type, header included (§5).
PAYLOAD_SIZE = {MessageType.TRACK_REPORT: TRACK_REPORT_SIZE, MessageType.STATUS: STATUS_SIZE}

#: Default largest payload the gateway accepts (§3): room for later message
#: types; the current largest is TRACK_REPORT (58 bytes).
DEFAULT_MAX_PAYLOAD = 256
