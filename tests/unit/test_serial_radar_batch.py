"""The serial radar batch decode's checks, field by field at their bounds (issue 18).

drivers/serial_radar/batch.py checks the 13 scaled fields of a run of
TRACK_REPORTs as one block against a bounds table; the scalar decoder
(messages.decode_payload) checks them one by one. Every raw value at and
just past each bound, with and without the rates flag, and with the sensor
id the gateway expects or another: ``drain()`` must agree with
``next_event()`` row for row.
"""

from __future__ import annotations

import numpy as np
import pytest

from drivers.base import Rejected
from drivers.framing import encode_frame
from drivers.serial_radar.icd import (
    PROTOCOL_VERSION,
    TRACK_FLAG_RATES_VALID,
    TRACK_SCALED,
    TRACK_WIRE_DTYPE,
    MessageType,
)
from tests.unit.test_serial_radar_codec import SID, all_events, flat, gateway


def valid_row() -> np.ndarray:
    row = np.zeros(1, TRACK_WIRE_DTYPE)
    row["version"] = PROTOCOL_VERSION
    row["msg_type"] = int(MessageType.TRACK_REPORT)
    row["sensor_id"] = SID
    row["sensor_time_ns"] = 1_700_000_000_000_000_000
    row["range"] = 1_000_000
    for spec in TRACK_SCALED:
        if spec.lo > 0:  # sigmas: at least one LSB
            row[spec.wire] = spec.lo
    row["flags"] = TRACK_FLAG_RATES_VALID
    return row


def edge_rows() -> list[np.ndarray]:
    """One row per (field, raw value at or just past a bound, rates flag)."""
    rows = []
    for spec in TRACK_SCALED:
        info = np.iinfo(TRACK_WIRE_DTYPE[spec.wire])
        values = {spec.lo - 1, spec.lo, spec.lo + 1, spec.hi - 1, spec.hi, spec.hi + 1, 0, info.min, info.max}
        for v in sorted(x for x in values if info.min <= x <= info.max):
            for flags in (0, TRACK_FLAG_RATES_VALID):
                row = valid_row()
                row[spec.wire] = v
                row["flags"] = flags
                if not flags:  # the other rate fields must be 0 without the flag
                    for other in TRACK_SCALED:
                        if other.rate and other is not spec:
                            row[other.wire] = 0
                rows.append(row)
    for flags in (0x04, 0x80):  # reserved flag bits
        row = valid_row()
        row["flags"] |= flags
        rows.append(row)
    row = valid_row()
    row["sensor_time_ns"] = -1
    rows.append(row)
    return rows


@pytest.mark.parametrize("expected", [SID, None])
def test_batch_checks_equal_the_scalar_decoder_at_every_bound(expected: int | None) -> None:
    rows = edge_rows()
    rng = np.random.default_rng(1)
    for row in rows[::3]:  # some from another sensor, amid the rest
        row["sensor_id"] = SID + 1
    order = rng.permutation(len(rows))
    stream = b"".join(encode_frame(rows[i].tobytes()) for i in order)
    one, batched = gateway(expected), gateway(expected)
    one.receive_data(stream)
    batched.receive_data(stream)
    want = all_events(one)
    got = batched.drain()
    assert flat(got) == flat(want)
    rejected = sum(isinstance(e, Rejected) for e in want)
    assert 0 < rejected < len(rows)  # both outcomes are exercised
