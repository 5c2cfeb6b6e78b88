"""The emulated radar: coverage, detection and noise statistics, local track ids, clutter, clock."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pymap3d
import pytest

from drivers.base import Role
from drivers.radar import TRACK_BATCH_DTYPE, TrackReportBatch
from drivers.serial_radar import SerialRadarCodec
from hilgw.geo import angle_diff
from sim_devices.scenario import Scenario, parse_scenario, resolve_scenario
from sim_devices.sensor_model import SensorModel, scan_times
from sim_devices.truth import truth_at

LAT, LON, ALT = 45.0, 10.0, 10.0
SENSOR: dict[str, Any] = {
    "id": "r",
    "site": "s",
    "update_hz": 2.0,
    "range_max_m": 100_000.0,
    "elevation_min_deg": -1.0,
    "elevation_max_deg": 60.0,
    "azimuth_center_deg": 0.0,
    "azimuth_width_deg": 90.0,
    "sigma_range_m": 20.0,
    "sigma_angle_mrad": 2.0,
    "sigma_range_rate_mps": 1.5,
    "sigma_angle_rate_mradps": 0.5,
    "detection_probability": 1.0,
    "clutter_rate": 0.0,
    "track_drop_scans": 2,
}


def hover(tid: str, east: float, north: float, up: float, *, speed: float = 10.0) -> dict[str, Any]:
    """An air target around an ENU offset from the site, flying north for a long time."""
    a = pymap3d.enu2geodetic(east, north, up, LAT, LON, ALT)
    b = pymap3d.enu2geodetic(east, north + speed * 10_000, up, LAT, LON, ALT)
    return {
        "id": tid,
        "kind": "air",
        "speed_mps": speed,
        "waypoints": [
            {"lat_deg": float(a[0]), "lon_deg": float(a[1]), "alt_m": up},
            {"lat_deg": float(b[0]), "lon_deg": float(b[1]), "alt_m": up},
        ],
    }


def make(targets: list[dict[str, Any]], seed: int = 7, **sensor: Any) -> Scenario:
    return parse_scenario(
        {
            "scenario": {"name": "t", "seed": seed},
            "sites": [{"id": "s", "lat_deg": LAT, "lon_deg": LON, "alt_m": ALT}],
            "sensors": [dict(copy.deepcopy(SENSOR), **sensor)],
            "targets": targets,
        }
    )


COVERAGE_CASES = [
    hover("in", 0.0, 50_000.0, 5000.0),
    hover("in-30deg", 20_000.0, 34_000.0, 3000.0),
    hover("behind", 0.0, -50_000.0, 5000.0),  # outside the ±45° sector
    hover("far", 0.0, 150_000.0, 10_000.0),  # beyond range_max
    hover("low-far", 5_000.0, 60_000.0, -200.0),  # under the 4/3-Earth horizon
    hover("steep", 0.0, 2_000.0, 8000.0),  # above elevation_max (76°)
]


def test_coverage_volume() -> None:
    model = SensorModel(make(COVERAGE_CASES), "r")
    scan = model.scan(1.0)
    assert scan.in_coverage.tolist() == [True, True, False, False, False, False]
    assert sorted(scan.target_index.tolist()) == [0, 1]  # Pd = 1, no clutter


def test_horizon_is_the_4_3_earth_distance() -> None:
    # Target at 100 m above the ellipsoid: horizon ≈ 4.12 km·(√10 + √100) ≈ 54 km
    # from a 10 m site. A little inside is seen, a little outside is not.
    scn = make(
        [hover("near", 0.0, 50_000.0, 100.0, speed=1.0), hover("beyond", 0.0, 58_000.0, 100.0, speed=1.0)]
    )
    scan = SensorModel(scn, "r").scan(0.0)
    assert scan.in_coverage.tolist() == [True, False]


def test_output_is_the_codec_batch_and_round_trips() -> None:
    demo = resolve_scenario("builtin:demo")
    for sid in ("radar-fwd", "radar-rear"):
        model = SensorModel(demo, sid, epoch_ns=1_700_000_000_000_000_000)
        dev = SerialRadarCodec(Role.DEVICE, sensor_id=model.wire_id)
        gw = SerialRadarCodec(Role.GATEWAY, sensor_id=model.wire_id)
        rows = []
        for t in scan_times(model.config.update_hz, 0.0, 30.0):
            scan = model.scan(float(t))
            assert scan.reports.dtype == TRACK_BATCH_DTYPE
            rows.append(scan.reports)
            gw.receive_data(dev.encode_track_batch(scan.reports))
        sent = np.concatenate(rows)
        got = np.concatenate([e.reports for e in gw.drain() if isinstance(e, TrackReportBatch)])
        assert len(got) == len(sent) > 0
        np.testing.assert_array_equal(got["sensor_track_id"], sent["sensor_track_id"])
        np.testing.assert_allclose(got["range_m"], sent["range_m"], atol=0.005 + 1e-9)
        assert (got["rates_valid"] == model.config.rates_valid).all()


def test_demo_has_targets_in_coverage_within_10_s() -> None:
    demo = resolve_scenario("builtin:demo")
    seen: set[int] = set()
    for sid in ("radar-fwd", "radar-rear"):
        cov = SensorModel(demo, sid).scan(10.0).in_coverage
        seen |= set(np.flatnonzero(cov).tolist())
    assert len(seen) >= 4


def test_detection_probability_statistics() -> None:
    pd = 0.7
    model = SensorModel(make(COVERAGE_CASES[:2], detection_probability=pd, track_drop_scans=1000), "r")
    n_scans = 1500
    hits = sum(len(model.scan(k / 2.0).target_index) for k in range(n_scans))
    n = 2 * n_scans
    assert abs(hits / n - pd) < 4 * np.sqrt(pd * (1 - pd) / n)


def test_measurement_noise_statistics_and_reported_sigmas() -> None:
    scn = make(COVERAGE_CASES[:2])
    model = SensorModel(scn, "r")
    res = []
    for k in range(1500):
        t = k / 2.0
        scan = model.scan(t)
        _, x, _ = truth_at(scn, t)
        true = model.polar(x[scan.target_index])
        r = scan.reports
        res.append(
            np.column_stack(
                [
                    (r["range_m"] - true[:, 0]) / r["sigma_range_m"],
                    angle_diff(r["azimuth_rad"], true[:, 1]) / r["sigma_azimuth_rad"],
                    (r["elevation_rad"] - true[:, 2]) / r["sigma_elevation_rad"],
                    (r["range_rate_mps"] - true[:, 3]) / r["sigma_range_rate_mps"],
                    (r["azimuth_rate_radps"] - true[:, 4]) / r["sigma_azimuth_rate_radps"],
                    (r["elevation_rate_radps"] - true[:, 5]) / r["sigma_elevation_rate_radps"],
                ]
            )
        )
    z = np.concatenate(res)
    n = len(z)
    assert n == 3000
    assert np.abs(z.mean(axis=0)).max() < 4 / np.sqrt(n)
    assert np.abs(z.std(axis=0) - 1.0).max() < 0.08  # σ of a sample std ≈ 1/√(2n) = 0.013
    r = model.scan(0.0).reports
    assert r["sigma_range_m"][0] == 20.0
    assert r["sigma_azimuth_rad"][0] == pytest.approx(2e-3)
    assert r["sigma_azimuth_rate_radps"][0] == pytest.approx(0.5e-3)


def test_angle_rates_are_derivatives_of_the_angles() -> None:
    scn = make([hover("x", 30_000.0, 40_000.0, 5000.0, speed=300.0)])
    model = SensorModel(scn, "r")
    _, x0, _ = truth_at(scn, 10.0)
    _, x1, _ = truth_at(scn, 10.001)
    _, xm, _ = truth_at(scn, 9.999)
    p, pp, pm = model.polar(x0), model.polar(x1), model.polar(xm)
    assert p[0, 4] == pytest.approx(angle_diff(pp[0, 1], pm[0, 1]) / 0.002, rel=1e-5)
    assert p[0, 5] == pytest.approx((pp[0, 2] - pm[0, 2]) / 0.002, rel=1e-5)
    assert p[0, 3] == pytest.approx((pp[0, 0] - pm[0, 0]) / 0.002, rel=1e-6)


def test_no_rates_means_zero_rate_fields() -> None:
    model = SensorModel(make(COVERAGE_CASES[:2], rates_valid=False), "r")
    r = model.scan(0.0).reports
    assert len(r) == 2
    assert not r["rates_valid"].any()
    for f in (
        "azimuth_rate_radps",
        "elevation_rate_radps",
        "sigma_azimuth_rate_radps",
        "sigma_elevation_rate_radps",
    ):
        assert (r[f] == 0.0).all()


def test_track_ids_are_stable_and_renewed_after_a_long_loss() -> None:
    drop = 2
    model = SensorModel(make(COVERAGE_CASES[:2], detection_probability=0.5, track_drop_scans=drop), "r")
    last: dict[int, tuple[int, int]] = {}  # target -> (scan, id)
    kept = renewed = 0
    for k in range(600):
        scan = model.scan(k / 2.0)
        for tid, tgt in zip(
            scan.reports["sensor_track_id"].tolist(), scan.target_index.tolist(), strict=True
        ):
            if tgt in last:
                prev_k, prev_id = last[tgt]
                if k - prev_k - 1 > drop:
                    assert tid != prev_id
                    renewed += 1
                else:
                    assert tid == prev_id
                    kept += 1
            last[tgt] = (k, tid)
    assert kept > 100
    assert renewed > 10
    # Ids are never shared between targets within a scan.
    scan = model.scan(1000.0)
    assert len(set(scan.reports["sensor_track_id"].tolist())) == len(scan.reports)


def test_clutter_rate_lifetime_and_ids() -> None:
    model = SensorModel(make(COVERAGE_CASES[:2], detection_probability=0.0, clutter_rate=2.0), "r")
    runs: dict[int, list[int]] = {}
    counts = []
    for k in range(800):
        scan = model.scan(k / 2.0)
        assert (scan.target_index == -1).all()
        counts.append(len(scan.reports))
        for tid in scan.reports["sensor_track_id"].tolist():
            runs.setdefault(tid, []).append(k)
        r = scan.reports
        # Clutter is inside the coverage volume.
        assert (r["range_m"] <= 100_000.0 + 2_000.0).all()
        assert (np.abs(angle_diff(r["azimuth_rad"], 0.0)) <= np.radians(45.0) + 0.01).all()
    # Poisson(2) new per scan, each living 1..3 scans (mean 2): about 4 alive per scan.
    assert np.mean(counts) == pytest.approx(4.0, abs=0.4)
    assert len(runs) == pytest.approx(1600, rel=0.1)
    for scans in runs.values():  # each id lives in consecutive scans, at most 3
        assert scans == list(range(scans[0], scans[0] + len(scans)))
        assert len(scans) <= 3
    assert 0 not in runs


def test_sensor_clock_offset_and_drift() -> None:
    epoch = 1_700_000_000_000_000_000
    model = SensorModel(
        make(COVERAGE_CASES[:1], clock_offset_s=0.25, clock_drift_ppm=40.0), "r", epoch_ns=epoch
    )
    t = 1000.0
    r = model.scan(t).reports
    expected = epoch + round((t + 0.25 + 40e-6 * t) * 1e9)
    assert r["sensor_time_ns"].tolist() == [expected]


def test_same_seed_same_reports_other_seed_other_reports() -> None:
    def run(seed: int) -> np.ndarray:
        m = SensorModel(make(COVERAGE_CASES, seed=seed, detection_probability=0.8, clutter_rate=0.5), "r")
        return np.concatenate([m.scan(k / 2.0).reports for k in range(50)])

    a, b, c = run(1), run(1), run(2)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_reset_restarts_the_stream() -> None:
    m = SensorModel(make(COVERAGE_CASES, detection_probability=0.8, clutter_rate=0.5), "r")
    first = [m.scan(k / 2.0).reports.tobytes() for k in range(10)]
    m.reset()
    assert [m.scan(k / 2.0).reports.tobytes() for k in range(10)] == first


def test_scan_times_grid() -> None:
    np.testing.assert_allclose(scan_times(2.0, 0.2, 2.0), [0.5, 1.0, 1.5])
    np.testing.assert_allclose(scan_times(4.0, 1.0, 1.5), [1.0, 1.25])
    assert scan_times(1.0, 3.0, 2.0).size == 0


def test_track_count_holds_tracks_until_they_are_dropped() -> None:
    short = hover("short", 0.0, 40_000.0, 5000.0, speed=100.0)
    short["waypoints"][1] = dict(short["waypoints"][0], alt_m=5500.0)  # a 500 m climb: gone after 5 s
    model = SensorModel(make([COVERAGE_CASES[0], short], track_drop_scans=2), "r")
    assert model.track_count == 0
    seen_short, counts = [], []
    for k in range(30):
        scan = model.scan(k / 2.0)
        seen_short.append(1 in scan.target_index.tolist())
        counts.append(model.track_count)
    last = max(k for k, seen in enumerate(seen_short) if seen)
    assert 8 <= last <= 10
    assert counts[: last + 1] == [2] * (last + 1)
    # Missed for 1 and 2 scans: still held; missed for 3: dropped.
    assert counts[last + 1 :] == [2, 2] + [1] * (29 - last - 2)
