"""ASTERIX time of day <-> UTC nanoseconds (docs/icd/asterix.md, "Time of day").

ASTERIX carries time as seconds since the last midnight UTC in units of
1/128 s (I048/140, I062/070, I034/030, I065/030: 24 bits, LSB 2^-7 s). The
date is not on the wire, so the codec takes the receive time ``t_rx_ns`` (UTC
ns, passed in by the driver) and picks the midnight that puts the stamp
nearest to it: a stamp more than half a day after the receive time belongs to
the previous day (a report stamped 23:59:59.9 received at 00:00:00.2), one
more than half a day before it to the next day. Leap seconds are not
represented (POSIX days of 86 400 s), like the UTC ns in the rest of hilgw.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

DAY_S = 86_400
DAY_NS = DAY_S * 1_000_000_000
HALF_DAY_NS = DAY_NS // 2
#: One LSB of an ASTERIX time of day (1/128 s) in ns: exact.
TOD_LSB_NS = 7_812_500
#: Largest valid raw time of day: strictly less than one day.
TOD_RAW_LIMIT = DAY_S * 128


def resolve(raw_tod: int, t_rx_ns: int) -> int:
    """UTC ns of a raw time of day (1/128 s units), nearest to ``t_rx_ns``."""
    t = t_rx_ns - t_rx_ns % DAY_NS + raw_tod * TOD_LSB_NS
    d = t - t_rx_ns
    if d > HALF_DAY_NS:
        t -= DAY_NS
    elif d < -HALF_DAY_NS:
        t += DAY_NS
    return t


def resolve_array(raw_tod: npt.NDArray[np.integer], t_rx_ns: int) -> npt.NDArray[np.int64]:
    """:func:`resolve` for an array of raw times of day (all below ``TOD_RAW_LIMIT``)."""
    t = raw_tod.astype(np.int64) * TOD_LSB_NS + (t_rx_ns - t_rx_ns % DAY_NS)
    d = t - t_rx_ns
    t[d > HALF_DAY_NS] -= DAY_NS
    t[d < -HALF_DAY_NS] += DAY_NS
    return t


def to_raw(t_ns: int) -> int:
    """Raw ASTERIX time of day (1/128 s since midnight UTC, rounded) of a UTC ns time."""
    raw = round((t_ns % DAY_NS) / TOD_LSB_NS)
    # 23:59:59.996 rounds up to 86400 s: that is 00:00:00 of the next day.
    return raw % TOD_RAW_LIMIT
