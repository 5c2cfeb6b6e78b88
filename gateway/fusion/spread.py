"""Hard association, honest covariance: GNN's mean, the PDA mixture's covariance.

GNN gives each track one plot and updates it as if that plot were surely its
own. Between closely spaced objects that a radar does not resolve (ballistic
objects at nearly the same range, a few hundred metres apart across a 1 mrad
beam at 800 km) the choice is close to a coin toss, and a track that took its
neighbour's plot keeps a covariance that says it could not have: it grows
confident of a cross-range position that blends two objects and is slow to
leave it once they separate. JPDA carries that uncertainty, but it also moves
the mean to the blend, and the tracks of closely spaced objects coalesce
(worse on every CSO figure: benchmarks/fusion/RESULTS.md).

Here a confirmed track keeps GNN's mean and takes the covariance of the PDA
mixture over the plots in its gate (BLK eq. 6.4.2-x, the "spread of the
innovations" term):

    P = Σ_j w_j (P_j + (x_j - x̄)(x_j - x̄)ᵀ),   x̄ = Σ_j w_j x_j,

with x_j, P_j the track updated with plot j (GNN's own plot among them) and
w_j the cheap-JPDA weights (:func:`gateway.fusion.jpda.jpda_weights`)
renormalised over those plots: the question here is *which* plot, not
*whether* one (GNN's gate already decided that). A lone plot in a clear gate
has w ≈ 1 and leaves the update as it was; a plot another track explains far
better has w ≈ 0. Per IMM model. No library computes this on stacked IMM
track tables; it is a few vector operations over the gated pairs.
"""

from __future__ import annotations

import numpy as np

from gateway.fusion.api import F64, STATUS_TENTATIVE, ReportArrays
from gateway.fusion.gating import IDX
from gateway.fusion.jpda import jpda_weights, pair_log_g
from gateway.fusion.motion import seconds
from gateway.fusion.view import EngineView


def spread_pairs(ti: IDX, rj: IDX, gated: IDX, chosen: IDX) -> IDX:
    """The pairs :func:`spread_covariance` needs updated: GNN's (``chosen``)
    and every gated pair that shares its track or its plot with another
    gated pair (positions into ``ti``/``rj``, sorted). A lone pair has no
    alternative and no weight in anyone else's, so most pairs of well
    separated targets need no second EKF update."""
    if gated.size == 0:
        return chosen
    t, r = ti[gated], rj[gated]
    _, t_inv, t_n = np.unique(t, return_inverse=True, return_counts=True)
    _, r_inv, r_n = np.unique(r, return_inverse=True, return_counts=True)
    shared = (t_n[t_inv] > 1) | (r_n[r_inv] > 1)
    return np.union1d(chosen, gated[shared])


def spread_covariance(
    engine: EngineView,
    r: ReportArrays,
    ti: IDX,
    rj: IDX,
    xa: F64,
    Pa: F64,
    loglik: F64,
    chosen: IDX,
    n_old: int,
) -> F64:
    """Per-model covariances (len(chosen), M, 6, 6) of GNN's pairs.

    ``ti``/``rj`` are every gated pair of the batch, ``xa``/``Pa`` their
    per-model EKF updates at each report's time (M models), ``loglik``
    their per-model log likelihoods, ``chosen`` the positions of GNN's
    pairs among them (tracks of rows below ``n_old``). Tentative tracks
    keep their plain update, and stay out of the others' weights: their
    wide gates would take in every neighbour's plot.
    """
    st = engine.store
    log_g, _ = pair_log_g(engine, r, ti, rj, loglik)
    settled = st.status[ti] != STATUS_TENTATIVE
    sub = np.flatnonzero(settled)
    beta = np.zeros(ti.size)
    beta[sub], _ = jpda_weights(ti[sub], rj[sub], log_g[sub], n_old, len(r), 1.0 - engine.cfg.p_detect)
    out = Pa[chosen].copy()
    keep = np.flatnonzero(settled[chosen])
    if keep.size == 0:
        return out
    ch = chosen[keep]
    # Each gated pair's row among the chosen ones (same track), -1 if GNN
    # gave its track no plot; the alternatives are the other plots.
    row_of = np.full(n_old, -1)
    row_of[ti[ch]] = np.arange(ch.size)
    k = row_of[ti]
    alt = np.flatnonzero((k >= 0) & settled & (beta > 0.0))
    alt = alt[~np.isin(alt, ch)]
    if alt.size == 0:
        return out
    ka = k[alt]
    # Alternatives brought to the chosen plot's time by a first-order shift:
    # the plots in one gate lie milliseconds apart (gravity's share over
    # 10 ms is 0.5 mm).
    dt = seconds(r.t_ns[rj[ch[ka]]] - r.t_ns[rj[alt]])
    d = xa[alt].copy()
    d[..., :3] += d[..., 3:] * dt[:, None, None]
    d -= xa[ch[ka]]  # relative to the chosen update, per model
    w_ch = beta[ch]
    w = w_ch + np.bincount(ka, beta[alt], ch.size)
    ok = w > 0.0
    w = np.where(ok, w, 1.0)
    wa = beta[alt] / w[ka]
    # Moments about the chosen update: m = x̄ - x_chosen, and
    # Σ w_j (P_j - P_chosen + d_j d_jᵀ) - m mᵀ is what the mixture adds.
    P = out[keep]
    m = np.zeros(P.shape[:3])
    np.add.at(m, ka, wa[:, None, None] * d)
    add = np.zeros_like(P)
    np.add.at(add, ka, wa[:, None, None, None] * (Pa[alt] - P[ka] + d[..., :, None] * d[..., None, :]))
    add -= m[..., :, None] * m[..., None, :]
    P = P + add * ok[:, None, None, None]
    out[keep] = 0.5 * (P + np.swapaxes(P, -1, -2))
    return out


def spread_update(
    engine: EngineView,
    r: ReportArrays,
    ti: IDX,
    rj: IDX,
    xa: F64,
    Pa: F64,
    loglik: F64,
    chosen: IDX,
    n_old: int,
) -> tuple[F64, F64, F64, IDX]:
    """GNN's pairs only (``chosen`` among all gated ``ti``/``rj``): their
    per-model means, :func:`spread_covariance`, log likelihoods, and their
    positions (0 .. len(chosen) - 1) in what is returned."""
    P = spread_covariance(engine, r, ti, rj, xa, Pa, loglik, chosen, n_old)
    return xa[chosen], P, loglik[chosen], np.arange(chosen.size)


__all__ = ["spread_covariance", "spread_pairs", "spread_update"]
