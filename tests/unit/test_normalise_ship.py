"""Ship-relative CAT048 and geo-referenced CAT062 rows -> ECEF, against exact geometry and Monte-Carlo."""

from __future__ import annotations

import math

import numpy as np
import pymap3d
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.asterix import SYSTEM_TRACK_DTYPE, TARGET_REPORT_DTYPE
from gateway.config import OwnShipConfig
from gateway.devices.ownship import OwnShipStore
from gateway.normalise_ship import (
    PlotSigmas,
    TrackDefaults,
    elevation_from_height,
    plots_to_ecef,
    system_tracks_to_ecef,
)
from hilgw.geo import ecef_to_polar
from hilgw.ship import radar_frames

DEG = math.pi / 180


def ship(heading: float = 0.0, pitch: float = 0.0, roll: float = 0.0, n: int = 1):  # type: ignore[no-untyped-def]
    s = OwnShipStore(OwnShipConfig(lat_deg=45.0, lon_deg=-30.0, alt_m=25.0, heading_deg=heading,
                                   pitch_deg=pitch, roll_deg=roll))  # fmt: skip
    return s.states_at(np.zeros(n, np.int64))


def plot_rows(ship_states, ref: str, targets: np.ndarray, heights: np.ndarray):  # type: ignore[no-untyped-def]
    pol = ecef_to_polar(
        ship_states.pos, radar_frames(ship_states, ref), np.c_[targets, np.zeros_like(targets)]
    )
    rows = np.zeros(len(targets), TARGET_REPORT_DTYPE)
    rows["range_m"], rows["azimuth_rad"], rows["height_m"] = pol[:, 0], pol[:, 1], heights
    rows["track_number"] = 1
    rows["ground_speed_mps"] = rows["heading_rad"] = np.nan
    return rows


@settings(max_examples=40, deadline=None)
@given(
    ref=st.sampled_from(["north", "bow", "deck"]),
    hdg=st.floats(0, 359.9), pitch=st.floats(-5, 5), roll=st.floats(-10, 10),
    lat=st.floats(44.0, 46.0), lon=st.floats(-31.0, -29.0), h=st.floats(50.0, 15000.0),
)  # fmt: skip
def test_plot_round_trip_is_exact(ref: str, hdg: float, pitch: float, roll: float, lat: float, lon: float,
                                  h: float) -> None:  # fmt: skip
    s = ship(hdg, pitch, roll)
    tgt = np.array([pymap3d.geodetic2ecef(lat, lon, h)])
    if np.linalg.norm(tgt - s.pos) < 2000.0:
        return
    x, _, *_ = plots_to_ecef(plot_rows(s, ref, tgt, np.array([h])), s, ref, PlotSigmas())
    # Only the sphere-vs-ellipsoid height relation separates them: centimetres to metres.
    assert np.linalg.norm(x[0, :3] - tgt[0]) < 5.0


def test_heading_matters_only_when_azimuth_is_ship_relative() -> None:
    tgt = np.array([pymap3d.geodetic2ecef(45.5, -29.8, 5000.0)])
    s0, s30 = ship(0.0), ship(30.0)
    rows = plot_rows(s0, "bow", tgt, np.array([5000.0]))
    x_bow0, *_ = plots_to_ecef(rows, s0, "bow", PlotSigmas())
    x_bow30, *_ = plots_to_ecef(rows, s30, "bow", PlotSigmas())
    x_n30, *_ = plots_to_ecef(rows, s30, "north", PlotSigmas())
    assert np.linalg.norm(x_bow0[0, :3] - tgt[0]) < 5.0
    assert np.linalg.norm(x_n30[0, :3] - tgt[0]) < 5.0
    assert np.linalg.norm(x_bow30[0, :3] - tgt[0]) > 10_000.0  # 30° at ~60 km


def test_covariance_matches_monte_carlo_with_own_ship_errors() -> None:
    """Sample radar noise AND own-ship position/attitude errors; P must match the sample covariance."""
    rng = np.random.default_rng(1)
    sig = PlotSigmas(range_m=30.0, azimuth_rad=2e-3, height_m=100.0)
    s = ship(40.0, 1.0, 2.0)
    tgt = np.array([pymap3d.geodetic2ecef(45.6, -29.5, 8000.0)])
    rows = plot_rows(s, "deck", tgt, np.array([8000.0]))
    _, P, *_ = plots_to_ecef(rows, s, "deck", sig)
    n = 4000
    pos_sd = np.sqrt(np.diag(s.pos_cov[0]).max())
    att_sd = np.sqrt(s.att_var[0])
    noisy = rows.repeat(n)
    noisy["range_m"] += rng.standard_normal(n) * sig.range_m
    noisy["azimuth_rad"] += rng.standard_normal(n) * sig.azimuth_rad
    noisy["height_m"] += rng.standard_normal(n) * sig.height_m
    att = np.array([40.0, 1.0, 2.0]) + np.degrees(rng.standard_normal((n, 3)) * att_sd)
    ss = ship(40.0, 1.0, 2.0, n)
    from dataclasses import replace

    ss = replace(
        ss, att=np.radians(att), pos=ss.pos + rng.standard_normal((n, 3)) @ np.linalg.cholesky(s.pos_cov[0]).T
    )
    x, *_ = plots_to_ecef(noisy, ss, "deck", sig)
    samples = x[:, :3]
    C = np.cov(samples.T)
    assert pos_sd > 0
    # Trace and principal variances within 10 % (first order vs. the sample).
    assert np.trace(C) == pytest.approx(np.trace(P[0, :3, :3]), rel=0.1)
    assert np.linalg.eigvalsh(C)[-1] == pytest.approx(np.linalg.eigvalsh(P[0, :3, :3])[-1], rel=0.1)


def test_ground_velocity_from_i048_200() -> None:
    s = ship()
    tgt = np.array([pymap3d.geodetic2ecef(45.3, -30.0, 3000.0)])
    rows = plot_rows(s, "north", tgt, np.array([3000.0]))
    rows["ground_speed_mps"], rows["heading_rad"] = 200.0, 90.0 * DEG  # due east
    x, P, *_ = plots_to_ecef(rows, s, "north", PlotSigmas())
    e, n, u = pymap3d.ecef2enuv(*x[0, 3:], 45.3, -30.0)
    assert (e, n, u) == pytest.approx((200.0, 0.0, 0.0), abs=0.5)
    assert np.all(np.linalg.eigvalsh(P[0]) > 0)


def test_elevation_from_height_is_zero_on_the_horizon_plane() -> None:
    # A target at the radar's height and range r lies below the tangent plane by r²/2R.
    r = np.array([50_000.0])
    el = elevation_from_height(r, np.array([100.0]), np.array([100.0]))
    assert el[0] == pytest.approx(-r[0] / (2 * (6_371_008.8 + 100.0)), rel=1e-3)


def test_system_tracks_latlon_and_xy_paths() -> None:
    rows = np.zeros(3, SYSTEM_TRACK_DTYPE)
    for f in ("lat_rad", "lon_rad", "x_m", "y_m", "vx_mps", "vy_mps", "flight_level_m", "geo_alt_m",
              "sigma_x_m", "sigma_y_m", "sigma_vx_mps", "sigma_vy_mps", "measured_height_m"):  # fmt: skip
        rows[f] = np.nan
    rows[0]["lat_rad"], rows[0]["lon_rad"], rows[0]["geo_alt_m"] = 45.2 * DEG, -30.1 * DEG, 1000.0
    rows[0]["vx_mps"], rows[0]["vy_mps"] = 0.0, 100.0
    rows[1]["x_m"], rows[1]["y_m"] = 10_000.0, 0.0  # 10 km east of the origin, default altitude
    rows[2]["geo_alt_m"] = 500.0  # neither position item: not usable without an origin
    o = np.full(3, 45.0 * DEG), np.full(3, -30.0 * DEG), np.zeros(3)
    # A configured default altitude (0 m, sigma 3000 m) where no height item is present.
    x, P, ok, _ = system_tracks_to_ecef(rows, TrackDefaults(altitude_m=0.0), o[0], o[1], o[2])
    assert ok.tolist() == [True, True, False]
    assert np.allclose(x[0, :3], pymap3d.geodetic2ecef(45.2, -30.1, 1000.0), atol=1e-3)
    e, n, _ = pymap3d.ecef2enuv(*x[0, 3:], 45.2, -30.1)
    assert (e, n) == pytest.approx((0.0, 100.0), abs=1e-6)
    e1, n1, _ = pymap3d.ecef2enu(*x[1, :3], 45.0, -30.0, 0.0)
    assert (e1, n1) == pytest.approx((10_000.0, 0.0), abs=1.0)
    # Default sigmas: 100 m horizontal, 3000 m vertical.
    assert np.trace(P[1, :3, :3]) == pytest.approx(2 * 100.0**2 + 3000.0**2, rel=1e-9)


def test_system_track_height_items_in_order() -> None:
    """Height: I062/130, else I062/340 HEIGHT (ballistic, above I062/130's range), else I062/136."""
    rows = np.zeros(4, SYSTEM_TRACK_DTYPE)
    for f in SYSTEM_TRACK_DTYPE.names:
        if SYSTEM_TRACK_DTYPE[f].kind == "f":
            rows[f] = np.nan
    rows["lat_rad"], rows["lon_rad"] = 45.0 * DEG, -30.0 * DEG
    rows["geo_alt_m"][0], rows["measured_height_m"][0] = 1000.0, 2000.0
    rows["measured_height_m"][1], rows["flight_level_m"][1] = 90_000.0, 3000.0
    rows["flight_level_m"][2] = 3000.0
    x, _, ok, unknown = system_tracks_to_ecef(rows, TrackDefaults())
    assert ok.all()
    h = pymap3d.ecef2geodetic(x[:, 0], x[:, 1], x[:, 2])[2]
    assert h[:3] == pytest.approx([1000.0, 90_000.0, 3000.0], abs=1e-3)
    # No height item and no configured default: unknown, the middle of 0 .. unknown_height_max_m.
    assert unknown.tolist() == [False, False, False, True]
    assert h[3] == pytest.approx(TrackDefaults().unknown_height_max_m / 2, abs=1e-3)


@pytest.mark.parametrize("ref", ["north", "bow", "deck"])
def test_shared_ship_frame_equals_per_row_frames(ref: str) -> None:
    """Rows with one own-ship state (frames computed once) equal rows normalised one by one."""
    rng = np.random.default_rng(7)
    n = 40
    s = ship(40.0, 1.0, 2.0, n=n)
    tgt = np.stack(
        pymap3d.geodetic2ecef(
            rng.uniform(44.5, 45.5, n), rng.uniform(-30.5, -29.5, n), rng.uniform(100.0, 12000.0, n)
        ),
        axis=1,
    )
    heights = tgt[:, 0] * 0.0 + 5000.0
    heights[::3] = np.nan  # some plots without I048/110
    rows = plot_rows(s, ref, tgt, heights)
    rows["ground_speed_mps"][::2], rows["heading_rad"][::2] = 150.0, 0.7
    together = plots_to_ecef(rows, s, ref, PlotSigmas())
    one = ship(40.0, 1.0, 2.0, n=1)
    for i in range(n):
        alone = plots_to_ecef(rows[i : i + 1], one, ref, PlotSigmas())
        for a, b in zip(together, alone, strict=True):
            np.testing.assert_allclose(a[i], b[0], rtol=1e-12, atol=1e-9)
