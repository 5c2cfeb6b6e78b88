"""Seeded multi-sensor, multi-target scenarios for the fusion bench.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.fusion.scenarios --family cso --seed 1 --out /tmp/fb/cso_s1.npz
    .venv/bin/python -m benchmarks.fusion.scenarios --family straight -n 50 --seed 1 --out scen_n50.npz

Families
  ``straight``  N air targets flying straight at 1-3 km/s for 60 s with white-noise
                acceleration (q = 1 m²/s³), Pd 0.9, 20 clutter plots/scan. With the
                same seed it draws the same random numbers in the same order as the
                reference bench's original ``gen_scenario.py`` (``-n 50 --seed 1`` is
                the old ``scen_n50.npz``), so earlier figures compare.
  ``cso``       exo-atmospheric threat complexes: C complexes (default 20) of one
                object plus F fragments (default 7) that separated 30 s before the
                start at 2-15 m/s (so 60-450 m from their parent at t = 0), plus
                mid-flight separation events (a new fragment leaves a parent at
                20-80 s). Central gravity with J2; a small white-noise acceleration
                for what a gravity model leaves out. 300-850 km from the radars,
                Pd 0.8, 40 clutter plots/scan, 120 s.
  ``manoeuvre`` air targets at 200-600 m/s alternating straight legs and level
                coordinated turns of 3-7 g (lateral acceleration), Pd 0.9, 20 clutter
                plots/scan, 120 s.
  ``mixed``     one raid of all three: complexes, manoeuvring and straight targets.

Every family uses the same three radars (sites as in the original bench) at 1 Hz
each, staggered, reporting (elevation, azimuth, range) with 1 mrad / 1 mrad / 30 m
noise.

File format (``np.savez_compressed``; the reference bench's format, unchanged, plus
``truth_exists``)::

  epoch            str   ISO time of t = 0
  params_json      str   every generation parameter as JSON (family, seed, gravity, ...)
  state_order      str   "x,vx,y,vy,z,vz"
  sensor_pos       (S,3) radar sites [m]; local Cartesian frame, z up
  sensor_sigma     (S,3) noise std [σ_el rad, σ_az rad, σ_r m]
  sensor_pd        (S,)  detection probability
  sensor_clutter_rate (S,) mean Poisson false plots per scan
  clutter_bounds   (S,6) [el_min, el_max, az_min, az_max, r_min, r_max], uniform clutter
  scan_time        (K,)  seconds since epoch of each scan (one sensor per scan)
  scan_sensor      (K,)  radar of each scan
  truth_id         (N,)  object ids
  truth_time       (K,)  == scan_time
  truth_state      (N,K,6) true state (x, vx, y, vy, z, vz) at each scan time
  truth_exists     (N,K) bool: the object exists as a separate object (False before
                   a mid-flight separation; its state then equals its parent's)
  truth_parent     (N,)  id of the object it separated from, -1 for none
  meas_scan        (M,)  scan index of each plot (plots sorted by scan)
  meas_time        (M,)  seconds since epoch
  meas_sensor      (M,)  radar index
  meas_z           (M,3) (el, az, r) with noise; el = asin(dz/r), az = atan2(dy, dx)
                   of the position relative to the site, az wrapped to [-π, π)
  meas_truth       (M,)  originating object id, -1 for clutter (a tracker must not read it)

A tracks file (what a tracker writes) holds ``track_id (R,)``, ``track_time (R,)``
(seconds, at scan times) and ``track_state (R,6)`` in the order x, vx, y, vy, z, vz,
confirmed tracks only: see ``benchmarks/fusion/README.md``.

Gravity (``cso``): the Earth's centre is at (0, 0, -a) in the local frame and its
spin axis is the local z axis (the frame is tangent at a pole and does not rotate),
so ``gateway.fusion.motion.ecef_gravity(j2, rotating=False)`` of the position
shifted by (0, 0, a) is exactly the truth's acceleration.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.fusion.dynamics import (
    A_EARTH,
    F64,
    GM,
    POS,
    VEL,
    StepFn,
    ballistic_step,
    linear_step,
    ncv_q,
    to_ebr,
    turn_step,
    wrap,
)

Scenario = dict[str, Any]


SITES = np.array([[0.0, 0.0, 0.0], [60e3, -40e3, 100.0], [20e3, 70e3, 500.0]])
SIGMA_ANGLE = 1e-3
SIGMA_RANGE = 30.0
EPOCH = "2025-01-01T00:00:00"


@dataclass(frozen=True)
class Radars:
    """Three radars: sites, noise, detection probability, clutter rate and box."""

    pd: float
    clutter_rate: float
    clutter_box: tuple[float, float, float, float, float, float]
    rate_hz: float = 1.0

    @property
    def n(self) -> int:
        return len(SITES)

    def arrays(self) -> dict[str, Any]:
        s = self.n
        return {
            "sensor_pos": SITES.copy(),
            "sensor_sigma": np.tile([SIGMA_ANGLE, SIGMA_ANGLE, SIGMA_RANGE], (s, 1)),
            "sensor_pd": np.full(s, self.pd),
            "sensor_clutter_rate": np.full(s, self.clutter_rate),
            "clutter_bounds": np.tile(np.array(self.clutter_box), (s, 1)),
        }


def schedule(duration: float, rate_hz: float, n_sensors: int) -> tuple[F64, npt.NDArray[np.int32]]:
    """Staggered scans: radar k reports at j/rate + k/(S·rate)."""
    period = 1.0 / rate_hz
    n_rep = round(duration * rate_hz)
    j, k = np.meshgrid(np.arange(n_rep), np.arange(n_sensors), indexing="ij")
    t = (j * period + k * period / n_sensors).ravel()
    return t.astype(np.float64), k.ravel().astype(np.int32)


@dataclass
class Truth:
    """Truth trajectories and what the floor needs to linearise them."""

    state: F64  # (N, K, 6)
    exists: npt.NDArray[np.bool_]  # (N, K)
    parent: npt.NDArray[np.int32]  # (N,)
    step: StepFn  # (states of the N objects at k, k, dt) -> states at k+1
    q: float


def propagate(rng: np.random.Generator, x0: F64, scan_time: F64, step: StepFn, q: float) -> F64:
    """Run ``step`` plus white-noise acceleration ``q`` over the scan times."""
    n, k_scans = x0.shape[0], len(scan_time)
    out = np.zeros((n, k_scans, 6))
    out[:, 0] = x = x0
    for k in range(1, k_scans):
        dt = float(scan_time[k] - scan_time[k - 1])
        x = step(x, k - 1, dt)
        if q > 0.0:
            x = x + rng.standard_normal((n, 6)) @ np.linalg.cholesky(ncv_q(dt, q)).T
        out[:, k] = x
    return out


def observe(
    rng: np.random.Generator,
    truth: Truth,
    scan_time: F64,
    scan_sensor: npt.NDArray[np.int32],
    radars: Radars,
) -> dict[str, Any]:
    """Plots of every scan: detections of existing objects (Pd) plus Poisson clutter."""
    n = truth.state.shape[0]
    arr = radars.arrays()
    scans, sensors, zs, who = [], [], [], []
    for k in range(len(scan_time)):
        s = int(scan_sensor[k])
        det = (rng.random(n) < arr["sensor_pd"][s]) & truth.exists[:, k]
        idx = np.nonzero(det)[0]
        rel = truth.state[idx, k][:, POS] - arr["sensor_pos"][s]
        z = to_ebr(rel) + rng.standard_normal((len(idx), 3)) * arr["sensor_sigma"][s]
        z[:, 1] = wrap(z[:, 1])
        nc = rng.poisson(arr["sensor_clutter_rate"][s])
        b = arr["clutter_bounds"][s]
        zc = np.column_stack(
            [rng.uniform(b[0], b[1], nc), rng.uniform(b[2], b[3], nc), rng.uniform(b[4], b[5], nc)]
        )
        zz = np.vstack([z, zc])
        tt = np.concatenate([idx, -np.ones(nc, dtype=int)])
        perm = rng.permutation(len(zz))  # the order within a scan carries no information
        scans.append(np.full(len(zz), k))
        sensors.append(np.full(len(zz), s))
        zs.append(zz[perm])
        who.append(tt[perm])
    meas_scan = np.concatenate(scans).astype(np.int32)
    return {
        **arr,
        "meas_scan": meas_scan,
        "meas_time": scan_time[meas_scan],
        "meas_sensor": np.concatenate(sensors).astype(np.int32),
        "meas_z": np.vstack(zs),
        "meas_truth": np.concatenate(who).astype(np.int32),
    }


def _assemble(
    family: str, seed: int, truth: Truth, scan_time: F64, scan_sensor: Any, meas: dict[str, Any], **p: Any
) -> Scenario:
    n = truth.state.shape[0]
    params = {
        "family": family,
        "seed": seed,
        "n_targets": n,
        "n_sensors": len(SITES),
        "n_scans": len(scan_time),
        "n_meas": len(meas["meas_scan"]),
        "q_truth_m2_s3": truth.q,
        "sigma_el_az_rad": SIGMA_ANGLE,
        "sigma_range_m": SIGMA_RANGE,
        **p,
    }
    return {
        "epoch": np.array(EPOCH),
        "params_json": np.array(json.dumps(params)),
        "state_order": np.array("x,vx,y,vy,z,vz"),
        "scan_time": scan_time,
        "scan_sensor": scan_sensor.astype(np.int32),
        "truth_id": np.arange(n, dtype=np.int32),
        "truth_time": scan_time.copy(),
        "truth_state": truth.state,
        "truth_exists": truth.exists,
        "truth_parent": truth.parent,
        **meas,
    }


def _straight_start(rng: np.random.Generator, n: int) -> F64:
    """Inbound at 1-3 km/s, ±10° climb/dive, 200-400 km out (the original bench's draws)."""
    pos = np.column_stack(
        [rng.uniform(200e3, 400e3, n), rng.uniform(-150e3, 150e3, n), rng.uniform(40e3, 140e3, n)]
    )
    speed = rng.uniform(1000.0, 3000.0, n)
    heading = np.pi + rng.uniform(-np.pi / 4, np.pi / 4, n)
    gamma = rng.uniform(-np.deg2rad(10), np.deg2rad(10), n)
    x = np.zeros((n, 6))
    x[:, POS] = pos
    x[:, VEL] = np.column_stack(
        [
            speed * np.cos(gamma) * np.cos(heading),
            speed * np.cos(gamma) * np.sin(heading),
            speed * np.sin(gamma),
        ]
    )
    return x


def straight(
    n: int = 50, seed: int = 1, duration: float = 60.0, pd: float = 0.9, clutter: float = 20.0, q: float = 1.0
) -> Scenario:
    """The original bench: N straight flyers, NCV truth with white-noise acceleration q."""
    rng = np.random.default_rng(seed)
    radars = Radars(pd, clutter, (0.0, np.deg2rad(45), -np.pi / 2, np.pi / 2, 20e3, 500e3))
    scan_time, scan_sensor = schedule(duration, radars.rate_hz, radars.n)
    x0 = _straight_start(rng, n)
    state = propagate(rng, x0, scan_time, linear_step, q)
    truth = Truth(state, np.ones(state.shape[:2], bool), np.full(n, -1, np.int32), linear_step, q)
    meas = observe(rng, truth, scan_time, scan_sensor, radars)
    return _assemble(
        "straight", seed, truth, scan_time, scan_sensor, meas, duration_s=duration, pd=pd,
        clutter_rate_per_scan=clutter, gravity="none",
        truth_model="nearly-constant velocity (white-noise acceleration)",
    )  # fmt: skip


def _random_dirs(rng: np.random.Generator, n: int) -> F64:
    v = rng.standard_normal((n, 3))
    return np.asarray(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=np.float64)


def _to_bench(pos: F64, vel: F64) -> F64:
    x = np.zeros((len(pos), 6))
    x[:, POS] = pos
    x[:, VEL] = vel
    return x


def _cso_objects(
    rng: np.random.Generator,
    complexes: int,
    fragments: int,
    spawns: int,
    scan_time: F64,
    q: float,
    j2: bool,
    sep_before_s: float = 30.0,
) -> Truth:
    """Threat complexes: parents, fragments separated ``sep_before_s`` before t = 0, spawns."""
    c = complexes
    # Parents at t = 0: 650-850 km ground range, ±35° azimuth, 230-330 km up,
    # inbound within ±20° of the origin, 2.5-3.5 km/s, 0-8° descending: over
    # 120 s they stay above 100 km (exo-atmospheric) and 300 km from the radars.
    rho = rng.uniform(650e3, 850e3, c)
    az = rng.uniform(-np.deg2rad(35), np.deg2rad(35), c)
    alt = rng.uniform(230e3, 330e3, c)
    pos = np.column_stack([rho * np.cos(az), rho * np.sin(az), alt])
    heading = az + np.pi + rng.uniform(-np.deg2rad(20), np.deg2rad(20), c)
    speed = rng.uniform(2500.0, 3500.0, c)
    gamma = -rng.uniform(0.0, np.deg2rad(8), c)
    vel = np.column_stack(
        [
            speed * np.cos(gamma) * np.cos(heading),
            speed * np.cos(gamma) * np.sin(heading),
            speed * np.sin(gamma),
        ]
    )
    parents0 = _to_bench(pos, vel)
    # Back to the separation time (deterministic flight), fragments get 2-15 m/s.
    n_back = 60
    back = parents0
    for _ in range(n_back):
        back = ballistic_step(back, -sep_before_s / n_back, j2)
    dv = rng.uniform(2.0, 15.0, (c, fragments))[..., None] * _random_dirs(rng, c * fragments).reshape(
        c, fragments, 3
    )
    frag = np.repeat(back, fragments, axis=0)
    frag[:, VEL] += dv.reshape(-1, 3)
    for _ in range(n_back):
        frag = ballistic_step(frag, sep_before_s / n_back, j2)
    # Order: complex i holds rows i·(F+1) .. : parent first, then its fragments.
    x0 = np.concatenate([parents0[:, None], frag.reshape(c, fragments, 6)], axis=1).reshape(-1, 6)
    n0 = len(x0)
    parent = np.repeat(np.arange(c) * (fragments + 1), fragments + 1).astype(np.int32)
    parent[:: fragments + 1] = -1

    def step(x: F64, k: int, dt: float) -> F64:
        return ballistic_step(x, dt, j2)

    state = propagate(rng, x0, scan_time, step, q)
    exists = np.ones((n0, len(scan_time)), bool)
    # Mid-flight separation: a new object leaves a parent at 20-80 s, at 2-15 m/s.
    src = rng.choice(c, size=spawns, replace=spawns > c) * (fragments + 1)
    span = float(scan_time[-1])
    t_sep = rng.uniform(min(20.0, 0.2 * span), min(80.0, 0.8 * span), spawns)
    dvs = rng.uniform(2.0, 15.0, spawns)[:, None] * _random_dirs(rng, spawns)
    new_state = np.zeros((spawns, len(scan_time), 6))
    new_exists = np.zeros((spawns, len(scan_time)), bool)
    for i in range(spawns):
        k0 = int(np.searchsorted(scan_time, t_sep[i]))
        new_state[i, : k0 + 1] = state[src[i], : k0 + 1]
        x = state[src[i], k0].copy()[None]
        x[0, VEL] += dvs[i]
        new_state[i, k0] = x[0]
        new_exists[i, k0:] = True
        sub = propagate(rng, x, scan_time[k0:], lambda s, k, dt: ballistic_step(s, dt, j2), q)
        new_state[i, k0:] = sub[0]
    return Truth(
        np.concatenate([state, new_state]),
        np.concatenate([exists, new_exists]),
        np.concatenate([parent, src.astype(np.int32)]),
        step,
        q,
    )


CSO_CLUTTER_BOX = (0.0, np.deg2rad(45), -np.pi / 2, np.pi / 2, 100e3, 1000e3)


def cso(
    seed: int = 1,
    complexes: int = 20,
    fragments: int = 7,
    spawns: int = 4,
    duration: float = 120.0,
    pd: float = 0.8,
    clutter: float = 40.0,
    q: float = 0.1,
    j2: bool = True,
) -> Scenario:
    """Ballistic threat complexes (see the module docstring)."""
    rng = np.random.default_rng(seed)
    radars = Radars(pd, clutter, CSO_CLUTTER_BOX)
    scan_time, scan_sensor = schedule(duration, radars.rate_hz, radars.n)
    truth = _cso_objects(rng, complexes, fragments, spawns, scan_time, q, j2)
    meas = observe(rng, truth, scan_time, scan_sensor, radars)
    return _assemble(
        "cso", seed, truth, scan_time, scan_sensor, meas, duration_s=duration, pd=pd,
        clutter_rate_per_scan=clutter, complexes=complexes, fragments=fragments, spawns=spawns,
        separation_before_start_s=30.0, separation_speed_mps=[2.0, 15.0],
        gravity={"model": "central", "j2": j2, "gm": GM, "a": A_EARTH, "centre": [0.0, 0.0, -A_EARTH],
                 "spin_axis": [0.0, 0.0, 1.0]},
        truth_model="RK4 ballistic flight in central gravity + J2, plus white-noise acceleration q",
    )  # fmt: skip


def _manoeuvre_objects(rng: np.random.Generator, n: int, scan_time: F64, q: float) -> Truth:
    """Air targets: straight legs of 5-20 s and level turns of 3-7 g through 45-180°."""
    rho = rng.uniform(30e3, 150e3, n)
    az = rng.uniform(-np.pi / 3, np.pi / 3, n)
    pos = np.column_stack([rho * np.cos(az), rho * np.sin(az), rng.uniform(2e3, 12e3, n)])
    speed = rng.uniform(200.0, 600.0, n)
    heading = rng.uniform(-np.pi, np.pi, n)
    vel = np.column_stack([speed * np.cos(heading), speed * np.sin(heading), np.zeros(n)])
    # Turn rate per object per step: ω = ±n·g / v (lateral acceleration n·g).
    k_scans = len(scan_time)
    omega = np.zeros((n, k_scans))
    for i in range(n):
        t = rng.uniform(0.0, 15.0)
        while t < scan_time[-1]:
            t += rng.uniform(5.0, 20.0)  # straight leg
            w = rng.choice([-1.0, 1.0]) * rng.uniform(3.0, 7.0) * 9.80665 / speed[i]
            dur = rng.uniform(np.pi / 4, np.pi) / abs(w)
            omega[i, (scan_time >= t) & (scan_time < t + dur)] = w
            t += dur

    def step(x: F64, k: int, dt: float) -> F64:
        return turn_step(x, dt, omega[:, k])

    state = propagate(rng, _to_bench(pos, vel), scan_time, step, q)
    return Truth(state, np.ones((n, k_scans), bool), np.full(n, -1, np.int32), step, q)


def manoeuvre(
    n: int = 40,
    seed: int = 1,
    duration: float = 120.0,
    pd: float = 0.9,
    clutter: float = 20.0,
    q: float = 1.0,
) -> Scenario:
    """Manoeuvring air targets (see the module docstring)."""
    rng = np.random.default_rng(seed)
    radars = Radars(pd, clutter, (0.0, np.deg2rad(30), -np.pi / 2, np.pi / 2, 5e3, 250e3))
    scan_time, scan_sensor = schedule(duration, radars.rate_hz, radars.n)
    truth = _manoeuvre_objects(rng, n, scan_time, q)
    meas = observe(rng, truth, scan_time, scan_sensor, radars)
    return _assemble(
        "manoeuvre", seed, truth, scan_time, scan_sensor, meas, duration_s=duration, pd=pd,
        clutter_rate_per_scan=clutter, gravity="none", turn_g=[3.0, 7.0],
        truth_model="level coordinated turns (known rate) and straight legs, plus white-noise acceleration q",
    )  # fmt: skip


def mixed(
    seed: int = 1,
    complexes: int = 5,
    fragments: int = 7,
    spawns: int = 2,
    n_manoeuvre: int = 30,
    n_straight: int = 30,
    duration: float = 120.0,
    pd: float = 0.85,
    clutter: float = 40.0,
    q_ballistic: float = 0.1,
    q_air: float = 1.0,
    j2: bool = True,
) -> Scenario:
    """One raid: threat complexes, manoeuvring and straight air targets together.

    Each group keeps its own truth model; the floor is computed per group.
    """
    rng = np.random.default_rng(seed)
    radars = Radars(pd, clutter, (0.0, np.deg2rad(45), -np.pi / 2, np.pi / 2, 5e3, 1000e3))
    scan_time, scan_sensor = schedule(duration, radars.rate_hz, radars.n)
    a = _cso_objects(rng, complexes, fragments, spawns, scan_time, q_ballistic, j2)
    b = _manoeuvre_objects(rng, n_manoeuvre, scan_time, q_air)
    x0 = _straight_start(rng, n_straight)
    c_state = propagate(rng, x0, scan_time, linear_step, q_air)
    na, nb = a.state.shape[0], b.state.shape[0]
    groups = [("cso", 0, na), ("manoeuvre", na, na + nb), ("straight", na + nb, na + nb + n_straight)]

    def step(x: F64, k: int, dt: float) -> F64:
        out = np.empty_like(x)
        out[:na] = a.step(x[:na], k, dt)
        out[na : na + nb] = b.step(x[na : na + nb], k, dt)
        out[na + nb :] = linear_step(x[na + nb :], k, dt)
        return out

    q_rows = np.concatenate([np.full(na, q_ballistic), np.full(nb + n_straight, q_air)])
    truth = Truth(
        np.concatenate([a.state, b.state, c_state]),
        np.concatenate([a.exists, b.exists, np.ones((n_straight, len(scan_time)), bool)]),
        np.concatenate([a.parent, np.full(nb + n_straight, -1, np.int32)]),
        step,
        q_air,
    )
    meas = observe(rng, truth, scan_time, scan_sensor, radars)
    sc = _assemble(
        "mixed", seed, truth, scan_time, scan_sensor, meas, duration_s=duration, pd=pd,
        clutter_rate_per_scan=clutter, complexes=complexes, fragments=fragments, spawns=spawns,
        groups=[{"family": g, "rows": [lo, hi]} for g, lo, hi in groups],
        q_truth_m2_s3=None, q_ballistic_m2_s3=q_ballistic, q_air_m2_s3=q_air,
        gravity={"model": "central", "j2": j2, "gm": GM, "a": A_EARTH, "centre": [0.0, 0.0, -A_EARTH],
                 "spin_axis": [0.0, 0.0, 1.0], "rows": [0, na]},
        truth_model="per group: cso, manoeuvre, straight",
    )  # fmt: skip
    sc["truth_q"] = q_rows
    return sc


FAMILIES: dict[str, Callable[..., Scenario]] = {
    "straight": straight,
    "cso": cso,
    "manoeuvre": manoeuvre,
    "mixed": mixed,
}


def generate(family: str, seed: int = 1, **kw: Any) -> Scenario:
    """Generate one scenario of ``family`` (keyword overrides per family function)."""
    if family not in FAMILIES:
        raise ValueError(f"family {family!r}: one of {sorted(FAMILIES)}")
    return FAMILIES[family](seed=seed, **kw)


def cached(work: Path, family: str, seed: int, **kw: Any) -> Path:
    """Generate (once) into ``work`` and return the file's path."""
    tag = "".join(f"_{k}{v:g}" if isinstance(v, float) else f"_{k}{v}" for k, v in sorted(kw.items()))
    out = work / f"{family}_s{seed}{tag}.npz"
    if not out.exists():
        work.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **generate(family, seed, **kw))
        tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: ``--family F --seed S --out FILE.npz [-n N] [--clutter C] [--pd P] [--duration T]``."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.fusion.scenarios", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--family", choices=sorted(FAMILIES), default="straight")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-n", type=int, default=None, help="targets (straight, manoeuvre)")
    ap.add_argument("--complexes", type=int, default=None, help="threat complexes (cso, mixed)")
    ap.add_argument("--clutter", type=float, default=None, help="mean clutter plots per scan")
    ap.add_argument("--pd", type=float, default=None, help="detection probability")
    ap.add_argument("--duration", type=float, default=None, help="seconds")
    ap.add_argument("-o", "--out", type=Path, required=True)
    a = ap.parse_args(argv)
    kw = {
        k: v
        for k, v in (
            ("n", a.n),
            ("complexes", a.complexes),
            ("clutter", a.clutter),
            ("pd", a.pd),
            ("duration", a.duration),
        )
        if v is not None
    }
    try:
        sc = generate(a.family, a.seed, **kw)
    except TypeError as e:
        ap.error(f"--family {a.family}: {e}")
    np.savez_compressed(a.out, **sc)
    print(a.out, str(sc["params_json"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
