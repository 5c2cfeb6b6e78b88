"""Window refit of exo-atmospheric tracks: a multi-target fit over the last
``exo_refit_window_s`` of plots, every ``exo_refit_every_s``.

Why: inside a threat complex the objects lie closer across the beam than one
plot's cross-range noise for tens of seconds, and a one-scan assignment gives
a quarter to a third of the plots to the wrong track (benchmarks/fusion/
RESULTS.md, "Why the GNN takes wrong plots in complexes"). Those decisions
are final in a recursive filter; what separates the objects is their relative
motion, visible only over many scans. Above the atmosphere each object moves
on a ballistic arc, and the arcs of a complex differ, over a window of tens of
seconds, by a position and a velocity: each track's path over the window is
its reference arc (gravity, integrated back from the track's state) plus a
straight line, six unknowns. The refit solves those for all tracks at once
from every plot their gates took in the window, by expectation-maximisation
over the plots' origins (the probabilistic multi-hypothesis tracker of Streit
& Luginbuhl, 1995, with a constant-velocity relative motion): the E step
gives each (plot, track) pair its probability of origin among the tracks
that gated the plot, clutter and missed detection, under one plot per track
and batch (Sinkhorn scaling of the batch's assignment matrix with its
clutter and miss entries: the permanent-free approximation of JPDA's
marginals); the M step is each track's weighted least squares for its six
unknowns, each plot's covariance widened by the ballistic model's process
noise over its age. The window's last instant gives the track's new position
and velocity; every IMM model's mean moves by the same amount, covariances
are kept, and the weight of the NCV model (no gravity) goes to the ballistic
model: the fit has just shown the track on a ballistic arc.

By hand: no library fits several trajectories to one plot set with soft,
one-per-batch origins; numpy's ``bincount`` and ``add.reduceat`` keep it one
vectorised pass per iteration over all tracks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gateway.fusion.api import F64, I64, STATUS_TENTATIVE
from gateway.fusion.config import MODEL_BALLISTIC, MODEL_NCV
from gateway.fusion.exo import exo_rows
from gateway.fusion.gating import IDX
from gateway.fusion.motion import imm_combine

if TYPE_CHECKING:
    from gateway.fusion.view import EngineView

__all__ = ["PlotWindow"]

_NS = 1e-9
_LOG_2PI3 = 1.5 * np.log(2.0 * np.pi)
# A refit is applied when its track's plots weigh at least _MIN_PLOTS and their
# mean d² under it is at most _FIT_MAX: twice the 3 of a consistent fit (on
# the cso bench the median is 3.4-3.5 and the 90th percentile 3.8-4.4, the
# truth's own process noise over the window; air targets of the mixed bench
# that the height rule takes for exo sit at 8-11 and beyond).
_MIN_PLOTS = 6.0
_FIT_MAX = 6.0


class PlotWindow:
    """The plots of the last window that exo tracks gated, with their gate pairs."""

    def __init__(self, window_s: float, every_s: float) -> None:
        self.window_ns = int(window_s / _NS)
        self.every_ns = int(every_s / _NS)
        self.next_ns: int | None = None
        # Per batch: time ns, plot times ns (n,), positions (n,3), their
        # covariances (n,3,3), clutter density per m^3 (n,), pairs (plot
        # index, track id), whether the assignment took the pair.
        self.batches: list[tuple[int, I64, F64, F64, F64, IDX, np.ndarray, F64]] = []
        self.runs = 0

    def add(
        self,
        engine: EngineView,
        t_ns: I64,
        pos: F64,
        cov: F64,
        polar: F64,
        ti: IDX,
        rj: IDX,
        taken: np.ndarray,
    ) -> None:
        """Keep the plots of one batch (times ``t_ns``, one per plot: a batch
        spans up to ``scan_window_s``, 0.3 km at 3 km/s) that exo tracks gated
        (``ti``, ``rj``: the gate pairs; ``taken``: the pairs the assignment chose)."""
        st = engine.store
        if ti.size == 0:
            return
        # Exo tracks' pairs, of plots with a finite position and covariance
        # (a NaN would reach every track of the fit through the weights).
        fine = np.asarray(np.isfinite(pos).all(axis=1) & np.isfinite(cov).all(axis=(1, 2)), bool)
        exo = exo_rows(engine, st.x[ti]) & fine[rj]
        ti, rj, taken = ti[exo], rj[exo], taken[exo]
        if ti.size == 0:
            return
        used, local = np.unique(rj, return_inverse=True)
        rng, el = polar[used, 0], polar[used, 2]
        # Clutter per m^3: the engine's density per m·rad² over the volume
        # element r² cos(el) of the plot's cell.
        lam = engine.cfg.clutter_density / (rng * rng * np.maximum(np.cos(el), 1e-3))
        t0 = int(t_ns.min())
        self.batches.append(
            (
                t0,
                t_ns[used].copy(),
                pos[used].copy(),
                cov[used].copy(),
                lam,
                local,
                st.track_id[ti],
                taken.astype(float),
            )
        )
        self._forget(t0)

    def _forget(self, now_ns: int) -> None:
        """Let the batches older than the window before ``now_ns`` go."""
        cut = now_ns - self.window_ns
        while self.batches and self.batches[0][0] < cut:
            self.batches.pop(0)

    def due(self, t_ns: int) -> bool:
        """Whether a refit is due at ``t_ns`` (the first call starts the clock)."""
        if self.next_ns is None:
            self.next_ns = t_ns + self.every_ns
            return False
        return t_ns >= self.next_ns

    def run(self, engine: EngineView, t_ns: int, iterations: int = 5, sinkhorn: int = 4) -> int:
        """Refit the exo tracks at the table time ``t_ns``; returns how many moved."""
        self.next_ns = t_ns + self.every_ns
        # add() cuts the window only when exo plots arrive; when they stop
        # (no plot source, the objects came down), the old ones leave here.
        self._forget(t_ns)
        st = engine.store
        n = st.n
        if n == 0 or not self.batches:
            return 0
        bt = self.batches
        sizes = [b[2].shape[0] for b in bt]
        off = np.cumsum([0, *sizes[:-1]])
        pj = np.concatenate([b[5] + o for b, o in zip(bt, off, strict=True)])
        tids = np.concatenate([b[6] for b in bt])
        # Pairs whose track still lives, as rows of the table.
        ids = st.track_id[:n]
        order = np.argsort(ids)
        rowk = order[np.minimum(np.searchsorted(ids, tids, sorter=order), n - 1)]
        keep = ids[rowk] == tids
        # Sorted by track: the sums per track are slices (np.add.reduceat).
        srt = np.flatnonzero(keep)[np.argsort(rowk[keep], kind="stable")]
        if srt.size == 0:
            return 0
        pj, pk = pj[srt], rowk[srt]
        # The first fit takes the plots the assignment gave each track: its
        # history, not its present state, says which object it follows.
        w = np.concatenate([b[7] for b in bt])[srt]
        tracks, starts = np.unique(pk, return_index=True)
        nk, nb = tracks.size, len(bt)
        kk = np.repeat(np.arange(nk), np.diff(np.r_[starts, pk.size]))
        z, lam = np.concatenate([b[2] for b in bt]), np.concatenate([b[4] for b in bt])
        bj = np.repeat(np.arange(nb), sizes)
        tj = (np.concatenate([b[1] for b in bt]) - t_ns) * _NS
        nj = z.shape[0]
        # The objects are not exactly on arc + line: the ballistic model's
        # process noise (q_ballistic, the bench truth's 0.1 m²/s³) moves one
        # by sqrt(q |t|³ / 3) over |t| (85 m over 60 s, three plot range
        # sigmas), so an old plot's position says that much less about now.
        # Added to each plot's covariance (its correlation over the window
        # neglected): cso 1-12 OSPA 134.7 -> 129.7 m, ids 1.321 -> 1.303.
        cov = np.concatenate([b[3] for b in bt])
        # (plus 1 mm²: a plot of zero sigma would make it singular).
        cov = cov + (engine.cfg.q_ballistic * np.abs(tj) ** 3 / 3.0 + 1e-6)[:, None, None] * np.eye(3)
        info = np.linalg.inv(cov)
        norm = -0.5 * np.linalg.slogdet(cov)[1] - _LOG_2PI3
        x0 = st.x[tracks]
        tp, ip = tj[pj], info[pj]
        # Unknowns relative to the track's state: the residual of its arc and
        # tangent line, to which the fit adds a position and a velocity.
        curve = _curvature(engine, x0, tp, kk, self.window_ns * _NS)
        y = z[pj] - curve - x0[kk, :3] - tp[:, None] * x0[kk, 3:]
        iy = np.matmul(ip, y[:, :, None])[:, :, 0]
        t1, ip9 = tp[:, None], ip.reshape(-1, 9)
        terms = np.concatenate([ip9, t1 * ip9, t1 * t1 * ip9, iy, t1 * iy], axis=1)
        da, dv = np.zeros((nk, 3)), np.zeros((nk, 3))
        pd = engine.cfg.p_detect
        slot = bj[pj] * nk + kk  # (batch, track) cell
        pnorm = norm[pj]
        big = np.empty((nk, 6, 6))
        ok = np.zeros(nk, bool)
        # Sinkhorn's scalings carry over from one EM iteration to the next:
        # from ones, a few iterations leave an untracked neighbour's plot, 1e-11
        # as likely as the track's own, up to half a batch's weight
        # (tests/unit/test_fusion_refit.py); the likelihoods move little.
        scale = (np.ones(nb * nk), np.ones(nj))
        for it in range(iterations + 1):
            if it:
                lik = pd * np.exp(pnorm - 0.5 * _d2(y, ip, tp, da[kk], dv[kk]))
                w, scale = _sinkhorn(lik, pj, slot, bj, lam, nj, nb, nk, 1.0 - pd, sinkhorn, scale)
            sums = np.add.reduceat(w[:, None] * terms, starts, axis=0)
            a11, a12, a22 = (sums[:, 9 * i : 9 * i + 9].reshape(-1, 3, 3) for i in range(3))
            big[:, :3, :3], big[:, :3, 3:], big[:, 3:, :3], big[:, 3:, 3:] = a11, a12, a12, a22
            rhs = sums[:, 27:33]
            # A track with too little weight in the window keeps its state.
            ok = np.linalg.cond(big) < 1e12
            if not ok.any():
                return 0
            sol = np.linalg.solve(big[ok], rhs[ok][..., None])[..., 0]
            da[ok], dv[ok] = sol[:, :3], sol[:, 3:]
        a, v = x0[:, :3] + da, x0[:, 3:] + dv
        # The fit must explain its plots: a track that is not on a ballistic
        # arc (a manoeuvre, or an air target the height rule took for exo)
        # leaves its weighted plots far off (mean d² of 3 for three
        # dimensions when it is on one).
        d2 = _d2(y, ip, tp, da[kk], dv[kk])
        sw = np.bincount(kk, w, minlength=nk)
        fit = np.bincount(kk, w * d2, minlength=nk) / np.maximum(sw, 1e-12)
        # Only where the window knows the track better than its filter does:
        # a young track's few plots of one radar leave its velocity to the
        # filter's prior.
        cov = np.full((nk, 6, 6), np.inf)
        cov[ok] = np.linalg.inv(big[ok])
        better = np.trace(cov[:, 3:, 3:], axis1=1, axis2=2) < np.trace(st.P[tracks, 3:, 3:], axis1=1, axis2=2)
        # Only a track that is exo-atmospheric now: one that has come down
        # below assoc_quiet_above_m since (a re-entry, or an air target the
        # height rule took for exo) has only old plots in the window, and a
        # drag-free arc through them carried to now misses it by about
        # g·age²/2 (mixed bench: well-held tracks thrown 3-13 km off).
        exo_now = exo_rows(engine, x0)
        fits = better & (sw >= _MIN_PLOTS) & (fit <= _FIT_MAX)
        move = (st.status[tracks] != STATUS_TENTATIVE) & exo_now & fits
        if not move.any():
            return 0
        rows = tracks[move]
        dx = np.concatenate([a[move], v[move]], axis=1) - st.x[rows]
        st.xm[rows] += dx[:, None, :]
        # The fit found the track on a ballistic arc over the window. An IMM
        # that gave the NCV model (no gravity) the weight keeps it: per scan
        # the two differ by g·dt²/2, 0.5 m against 30 m of range noise, and
        # between refits such a track's velocity falls behind by g·t (the
        # fits corrected 17-34 m/s every 3 s). That weight goes to the
        # ballistic model: cso 1-12 velocity error 9.5 -> 6.5 m/s mean,
        # 24 -> 14 m/s at the 95th percentile; OSPA, ids within the scatter.
        cfg = engine.cfg
        if MODEL_NCV in cfg.models and MODEL_BALLISTIC in cfg.models:
            i_ncv, i_bal = cfg.models.index(MODEL_NCV), cfg.models.index(MODEL_BALLISTIC)
            st.mu[rows, i_bal] += st.mu[rows, i_ncv]
            st.mu[rows, i_ncv] = 0.0
        st.x[rows], st.P[rows] = imm_combine(st.xm[rows], st.Pm[rows], st.mu[rows])
        self.runs += 1
        return int(rows.size)


def _d2(y: F64, info: F64, tp: F64, da: F64, dv: F64) -> F64:
    """Per pair: d² of the residual ``y`` (P,3) less the fitted position and
    velocity offsets ``da + tp·dv``, under the plot's information ``info``."""
    nu = y - da - tp[:, None] * dv
    out: F64 = np.einsum("pi,pi->p", nu, np.matmul(info, nu[:, :, None])[:, :, 0])
    return out


def _curvature(engine: EngineView, x0: F64, tp: F64, kk: IDX, span_s: float) -> F64:
    """Per pair: the track's ballistic arc back to the plot's time minus its
    tangent line at the table time (gravity's share of the path), from 1 s
    steps back with the engine's gravity, linearly interpolated."""
    h = 1.0
    steps = int(np.ceil(span_s / h)) + 1
    x = x0.copy()
    grid = np.empty((steps + 1, x0.shape[0], 3))
    grid[0] = 0.0
    for i in range(1, steps + 1):
        acc = engine.accel(x)
        x[:, :3] -= h * x[:, 3:] - 0.5 * h * h * acc
        x[:, 3:] -= h * acc
        t = -i * h
        grid[i] = x[:, :3] - (x0[:, :3] + t * x0[:, 3:])
    f = np.clip(-tp / h, 0.0, steps - 1e-9)
    i0 = f.astype(np.intp)
    fr = (f - i0)[:, None]
    out: F64 = grid[i0, kk] * (1.0 - fr) + grid[i0 + 1, kk] * fr
    return out


def _sinkhorn(
    lik: F64,
    pj: IDX,
    slot: IDX,
    bj: IDX,
    lam: F64,
    nj: int,
    nb: int,
    nk: int,
    miss: float,
    iters: int,
    scale: tuple[F64, F64],
) -> tuple[F64, tuple[F64, F64]]:
    """Origin probabilities of the pairs: each batch's matrix [[L, diag λ],
    [diag(1 - Pd), 1]] (plots and misses by tracks and clutter) scaled to
    doubly stochastic; the (plot, track) block is the answer. ``scale``: the
    column scalings to start from (track columns per (batch, track), clutter
    columns per plot), returned updated."""
    cells = nb * nk
    v, vc = scale  # track columns, per (batch, track); clutter columns, per plot
    u = np.ones(nj)
    has = np.bincount(slot, minlength=cells) > 0
    for _ in range(iters):
        u = 1.0 / (np.bincount(pj, lik * v[slot], minlength=nj) + lam * vc)
        sc = np.bincount(bj, vc, minlength=nb)
        um = 1.0 / (miss * v + np.repeat(sc, nk))  # miss rows
        v = 1.0 / (np.bincount(slot, u[pj] * lik, minlength=cells) + miss * um)
        su = (um * has).reshape(nb, nk).sum(axis=1)
        vc = 1.0 / (u * lam + su[bj])
    out: F64 = u[pj] * lik * v[slot]
    return out, (v, vc)
