"""Site geometry and the polar <-> ECEF measurement model (hilgw/geo.py).

Oracles: pymap3d (geodetic2ecef, aer2ecef, ecef2enu) for positions and
frames, central finite differences for both Jacobians, a Monte-Carlo sample
covariance for the propagated covariance, and finite differences in time for
the angle rates of the velocity round trip.
"""

from __future__ import annotations

import math

import numpy as np
import pymap3d
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hilgw.errors import ConfigError
from hilgw.geo import (
    F64,
    TWO_PI,
    SensorGeometry,
    angle_diff,
    ecef_to_polar,
    enu_basis,
    euler_zyx,
    local_geometry,
    polar_jacobian,
    polar_to_ecef,
    site_geometry,
    stack_geometries,
    wrap_2pi,
)

# (lat, lon, alt): mid-latitude, equator on the prime meridian, near both
# poles, either side of the antimeridian, southern hemisphere, high altitude.
SITES = [
    (52.0, 4.3, 15.0),
    (0.0, 0.0, 0.0),
    (89.99, 45.0, 100.0),
    (-89.95, -120.0, 2800.0),
    (10.0, 179.999, 5.0),
    (-33.9, -179.999, 30.0),
    (-33.9, 151.2, 40.0),
    (28.0, -80.6, 4000.0),
]


def _polar_grid(rng: np.random.Generator, n: int) -> F64:
    """n polar rows with rates, away from the zenith singularity."""
    p = np.empty((n, 6))
    p[:, 0] = rng.uniform(500.0, 400_000.0, n)
    p[:, 1] = rng.uniform(0.0, TWO_PI, n)
    p[:, 2] = rng.uniform(-0.2, 1.4, n)
    p[:, 3] = rng.uniform(-2000.0, 2000.0, n)
    p[:, 4] = rng.uniform(-0.02, 0.02, n)
    p[:, 5] = rng.uniform(-0.02, 0.02, n)
    return p


SIGMA = np.array([15.0, 1.5e-3, 2.0e-3, 2.0, 2.0e-4, 3.0e-4])


# --- site geometry ---------------------------------------------------------


@pytest.mark.parametrize(("lat", "lon", "alt"), SITES)
def test_site_origin_matches_pymap3d(lat: float, lon: float, alt: float) -> None:
    g = site_geometry("s", lat, lon, alt)
    np.testing.assert_allclose(g.origin, pymap3d.geodetic2ecef(lat, lon, alt), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("lat", "lon", "alt"), SITES)
def test_unrotated_frame_is_north_east_up_of_pymap3d(lat: float, lon: float, alt: float) -> None:
    g = site_geometry("s", lat, lon, alt)
    # A few ECEF offsets, expressed in ENU by pymap3d, must equal (n, e, u).
    d = np.array([[1000.0, -2000.0, 500.0], [0.0, 0.0, 1.0], [-3.0, 7.0, 11.0]])
    e, n, u = pymap3d.ecef2enuv(d[:, 0], d[:, 1], d[:, 2], lat, lon)
    np.testing.assert_allclose(d @ g.to_local.T, np.column_stack([n, e, u]), atol=1e-9)
    np.testing.assert_allclose(g.to_local @ g.to_local.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(g.to_local) == pytest.approx(-1.0)


@pytest.mark.parametrize(("lat", "lon", "alt"), SITES)
def test_polar_to_ecef_position_matches_aer2ecef(lat: float, lon: float, alt: float) -> None:
    g = site_geometry("s", lat, lon, alt)
    polar = _polar_grid(np.random.default_rng(1), 200)
    x, _ = polar_to_ecef(g.origin, g.to_local, polar, np.tile(SIGMA, (200, 1)), np.ones(200, bool))
    az_deg, el_deg = np.degrees(polar[:, 1]), np.degrees(polar[:, 2])
    ex, ey, ez = pymap3d.aer2ecef(az_deg, el_deg, polar[:, 0], lat, lon, alt)
    # 1e-6 m over 400 km: both sides are double-precision trigonometry.
    np.testing.assert_allclose(x[:, :3], np.column_stack([ex, ey, ez]), rtol=0, atol=1e-6)


def test_yaw_90_turns_forward_to_east() -> None:
    lat, lon = 45.0, 7.0
    g = site_geometry("s", lat, lon, 0.0, yaw_deg=90.0)
    east, north, up = enu_basis(lat, lon)
    np.testing.assert_allclose(g.to_local[0], east, atol=1e-12)
    np.testing.assert_allclose(g.to_local[1], -north, atol=1e-12)  # right = south
    np.testing.assert_allclose(g.to_local[2], up, atol=1e-12)
    # A target due east on the horizon sits at azimuth 0 (dead ahead); one due
    # north at azimuth 270° (to the left).
    targets = np.zeros((2, 6))
    targets[0, :3] = g.origin + 10_000.0 * east
    targets[1, :3] = g.origin + 10_000.0 * north
    z = ecef_to_polar(g.origin, g.to_local, targets)
    assert float(angle_diff(z[0, 1], 0.0)) == pytest.approx(0.0, abs=1e-12)
    assert z[1, 1] == pytest.approx(1.5 * math.pi)
    np.testing.assert_allclose(z[:, 2], 0.0, atol=1e-12)


def test_pitch_tilts_forward_up_and_roll_tilts_right_down() -> None:
    lat, lon = -20.0, 30.0
    east, north, _up = enu_basis(lat, lon)
    horizon_ahead = 10_000.0 * north
    horizon_right = 10_000.0 * east

    gp = site_geometry("s", lat, lon, 0.0, pitch_deg=10.0)
    t = np.zeros((1, 6))
    t[0, :3] = gp.origin + horizon_ahead
    # The boresight is 10° up, so a target ahead on the horizon is 10° below it.
    assert ecef_to_polar(gp.origin, gp.to_local, t)[0, 2] == pytest.approx(math.radians(-10.0))

    gr = site_geometry("s", lat, lon, 0.0, roll_deg=10.0)
    t[0, :3] = gr.origin + horizon_right
    # Right axis tilted 10° down: a target to the right on the horizon is 10° up.
    assert ecef_to_polar(gr.origin, gr.to_local, t)[0, 2] == pytest.approx(math.radians(10.0))


def test_yaw_then_pitch_order() -> None:
    # yaw 90° then pitch 30° about the new right axis (south): forward points
    # east and 30° up. Roll 90° last, about that tilted forward axis, turns
    # right onto the tilted "down" and up onto the old right (south); rolling
    # before yawing or pitching would give different axes.
    lat, lon = 10.0, 20.0
    east, north, up = enu_basis(lat, lon)
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    g = site_geometry("s", lat, lon, 0.0, yaw_deg=90.0, pitch_deg=30.0)
    np.testing.assert_allclose(g.to_local[0], c * east + s * up, atol=1e-12)
    np.testing.assert_allclose(g.to_local[1], -north, atol=1e-12)
    np.testing.assert_allclose(g.to_local[2], -s * east + c * up, atol=1e-12)
    g2 = site_geometry("s", lat, lon, 0.0, yaw_deg=90.0, pitch_deg=30.0, roll_deg=90.0)
    np.testing.assert_allclose(g2.to_local[0], c * east + s * up, atol=1e-12)
    np.testing.assert_allclose(g2.to_local[1], -(-s * east + c * up), atol=1e-12)
    np.testing.assert_allclose(g2.to_local[2], -north, atol=1e-12)


def test_rotated_site_polar_to_ecef_matches_unrotated_after_reorienting() -> None:
    # A rotated sensor's (az, el) converted back with its own geometry must
    # land on the same ECEF point the unrotated site computes for that point.
    g0 = site_geometry("s", 40.0, -3.0, 600.0)
    g1 = site_geometry("s", 40.0, -3.0, 600.0, yaw_deg=33.0, pitch_deg=4.0, roll_deg=-2.0)
    polar = _polar_grid(np.random.default_rng(2), 50)
    sig = np.tile(SIGMA, (50, 1))
    x0, _ = polar_to_ecef(g0.origin, g0.to_local, polar, sig, np.ones(50, bool))
    z1 = ecef_to_polar(g1.origin, g1.to_local, x0)
    p1 = polar.copy()
    p1[:, :4] = z1
    p1[:, 4:] = 0.0
    x1, _ = polar_to_ecef(g1.origin, g1.to_local, p1, sig, np.zeros(50, bool))
    np.testing.assert_allclose(x1[:, :3], x0[:, :3], atol=1e-6)


@pytest.mark.parametrize(
    ("key", "kwargs"),
    [
        ("lat_deg", {"lat_deg": 90.5}),
        ("lat_deg", {"lat_deg": float("nan")}),
        ("yaw_deg", {"yaw_deg": float("inf")}),
    ],
)
def test_site_geometry_rejects_bad_values(key: str, kwargs: dict[str, float]) -> None:
    args: dict[str, float] = {"lat_deg": 0.0, "lon_deg": 0.0, "alt_m": 0.0} | kwargs
    with pytest.raises(ConfigError) as info:
        site_geometry("radar-1", **args)
    assert info.value.key == f"radar-1.{key}"


def test_local_geometry_cartesian_convention() -> None:
    g = local_geometry("bench", [100.0, 200.0, 0.0])
    x = np.array([[100.0 + 3.0, 200.0 + 4.0, 0.0, 0.0, 10.0, 0.0]])
    z = ecef_to_polar(g.origin, g.to_local, x)
    assert z[0, 0] == pytest.approx(5.0)
    assert z[0, 1] == pytest.approx(math.atan2(4.0, 3.0))
    assert z[0, 3] == pytest.approx(8.0)  # (3,4,0)·(0,10,0)/5
    with pytest.raises(ConfigError):
        local_geometry("bench", [0, 0, 0], np.ones((3, 3)))


# --- angles ------------------------------------------------------------------


def test_angle_diff_wraps_to_half_open_interval() -> None:
    assert float(angle_diff(0.1, TWO_PI - 0.1)) == pytest.approx(0.2)
    assert float(angle_diff(TWO_PI - 0.1, 0.1)) == pytest.approx(-0.2)
    assert float(angle_diff(math.pi, 0.0)) == pytest.approx(math.pi)
    assert float(angle_diff(-math.pi, 0.0)) == pytest.approx(math.pi)  # -π maps to +π
    assert float(angle_diff(3 * math.pi, 0.0)) == pytest.approx(math.pi)
    assert float(wrap_2pi(-1e-17)) < TWO_PI
    assert float(wrap_2pi(-0.5)) == pytest.approx(TWO_PI - 0.5)


@given(
    st.floats(-1e3, 1e3, allow_nan=False),
    st.floats(-1e3, 1e3, allow_nan=False),
)
def test_angle_diff_property(a: float, b: float) -> None:
    d = float(angle_diff(a, b))
    assert -math.pi < d <= math.pi
    assert math.cos(d) == pytest.approx(math.cos(a - b), abs=1e-9)
    assert math.sin(d) == pytest.approx(math.sin(a - b), abs=1e-9)


# --- round trips ------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    lat=st.floats(-89.9, 89.9),
    lon=st.floats(-180.0, 180.0),
    yaw=st.floats(-180.0, 180.0),
    rng_m=st.floats(100.0, 2_000_000.0),
    az=st.floats(0.0, TWO_PI, exclude_max=True),
    el=st.floats(-1.5, 1.5),
    rdot=st.floats(-5000.0, 5000.0),
    azr=st.floats(-0.1, 0.1),
    elr=st.floats(-0.1, 0.1),
)
def test_polar_round_trip(
    lat: float,
    lon: float,
    yaw: float,
    rng_m: float,
    az: float,
    el: float,
    rdot: float,
    azr: float,
    elr: float,
) -> None:
    g = site_geometry("s", lat, lon, 0.0, yaw_deg=yaw)
    polar = np.array([[rng_m, az, el, rdot, azr, elr]])
    x, _ = polar_to_ecef(g.origin, g.to_local, polar, SIGMA[None], np.array([True]))
    z = ecef_to_polar(g.origin, g.to_local, x)
    assert z[0, 0] == pytest.approx(rng_m, rel=1e-9)
    # Angles are recovered to ~1e-9 rad (ECEF coordinates of ~6e6 m carry
    # ~1e-9 m rounding; over 100 m that is ~1e-11 rad).
    assert abs(float(angle_diff(z[0, 1], az))) < 1e-8
    assert z[0, 2] == pytest.approx(el, abs=1e-8)
    assert z[0, 3] == pytest.approx(rdot, abs=1e-6 * max(1.0, abs(rdot)) + 1e-3)
    assert 0.0 <= z[0, 1] < TWO_PI


def _rates_by_time_difference(g: SensorGeometry, x: F64, dt: float) -> F64:
    """Angle rates of straight-line motion by central differences in time."""
    xp, xm = x.copy(), x.copy()
    xp[:, :3] += dt * x[:, 3:]
    xm[:, :3] -= dt * x[:, 3:]
    zp = ecef_to_polar(g.origin, g.to_local, xp)
    zm = ecef_to_polar(g.origin, g.to_local, xm)
    return np.column_stack([angle_diff(zp[:, 1], zm[:, 1]) / (2 * dt), (zp[:, 2] - zm[:, 2]) / (2 * dt)])


def test_velocity_round_trip_with_angle_rates() -> None:
    g = site_geometry("s", 35.0, 139.0, 50.0, yaw_deg=12.0)
    rng = np.random.default_rng(3)
    polar = _polar_grid(rng, 100)
    x_true, _ = polar_to_ecef(g.origin, g.to_local, polar, np.tile(SIGMA, (100, 1)), np.ones(100, bool))
    x_true[:, 3:] = rng.uniform(-2000.0, 2000.0, (100, 3))  # arbitrary ECEF velocity
    z = ecef_to_polar(g.origin, g.to_local, x_true)
    rates = _rates_by_time_difference(g, x_true, 1e-4)
    measured = np.column_stack([z, rates])
    x, _ = polar_to_ecef(g.origin, g.to_local, measured, np.tile(SIGMA, (100, 1)), np.ones(100, bool))
    np.testing.assert_allclose(x[:, :3], x_true[:, :3], atol=1e-5)
    # Central differences carry O(dt²) truncation error (4e-5 m/s worst here
    # at 1 km range) and rounding.
    np.testing.assert_allclose(x[:, 3:], x_true[:, 3:], atol=1e-3)


def test_rates_invalid_gives_radial_velocity_and_loose_tangential_variance() -> None:
    g = site_geometry("s", 60.0, 25.0, 0.0)
    polar = np.array([[80_000.0, 1.0, 0.3, -250.0, np.nan, np.nan]])
    sigma = np.array([[20.0, 1e-3, 1e-3, 1.5, np.nan, np.nan]])
    tan = 700.0
    x, cov = polar_to_ecef(g.origin, g.to_local, polar, sigma, np.array([False]), tangential_sigma_mps=tan)
    assert np.all(np.isfinite(x))
    assert np.all(np.isfinite(cov))
    az, el = 1.0, 0.3
    u_l = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    eaz_l = np.array([-math.sin(az), math.cos(az), 0.0])
    eel_l = np.array([-math.sin(el) * math.cos(az), -math.sin(el) * math.sin(az), math.cos(el)])
    u, eaz, eel = (g.to_local.T @ v for v in (u_l, eaz_l, eel_l))
    np.testing.assert_allclose(x[0, 3:], -250.0 * u, atol=1e-9)
    pv = cov[0, 3:, 3:]
    assert eaz @ pv @ eaz == pytest.approx(tan**2, rel=1e-6)
    assert eel @ pv @ eel == pytest.approx(tan**2, rel=1e-6)
    # Radial: σ_ρ̇² plus the unknown tangential speed seen through the angle
    # error of the line of sight, σ_t² (cos²(el) σ_az² + σ_el²). (The angle
    # error's first-order effect, ρ̇ σ_angle, points tangentially.)
    leak = tan**2 * (math.cos(el) ** 2 * 1e-6 + 1e-6)
    assert u @ pv @ u == pytest.approx(1.5**2 + leak, rel=1e-9)
    # The position block does not care whether rates were valid.
    polar_ok = polar.copy()
    polar_ok[0, 4:] = 0.0
    sigma_ok = sigma.copy()
    sigma_ok[0, 4:] = 1e-4
    _, cov_ok = polar_to_ecef(g.origin, g.to_local, polar_ok, sigma_ok, np.array([True]))
    np.testing.assert_allclose(cov[0, :3, :3], cov_ok[0, :3, :3], rtol=1e-12)


def test_missing_range_rate_leaves_velocity_unobserved() -> None:
    g = local_geometry("bench", [0.0, 0.0, 0.0])
    polar = np.array([[1000.0, 0.5, 0.1, np.nan, np.nan, np.nan]])
    sigma = np.array([[5.0, 1e-3, 1e-3, np.nan, np.nan, np.nan]])
    x, cov = polar_to_ecef(g.origin, g.to_local, polar, sigma, np.array([False]), tangential_sigma_mps=300.0)
    np.testing.assert_allclose(x[0, 3:], 0.0)
    # Isotropic up to the radial leak term (relative size σ_angle² ~ 1e-6).
    np.testing.assert_allclose(cov[0, 3:, 3:] / 300.0**2, np.eye(3), atol=1e-5)


def test_mixed_per_row_geometry_equals_per_sensor_calls() -> None:
    geoms = [site_geometry("a", 51.0, -1.0, 0.0), site_geometry("b", 48.0, 2.0, 100.0, yaw_deg=45.0)]
    origins, mats = stack_geometries(geoms)
    rng = np.random.default_rng(4)
    idx = rng.integers(0, 2, 40)
    polar = _polar_grid(rng, 40)
    sig = np.tile(SIGMA, (40, 1))
    valid = rng.random(40) < 0.5
    x, cov = polar_to_ecef(origins[idx], mats[idx], polar, sig, valid)
    z = ecef_to_polar(origins[idx], mats[idx], x)
    h = polar_jacobian(origins[idx], mats[idx], x)
    for k, gk in enumerate(geoms):
        m = idx == k
        xk, ck = polar_to_ecef(gk.origin, gk.to_local, polar[m], sig[m], valid[m])
        np.testing.assert_array_equal(x[m], xk)
        np.testing.assert_array_equal(cov[m], ck)
        np.testing.assert_array_equal(z[m], ecef_to_polar(gk.origin, gk.to_local, xk))
        np.testing.assert_array_equal(h[m], polar_jacobian(gk.origin, gk.to_local, xk))


# --- Jacobians and covariance ------------------------------------------------------


def test_polar_jacobian_matches_central_differences() -> None:
    g = site_geometry("s", -5.0, 100.0, 20.0, yaw_deg=-70.0, pitch_deg=3.0)
    polar = _polar_grid(np.random.default_rng(5), 30)
    x, _ = polar_to_ecef(g.origin, g.to_local, polar, np.tile(SIGMA, (30, 1)), np.ones(30, bool))
    h = polar_jacobian(g.origin, g.to_local, x)
    fd = np.empty_like(h)
    for j in range(6):
        step = 1e-2 if j < 3 else 1e-3  # metres, m/s: the map is smooth on that scale
        xp, xm = x.copy(), x.copy()
        xp[:, j] += step
        xm[:, j] -= step
        zp = ecef_to_polar(g.origin, g.to_local, xp)
        zm = ecef_to_polar(g.origin, g.to_local, xm)
        dz = zp - zm
        dz[:, 1] = angle_diff(zp[:, 1], zm[:, 1])
        fd[:, :, j] = dz / (2 * step)
    # Compare per row against the row's own scale (angles ~1/ρ, ρ ≥ 500 m).
    scale = np.abs(h).max(axis=2, keepdims=True)
    np.testing.assert_allclose(fd / scale, h / scale, atol=1e-6)


def _polar_to_ecef_fd_jacobian(g: SensorGeometry, polar: F64, steps: F64) -> F64:
    n = polar.shape[0]
    ones = np.ones((n, 6))
    jac = np.empty((n, 6, 6))
    for j in range(6):
        pp, pm = polar.copy(), polar.copy()
        pp[:, j] += steps[j]
        pm[:, j] -= steps[j]
        xp, _ = polar_to_ecef(g.origin, g.to_local, pp, ones, np.ones(n, bool))
        xm, _ = polar_to_ecef(g.origin, g.to_local, pm, ones, np.ones(n, bool))
        jac[:, :, j] = (xp - xm) / (2 * steps[j])
    return jac


def test_polar_to_ecef_covariance_is_fd_jacobian_sandwich() -> None:
    g = site_geometry("s", 64.0, -22.0, 30.0, yaw_deg=200.0, roll_deg=1.5)
    polar = _polar_grid(np.random.default_rng(6), 30)
    sig = np.tile(SIGMA, (30, 1))
    _, cov = polar_to_ecef(g.origin, g.to_local, polar, sig, np.ones(30, bool))
    jac = _polar_to_ecef_fd_jacobian(g, polar, np.array([1e-2, 1e-7, 1e-7, 1e-3, 1e-7, 1e-7]))
    expected = jac @ (SIGMA**2 * np.eye(6)) @ np.swapaxes(jac, 1, 2)
    # Normalise by the diagonal so metres² and (m/s)² entries weigh alike.
    d = np.sqrt(np.einsum("nii->ni", expected))
    norm = d[:, :, None] * d[:, None, :]
    np.testing.assert_allclose(cov / norm, expected / norm, atol=1e-6)


@pytest.mark.parametrize("rates_valid", [True, False])
def test_covariance_matches_monte_carlo(rates_valid: bool) -> None:
    """The linearised P against the sample covariance of 200 000 draws.

    Whitened by the analytic P, the sample covariance should be I. Each
    whitened entry is an average of 200 000 products of unit normals: its
    standard error is sqrt(2/n) = 0.0032 on the diagonal and sqrt(1/n) =
    0.0022 off it, so 0.02 is > 6 standard errors over the 21 entries. The
    linearisation error is far below that: its relative size is of order
    σ_angle² (~1e-6) and (σ_ρ/ρ)² (~1e-8) at these sigmas.
    """
    g = site_geometry("s", 45.0, 9.0, 200.0, yaw_deg=30.0)
    n = 200_000
    mean = np.array([[60_000.0, 2.0, 0.25, -300.0, 0.004, -0.002]])
    sigma = np.array([[25.0, 2e-3, 2e-3, 3.0, 5e-4, 5e-4]])
    valid = np.array([rates_valid])
    _, cov = polar_to_ecef(g.origin, g.to_local, mean, sigma, valid, tangential_sigma_mps=800.0)

    rng = np.random.default_rng(20240611)
    draws = mean + rng.standard_normal((n, 6)) * sigma
    xs, _ = polar_to_ecef(
        g.origin, g.to_local, draws, np.broadcast_to(sigma, (n, 6)), np.full(n, rates_valid)
    )
    if not rates_valid:
        # The model: unobserved tangential velocity is N(0, tangential σ²)
        # along the two tangential unit vectors of each draw's line of sight.
        az, el = draws[:, 1], draws[:, 2]
        eaz = np.column_stack([-np.sin(az), np.cos(az), np.zeros(n)])
        eel = np.column_stack([-np.sin(el) * np.cos(az), -np.sin(el) * np.sin(az), np.cos(el)])
        w = rng.standard_normal((n, 2)) * 800.0
        xs[:, 3:] += (w[:, :1] * eaz + w[:, 1:] * eel) @ g.to_local
    sample = np.cov(xs, rowvar=False)
    chol = np.linalg.cholesky(cov[0])
    inv = np.linalg.inv(chol)
    whitened = inv @ sample @ inv.T
    np.testing.assert_allclose(whitened, np.eye(6), atol=0.02)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-4.0, 4.0, allow_nan=False),
            st.floats(-1.6, 1.6, allow_nan=False),
            st.floats(-4.0, 4.0, allow_nan=False),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_euler_zyx_equals_scipy_rotation(angles: list[tuple[float, float, float]]) -> None:
    """The written-out yaw-pitch-roll matrices (no scipy in the gateway process,
    issue 18) are scipy's intrinsic "ZYX" ones, one set or stacked."""
    from scipy.spatial.transform import Rotation

    a = np.array(angles)
    want = Rotation.from_euler("ZYX", a).as_matrix()
    np.testing.assert_allclose(euler_zyx(a), want, atol=1e-12)
    np.testing.assert_allclose(euler_zyx(a[0]), want[0], atol=1e-12)
