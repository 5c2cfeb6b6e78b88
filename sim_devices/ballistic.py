"""The free-flight arc of a ballistic target: a Lambert arc between launch and impact (ECI).

Split from :mod:`sim_devices.scenario` (which validates the target and keeps
the solved orbit on it): the target is anything with the launch/impact
fields of ``BallisticTarget`` (:class:`FlightEnds`).
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import pymap3d
from scipy.optimize import brentq

from sim_devices import kepler

__all__ = ["FlightEnds", "solve_flight_time"]


class FlightEnds(Protocol):
    """The fields of a ballistic target the solve reads."""

    launch_lat_deg: float
    launch_lon_deg: float
    launch_alt_m: float
    impact_lat_deg: float
    impact_lon_deg: float
    impact_alt_m: float
    launch_time_s: float
    flight_time_s: float | None
    apogee_m: float | None


def solve_flight_time(t: FlightEnds) -> tuple[kepler.Ellipse, float]:
    """The arc and its flight time (given, or shot for from ``apogee_m``); ValueError
    when no arc exists or it passes below the ground."""
    tof = (
        t.flight_time_s if t.flight_time_s is not None else _flight_time_for_apogee(t, float(t.apogee_m or 0))
    )
    orbit = _solve_flight(t, tof)
    _check_above_ground(t, orbit, tof)
    return orbit, tof


def _ballistic_endpoints(t: FlightEnds) -> tuple[np.ndarray, np.ndarray]:
    r1 = np.array(pymap3d.geodetic2ecef(t.launch_lat_deg, t.launch_lon_deg, t.launch_alt_m))
    r2 = np.array(pymap3d.geodetic2ecef(t.impact_lat_deg, t.impact_lon_deg, t.impact_alt_m))
    return r1, r2


def _solve_flight(t: FlightEnds, tof_s: float) -> kepler.Ellipse:
    """The ellipse through launch (at launch time) and impact (tof later), in ECI."""
    r1f, r2f = _ballistic_endpoints(t)
    zero = np.zeros(3)
    r1 = kepler.ecef_to_eci(t.launch_time_s, np.r_[r1f, zero])[:3]
    r2 = kepler.ecef_to_eci(t.launch_time_s + tof_s, np.r_[r2f, zero])[:3]
    v1 = kepler.solve_lambert(r1, r2, tof_s)
    return kepler.Ellipse.from_state(r1, v1, t.launch_time_s)


def _ecef_at(orbit: kepler.Ellipse, t_s: np.ndarray) -> np.ndarray:
    x = kepler.propagate(
        np.asarray(orbit.a), np.asarray(orbit.e), np.asarray(orbit.n), np.asarray(orbit.m0),
        np.asarray(orbit.t0_s), orbit.p_hat, orbit.q_hat, orbit.mu, t_s,
    )  # fmt: skip
    return kepler.eci_to_ecef(t_s, x)


def _heights(orbit: kepler.Ellipse, t_s: np.ndarray) -> np.ndarray:
    x = _ecef_at(orbit, t_s)
    return np.asarray(pymap3d.ecef2geodetic(x[:, 0], x[:, 1], x[:, 2])[2])


def _apogee_height(orbit: kepler.Ellipse, tof_s: float) -> float:
    """Height above the ellipsoid at apoapsis, or NaN when apoapsis is not on the flown arc."""
    ta = orbit.apoapsis_time()
    if ta > orbit.t0_s + tof_s:
        return math.nan
    return float(_heights(orbit, np.array([ta]))[0])


def _check_above_ground(t: FlightEnds, orbit: kepler.Ellipse, tof_s: float) -> None:
    ts = t.launch_time_s + np.linspace(0.0, tof_s, 129)[1:-1]
    floor = min(t.launch_alt_m, t.impact_alt_m) - 1.0
    if np.min(_heights(orbit, ts)) < floor:
        raise ValueError("the free-flight arc passes below the ground (flight time too short)")


def _flight_time_for_apogee(t: FlightEnds, apogee_m: float) -> float:
    """Shooting on the flight time: the Lambert arc whose apoapsis height is ``apogee_m``.

    The apoapsis height grows monotonically with the flight time along the
    short-way family (lofting the arc), so a bracket on a geometric grid then
    Brent's method finds it.
    """

    def height(tof: float) -> float:
        try:
            return _apogee_height(_solve_flight(t, tof), tof)
        except ValueError:
            return math.nan

    grid = np.geomspace(5.0, 7200.0, 80)
    prev_tof, prev_h = math.nan, math.nan
    for tof in grid:
        h = height(float(tof))
        if math.isfinite(h) and math.isfinite(prev_h) and prev_h <= apogee_m <= h:
            return float(brentq(lambda x: height(x) - apogee_m, prev_tof, float(tof), xtol=1e-6))
        prev_tof, prev_h = float(tof), h
    raise ValueError(f"no free-flight arc between these points reaches an apogee of {apogee_m:g} m")
