"""Out-of-sequence plots: update the current tracks with a late measurement.

A plot taken at τ arrives after the track table has moved on to k > τ. Each
model's state is retrodicted to τ (predicting with a negative step, process
noise added with |dt|), the plot is gated and assigned against the
retrodicted states, and the *current* state is updated through the cross
covariance cov(x_k, x_τ) ≈ P_k Fᵀ(τ, k): Bar-Shalom's algorithm B1 ("Update
with out-of-sequence measurements in tracking: exact solution", IEEE T-AES
38(3), 2002), which neglects the process-noise share of that cross
covariance: near-optimal for lags of a few scans, as configured by
``oos_lag_s``. Late plots no track takes start tentative tracks at their own
time, predicted to the table time. Late reports count as hits, never misses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gateway.fusion.api import F64, ReportArrays
from gateway.fusion.gating import gnn_assign, pregate
from gateway.fusion.kalman import cross_update, innovation_cov, mahalanobis2
from gateway.fusion.lifecycle import new_rows
from gateway.fusion.measure import plot_dims, plot_residual, plot_to_state
from gateway.fusion.motion import imm_combine, seconds

if TYPE_CHECKING:
    from gateway.fusion.view import EngineView

_NS = 1e-9


def cross_cov(P: F64, dt: F64) -> F64:
    """P Fᵀ(dt) for F = [[I, dt I], [0, I]] (also the ballistic F: gravity is additive)."""
    out = P.copy()
    out[..., :, :3] += dt[:, None, None] * P[..., :, 3:]
    return out


def oos_plot_batch(engine: EngineView, r: ReportArrays) -> None:
    """Apply one late plot batch (one sensor) to the table at ``engine.t_store``."""
    st = engine.store
    cfg = engine.cfg
    assert engine.t_store is not None  # only called once the table has a time
    s = int(r.sensor[0])
    o, tl = engine.origins[s], engine.to_locals[s]
    n = st.n
    rx, rP = plot_to_state(o, tl, r.polar, r.polar_sigma, cfg.init_speed_sigma_mps)
    dt_r = seconds(r.t_ns - engine.t_store)  # < 0
    # Pre-gate on the table retrodicted (straight line) to the batch's mean time.
    tb = float(dt_r.mean())
    pos = st.x[:n, :3] + tb * st.x[:n, 3:]
    k = cfg.pregate_sigmas
    spread = np.sqrt(np.trace(st.P[:n, :3, :3], axis1=1, axis2=2))
    vspread = np.sqrt(np.trace(st.P[:n, 3:, 3:], axis1=1, axis2=2))
    extra = float(np.ptp(dt_r)) * (np.linalg.norm(st.x[:n, 3:], axis=1) + vspread)
    t_rad = k * (spread + abs(tb) * vspread) + extra
    r_rad = k * np.sqrt(np.trace(rP[:, :3, :3], axis1=1, axis2=2))
    ti, rj = pregate(pos, t_rad, rx[:, :3], r_rad, cfg.pregate_max_m)

    dtp = dt_r[rj]
    ym, Pym = engine.predict_models(st.xm[ti], st.Pm[ti], dtp)
    yc, Pyc = imm_combine(ym, Pym, st.mu[ti])
    nu, H, R = plot_residual(o, tl, yc, r.polar[rj], r.polar_sigma[rj], engine.bias[s][None, :])
    _, S = innovation_cov(Pyc, H, R)
    d2 = mahalanobis2(nu, S)
    ok = d2 < np.where(plot_dims(r.polar[rj], r.polar_sigma[rj]) > 3, engine.gate[4], engine.gate[3])
    g = np.flatnonzero(ok & np.isfinite(d2))
    sel = g[gnn_assign(ti[g], rj[g], d2[g], engine.gate[4])]
    at, ar = ti[sel], rj[sel]
    if sel.size:
        xm_new = st.xm[at].copy()
        Pm_new = st.Pm[at].copy()
        for m in range(st.n_models):
            nu_m, H_m, R_m = plot_residual(
                o, tl, ym[sel, m], r.polar[ar], r.polar_sigma[ar], engine.bias[s][None, :]
            )
            _, S_m = innovation_cov(Pym[sel, m], H_m, R_m)
            C = cross_cov(st.Pm[at, m], dtp[sel])
            xm_new[:, m], Pm_new[:, m] = cross_update(st.xm[at, m], st.Pm[at, m], C, nu_m, H_m, S_m)
        st.xm[at], st.Pm[at] = xm_new, Pm_new
        st.x[at], st.P[at] = imm_combine(xm_new, Pm_new, st.mu[at])
        st.n_updates[at] += 1
        st.last_ns[at] = np.maximum(st.last_ns[at], r.t_ns[ar])
        st.seen_ns[at, s] = np.maximum(st.seen_ns[at, s], r.t_ns[ar])
        st.mask[at] |= np.uint64(1 << s)
        engine.counters["plots_used"] += int(sel.size)
    free = np.ones(len(r), bool)
    free[ar] = False
    fr = np.flatnonzero(free)
    if fr.size:
        idx = fr
        part = ReportArrays(*(getattr(r, f)[idx] for f in ReportArrays.__slots__))
        new_rows(engine, s, part, rx[fr], rP[fr], engine.t_store, confirmed=False)
