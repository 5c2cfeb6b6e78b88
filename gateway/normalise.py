"""Normalisation: a decoded batch of polar sensor tracks -> stacked ECEF reports.

The serial radar driver hands :func:`normalise_polar` the structured array its
codec decoded (one row per track report, SI units, radians); this module turns
it into :class:`~gateway.fusion.api.ReportArrays` for fusion with one
vectorised call of :func:`hilgw.geo.polar_to_ecef`, and, for the outputs
(MQTT, MCAP), into one ``hilgw.v1.SensorReportBatch`` with
:func:`reports_to_proto`.

The codec has already checked every field against the ICD's ranges and
rejected bad frames (counted by reason); normalisation maps what it is given
and drops nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.fusion.api import KIND_SENSOR_TRACK, ReportArrays, SensorGeometry
from gateway.report_wire import batch_header, encodable, encode_reports
from hilgw.errors import LocalProtocolError
from hilgw.geo import polar_to_ecef
from hilgw.v1 import report_pb2

__all__ = [
    "POLAR_FIELDS",
    "POLAR_SIGMA_FIELDS",
    "REQUIRED_FIELDS",
    "normalise_polar",
    "reports_to_proto",
]

# Column order of hilgw.geo.polar_to_ecef's ``polar`` and ``sigma`` inputs.
POLAR_FIELDS = (
    "range_m",
    "azimuth_rad",
    "elevation_rad",
    "range_rate_mps",
    "azimuth_rate_radps",
    "elevation_rate_radps",
)
POLAR_SIGMA_FIELDS = (
    "sigma_range_m",
    "sigma_azimuth_rad",
    "sigma_elevation_rad",
    "sigma_range_rate_mps",
    "sigma_azimuth_rate_radps",
    "sigma_elevation_rate_radps",
)
# Every field normalise_polar reads from the codec's structured batch.
REQUIRED_FIELDS = (
    "sensor_track_id",
    "sequence",
    "sensor_time_ns",
    *POLAR_FIELDS,
    *POLAR_SIGMA_FIELDS,
    "quality",
    "rates_valid",
    "coasting",
)


#: Batch layouts (dtypes) already checked, each with the view that reads its
#: polar and sigma columns as one (N, 12) float64 block when they lie back to
#: back in :data:`POLAR_FIELDS` + :data:`POLAR_SIGMA_FIELDS` order (the radar
#: codecs' ``TRACK_BATCH_DTYPE``), else None. A codec's batches share one
#: dtype: the field check and the twelve column copies cost ~10 µs of every
#: read (issue 18).
_LAYOUTS: dict[np.dtype[np.void], np.dtype[np.void] | None] = {}


def _check_fields(arr: npt.NDArray[np.void]) -> np.dtype[np.void] | None:
    """Raise unless ``arr`` has every field; return its polar block view (see _LAYOUTS)."""
    dtype = arr.dtype
    if dtype in _LAYOUTS:
        return _LAYOUTS[dtype]
    names = dtype.names or ()
    missing = [f for f in REQUIRED_FIELDS if f not in names]
    if missing:
        raise LocalProtocolError(
            f"polar report batch lacks fields {missing}",
            field=missing[0],
            value=dtype,
        )
    fields: dict[str, Any] = dict(dtype.fields or {})
    columns = (*POLAR_FIELDS, *POLAR_SIGMA_FIELDS)
    start = fields[columns[0]][1]
    block: np.dtype[np.void] | None = None
    if all(fields[f][:2] == (np.dtype("<f8"), start + 8 * k) for k, f in enumerate(columns)):
        block = np.dtype(
            {
                "names": ["b"],
                "formats": [("<f8", (len(columns),))],
                "offsets": [start],
                "itemsize": dtype.itemsize,
            }
        )
    _LAYOUTS[dtype] = block
    return block


def _columns(arr: npt.NDArray[np.void], names: tuple[str, ...]) -> npt.NDArray[np.float64]:
    # One (N, k) float64 block, whatever widths the codec's dtype uses.
    # Per-field copies cost ~2.5 µs for one row against ~15 µs for
    # numpy's structured_to_unstructured; at 10 000 rows they cost ~1% of
    # the batch (benchmarks/bench_normalise.py).
    out = np.empty((arr.shape[0], len(names)))
    for j, name in enumerate(names):
        out[:, j] = arr[name]
    return out


#: PolarMeasurement fields of ``polar`` then ``polar_sigma`` columns (report.proto).
_POLAR_NAMES = (
    "range_m",
    "azimuth_rad",
    "elevation_rad",
    "range_rate_mps",
    "sigma_range_m",
    "sigma_azimuth_rad",
    "sigma_elevation_rad",
    "sigma_range_rate_mps",
)
#: Reports from which :func:`reports_to_proto` encodes column-wise (the
#: cross-over of the two builds' costs, benchmarks/bench_read_chain.py).
ENCODE_FROM_ROWS = 10
#: The angle-rate columns of a ``source`` batch, as :func:`gateway.report_wire.encode_reports` takes them.
_RATE_FIELDS = (
    "azimuth_rate_radps",
    "elevation_rate_radps",
    "sigma_azimuth_rate_radps",
    "sigma_elevation_rate_radps",
)


def normalise_polar(geometry: SensorGeometry, sensor_index: int, arr: npt.NDArray[np.void]) -> ReportArrays:
    """Turn one decoded batch of polar track reports into ECEF reports.

    ``arr`` is the codec's structured array (fields in :data:`REQUIRED_FIELDS`,
    SI units, angles in radians in the sensor's (forward, right, up) frame).
    ``sensor_index`` is the sensor's index in the fusion engine's table
    (``FusionEngine.add_sensor``). Rows keep their order. ``x``/``P`` come from
    :func:`hilgw.geo.polar_to_ecef` (rows without valid angle rates get a
    radial-only velocity with a loose tangential variance, see there); ``polar``
    and ``polar_sigma`` keep (range, azimuth, elevation, range rate) as
    measured for plot-level updates. ``t_ns`` is the sensor's own
    measurement time.

    ``sequence`` and ``coasting`` have no column in ``ReportArrays``; pass
    ``arr`` to :func:`reports_to_proto` as ``source`` to keep the sequence on
    the wire.
    """
    block = _check_fields(arr)
    n = arr.shape[0]
    if block is not None:
        both = np.array(arr.view(block)["b"])  # one copy of the twelve columns
        polar, sigma = both[:, :6], both[:, 6:]
    else:
        polar = _columns(arr, POLAR_FIELDS)
        sigma = _columns(arr, POLAR_SIGMA_FIELDS)
    x, cov = polar_to_ecef(
        geometry.origin,
        geometry.to_local,
        polar,
        sigma,
        np.asarray(arr["rates_valid"], dtype=bool),
    )
    return ReportArrays(
        sensor=np.full(n, sensor_index, dtype=np.int32),
        sensor_track_id=np.asarray(arr["sensor_track_id"], dtype=np.uint32),
        kind=np.full(n, KIND_SENSOR_TRACK, dtype=np.int8),
        t_ns=np.asarray(arr["sensor_time_ns"], dtype=np.int64),
        x=x,
        P=cov,
        quality=np.asarray(arr["quality"], dtype=np.float64),
        polar=np.ascontiguousarray(polar[:, :4]),
        polar_sigma=np.ascontiguousarray(sigma[:, :4]),
    )


def reports_to_proto(
    reports: ReportArrays,
    sensor_ids: list[str],
    receive_time_ns: int | npt.NDArray[np.int64],
    gateway_id: str,
    *,
    batch_sequence: int = 0,
    source: npt.NDArray[np.void] | None = None,
) -> report_pb2.SensorReportBatch:
    """Build the ``SensorReportBatch`` message of N normalised reports.

    ``sensor_ids[reports.sensor[i]]`` names each report's sensor. Every report
    gets its ECEF state with all 36 covariance values (row-major, proto
    common.proto ``EcefState``), its polar measurement (range, azimuth,
    elevation, range rate and their sigmas), kind, quality, measurement and
    receive times. ``receive_time_ns`` is one time for all, or one per report
    (several received batches published as one message).

    ``source``, when given, is the structured batch the reports were
    normalised from (same rows, same order, as :func:`normalise_polar` keeps
    them): it supplies what ``ReportArrays`` does not carry, the wire
    ``sequence``, the angle rates, their sigmas and ``angular_rates_valid``.
    Without it those stay at their proto defaults (0 / false).

    From :data:`ENCODE_FROM_ROWS` reports on, they are encoded with
    whole-column operations (:mod:`gateway.report_wire`) and parsed into the
    message in one call: built one by one they cost ~5 µs each on the event
    loop, where the encoding costs ~40 µs a message and ~1.5 µs a report
    (issue 18). Below that, one by one is cheaper. Both give the same message
    (tests/unit/test_report_wire.py).
    """
    n = len(reports)
    if n == 0:
        return report_pb2.SensorReportBatch(gateway_id=gateway_id, batch_sequence=batch_sequence)
    if source is not None and source.shape[0] != n:
        raise LocalProtocolError(
            f"source has {source.shape[0]} rows for {n} reports", field="source", value=source.shape[0]
        )
    if isinstance(receive_time_ns, np.ndarray) and receive_time_ns.shape != (n,):
        raise LocalProtocolError(
            f"receive_time_ns has shape {receive_time_ns.shape} for {n} reports",
            field="receive_time_ns",
            value=receive_time_ns.shape,
        )
    if n < ENCODE_FROM_ROWS or not encodable(sensor_ids, gateway_id):
        batch = report_pb2.SensorReportBatch(gateway_id=gateway_id, batch_sequence=batch_sequence)
        _add_each(batch, reports, sensor_ids, receive_time_ns, gateway_id, source)
        return batch
    rx = np.broadcast_to(np.asarray(receive_time_ns, np.int64), (n,))
    polar = np.empty((n, 12))
    polar[:, :4] = reports.polar
    polar[:, 4:8] = reports.polar_sigma
    if source is not None:
        sequence = np.asarray(source["sequence"], dtype=np.uint64)
        rates_valid = np.asarray(source["rates_valid"], dtype=bool)
        for j, name in enumerate(_RATE_FIELDS):
            polar[:, 8 + j] = source[name]
    else:
        sequence = np.zeros(n, np.uint64)
        rates_valid = np.zeros(n, bool)
        polar[:, 8:] = 0.0
    varints = np.empty((n, 5), np.uint64)  # encode_reports' order; int64 as its bit pattern
    varints[:, 0] = reports.sensor_track_id
    varints[:, 1] = sequence
    varints[:, 2] = reports.t_ns.astype(np.int64).view(np.uint64)
    varints[:, 3] = rx.view(np.uint64)
    varints[:, 4] = reports.kind.astype(np.int64).view(np.uint64)
    wire = batch_header(gateway_id, batch_sequence) + encode_reports(
        sensor_ids,
        reports.sensor,  # indexes sensor_ids as a list would: IndexError out of range
        varints,
        reports.x,
        reports.P.reshape(n, 36),
        polar,
        rates_valid,
        reports.quality,
        gateway_id,
    )
    return report_pb2.SensorReportBatch.FromString(wire)


def _add_each(
    batch: report_pb2.SensorReportBatch,
    reports: ReportArrays,
    sensor_ids: list[str],
    receive_time_ns: int | npt.NDArray[np.int64],
    gateway_id: str,
    source: npt.NDArray[np.void] | None,
) -> None:
    """Add the reports to ``batch`` one by one (see :func:`reports_to_proto`,
    which has checked the arguments' shapes).

    The columns become Python lists up front, so the loop does no numpy
    scalar boxing; one add() a report with its nested messages as dicts: upb
    builds them in C, about a fifth faster than setting the fields one by one.
    """
    n = len(reports)
    names = [sensor_ids[i] for i in reports.sensor.tolist()]
    rx = receive_time_ns.tolist() if isinstance(receive_time_ns, np.ndarray) else [receive_time_ns] * n
    track_ids = reports.sensor_track_id.tolist()
    kinds = reports.kind.tolist()
    t_ns = reports.t_ns.tolist()
    xs = reports.x.tolist()
    covs = reports.P.reshape(n, 36).tolist()
    quality = reports.quality.tolist()
    polar = np.concatenate([reports.polar, reports.polar_sigma], axis=1)
    polar_all = np.logical_and.reduce(np.isfinite(polar), axis=1).tolist()
    polar_rows = polar.tolist()
    if source is not None:
        sequence = np.asarray(source["sequence"], dtype=np.uint64).tolist()
        rates_valid = np.asarray(source["rates_valid"], dtype=bool).tolist()
        rates = _columns(source, _RATE_FIELDS).tolist()
    else:
        sequence = [0] * n
        rates_valid = [False] * n
        rates = []
    add = batch.reports.add
    for i in range(n):
        s = xs[i]
        p = polar_rows[i]
        pm: dict[str, float | bool] | None = None
        if polar_all[i]:
            pm = dict(zip(_POLAR_NAMES, p, strict=True))
        elif p[0] == p[0]:  # NaN range: no polar measurement (a CAT062 system track), block left unset
            # A NaN component (e.g. no range rate) stays unset, never written as NaN.
            pm = {name: v for name, v in zip(_POLAR_NAMES, p, strict=True) if v == v}
        if pm is not None and rates_valid[i]:  # rates without the valid flag may be NaN or junk
            ar, er, sar, ser = rates[i]
            pm.update(
                azimuth_rate_radps=ar,
                elevation_rate_radps=er,
                sigma_azimuth_rate_radps=sar,
                sigma_elevation_rate_radps=ser,
                angular_rates_valid=True,
            )
        add(
            sensor_id=names[i],
            sensor_track_id=track_ids[i],
            sequence=sequence[i],
            measurement_time_ns=t_ns[i],
            receive_time_ns=rx[i],
            kind=kinds[i],
            quality=quality[i],
            gateway_id=gateway_id,
            ecef={"x": s[0], "y": s[1], "z": s[2], "vx": s[3], "vy": s[4], "vz": s[5], "covariance": covs[i]},
            polar=pm,
        )
