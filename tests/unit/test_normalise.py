"""Normalisation of decoded polar batches (gateway/normalise.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from gateway.fusion.api import KIND_SENSOR_TRACK, ReportArrays
from gateway.normalise import POLAR_FIELDS, POLAR_SIGMA_FIELDS, normalise_polar, reports_to_proto
from hilgw.errors import LocalProtocolError
from hilgw.geo import polar_to_ecef, site_geometry
from hilgw.v1 import report_pb2

# The shape of the serial radar codec's decoded batch, as the brief states it
# (the codec owns the real dtype; packed and mixed-width here on purpose).
BATCH_DTYPE = np.dtype(
    [
        ("sensor_track_id", "<u4"),
        ("sequence", "<u8"),
        ("sensor_time_ns", "<i8"),
        *((name, "<f8") for name in POLAR_FIELDS),
        *((name, "<f8") for name in POLAR_SIGMA_FIELDS),
        ("quality", "<f4"),
        ("rates_valid", "?"),
        ("coasting", "?"),
    ]
)


def make_batch(n: int, seed: int = 0) -> npt.NDArray[np.void]:
    rng = np.random.default_rng(seed)
    a = np.zeros(n, dtype=BATCH_DTYPE)
    a["sensor_track_id"] = rng.integers(1, 2**32 - 1, n, dtype=np.uint32)
    a["sequence"] = np.arange(n, dtype=np.uint64) + 2**40
    a["sensor_time_ns"] = 1_718_000_000_000_000_000 + np.arange(n) * 1_000_000
    a["range_m"] = rng.uniform(1_000.0, 300_000.0, n)
    a["azimuth_rad"] = rng.uniform(0.0, 2 * math.pi, n)
    a["elevation_rad"] = rng.uniform(0.0, 1.2, n)
    a["range_rate_mps"] = rng.uniform(-1500.0, 1500.0, n)
    a["azimuth_rate_radps"] = rng.uniform(-0.01, 0.01, n)
    a["elevation_rate_radps"] = rng.uniform(-0.01, 0.01, n)
    a["sigma_range_m"] = 20.0
    a["sigma_azimuth_rad"] = 1e-3
    a["sigma_elevation_rad"] = 1.5e-3
    a["sigma_range_rate_mps"] = 1.0
    a["sigma_azimuth_rate_radps"] = 1e-4
    a["sigma_elevation_rate_radps"] = 1e-4
    a["quality"] = rng.uniform(0.0, 1.0, n)
    a["rates_valid"] = rng.random(n) < 0.5
    a["coasting"] = rng.random(n) < 0.1
    # Rows without valid rates carry junk rates, as a codec may leave them.
    a["azimuth_rate_radps"][~a["rates_valid"]] = np.nan
    a["sigma_elevation_rate_radps"][~a["rates_valid"]] = np.nan
    return a


GEOM = site_geometry("radar-north", 59.3, 18.1, 40.0, yaw_deg=15.0)


def test_normalise_polar_fills_every_column() -> None:
    arr = make_batch(64)
    r = normalise_polar(GEOM, 3, arr)
    assert len(r) == 64
    assert r.sensor.dtype == np.int32
    np.testing.assert_array_equal(r.sensor, 3)
    assert r.sensor_track_id.dtype == np.uint32
    np.testing.assert_array_equal(r.sensor_track_id, arr["sensor_track_id"])
    assert r.kind.dtype == np.int8
    np.testing.assert_array_equal(r.kind, KIND_SENSOR_TRACK)
    assert r.t_ns.dtype == np.int64
    np.testing.assert_array_equal(r.t_ns, arr["sensor_time_ns"])
    assert r.quality.dtype == np.float64
    np.testing.assert_array_equal(r.quality, arr["quality"].astype(np.float64))
    assert r.x.shape == (64, 6)
    assert r.P.shape == (64, 6, 6)
    assert r.polar.shape == (64, 4)
    assert r.polar_sigma.shape == (64, 4)
    np.testing.assert_array_equal(r.polar[:, 0], arr["range_m"])
    np.testing.assert_array_equal(r.polar[:, 1], arr["azimuth_rad"])
    np.testing.assert_array_equal(r.polar[:, 2], arr["elevation_rad"])
    np.testing.assert_array_equal(r.polar[:, 3], arr["range_rate_mps"])
    np.testing.assert_array_equal(r.polar_sigma[:, 2], arr["sigma_elevation_rad"])
    np.testing.assert_array_equal(r.polar_sigma[:, 3], arr["sigma_range_rate_mps"])


def test_normalise_polar_state_is_the_measurement_model() -> None:
    arr = make_batch(50, seed=1)
    r = normalise_polar(GEOM, 0, arr)
    polar = np.column_stack([arr[f] for f in POLAR_FIELDS])
    sigma = np.column_stack([arr[f] for f in POLAR_SIGMA_FIELDS])
    x, cov = polar_to_ecef(GEOM.origin, GEOM.to_local, polar, sigma, arr["rates_valid"])
    np.testing.assert_array_equal(r.x, x)
    np.testing.assert_array_equal(r.P, cov)
    # Junk rates on rows without the flag must not reach the state.
    assert np.all(np.isfinite(r.x))
    assert np.all(np.isfinite(r.P))
    # The covariance is a covariance: symmetric, positive definite.
    np.testing.assert_array_equal(r.P, np.swapaxes(r.P, 1, 2))
    assert np.all(np.linalg.eigvalsh(r.P) > 0)


def test_normalise_polar_empty_batch_concats() -> None:
    r = normalise_polar(GEOM, 1, make_batch(0))
    assert len(r) == 0
    assert r.x.shape == (0, 6)
    assert r.P.shape == (0, 6, 6)
    both = ReportArrays.concat([r, normalise_polar(GEOM, 1, make_batch(2))])
    assert len(both) == 2


def test_normalise_polar_names_a_missing_field() -> None:
    arr = make_batch(3)
    names = [n for n in BATCH_DTYPE.names or () if n != "sigma_range_m"]
    with pytest.raises(LocalProtocolError) as info:
        normalise_polar(GEOM, 0, arr[names])
    assert info.value.field == "sigma_range_m"


def test_reports_to_proto_carries_every_value() -> None:
    a0, a1 = make_batch(5, seed=2), make_batch(4, seed=3)
    g1 = site_geometry("radar-south", 58.0, 17.0, 10.0)
    reports = ReportArrays.concat([normalise_polar(GEOM, 0, a0), normalise_polar(g1, 1, a1)])
    source = np.concatenate([a0, a1])
    msg = reports_to_proto(
        reports,
        ["radar-north", "radar-south"],
        receive_time_ns=1_718_000_000_500_000_000,
        gateway_id="gw-7",
        batch_sequence=42,
        source=source,
    )
    # Through the wire and back, so nothing depends on Python-side state.
    back = report_pb2.SensorReportBatch.FromString(msg.SerializeToString())
    assert back.gateway_id == "gw-7"
    assert back.batch_sequence == 42
    assert len(back.reports) == 9
    for i, rep in enumerate(back.reports):
        assert rep.sensor_id == ("radar-north" if i < 5 else "radar-south")
        assert rep.sensor_track_id == int(source["sensor_track_id"][i])
        assert rep.sequence == int(source["sequence"][i])
        assert rep.measurement_time_ns == int(source["sensor_time_ns"][i])
        assert rep.receive_time_ns == 1_718_000_000_500_000_000
        assert rep.kind == report_pb2.REPORT_KIND_SENSOR_TRACK
        assert rep.gateway_id == "gw-7"
        assert rep.quality == float(reports.quality[i])
        e = rep.ecef
        assert [e.x, e.y, e.z, e.vx, e.vy, e.vz] == reports.x[i].tolist()
        # Row-major, all 36 values (common.proto EcefState.covariance).
        assert list(e.covariance) == reports.P[i].ravel().tolist()
        assert np.array(e.covariance).reshape(6, 6)[0, 3] == reports.P[i, 0, 3]
        p = rep.polar
        assert [p.range_m, p.azimuth_rad, p.elevation_rad, p.range_rate_mps] == reports.polar[i].tolist()
        assert [
            p.sigma_range_m,
            p.sigma_azimuth_rad,
            p.sigma_elevation_rad,
            p.sigma_range_rate_mps,
        ] == reports.polar_sigma[i].tolist()
        valid = bool(source["rates_valid"][i])
        assert p.angular_rates_valid is valid
        if valid:
            assert p.azimuth_rate_radps == float(source["azimuth_rate_radps"][i])
            assert p.elevation_rate_radps == float(source["elevation_rate_radps"][i])
            assert p.sigma_azimuth_rate_radps == float(source["sigma_azimuth_rate_radps"][i])
            assert p.sigma_elevation_rate_radps == float(source["sigma_elevation_rate_radps"][i])
        else:  # junk (NaN) rates behind a cleared flag are not published
            assert p.azimuth_rate_radps == 0.0
            assert p.sigma_elevation_rate_radps == 0.0


def test_reports_to_proto_without_source_and_empty() -> None:
    reports = normalise_polar(GEOM, 0, make_batch(2))
    msg = reports_to_proto(reports, ["radar-north"], 5, "gw")
    assert [r.sequence for r in msg.reports] == [0, 0]
    assert not any(r.polar.angular_rates_valid for r in msg.reports)
    assert len(msg.reports[1].ecef.covariance) == 36
    empty = reports_to_proto(ReportArrays.empty(), [], 5, "gw", batch_sequence=1)
    assert len(empty.reports) == 0
    assert empty.batch_sequence == 1


def test_reports_to_proto_rejects_misaligned_source() -> None:
    reports = normalise_polar(GEOM, 0, make_batch(3))
    with pytest.raises(LocalProtocolError):
        reports_to_proto(reports, ["radar-north"], 0, "gw", source=make_batch(2))


def test_reports_to_proto_leaves_unknown_polar_unset() -> None:
    """A CAT062 system track (no polar measurement) gets no polar block; a missing component
    (no range rate) stays unset; no NaN is written anywhere (issue 14)."""
    reports = normalise_polar(GEOM, 0, make_batch(3))
    reports.polar[1], reports.polar_sigma[1] = np.nan, np.nan  # as AsterixDriver._tracks builds them
    reports.polar[2, 3], reports.polar_sigma[2, 3] = np.nan, np.nan
    msg = reports_to_proto(reports, ["radar-north"], 5, "gw")
    back = report_pb2.SensorReportBatch.FromString(msg.SerializeToString())
    assert [r.HasField("polar") for r in back.reports] == [True, False, True]
    assert back.reports[0].polar.range_rate_mps == float(reports.polar[0, 3])
    assert back.reports[2].polar.range_m == float(reports.polar[2, 0])
    assert (back.reports[2].polar.range_rate_mps, back.reports[2].polar.sigma_range_rate_mps) == (0.0, 0.0)

    def floats(m: Any) -> list[float]:
        out: list[float] = []
        for fd, v in m.ListFields():
            for x in list(v) if fd.is_repeated else [v]:
                if fd.message_type is not None:
                    out += floats(x)
                elif isinstance(x, float):
                    out.append(x)
        return out

    assert all(math.isfinite(v) for v in floats(back))


def test_reports_to_proto_takes_a_receive_time_per_report() -> None:
    """Batches merged into one message keep each report's own receive time (issue 18)."""
    reports = normalise_polar(GEOM, 0, make_batch(3))
    rx = np.array([10, 10, 25], np.int64)
    msg = reports_to_proto(reports, ["radar-north"], rx, "gw")
    back = report_pb2.SensorReportBatch.FromString(msg.SerializeToString())
    assert [r.receive_time_ns for r in back.reports] == [10, 10, 25]
    with pytest.raises(LocalProtocolError) as info:
        reports_to_proto(reports, ["radar-north"], rx[:2], "gw")
    assert info.value.field == "receive_time_ns"
