"""The protobuf wire form of N sensor reports, built with whole-column numpy operations.

``SensorReportBatch`` carries one ``SensorReport`` per report. Built one by
one (``batch.reports.add(...)`` with the nested messages as dicts) a report
costs ~5 µs of the event loop, so a message of 64 reports cost ~0.3 ms and
every frame read meanwhile waited (issue 18). protobuf has no batch builder
for repeated messages, so this module writes their wire encoding itself
(protobuf encoding guide, https://protobuf.dev/programming-guides/encoding/)
and upb parses the result into the message in one C call.

How: every report is one row of an (N, W) byte block laid out the same for
all rows (:class:`_Layout`): each field has its columns, a varint the 10 it
may need, an optional field all it may need; a record dtype names them, so
each field of all rows is written in one assignment. An (N, W) mask marks
the bytes a row uses; ``block[mask]`` reads them row after row, dropping the rest: the
concatenated reports. Lengths of the length-delimited parts are mask sums.

The bytes are a valid encoding of the message, not its canonical one (proto3
fields equal to their default are written, not omitted); parsed and
serialised again they are the canonical bytes, the same as the per-report
build's (tests/unit/test_report_wire.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["batch_header", "encodable", "encode_reports", "varint_bytes"]

U8 = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]

# Wire types (encoding guide, "Message Structure").
_VARINT, _I64, _LEN = 0, 1, 2
_VARINT_MAX = 10  # bytes of a 64-bit varint
_VARINT_SHIFTS = np.arange(0, 7 * _VARINT_MAX, 7, dtype=np.uint64)
#: Report length prefix: a report is 128 to 16383 bytes long (its EcefState
#: alone is 348; a layout wider than that is refused), a two-byte varint.
_LEN_BYTES = 2


def _tag(field: int, wire_type: int) -> int:
    return (field << 3) | wire_type  # every field number here is below 16: a one-byte tag


def varint_bytes(value: int) -> bytes:
    """One protobuf varint (a non-negative int), for the few scalars of the batch
    header and the string prefixes here, and the keys of partners/release.py."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string_field(field: int, text: str) -> bytes:
    data = text.encode()
    return bytes([_tag(field, _LEN)]) + varint_bytes(len(data)) + data


def _varints(values: npt.NDArray[np.uint64]) -> tuple[U8, Mask]:
    """Varints of (N, k) 64-bit patterns: (N, k, 10) bytes, 7 bits each, least
    significant group first, the high bit set on all but the last, and where
    a further byte follows (the bytes used: the first, and one after each
    such). An int64 goes in as its two's complement, so a negative one takes
    10 bytes, as the guide requires."""
    groups = values[..., None] >> _VARINT_SHIFTS  # shifts past 63 give 0
    more = groups > 0x7F
    data = groups.astype(np.uint8)  # the low 8 bits
    data &= 0x7F
    data |= more.view(np.uint8) << 7
    return data, more


# SensorReport fields (proto/hilgw/v1/report.proto), EcefState (common.proto),
# PolarMeasurement (report.proto).
_VARINT_TAGS = [_tag(f, _VARINT) for f in (2, 3, 4, 5, 6)]  # track id, sequence, t, rx, kind
_ECEF_HEAD = bytes([_tag(7, _LEN)]) + varint_bytes(6 * 9 + 3 + 36 * 8)  # always every field
_ECEF_TAGS = [_tag(f, _I64) for f in range(1, 7)]  # x, y, z, vx, vy, vz
_COV_HEAD = bytes([_tag(7, _LEN)]) + varint_bytes(36 * 8)  # packed repeated double
#: PolarMeasurement doubles in the column order of ``polar``: range, azimuth,
#: elevation, range rate (1-4), their sigmas (8-11), then the angle rates (5,
#: 6) and their sigmas (12, 13). At most 12 * 9 + 2 = 110 bytes: a one-byte length.
_POLAR_TAGS = [_tag(f, _I64) for f in (1, 2, 3, 4, 8, 9, 10, 11, 5, 6, 12, 13)]
_RATES_VALID = bytes([_tag(7, _VARINT), 1])  # angular_rates_valid = true


@dataclass(frozen=True)
class _Layout:
    """A report row: its constant bytes, and two record views of it that name
    where each field's bytes (``row``) and their used-flags (``mask``) sit."""

    template: U8  # (W,) tags, constant heads and the gateway id
    always: Mask  # (W,) bytes every row uses
    names: U8  # (S, name width): the sensor_id field of each sensor
    names_used: Mask
    row: np.dtype[np.void]  # len, name, var, ecef, cov, plen, pol, q
    mask: np.dtype[np.void]  # name, var, phead, pol, flag


#: A double field: its tag, then the 8 bytes (packed: 9 bytes).
_TAGGED = np.dtype([("tag", "u1"), ("v", "<f8")])


@lru_cache(maxsize=32)
def _layout(sensor_ids: tuple[str, ...], gateway_id: str) -> _Layout | None:
    """The row layout for these names, or None when a report could outgrow the
    two-byte length (ids of kilobytes: :func:`encodable`)."""
    parts: list[bytes] = []
    always: list[bool] = []

    def put(data: bytes, used: bool = True) -> int:
        at = sum(len(p) for p in parts)
        parts.append(data)
        always.extend([used] * len(data))
        return at

    put(bytes([_tag(3, _LEN)]) + bytes(_LEN_BYTES))  # SensorReportBatch.reports, length
    fields = [_string_field(1, s) for s in sensor_ids]
    name_width = max((len(f) for f in fields), default=0)
    name_at = put(bytes(name_width), used=False)
    varint_at = sum(len(p) for p in parts)
    for t in _VARINT_TAGS:  # the tag and a varint's first byte are always there
        put(bytes([t, 0]))
        put(bytes(_VARINT_MAX - 1), used=False)
    ecef_at = put(_ECEF_HEAD)
    for t in _ECEF_TAGS:
        put(bytes([t]) + bytes(8))
    cov_at = put(_COV_HEAD) + len(_COV_HEAD)
    put(bytes(36 * 8))
    polar_at = put(bytes([_tag(8, _LEN), 0]) + b"".join(bytes([t]) + bytes(8) for t in _POLAR_TAGS), False)
    put(_RATES_VALID, used=False)
    quality_at = put(bytes([_tag(9, _I64)]) + bytes(8))
    put(_string_field(10, gateway_id))
    width = len(always)
    if width >= 1 << 14:
        return None
    names = np.zeros((len(fields), name_width), np.uint8)
    names_used = np.zeros((len(fields), name_width), bool)
    for i, f in enumerate(fields):
        names[i, : len(f)] = np.frombuffer(f, np.uint8)
        names_used[i, : len(f)] = True
    row = np.dtype(
        {
            "names": ["len", "name", "var", "ecef", "cov", "plen", "pol", "q"],
            "formats": [
                ("u1", _LEN_BYTES),
                ("u1", name_width),
                ("u1", (5, 1 + _VARINT_MAX)),
                (_TAGGED, 6),
                ("<f8", 36),
                "u1",
                (_TAGGED, 12),
                _TAGGED,
            ],
            "offsets": [
                1,
                name_at,
                varint_at,
                ecef_at + len(_ECEF_HEAD),
                cov_at,
                polar_at + 1,
                polar_at + 2,
                quality_at,
            ],
            "itemsize": width,
        }
    )
    mask = np.dtype(
        {
            "names": ["name", "var", "phead", "pol", "flag"],
            "formats": [("?", name_width), ("?", (5, 1 + _VARINT_MAX)), ("?", 2), ("?", (12, 9)), ("?", 2)],
            "offsets": [name_at, varint_at, polar_at, polar_at + 2, polar_at + 2 + 12 * 9],
            "itemsize": width,
        }
    )
    return _Layout(
        template=np.frombuffer(b"".join(parts), np.uint8),
        always=np.array(always, bool),
        names=names,
        names_used=names_used,
        row=row,
        mask=mask,
    )


def encodable(sensor_ids: list[str], gateway_id: str) -> bool:
    """Whether :func:`encode_reports` takes these names (a report under 16 KiB)."""
    return _layout(tuple(sensor_ids), gateway_id) is not None


def encode_reports(
    sensor_ids: list[str],
    sensor: npt.NDArray[np.integer[Any]],
    varints: npt.NDArray[np.uint64],
    x: npt.NDArray[np.float64],
    cov: npt.NDArray[np.float64],
    polar: npt.NDArray[np.float64],
    rates_valid: Mask,
    quality: npt.NDArray[np.float64],
    gateway_id: str,
) -> bytes:
    """The ``reports`` fields (number 3) of a ``SensorReportBatch``, N reports.

    Row i: sensor ``sensor_ids[sensor[i]]`` (``sensor`` in range);
    ``varints`` (N, 5) the 64-bit patterns of sensor_track_id, sequence,
    measurement_time_ns, receive_time_ns and kind; ``x`` (N, 6) and ``cov``
    (N, 36) the EcefState; ``polar`` (N, 12) the PolarMeasurement doubles as
    (range, azimuth, elevation, range rate, their 4 sigmas, azimuth rate,
    elevation rate, their 2 sigmas). The polar block is left out where the
    range is NaN, a NaN component of the first eight is left out, and the
    rates and ``angular_rates_valid`` are written only where ``rates_valid``.
    """
    lay = _layout(tuple(sensor_ids), gateway_id)
    if lay is None:
        raise ValueError("sensor or gateway ids too long to encode column-wise (see encodable)")
    n = sensor.shape[0]
    width = lay.template.shape[0]
    block = np.empty((n, width), np.uint8)
    block[:] = lay.template
    used = np.empty((n, width), bool)
    used[:] = lay.always
    row = block.view(lay.row)[:, 0]  # named views of the bytes
    mask = used.view(lay.mask)[:, 0]

    row["name"] = lay.names[sensor]
    mask["name"] = lay.names_used[sensor]
    data, more = _varints(varints)
    row["var"][:, :, 1:] = data
    mask["var"][:, :, 2:] = more[:, :, :-1]
    row["ecef"]["v"] = x
    row["cov"] = cov

    measured = ~np.isnan(polar[:, 0])
    with_rates = measured & rates_valid
    present = np.empty((n, 12), bool)
    np.logical_not(np.isnan(polar[:, :8]), out=present[:, :8])
    present[:, 8:] = with_rates[:, None]
    present &= measured[:, None]
    row["plen"] = 9 * present.sum(axis=1) + 2 * with_rates  # the message's length
    row["pol"]["v"] = polar
    mask["phead"] = measured[:, None]
    mask["pol"] = present[:, :, None]
    mask["flag"] = with_rates[:, None]
    row["q"]["v"] = quality

    # The report's length after its tag and length bytes, as a two-byte varint.
    length = used[:, 1 + _LEN_BYTES :].sum(axis=1)
    row["len"][:, 0] = length | 0x80
    row["len"][:, 1] = length >> 7
    out: bytes = block[used].tobytes()
    return out


def batch_header(gateway_id: str, batch_sequence: int) -> bytes:
    """Fields 1 (gateway_id) and 2 (batch_sequence) of a ``SensorReportBatch``."""
    return _string_field(1, gateway_id) + bytes([_tag(2, _VARINT)]) + varint_bytes(batch_sequence)
