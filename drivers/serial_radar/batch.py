"""Vectorised TRACK_REPORT decode and encode (the gateway hot path, DESIGN rule 4).

Decoding: the payloads of a run of TRACK_REPORTs are joined and read with one
``np.frombuffer`` as :data:`~drivers.serial_radar.icd.TRACK_WIRE_DTYPE`, then
checked and scaled to SI column by column. The checks mirror
:func:`drivers.serial_radar.messages.decode_payload` exactly; a failing row is
handed to that scalar decoder, which words its :class:`Rejected`, so the batch
and the one-at-a-time path agree on every row.

Encoding: a :data:`~drivers.radar.TRACK_BATCH_DTYPE` array is
validated and quantised column by column (same rules as
:func:`drivers.serial_radar.events.quantise`) into wire records; only the CRC
and COBS step stays per frame (both are C calls).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from drivers.base import Rejected
from drivers.radar import TRACK_BATCH_DTYPE, TrackReportBatch
from drivers.serial_radar.icd import (
    CEIL_SLACK,
    PROTOCOL_VERSION,
    SEQUENCE_MODULUS,
    TRACK_FLAG_COASTING,
    TRACK_FLAG_RATES_VALID,
    TRACK_FLAGS_DEFINED,
    TRACK_REPORT_SIZE,
    TRACK_SCALED,
    TRACK_WIRE_DTYPE,
    MessageType,
    ScaledField,
)
from drivers.serial_radar.messages import decode_payload
from hilgw.errors import LocalProtocolError

__all__ = ["decode_track_payloads", "encode_track_payloads"]


def _limits(spec: ScaledField) -> tuple[str, int | None, int | None, bool]:
    """(wire column, lower bound to test, upper bound to test, is-a-rate) of one field.

    Bounds the wire type already enforces (e.g. 0 and 2^32-1 for a u32) are
    left out, so the hot loop only does comparisons that can fail.
    """
    info = np.iinfo(TRACK_WIRE_DTYPE[spec.wire])
    lo = spec.lo if spec.lo > info.min else None
    hi = spec.hi if spec.hi < info.max else None
    return spec.wire, lo, hi, spec.rate


_CHECKS = tuple(_limits(spec) for spec in TRACK_SCALED)
_RATE_COLUMNS = tuple(spec.wire for spec in TRACK_SCALED if spec.rate)
_RESERVED_FLAGS = 0xFF & ~TRACK_FLAGS_DEFINED


def _bad_rows(wire: npt.NDArray[np.void], expected_sensor_id: int | None) -> npt.NDArray[np.bool_]:
    """Rows that break a §5.1 check (the same checks as the scalar decoder)."""
    flags = wire["flags"]
    bad: npt.NDArray[np.bool_] = (wire["sensor_time_ns"] < 0) | ((flags & _RESERVED_FLAGS) != 0)
    rate_bad: npt.NDArray[np.bool_] | None = None  # range failures of rate fields (apply if valid)
    for column, lo, hi, rate in _CHECKS:
        raw = wire[column]
        if lo is not None and hi is not None:
            out = (raw < lo) | (raw > hi)
        elif lo is not None:
            out = raw < lo
        elif hi is not None:
            out = raw > hi
        else:
            continue
        if rate:
            rate_bad = out if rate_bad is None else rate_bad | out
        else:
            bad |= out
    # Rates and their sigmas: range-checked when rates_valid, must be 0 when not.
    rate_nonzero = wire[_RATE_COLUMNS[0]] != 0
    for column in _RATE_COLUMNS[1:]:
        rate_nonzero |= wire[column] != 0
    rates_valid = (flags & TRACK_FLAG_RATES_VALID) != 0
    bad |= (
        np.where(rates_valid, rate_bad, rate_nonzero) if rate_bad is not None else ~rates_valid & rate_nonzero
    )
    if expected_sensor_id is not None:
        bad |= wire["sensor_id"] != expected_sensor_id
    return bad


def _to_si(wire: npt.NDArray[np.void]) -> npt.NDArray[np.void]:
    out = np.empty(len(wire), dtype=TRACK_BATCH_DTYPE)
    out["sensor_track_id"] = wire["sensor_track_id"]
    out["sequence"] = wire["sequence"]
    out["sensor_time_ns"] = wire["sensor_time_ns"]
    for spec in TRACK_SCALED:
        # raw (exact in float64) times LSB: the same IEEE operation as the scalar path.
        np.multiply(wire[spec.wire], spec.lsb, out=out[spec.attr], dtype=np.float64)
    flags = wire["flags"]
    out["rates_valid"] = (flags & TRACK_FLAG_RATES_VALID) != 0
    out["coasting"] = (flags & TRACK_FLAG_COASTING) != 0
    return out


def decode_track_payloads(
    payloads: list[bytes], expected_sensor_id: int | None = None
) -> list[TrackReportBatch | Rejected]:
    """Decode a run of TRACK_REPORT payloads (each already 58 bytes, version and type checked).

    Returns batches and rejections in stream order: a rejected row, or a change
    of sensor id in the headers, ends one batch and starts the next.
    """
    if not payloads:
        return []
    wire = np.frombuffer(b"".join(payloads), dtype=TRACK_WIRE_DTYPE)
    bad = _bad_rows(wire, expected_sensor_id)
    si = _to_si(wire)
    sensor_ids = wire["sensor_id"]
    # Segment boundaries: every bad row, and every change of sensor id.
    cuts = np.flatnonzero(bad | np.concatenate(([False], sensor_ids[1:] != sensor_ids[:-1])))
    if len(cuts) == 0:
        return [TrackReportBatch(int(sensor_ids[0]), si)]
    events: list[TrackReportBatch | Rejected] = []
    start = 0
    for cut in (*cuts.tolist(), len(wire)):
        if cut > start:
            events.append(TrackReportBatch(int(sensor_ids[start]), si[start:cut]))
        if cut == len(wire):
            break
        if bad[cut]:
            rejected = decode_payload(payloads[cut], expected_sensor_id)
            if not isinstance(rejected, Rejected):  # the two paths disagree: a bug, not bad input
                raise RuntimeError(f"batch check rejected a row the scalar decoder accepts: {rejected!r}")
            events.append(rejected)
            start = cut + 1
        else:
            start = cut
    return events


def encode_track_payloads(
    reports: npt.NDArray[np.void], sensor_id: int, first_sequence: int
) -> npt.NDArray[np.void]:
    """Validate and quantise a :data:`TRACK_BATCH_DTYPE` array into wire records (ICD §5.1).

    Row ``i`` gets sequence ``(first_sequence + i) mod 2^32``; the array's own
    ``sequence`` column is ignored. Raises :class:`LocalProtocolError` naming
    the first offending row, column and value.
    """
    if reports.dtype != TRACK_BATCH_DTYPE:
        raise LocalProtocolError(
            f"encode_track_batch: dtype {reports.dtype} is not TRACK_BATCH_DTYPE", field="reports"
        )
    n = len(reports)
    wire = np.zeros(n, dtype=TRACK_WIRE_DTYPE)
    wire["version"] = PROTOCOL_VERSION
    wire["msg_type"] = int(MessageType.TRACK_REPORT)
    wire["sensor_id"] = sensor_id
    wire["sequence"] = (np.arange(n, dtype=np.uint64) + np.uint64(first_sequence)) % np.uint64(
        SEQUENCE_MODULUS
    )
    times = reports["sensor_time_ns"]
    _fail_first(times < 0, reports, "sensor_time_ns", "is negative")
    wire["sensor_time_ns"] = times
    wire["sensor_track_id"] = reports["sensor_track_id"]
    rates_valid = reports["rates_valid"]
    for spec in TRACK_SCALED:
        values = reports[spec.attr]
        _fail_first(~np.isfinite(values), reports, spec.attr, "is not finite")
        scaled = values / spec.lsb
        if spec.mode == "ceil":
            # Same rule as events.quantise: a positive sigma is at least one LSB.
            raw = np.where(values > 0, np.maximum(np.ceil(scaled - CEIL_SLACK), 1.0), np.ceil(scaled))
        else:
            raw = np.rint(scaled)
        out_of_range = (raw < spec.lo) | (raw > spec.hi)
        if spec.rate:
            _fail_first(
                ~rates_valid & (values != 0), reports, spec.attr, "must be 0 when rates_valid is False"
            )
            out_of_range &= rates_valid
            raw = np.where(rates_valid, raw, 0.0)
        _fail_first(
            out_of_range,
            reports,
            spec.attr,
            f"outside [{spec.lo * spec.lsb:.9g}, {spec.hi * spec.lsb:.9g}] {spec.unit}",
        )
        ints = raw.astype(np.int64)
        if spec.mode == "bam":
            ints &= 0xFFFFFFFF  # 2π wraps to 0
        wire[spec.wire] = ints
    wire["flags"] = np.where(rates_valid, TRACK_FLAG_RATES_VALID, 0) | np.where(
        reports["coasting"], TRACK_FLAG_COASTING, 0
    )
    if wire.itemsize != TRACK_REPORT_SIZE:  # pragma: no cover - guarded at import in icd.py
        raise RuntimeError("wire dtype size mismatch")
    return wire


def _fail_first(mask: npt.NDArray[np.bool_], reports: npt.NDArray[np.void], column: str, why: str) -> None:
    if mask.any():
        row = int(np.argmax(mask))
        value = reports[column][row].item()
        raise LocalProtocolError(
            f"encode_track_batch: row {row} {column} = {value!r} {why}",
            reason="range",
            field=column,
            value=value,
        )
