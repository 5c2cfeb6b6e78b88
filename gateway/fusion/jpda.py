"""Soft (JPDA-style) association weights and the mixture update they drive.

Closely spaced objects put several plots in one track's gate and one plot in
several tracks' gates. A hard assignment then makes a final guess per scan,
and a wrong guess drags a track onto its neighbour's object or starves it.
Joint probabilistic data association (BLK §6.6; Bar-Shalom, Daum & Huang,
"The probabilistic data association filter", IEEE CSM 29(6), 2009) updates
each track from all the plots in its gate, weighted by the probability that
each plot is its own.

The exact JPDA weights enumerate every joint event of a cluster, which is
exponential in the cluster size (20 threat complexes of 8 objects make
clusters of 8 tracks × 8 plots per sensor scan). The "cheap JPDA" of
Fitzgerald ("Development of practical PDA logic for multitarget tracking by
microprocessor", 1990) approximates them from row and column sums of the
likelihood-ratio matrix,

    β_ij = G_ij / (T_i + R_j - G_ij + B),   T_i = Σ_j G_ij,  R_j = Σ_i G_ij,

with G_ij = P_D N(ν_ij; 0, S_ij) / λ (λ the clutter density) and B the
weight of "no plot" (1 - P_D). That is a handful of vector operations over
the sparse gate graph (``np.bincount``), so the cost stays linear in the
number of gated pairs; no library offers it on a sparse graph (Stone Soup's
JPDA enumerates hypotheses per cluster).

The update is the Gaussian mixture reduction of the PDA filter (BLK eq.
6.4.2-x), written over the per-pair EKF updates rather than one combined
innovation, so each pair keeps its own linearisation and report time.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix

from gateway.fusion.api import F64, STATUS_TENTATIVE, ReportArrays
from gateway.fusion.gating import IDX
from gateway.fusion.measure import plot_dims
from gateway.fusion.motion import imm_combine, seconds
from gateway.fusion.view import EngineView

_LOG_MAX = 600.0  # exp(600) ≈ 4e260: sums of a few hundred stay finite


def jpda_weights(ti: IDX, rj: IDX, log_g: F64, n_tracks: int, n_reports: int, b: float) -> tuple[F64, F64]:
    """Cheap-JPDA association probabilities on a sparse gate graph.

    ``ti``/``rj`` are the gated pairs, ``log_g`` their log likelihood ratios
    ln G_ij. Returns β per pair and β₀ (no plot of this batch is the track's)
    per track. Σ_j β_ij ≤ 1 - β₀ and Σ_i β_ij < 1 hold by construction.
    """
    if ti.size == 0:
        return np.empty(0), np.ones(n_tracks)
    # Scaled by the largest term: β is invariant to a common factor of G and
    # B, and the scale keeps exp() finite for very tight tracks.
    top = float(np.max(log_g))
    shift = max(top - _LOG_MAX, 0.0)
    g = np.exp(np.clip(log_g - shift, -745.0, _LOG_MAX))
    bb = b * np.exp(-shift)
    t_sum = np.bincount(ti, g, n_tracks)
    r_sum = np.bincount(rj, g, n_reports)
    beta = g / (t_sum[ti] + r_sum[rj] - g + bb)
    beta0 = 1.0 - np.bincount(ti, beta, n_tracks)
    return beta, np.clip(beta0, 0.0, 1.0)


def model_likelihoods(ti: IDX, log_gm: F64, n_tracks: int, b: float) -> F64:
    """IMM-PDA model likelihoods Λ_m(i) ∝ B + Σ_j G_ijm (BLK §11.6.6 with a
    PDA update per model), as logs (n_tracks, M), ``log_gm`` (pairs, M)."""
    n_m = log_gm.shape[1]
    if ti.size == 0:
        return np.zeros((n_tracks, n_m))
    top = np.full(n_tracks, -np.inf)
    np.maximum.at(top, ti, log_gm.max(axis=1))
    ref = np.maximum(top, np.log(b))  # per-track scale, β-style
    out = np.empty((n_tracks, n_m))
    for m in range(n_m):
        s = np.bincount(ti, np.exp(log_gm[:, m] - ref[ti]), n_tracks)
        out[:, m] = np.log(s + b * np.exp(-ref))
    return out


def mixture_update(x0: F64, P0: F64, ti: IDX, xa: F64, Pa: F64, beta: F64, beta0: F64) -> tuple[F64, F64]:
    """PDA mixture reduction per track: the "no plot" component (``x0``,
    ``P0``, weight β₀, per track, (N, M, 6)) and one updated component per
    pair (``xa``, ``Pa``, weight β, track ``ti``) reduced to one Gaussian per
    track and model by moment matching. Tracks without pairs come back as is.
    """
    n, n_m = x0.shape[0], x0.shape[1]
    w = csr_matrix((beta, (ti, np.arange(ti.size))), shape=(n, ti.size))
    d = xa - x0[ti]  # (K, M, 6), centred on the prediction for precision
    k = ti.size
    delta = (w @ d.reshape(k, -1)).reshape(n, n_m, 6)
    second = (w @ (Pa + d[..., :, None] * d[..., None, :]).reshape(k, -1)).reshape(n, n_m, 6, 6)
    x = x0 + delta
    P = beta0[:, None, None, None] * P0 + second - delta[..., :, None] * delta[..., None, :]
    P = 0.5 * (P + np.swapaxes(P, -1, -2))
    return x, P


def pair_log_g(engine: EngineView, r: ReportArrays, ti: IDX, rj: IDX, loglik: F64) -> tuple[F64, F64]:
    """ln G_ij per gated pair (models mixed) and ln G_ijm per pair and model.

    ln G_ijm = ln P_D + ln N_m(ν) - ln λ; the pair's G mixes the models with
    the track's predicted model probabilities. ekf_update's log-likelihood
    counts a 3-D plot's dummy fourth row as a unit Gaussian at 0: its
    -ln(2π)/2 is taken back here.
    """
    cfg = engine.cfg
    dims4 = plot_dims(r.polar[rj], r.polar_sigma[rj]) > 3
    lam = cfg.clutter_density * np.where(dims4, cfg.clutter_range_rate_span_mps, 1.0)
    fix = np.where(dims4, 0.0, 0.5 * np.log(2.0 * np.pi)) - np.log(lam)
    log_gm = np.log(cfg.p_detect) + loglik + fix[:, None]
    lmu = np.log(np.maximum(engine.store.mu[ti], 1e-300)) + log_gm
    top = lmu.max(axis=1)
    return top + np.log(np.exp(lmu - top[:, None]).sum(axis=1)), log_gm


__all__ = ["jpda_weights", "mixture_update", "model_likelihoods", "pair_log_g", "soft_update"]


def soft_update(
    engine: EngineView,
    r: ReportArrays,
    t0: int,
    t_end: int,
    n_old: int,
    ti: IDX,
    rj: IDX,
    xa: F64,
    Pa: F64,
    loglik: F64,
    chosen: np.ndarray,
) -> None:
    """JPDA update of rows ``0 .. n_old-1`` from all gated plot pairs
    (:mod:`gateway.fusion.jpda`): per-pair EKF updates ``xa``/``Pa`` at
    each report's time, all brought to ``t_end`` and mixed per track.

    Only confirmed (and coasting) tracks are updated softly. A tentative
    track takes its GNN plot (``chosen``) alone and stays out of the
    weights of the others: its wide gate would otherwise pull in every
    neighbour's plot and smear it onto a settled neighbour."""
    st = engine.store
    cfg = engine.cfg
    log_g, log_gm = pair_log_g(engine, r, ti, rj, loglik)
    mu = st.mu[:n_old]
    b = 1.0 - cfg.p_detect
    tent = st.status[ti] == STATUS_TENTATIVE
    use = ~tent | chosen
    ti, rj, xa, Pa, tent = ti[use], rj[use], xa[use], Pa[use], tent[use]
    log_g, log_gm = log_g[use], log_gm[use]
    sub = np.flatnonzero(~tent)
    beta = np.ones(ti.size)
    beta[sub], _ = jpda_weights(ti[sub], rj[sub], log_g[sub], n_old, len(r), b)
    beta0 = np.clip(1.0 - np.bincount(ti, beta, n_old), 0.0, 1.0)
    if st.n_models > 1:
        ll = np.log(np.maximum(mu, 1e-300)) + model_likelihoods(ti, log_gm, n_old, b)
        w = np.exp(ll - ll.max(axis=1, keepdims=True))
        st.mu[:n_old] = w / w.sum(axis=1, keepdims=True)
    dt_pair = seconds(t_end - r.t_ns[rj])
    if np.any(dt_pair != 0.0):
        xa, Pa = engine.predict_models(xa, Pa, dt_pair)
    x0, P0 = st.xm[:n_old], st.Pm[:n_old]
    if t_end != t0 and n_old:
        x0, P0 = engine.predict_models(x0, P0, np.full(n_old, (t_end - t0) * 1e-9))
    st.xm[:n_old], st.Pm[:n_old] = mixture_update(x0, P0, ti, xa, Pa, beta, beta0)
    st.x[:n_old], st.P[:n_old] = imm_combine(st.xm[:n_old], st.Pm[:n_old], st.mu[:n_old])
