"""Association refinements for closely spaced objects: mixture-likelihood costs
and a one-batch look-ahead that can undo a crossed assignment.

Closely spaced objects (a threat complex: fragments 60-450 m apart at
300+ km, inside one radar's cross-range noise) put two or more tracks in one
plot's gate. GNN's choice is then a coin toss each scan, and a wrong toss
drags a track onto its neighbour. Another radar, looking from elsewhere,
often separates in range what the first could not in cross-range, so the
*next* batch says which toss was right. A track-oriented MHT keeps both
branches and prunes N scans later (Blackman & Popoli 1999, §16.3); this
keeps the cheapest useful part of it, N = 1 and hypotheses limited to pair
swaps:

* every plot update remembers the state before it, the plot and its cost
  (:func:`record_updates`, columns ``u_*`` of the track store);
* at the next plot batch, two tracks that took plots of one and the same
  batch and now share a plot in their gates are a candidate pair. Each is
  re-updated with the other's plot, predicted to the batch and scored on its
  best gated plot of the batch; if the swapped pair explains both batches
  better, -2 ln L lower by more than ``two_scan_margin``, the tracks swap
  (:func:`swap_test`). A swap is final: those updates are not revisited.

Why by hand: no library offers MHT on stacked numpy track tables (Stone
Soup's MHT enumerates hypotheses per track object); this is a few batched
EKF updates over the candidate pairs.

:func:`mixture_cost` is the other refinement: the GNN cost of a pair from
the IMM mixture likelihood instead of one moment-matched Gaussian.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gateway.fusion.api import STATUS_TENTATIVE, ReportArrays
from gateway.fusion.exo import exo_rows, quiet_models
from gateway.fusion.gating import IDX
from gateway.fusion.kalman import ekf_update, innovation_cov, mahalanobis2
from gateway.fusion.measure import plot_residual
from gateway.fusion.motion import imm_combine, seconds
from gateway.fusion.view import EngineView

if TYPE_CHECKING:
    from gateway.fusion.api import F64

__all__ = ["mixture_cost", "quiet_logsumexp", "record_updates", "swap_test"]


def mixture_cost(
    engine: EngineView,
    o: F64,
    tl: F64,
    s: int,
    r: ReportArrays,
    ti: IDX,
    rj: IDX,
    xm: F64,
    Pm: F64,
    combined: F64,
) -> F64:
    """-2 ln Σ_m μ_m N(ν_m; 0, S_m) of each (track, plot) pair (2π terms
    left out, as in the combined cost): the plot's likelihood under the
    track's model set (Bar-Shalom, Li & Kirubarajan 2001, §11.6.6), not under
    one Gaussian with the moment-matched covariance, which a small
    manoeuvre-model weight widens for every track. Non-finite results keep
    the ``combined`` cost."""
    st = engine.store
    lmu = np.log(np.maximum(st.mu[ti], 1e-300))
    for m in range(st.n_models):
        nu, H, R = plot_residual(o, tl, xm[:, m], r.polar[rj], r.polar_sigma[rj], engine.bias[s][None, :])
        _, S = innovation_cov(Pm[:, m], H, R)
        _, logdet = np.linalg.slogdet(S)
        lmu[:, m] -= 0.5 * (mahalanobis2(nu, S) + logdet)
    out: F64 = -2.0 * quiet_logsumexp(engine, lmu, xm, st.mu[ti])
    return np.where(np.isfinite(out), out, combined)


def quiet_logsumexp(engine: EngineView, lmu: F64, xm: F64, mu: F64) -> F64:
    """ln Σ_m exp(lmu_m) per pair, where ``lmu`` (K, M) = ln μ_m + ln N_m; for
    tracks above ``assoc_quiet_above_m`` (exo-atmospheric: no aerodynamic
    lift, so an unpowered object cannot manoeuvre) the models of
    ``assoc_quiet_models`` (default the manoeuvre model) are left out and the
    rest renormalised, i.e. the likelihood given "not manoeuvring". Between
    closely spaced objects a misassigned plot looks like a manoeuvre; the
    manoeuvre model's wide share then bids for the neighbour's plots and the
    track roams (cso bench: ids per object 1.68 ->
    1.45 on seeds 1-3, benchmarks/fusion/RESULTS.md). The filter keeps the
    model: without it young tracks in complexes are lost (held 161 -> 151)."""
    cfg = engine.cfg
    quiet = quiet_models(cfg)
    if 0 < quiet.size < len(cfg.models) and lmu.shape[0]:
        # Height from the first model's state (all models share the position
        # to well under a kilometre).
        exo = exo_rows(engine, xm[:, 0])
        if exo.any():
            lmu = lmu.copy()
            lmu[np.ix_(exo, quiet)] = -np.inf
            kept = 1.0 - mu[exo][:, quiet].sum(axis=1)
            lmu[exo] -= np.log(np.maximum(kept, 1e-300))[:, None]
    top = lmu.max(axis=1)
    out: F64 = top + np.log(np.exp(lmu - top[:, None]).sum(axis=1))
    return out


def record_updates(
    engine: EngineView, r: ReportArrays, s: int, at: IDX, ar: IDX, xm_pre: F64, Pm_pre: F64, cost: F64 | None
) -> None:
    """Remember rows ``at``'s state before this batch's update and the report
    ``ar`` they took (``cost``: its combined cost; None for sensor tracks,
    whose updates are never revisited)."""
    st = engine.store
    if cost is None:
        st.u_batch[at] = 0
        return
    st.u_xm[at], st.u_Pm[at], st.u_mu[at] = xm_pre, Pm_pre, st.mu[at]
    st.u_polar[at], st.u_sigma[at] = r.polar[ar], r.polar_sigma[ar]
    st.u_sensor[at] = s
    st.u_t_ns[at] = r.t_ns[ar]
    st.u_batch[at] = engine.batch_serial
    st.u_cost[at] = cost


def _candidates(engine: EngineView) -> tuple[IDX, IDX]:
    """Track pairs (a, b), a < b, neither tentative, whose last updates came
    from one earlier batch and which lie within the pre-gate radius of each
    other (``pregate_sigmas`` sigmas of track and plot each): the pairs whose
    plots of that batch could have been crossed (the swapped updates are
    gated again in :func:`_swapped`)."""
    # scipy on this variant's path only: the default engine's worker never imports it (issue 18, ~37 MB RSS).
    from scipy.spatial import cKDTree

    st = engine.store
    n = st.n
    rows = np.flatnonzero((st.u_batch[:n] > 0) & (st.status[:n] != STATUS_TENTATIVE))
    if rows.size < 2:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    # Each side: its own spread plus that of the plot it took (range x angle
    # sigma across the line of sight), as the engine's pre-gate does.
    pol, sig = st.u_polar[rows], st.u_sigma[rows]
    plot_sd = np.maximum(sig[:, 0], pol[:, 0] * np.maximum(sig[:, 1], sig[:, 2]))
    rad = engine.cfg.pregate_sigmas * (np.sqrt(np.trace(st.P[rows, :3, :3], axis1=1, axis2=2)) + plot_sd)
    pairs = cKDTree(st.x[rows, :3]).query_pairs(2.0 * float(rad.max()), output_type="ndarray")
    if pairs.size == 0:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    i, j = pairs[:, 0], pairs[:, 1]
    near = np.linalg.norm(st.x[rows[i], :3] - st.x[rows[j], :3], axis=1) <= rad[i] + rad[j]
    a, b = rows[i[near]], rows[j[near]]
    same = st.u_batch[a] == st.u_batch[b]
    return a[same], b[same]


def _swapped(engine: EngineView, rows: IDX, plots_of: IDX, t0: int) -> tuple[F64, F64, F64, F64]:
    """Rows re-updated from their pre-update state with the plot that
    ``plots_of`` took, predicted to ``t0``: (xm, Pm, mu, cost of that update)."""
    st = engine.store
    xm, Pm, mu = st.u_xm[rows].copy(), st.u_Pm[rows].copy(), st.u_mu[rows].copy()
    polar, sigma = st.u_polar[plots_of], st.u_sigma[plots_of]
    sensor = st.u_sensor[plots_of]
    cost = np.full(rows.size, np.inf)
    loglik = np.zeros((rows.size, st.n_models))
    for s in np.unique(sensor):
        k = np.flatnonzero(sensor == s)
        o, tl, bias = engine.origins[s], engine.to_locals[s], engine.bias[s][None, :]
        xc, Pc = imm_combine(xm[k], Pm[k], mu[k])
        nu, H, R = plot_residual(o, tl, xc, polar[k], sigma[k], bias)
        _, S = innovation_cov(Pc, H, R)
        d2 = mahalanobis2(nu, S)
        _, logdet = np.linalg.slogdet(S)
        cost[k] = np.where(d2 < engine.gate[3], d2 + logdet, np.inf)
        for m in range(st.n_models):
            nu, H, R = plot_residual(o, tl, xm[k, m], polar[k], sigma[k], bias)
            xm[k, m], Pm[k, m], _, loglik[k, m] = ekf_update(xm[k, m], Pm[k, m], nu, H, R)
    w = mu * np.exp(loglik - loglik.max(axis=1, keepdims=True))
    mu = w / w.sum(axis=1, keepdims=True)
    dt = seconds(t0 - st.u_t_ns[plots_of])
    xo, po = engine.predict_models(xm, Pm, dt)
    return xo, po, mu, cost


def swap_test(
    engine: EngineView, r: ReportArrays, s: int, ti: IDX, rj: IDX, ok: np.ndarray, comb: F64, t0: int
) -> bool:
    """Swap the last plots of candidate track pairs where the swap explains
    that batch and this one better (module docstring). ``ti``/``rj`` are this
    batch's pairs, ``ok`` their gate, ``comb`` their combined cost, all with
    the table at ``t0``. Returns whether any track changed."""
    st = engine.store
    g = np.flatnonzero(ok)
    a, b = _candidates(engine)
    if a.size == 0:
        return False
    n = st.n
    # Now, as assigned: each track's best gated plot of this batch; a track
    # with none pays the worst cost of the batch plus the gate (both ways).
    miss = float(comb[g].max(initial=0.0)) + engine.gate[3]
    best = np.full(n, miss)
    np.minimum.at(best, ti[g], comb[g])
    rows = np.concatenate([a, b])
    xm, Pm, mu, prev = _swapped(engine, rows, np.concatenate([b, a]), t0)
    # Swapped: the same from the swapped states, over each track's pre-gated plots.
    from scipy.sparse import csr_matrix  # the variant's path only (issue 18)

    m = csr_matrix((np.ones(ti.size), (ti, rj)), shape=(n, len(r)))
    sub = m[rows].tocoo()
    q, rep = sub.row.astype(np.intp), sub.col.astype(np.intp)
    dt = seconds(r.t_ns[rep] - t0)
    xq, pq = engine.predict_models(xm[q], Pm[q], dt) if np.any(dt != 0.0) else (xm[q], Pm[q])
    xc, Pc = imm_combine(xq, pq, mu[q])
    nu, H, R = plot_residual(
        engine.origins[s], engine.to_locals[s], xc, r.polar[rep], r.polar_sigma[rep], engine.bias[s][None, :]
    )
    _, S = innovation_cov(Pc, H, R)
    d2 = mahalanobis2(nu, S)
    _, logdet = np.linalg.slogdet(S)
    c = np.where(d2 < engine.gate[3], d2 + logdet, miss)
    best_sw = np.full(rows.size, miss)
    np.minimum.at(best_sw, q, c)
    k = a.size
    h0 = st.u_cost[a] + st.u_cost[b] + best[a] + best[b]
    h1 = prev[:k] + prev[k:] + best_sw[:k] + best_sw[k:]
    gain = h0 - h1
    win = np.flatnonzero(np.isfinite(gain) & (gain > engine.cfg.two_scan_margin))
    if win.size == 0:
        return False
    used = np.zeros(n, bool)
    for i in win[np.argsort(-gain[win])]:
        ra, rb = int(a[i]), int(b[i])
        if used[ra] or used[rb]:
            continue
        used[ra] = used[rb] = True
        for row, j in ((ra, i), (rb, i + k)):
            st.xm[row], st.Pm[row], st.mu[row] = xm[j], Pm[j], mu[j]
        engine.counters["two_scan_swaps"] += 1
    changed = np.flatnonzero(used)
    st.u_batch[changed] = 0  # final: not revisited
    st.x[changed], st.P[changed] = imm_combine(st.xm[changed], st.Pm[changed], st.mu[changed])
    return True
