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

from typing import Any

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
)
from drivers.serial_radar.messages import decode_payload
from hilgw.errors import LocalProtocolError

__all__ = ["decode_track_payloads", "encode_track_payloads"]


_RESERVED_FLAGS = 0xFF & ~TRACK_FLAGS_DEFINED
_SCALED_NAMES = [spec.wire for spec in TRACK_SCALED]
_WIRE_FIELDS: dict[str, Any] = dict(TRACK_WIRE_DTYPE.fields or {})
#: The 13 scaled fields of a wire record, in §5.1 order, as a view of the record
#: (``wire.view(_SCALED_WIRE)``), and their float64 twin: one ``astype`` turns
#: them all into an (N, 13) block. Per column, the decode was 13 numpy calls
#: (and the checks as many again), each ~1 µs of fixed cost on a batch of the
#: ~14 reports a pty read brings (issue 18).
_SCALED_WIRE = np.dtype(
    {
        "names": _SCALED_NAMES,
        "formats": [_WIRE_FIELDS[name][0] for name in _SCALED_NAMES],
        "offsets": [_WIRE_FIELDS[name][1] for name in _SCALED_NAMES],
        "itemsize": TRACK_WIRE_DTYPE.itemsize,
    }
)
_SCALED_F64 = np.dtype([(name, "<f8") for name in _SCALED_NAMES])
_LSB = np.array([spec.lsb for spec in TRACK_SCALED])


def _bounds(rates_valid: bool) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Valid raw range per column (§5.1) of a row with or without valid rates.

    A bound the wire type enforces (0 and 2^32-1 of a u32) is ±inf, so it
    never fails. Without valid rates the rate columns must be 0: the range
    [0, 0]. Raw values are integers below 2^33, exact in float64, so the
    comparisons are the scalar decoder's.
    """
    lo, hi = [], []
    for spec in TRACK_SCALED:
        info = np.iinfo(TRACK_WIRE_DTYPE[spec.wire])
        if spec.rate and not rates_valid:
            lo.append(0.0)
            hi.append(0.0)
        else:
            lo.append(float(spec.lo) if spec.lo > info.min else -np.inf)
            hi.append(float(spec.hi) if spec.hi < info.max else np.inf)
    return np.array(lo), np.array(hi)


#: Bounds per column, indexed by the row's rates_valid flag bit (0 or 1).
_LO, _HI = (np.stack(b) for b in zip(_bounds(False), _bounds(True), strict=True))
if TRACK_FLAG_RATES_VALID != 1:  # pragma: no cover - the flag bit is the table index
    raise ImportError("TRACK_FLAG_RATES_VALID must be bit 0")
#: The SI columns of TRACK_BATCH_DTYPE that hold the scaled fields: the same
#: 13 in the same order, float64, back to back, viewed as one (N, 13) block.
_SI_NAMES = [spec.attr for spec in TRACK_SCALED]
_SI_FIELDS: dict[str, Any] = dict(TRACK_BATCH_DTYPE.fields or {})
_SI_START = _SI_FIELDS[_SI_NAMES[0]][1]
if [_SI_FIELDS[name] for name in _SI_NAMES] != [
    (np.dtype("<f8"), _SI_START + 8 * k) for k in range(len(_SI_NAMES))
]:  # pragma: no cover - a layout change must change this module too
    raise ImportError("TRACK_BATCH_DTYPE's scaled columns are not one float64 block in §5.1 order")
_SI_BLOCK = np.dtype(
    {
        "names": ["si"],
        "formats": [("<f8", (len(_SI_NAMES),))],
        "offsets": [_SI_START],
        "itemsize": TRACK_BATCH_DTYPE.itemsize,
    }
)


def _raw_block(wire: npt.NDArray[np.void]) -> npt.NDArray[np.float64]:
    """The scaled fields' raw integers as an (N, 13) float64 block (exact)."""
    raw: npt.NDArray[np.float64] = wire.view(_SCALED_WIRE).astype(_SCALED_F64).view(np.float64)
    return raw.reshape(len(wire), len(_SCALED_NAMES))


def _bad_rows(
    wire: npt.NDArray[np.void], raw: npt.NDArray[np.float64], expected_sensor_id: int | None
) -> npt.NDArray[np.bool_]:
    """Rows that break a §5.1 check (the same checks as the scalar decoder).

    Rates and their sigmas are range-checked when rates_valid, and must be 0
    when not: one table of bounds per value of the flag.
    """
    flags = wire["flags"]
    rates_valid = flags & TRACK_FLAG_RATES_VALID
    out = (raw < _LO[rates_valid]) | (raw > _HI[rates_valid])
    bad: npt.NDArray[np.bool_] = out.any(axis=1)
    bad |= (wire["sensor_time_ns"] < 0) | ((flags & _RESERVED_FLAGS) != 0)
    if expected_sensor_id is not None:
        bad |= wire["sensor_id"] != expected_sensor_id
    return bad


def _to_si(wire: npt.NDArray[np.void], raw: npt.NDArray[np.float64]) -> npt.NDArray[np.void]:
    out = np.empty(len(wire), dtype=TRACK_BATCH_DTYPE)
    out["sensor_track_id"] = wire["sensor_track_id"]
    out["sequence"] = wire["sequence"]
    out["sensor_time_ns"] = wire["sensor_time_ns"]
    # raw (exact in float64) times LSB: the same IEEE operation as the scalar path.
    np.multiply(raw, _LSB, out=out.view(_SI_BLOCK)["si"])
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
    raw = _raw_block(wire)
    bad = _bad_rows(wire, raw, expected_sensor_id)
    si = _to_si(wire, raw)
    sensor_ids = wire["sensor_id"]
    # Segment boundaries: every bad row, and every change of sensor id. With
    # an expected sensor id, a row of another is bad: the good rows share one.
    if expected_sensor_id is None:
        bad_or_new = bad | np.concatenate(([False], sensor_ids[1:] != sensor_ids[:-1]))
    else:
        bad_or_new = bad
    cuts = np.flatnonzero(bad_or_new)
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
