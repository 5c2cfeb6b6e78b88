"""Accuracy floor (posterior Cramér-Rao bound) and a clairvoyant reference tracker.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.fusion.floor SCENARIO.npz [--json] [--tracks-out CLAIRVOYANT.npz]

Floor
  The posterior Cramér-Rao bound with known association (Tichavský, Muravchik &
  Nehorai, IEEE TSP 46(5), 1998), per object, in covariance form: along the true
  trajectory, P ← F P Fᵀ + Q with F the Jacobian of the family's truth flow
  (``dynamics.truth_model``, numerically differentiated) and Q the truth's own
  white-noise acceleration; at each scan that detected the object (the actual
  detection pattern, so Pd enters as it happened), P ← (P⁻¹ + Hᵀ R⁻¹ H)⁻¹ with H
  the Jacobian of (el, az, r) at the true position. Clutter does not enter
  (association is known). The prior is N(truth, P0), P0 = diag(1 km, 1 km/s)²
  per axis; an object that separates mid-flight starts from its parent's bound
  plus the separation velocity's spread. The figure is the expected position
  error E|e| of e ~ N(0, P_pos) per object, averaged over the objects at each
  time and over the times t >= t0: the same averaging as OSPA with every object
  held and no false track. (When objects lie closer together than this error,
  OSPA's optimal assignment can score below it: it is the floor of a tracker's
  per-object error, not a strict bound on OSPA. The clairvoyant row shows what
  OSPA then reads.)

Clairvoyant reference
  An EKF per object fed exactly that object's plots (``meas_truth``), started
  from the truth perturbed by a draw of P0, with the truth's model where a
  tracker can know it (gravity for ballistic objects, constant velocity for
  straight flyers) and a nearly-constant-velocity model with ``q_turn`` for
  manoeuvring aircraft (whose turns it cannot know). Its tracks are scored with
  the same metrics as any tracker's: a reachable target for OSPA and for track
  identity when objects are closer than the measurement error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import norm, qmc

from benchmarks.fusion.dynamics import (
    F64,
    POS,
    StepFn,
    ebr_jacobian,
    ncv_q,
    to_ebr,
    truth_model,
    wrap,
)

P0_DIAG = np.array([1e3, 1e3, 1e3, 1e3, 1e3, 1e3]) ** 2  # (x, vx, y, vy, z, vz)
# Separation velocity of a mid-flight fragment: 2-15 m/s in a random direction,
# E|Δv|² = (15³ - 2³) / (3 · 13) ≈ 86 m²/s², so about 29 m²/s² per axis.
DV_VAR = 29.0
Q_TURN_CV = 400.0  # m²/s³: NCV for 3-7 g turns, chosen on manoeuvre seeds 1-3
# E|e| by quasi-Monte Carlo: 1024 scrambled-Sobol normal points (error ~0.1 %).
_Z = norm.ppf(qmc.Sobol(d=3, scramble=True, seed=0).random(1024)) ** 2


def expected_error(p_pos: F64) -> F64:
    """E|e| for e ~ N(0, P) per 3x3 covariance (N, 3, 3), by a fixed sample."""
    lam = np.clip(np.linalg.eigvalsh(p_pos), 0.0, None)
    return np.asarray(np.sqrt(lam @ _Z.T).mean(axis=1), dtype=np.float64)


def jacobian(step: StepFn, x: F64, k: int, dt: float) -> F64:
    """Central-difference Jacobian (N, 6, 6) of ``step`` at states ``x`` (N, 6)."""
    h = np.array([1.0, 1e-3, 1.0, 1e-3, 1.0, 1e-3])
    f = np.empty((len(x), 6, 6))
    for j in range(6):
        d = np.zeros(6)
        d[j] = h[j]
        f[:, :, j] = (step(x + d, k, dt) - step(x - d, k, dt)) / (2.0 * h[j])
    return f


def _detections(scen: Any) -> np.ndarray:
    """(K, N) row of each object's plot in each scan, -1 where not detected."""
    k_scans, n = len(scen["scan_time"]), scen["truth_state"].shape[0]
    who = np.asarray(scen["meas_truth"])
    det = np.full((k_scans, n), -1, np.int64)
    m = np.flatnonzero(who >= 0)
    det[np.asarray(scen["meas_scan"])[m], who[m]] = m
    return det


def _births(p: F64, born: np.ndarray, parent: np.ndarray, active: np.ndarray) -> None:
    """Initial covariance of newly existing objects (in place)."""
    for i in np.flatnonzero(born):
        par = int(parent[i])
        if par >= 0 and active[par]:
            p[i] = p[par]
            p[i, [1, 3, 5], [1, 3, 5]] += DV_VAR
        else:
            p[i] = np.diag(P0_DIAG)


def _update(p: F64, rows: np.ndarray, h: F64, r: F64) -> F64:
    """Kalman gain (n, 6, 3) and in-place covariance update of ``rows``."""
    ph = p[rows] @ np.transpose(h, (0, 2, 1))
    s = h @ ph + r
    gain = ph @ np.linalg.inv(s)
    p[rows] = p[rows] - gain @ s @ np.transpose(gain, (0, 2, 1))
    p[rows] = 0.5 * (p[rows] + np.transpose(p[rows], (0, 2, 1)))
    return np.asarray(gain, dtype=np.float64)


def _h6(x: F64, site: F64) -> F64:
    h = np.zeros((len(x), 3, 6))
    h[:, :, POS] = ebr_jacobian(x[:, POS] - site)
    return h


def pcrlb(scen: Any, t0: float = 30.0) -> dict[str, Any]:
    """The floor of one scenario (see the module docstring)."""
    t = np.asarray(scen["scan_time"], np.float64)
    x_true = np.asarray(scen["truth_state"], np.float64)
    n = x_true.shape[0]
    exists = np.asarray(scen["truth_exists"], bool) if "truth_exists" in scen else np.ones((n, len(t)), bool)
    parent = np.asarray(scen["truth_parent"]) if "truth_parent" in scen else np.full(n, -1)
    step, q = truth_model(scen)
    det = _detections(scen)
    sites = np.asarray(scen["sensor_pos"], np.float64)
    sig = np.asarray(scen["sensor_sigma"], np.float64)
    sensor = np.asarray(scen["scan_sensor"])
    p = np.zeros((n, 6, 6))
    active = np.zeros(n, bool)
    per_t, rms_t = [], []
    for k in range(len(t)):
        if k > 0:
            dt = float(t[k] - t[k - 1])
            f = jacobian(step, x_true[:, k - 1], k - 1, dt)
            p = f @ p @ np.transpose(f, (0, 2, 1)) + q[:, None, None] * ncv_q(dt, 1.0)
        born = exists[:, k] & ~active
        _births(p, born, parent, active)
        active |= born
        rows = np.flatnonzero((det[k] >= 0) & active)
        if len(rows):
            s = int(sensor[k])
            _update(p, rows, _h6(x_true[rows, k], sites[s]), np.diag(sig[s] ** 2))
        if t[k] >= t0 - 1e-9:
            live = np.flatnonzero(exists[:, k])
            pp = p[live][:, POS][:, :, POS]
            per_t.append(float(expected_error(pp).mean()))
            rms_t.append(float(np.sqrt(np.trace(pp, axis1=1, axis2=2)).mean()))
    return {"floor": float(np.mean(per_t)), "floor_rms": float(np.mean(rms_t)), "t0": t0}


def clairvoyant(scen: Any, seed: int = 0, q_turn: float = Q_TURN_CV) -> dict[str, np.ndarray]:
    """Tracks of the known-association EKF (the tracks-file arrays)."""
    rng = np.random.default_rng(seed)
    t = np.asarray(scen["scan_time"], np.float64)
    x_true = np.asarray(scen["truth_state"], np.float64)
    n = x_true.shape[0]
    exists = np.asarray(scen["truth_exists"], bool) if "truth_exists" in scen else np.ones((n, len(t)), bool)
    parent = np.asarray(scen["truth_parent"]) if "truth_parent" in scen else np.full(n, -1)
    step, q = truth_model(scen, known_turns=False, q_turn_cv=q_turn)
    det = _detections(scen)
    z_all = np.asarray(scen["meas_z"], np.float64)
    sites = np.asarray(scen["sensor_pos"], np.float64)
    sig = np.asarray(scen["sensor_sigma"], np.float64)
    sensor = np.asarray(scen["scan_sensor"])
    x = x_true[:, 0].copy()
    p = np.zeros((n, 6, 6))
    active = np.zeros(n, bool)
    out_id, out_t, out_x = [], [], []
    chol0 = np.sqrt(P0_DIAG)
    for k in range(len(t)):
        if k > 0:
            dt = float(t[k] - t[k - 1])
            f = jacobian(step, x, k - 1, dt)
            x = step(x, k - 1, dt)
            p = f @ p @ np.transpose(f, (0, 2, 1)) + q[:, None, None] * ncv_q(dt, 1.0)
        born = exists[:, k] & ~active
        for i in np.flatnonzero(born):
            par = int(parent[i])
            x[i] = x[par] if par >= 0 and active[par] else x_true[i, k] + chol0 * rng.standard_normal(6)
        _births(p, born, parent, active)
        active |= born
        x[~active] = x_true[~active, k]  # placeholders, never reported
        rows = np.flatnonzero((det[k] >= 0) & active)
        if len(rows):
            s = int(sensor[k])
            gain = _update(p, rows, _h6(x[rows], sites[s]), np.diag(sig[s] ** 2))
            nu = z_all[det[k, rows]] - to_ebr(x[rows][:, POS] - sites[s])
            nu[:, 1] = wrap(nu[:, 1])
            x[rows] += (gain @ nu[:, :, None])[:, :, 0]
        live = np.flatnonzero(exists[:, k] & active)
        out_id.append(live)
        out_t.append(np.full(len(live), t[k]))
        out_x.append(x[live].copy())
    return {
        "track_id": np.concatenate(out_id).astype(np.int64),
        "track_time": np.concatenate(out_t),
        "track_state": np.concatenate(out_x),
        "state_order": np.array("x,vx,y,vy,z,vz"),
    }


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    from benchmarks.fusion.metrics import Tracks, score

    ap = argparse.ArgumentParser(prog="python -m benchmarks.fusion.floor", description=__doc__.split("\n")[0])
    ap.add_argument("scenario", type=Path)
    ap.add_argument("--t0", type=float, default=30.0)
    ap.add_argument("--tracks-out", type=Path, default=None, help="write the clairvoyant tracks here")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    with np.load(a.scenario) as f:
        scen = {k: f[k] for k in f.files}
    res = pcrlb(scen, a.t0)
    tr = clairvoyant(scen)
    if a.tracks_out is not None:
        np.savez_compressed(a.tracks_out, **tr)
    cl = score(scen, Tracks.from_arrays(tr["track_id"], tr["track_time"], tr["track_state"]), t0=a.t0)
    res["clairvoyant"] = cl
    if a.json:
        print(json.dumps(res))
    else:
        print(
            f"{a.scenario}: floor (PCRLB, E|e|) {res['floor']:.1f} m (RMS {res['floor_rms']:.1f} m); "
            f"clairvoyant OSPA {cl['ospa']:.1f} m, GOSPA {cl['gospa']:.0f} m, "
            f"held {cl['held']}/{cl['objects']}, "
            f"ids/object {cl['ids_per_object']:.3f}, switches {cl['id_switches']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
