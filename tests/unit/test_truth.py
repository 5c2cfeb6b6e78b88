"""Truth: ballistic arcs hit their ends on time and conserve energy; air targets fly their routes."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pymap3d
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

from sim_devices import kepler
from sim_devices.scenario import BallisticTarget, Scenario, parse_scenario, resolve_scenario
from sim_devices.truth import compile_truth, truth_at


def scenario_with(targets: list[dict[str, Any]]) -> Scenario:
    return parse_scenario(
        {
            "scenario": {"name": "t"},
            "sites": [{"id": "s", "lat_deg": 45.0, "lon_deg": 10.0, "alt_m": 0.0}],
            "targets": copy.deepcopy(targets),
        }
    )


BM: dict[str, Any] = {
    "id": "b",
    "kind": "ballistic",
    "launch_lat_deg": 47.0,
    "launch_lon_deg": 9.0,
    "launch_alt_m": 120.0,
    "impact_lat_deg": 44.8,
    "impact_lon_deg": 11.5,
    "impact_alt_m": 30.0,
    "launch_time_s": 12.5,
    "flight_time_s": 260.0,
}
AIR: dict[str, Any] = {
    "id": "a",
    "kind": "air",
    "speed_mps": 250.0,
    "start_time_s": 3.0,
    "waypoints": [
        {"lat_deg": 45.5, "lon_deg": 10.0, "alt_m": 8000.0},
        {"lat_deg": 45.0, "lon_deg": 11.0, "alt_m": 6000.0},
        {"lat_deg": 44.2, "lon_deg": 10.4, "alt_m": 6000.0},
    ],
}


def ecef(lat: float, lon: float, alt: float) -> np.ndarray:
    return np.array(pymap3d.geodetic2ecef(lat, lon, alt))


def test_ballistic_hits_launch_and_impact_on_time() -> None:
    scn = scenario_with([BM])
    bm = scn.targets[0]
    assert isinstance(bm, BallisticTarget)
    _, x0, a0 = truth_at(scn, 12.5)
    _, x1, a1 = truth_at(scn, 12.5 + 260.0)
    assert a0[0]
    assert a1[0]
    assert np.linalg.norm(x0[0, :3] - ecef(47.0, 9.0, 120.0)) < 1e-3
    assert np.linalg.norm(x1[0, :3] - ecef(44.8, 11.5, 30.0)) < 1e-3
    # Outside the flight it is not there, and says so with NaN.
    _, xb, ab = truth_at(scn, np.array([12.4, 272.6]))
    assert not ab.any()
    assert np.isnan(xb).all()


def test_ballistic_conserves_the_jacobi_integral_and_matches_integration() -> None:
    scn = scenario_with([BM])
    t = np.linspace(12.5, 272.5, 400)
    _, x, active = truth_at(scn, t)
    assert active.all()
    c = kepler.jacobi_energy(x[:, 0])
    assert np.ptp(c) < 1e-9 * abs(c.mean())
    # The velocity is the derivative of the position (central differences).
    h = 1e-3
    _, xp, _ = truth_at(scn, t[1:-1] + h)
    _, xm, _ = truth_at(scn, t[1:-1] - h)
    fd = (xp[:, 0, :3] - xm[:, 0, :3]) / (2 * h)
    assert np.abs(fd - x[1:-1, 0, 3:]).max() < 1e-3
    # Independent check: integrate the rotating-frame equations of motion
    # (gravity, Coriolis, centrifugal) from the launch state.
    w = np.array([0.0, 0.0, kepler.OMEGA_EARTH])

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        r, v = y[:3], y[3:]
        acc = -kepler.MU_EARTH * r / np.linalg.norm(r) ** 3 - 2 * np.cross(w, v) - np.cross(w, np.cross(w, r))
        return np.concatenate([v, acc])

    sol = solve_ivp(rhs, (t[0], t[-1]), x[0, 0], t_eval=t, rtol=1e-12, atol=1e-6, method="DOP853")
    assert np.abs(sol.y.T[:, :3] - x[:, 0, :3]).max() < 0.05  # metres, over 260 s


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lat0=st.floats(-60, 60),
    lon0=st.floats(-170, 170),
    dlat=st.floats(-5, 5),
    dlon=st.floats(-5, 5),
    t_launch=st.floats(0, 1000),
    loft=st.floats(1.05, 3.0),
)
def test_ballistic_endpoints_property(
    lat0: float, lon0: float, dlat: float, dlon: float, t_launch: float, loft: float
) -> None:
    # Any feasible arc passes through both ends at the right times. The flight
    # time is a multiple of the circular-orbit time over the ground distance,
    # so the arc is elliptic and above ground.
    p0, p1 = ecef(lat0, lon0, 0.0), ecef(lat0 + dlat, lon0 + dlon, 0.0)
    dist = np.linalg.norm(p1 - p0)
    assume(dist > 20_000.0)
    tof = loft * dist / 7900.0 + 30.0
    tgt = dict(BM, launch_lat_deg=lat0, launch_lon_deg=lon0, launch_alt_m=0.0,
               impact_lat_deg=lat0 + dlat, impact_lon_deg=lon0 + dlon, impact_alt_m=0.0,
               launch_time_s=t_launch, flight_time_s=tof)  # fmt: skip
    scn = scenario_with([tgt])
    _, x, _ = truth_at(scn, np.array([t_launch, t_launch + tof]))
    assert np.linalg.norm(x[0, 0, :3] - p0) < 1e-2
    assert np.linalg.norm(x[1, 0, :3] - p1) < 1e-2


def test_apogee_target_reaches_its_apogee() -> None:
    tgt = dict(BM, apogee_m=90_000.0)
    del tgt["flight_time_s"]
    scn = scenario_with([tgt])
    bm = scn.targets[0]
    assert isinstance(bm, BallisticTarget)
    t = np.linspace(bm.launch_time_s, bm.impact_time_s, 4001)
    _, x, _ = truth_at(scn, t)
    h = pymap3d.ecef2geodetic(x[:, 0, 0], x[:, 0, 1], x[:, 0, 2])[2]
    assert np.max(h) == pytest.approx(90_000.0, abs=50.0)


def test_air_target_reaches_its_waypoints_at_constant_speed() -> None:
    scn = scenario_with([AIR])
    truth = compile_truth(scn)
    assert truth.air is not None
    t_wp = np.concatenate([truth.air.leg_t0, truth.air.t_end])
    assert t_wp[0] == 3.0
    _, x, active = truth_at(scn, t_wp)
    assert active.all()
    waypoints: list[dict[str, float]] = AIR["waypoints"]
    for i, wp in enumerate(waypoints):
        assert np.linalg.norm(x[i, 0, :3] - ecef(wp["lat_deg"], wp["lon_deg"], wp["alt_m"])) < 1e-3
    t = np.linspace(t_wp[0], t_wp[-1], 3000)
    _, xs, _ = truth_at(scn, t)
    speed = np.linalg.norm(xs[:, 0, 3:], axis=1)
    assert np.abs(speed / 250.0 - 1.0).max() < 1e-3
    # Positions are continuous (no jump at a waypoint): consecutive samples are
    # never further apart than the speed allows.
    step = np.linalg.norm(np.diff(xs[:, 0, :3], axis=0), axis=1)
    assert step.max() <= 250.0 * (t[1] - t[0]) * 1.001
    # Mid-leg altitude follows the waypoints' (no chord sag of hundreds of metres).
    mid = 0.5 * (t_wp[1] + t_wp[2])
    _, xm, _ = truth_at(scn, mid)
    assert pymap3d.ecef2geodetic(*xm[0, :3])[2] == pytest.approx(6000.0, abs=30.0)
    # Before the start and after the last waypoint it is inactive.
    _, _, act = truth_at(scn, np.array([2.9, t_wp[-1] + 0.1]))
    assert not act.any()


def test_vectorised_equals_scalar_and_ids_in_file_order() -> None:
    demo = resolve_scenario("builtin:demo")
    t = np.array([0.0, 7.3, 61.0, 200.0, 401.5])
    ids, xv, av = truth_at(demo, t)
    assert ids == tuple(tg.id for tg in demo.targets)
    for i, ti in enumerate(t):
        _, xs, as_ = truth_at(demo, float(ti))
        np.testing.assert_array_equal(as_, av[i])
        np.testing.assert_allclose(xs[as_], xv[i][av[i]], rtol=0, atol=1e-6)
