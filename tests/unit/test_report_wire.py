"""The column-wise SensorReportBatch encoding (gateway/report_wire.py) against the
per-report protobuf build it replaced: the same message, byte for byte once
serialised, over random batches with every optional case (issue 18)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from gateway import normalise
from gateway.fusion.api import KIND_PLOT, KIND_SENSOR_TRACK, ReportArrays
from gateway.normalise import POLAR_FIELDS, POLAR_SIGMA_FIELDS, reports_to_proto
from hilgw.v1 import report_pb2
from tests.unit.test_normalise import BATCH_DTYPE

#: PolarMeasurement fields of ``polar`` then ``polar_sigma`` columns.
_POLAR_NAMES = (*POLAR_FIELDS[:4], *POLAR_SIGMA_FIELDS[:4])


def reference(
    reports: ReportArrays,
    sensor_ids: list[str],
    receive_time_ns: int | npt.NDArray[np.int64],
    gateway_id: str,
    batch_sequence: int,
    source: npt.NDArray[np.void] | None,
) -> report_pb2.SensorReportBatch:
    """The build of gateway/normalise.py before issue 18's cut: one ``add`` a report."""
    n = len(reports)
    batch = report_pb2.SensorReportBatch(gateway_id=gateway_id, batch_sequence=batch_sequence)
    rx = receive_time_ns.tolist() if isinstance(receive_time_ns, np.ndarray) else [receive_time_ns] * n
    polar = np.concatenate([reports.polar, reports.polar_sigma], axis=1)
    polar_all = np.isfinite(polar).all(axis=1).tolist()
    covs = reports.P.reshape(n, 36).tolist()
    for i in range(n):
        p = polar[i].tolist()
        pm: dict[str, float | bool] | None = None
        if polar_all[i]:
            pm = dict(zip(_POLAR_NAMES, p, strict=True))
        elif p[0] == p[0]:
            pm = {name: v for name, v in zip(_POLAR_NAMES, p, strict=True) if v == v}
        if pm is not None and source is not None and bool(source["rates_valid"][i]):
            pm.update(
                azimuth_rate_radps=float(source["azimuth_rate_radps"][i]),
                elevation_rate_radps=float(source["elevation_rate_radps"][i]),
                sigma_azimuth_rate_radps=float(source["sigma_azimuth_rate_radps"][i]),
                sigma_elevation_rate_radps=float(source["sigma_elevation_rate_radps"][i]),
                angular_rates_valid=True,
            )
        s = reports.x[i].tolist()
        batch.reports.add(
            sensor_id=sensor_ids[int(reports.sensor[i])],
            sensor_track_id=int(reports.sensor_track_id[i]),
            sequence=int(source["sequence"][i]) if source is not None else 0,
            measurement_time_ns=int(reports.t_ns[i]),
            receive_time_ns=rx[i],
            kind=int(reports.kind[i]),
            quality=float(reports.quality[i]),
            gateway_id=gateway_id,
            ecef={"x": s[0], "y": s[1], "z": s[2], "vx": s[3], "vy": s[4], "vz": s[5], "covariance": covs[i]},
            polar=pm,
        )
    return batch


#: Names of one to 200 bytes (a two-byte length prefix), one not ASCII.
SENSORS = ["r", "radar-north", "ørsted/søer", "x" * 200]
#: Values a double field may hold that a builder could mishandle.
SPECIAL = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, 1e300])


def random_case(rng: np.random.Generator, n: int) -> tuple[ReportArrays, npt.NDArray[np.void]]:
    def doubles(*shape: int) -> npt.NDArray[np.float64]:
        v = rng.normal(0.0, 1e5, shape)
        odd = rng.random(shape) < 0.15
        v[odd] = rng.choice(SPECIAL, int(odd.sum()))
        return v

    polar, sigma = doubles(n, 4), doubles(n, 4)
    no_polar = rng.random(n) < 0.2  # a system track: NaN range, nothing measured
    polar[no_polar, 0] = np.nan
    reports = ReportArrays(
        sensor=rng.integers(0, len(SENSORS), n).astype(np.int32),
        sensor_track_id=rng.choice(np.array([0, 1, 127, 128, 2**32 - 1], np.uint32), n),
        kind=rng.choice(np.array([0, KIND_SENSOR_TRACK, KIND_PLOT], np.int8), n),
        t_ns=rng.choice(np.array([0, 1, -1, 2**62, -(2**63), 1_718_000_000_000_000_000]), n),
        x=doubles(n, 6),
        P=doubles(n, 6, 6),
        quality=doubles(n),
        polar=polar,
        polar_sigma=sigma,
    )
    source = np.zeros(n, BATCH_DTYPE)
    source["sequence"] = rng.choice(np.array([0, 1, 300, 2**40, 2**64 - 1], np.uint64), n)
    source["rates_valid"] = rng.random(n) < 0.5
    for name in ("azimuth_rate_radps", "elevation_rate_radps", "sigma_azimuth_rate_radps"):
        source[name] = doubles(n)
    source["sigma_elevation_rate_radps"] = np.nan  # junk behind a cleared flag is not published
    return reports, source


@pytest.mark.parametrize("build", ["each", "encoded"])
@pytest.mark.parametrize("n", [1, 2, 14, 65])
def test_encoding_equals_the_per_report_build(n: int, build: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Both of reports_to_proto's builds at every size, whatever its cross-over.
    monkeypatch.setattr(normalise, "ENCODE_FROM_ROWS", 10**9 if build == "each" else 1)
    rng = np.random.default_rng(n)
    for case in range(40):
        reports, source = random_case(rng, n)
        rx: int | npt.NDArray[np.int64] = (
            int(rng.integers(-(2**62), 2**62)) if case % 2 else rng.integers(0, 2**62, n).astype(np.int64)
        )
        gw = ["gw", "", "gateway-ø"][case % 3]
        seq = [0, 1, 2**40][case % 3]
        src = source if case % 4 else None
        got = reports_to_proto(reports, SENSORS, rx, gw, batch_sequence=seq, source=src)
        want = reference(reports, SENSORS, rx, gw, seq, src)
        # Bytes, not messages: NaN != NaN would fail equal messages.
        assert got.SerializeToString(deterministic=True) == want.SerializeToString(deterministic=True)
        assert [r.HasField("polar") for r in got.reports] == [r.HasField("polar") for r in want.reports]


@pytest.mark.parametrize("n", [3, 40])
def test_sensor_index_out_of_range_is_refused(n: int) -> None:
    reports, _ = random_case(np.random.default_rng(0), n)
    with pytest.raises(IndexError):
        reports_to_proto(reports, SENSORS[:1], 0, "gw")


def test_ids_too_long_for_the_column_build_take_the_per_report_build() -> None:
    reports, source = random_case(np.random.default_rng(5), 40)
    huge = ["r" * 20_000, *SENSORS[1:]]
    got = reports_to_proto(reports, huge, 7, "gw", source=source)
    want = reference(reports, huge, 7, "gw", 0, source)
    assert got.SerializeToString(deterministic=True) == want.SerializeToString(deterministic=True)
