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

__all__ = ["PlotWindow", "sym3_inv_logdet"]

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
        # Exo tracks' pairs, of plots with a finite position and a positive
        # definite covariance (with the 1 mm² run() adds: a zero sigma is
        # fine); a NaN would reach every track of the fit through the weights.
        fine = np.isfinite(pos).all(axis=1) & np.isfinite(sym3_inv_logdet(cov, np.full(len(cov), 1e-6))[1])
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
        cnt = np.diff(np.r_[starts, pk.size])  # pairs per track
        kk = np.repeat(np.arange(nk), cnt)
        z, lam = np.concatenate([b[2] for b in bt]), np.concatenate([b[4] for b in bt])
        bj = np.repeat(np.arange(nb), sizes)
        tj = (np.concatenate([b[1] for b in bt]) - t_ns) * _NS
        # The objects are not exactly on arc + line: the ballistic model's
        # process noise (q_ballistic, the bench truth's 0.1 m²/s³) moves one
        # by sqrt(q |t|³ / 3) over |t| (85 m over 60 s, three plot range
        # sigmas), so an old plot's position says that much less about now.
        # Added to each plot's covariance (its correlation over the window
        # neglected): cso 1-12 OSPA 134.7 -> 129.7 m, ids 1.321 -> 1.303.
        # (plus 1 mm²: a plot of zero sigma would make it singular).
        grow = engine.cfg.q_ballistic * np.abs(tj) ** 3 / 3.0 + 1e-6
        info, logdet = sym3_inv_logdet(np.concatenate([b[3] for b in bt]), grow)
        norm = -0.5 * logdet - _LOG_2PI3
        x0 = st.x[tracks]
        # Per pair, component-major (rows of (k, P) arrays: each row one
        # contiguous vector, so the products and sums below stream).
        # (np.take and np.repeat: numpy's fancy indexing along a second axis
        # is ten times slower.)
        tp, ip = tj[pj], np.take(info, pj, axis=1)
        # Unknowns relative to the track's state: the residual of its arc and
        # tangent line, to which the fit adds a position and a velocity.
        curve = _curvature(engine, x0, tp, kk, self.window_ns * _NS)
        x0t = np.repeat(x0.T, cnt, axis=1)
        y = np.take(z.T, pj, axis=1) - curve - x0t[:3] - tp * x0t[3:]
        iy = _sym_apply(ip, y)
        # The normal equations' sums per track, Σ w·[I, t·I, t²·I, I·y, t·I·y]
        # (I symmetric: its 6 unique entries), as rows.
        terms = np.empty((24, tp.size))
        terms[0:6], terms[18:21] = ip, iy
        np.multiply(ip, tp, out=terms[6:12])
        np.multiply(terms[6:12], tp, out=terms[12:18])
        np.multiply(iy, tp, out=terms[21:24])
        da, dv = np.zeros((3, nk)), np.zeros((3, nk))  # the fit's offsets, as rows
        pd = engine.cfg.p_detect
        pnorm = norm[pj]
        big = np.empty((nk, 6, 6))
        ok = np.zeros(nk, bool)
        wt = np.empty_like(terms)
        # Sinkhorn's scalings carry over from one EM iteration to the next:
        # from ones, a few iterations leave an untracked neighbour's plot, 1e-11
        # as likely as the track's own, up to half a batch's weight
        # (tests/unit/test_fusion_refit.py); the likelihoods move little.
        sk = _Sinkhorn(pj, kk, bj[pj], np.asarray(sizes), lam, 1.0 - pd)
        scale = None
        for it in range(iterations + 1):
            if it:
                lik = pd * np.exp(pnorm - 0.5 * _d2(y, ip, tp, da, dv, cnt))
                w, scale = sk.run(lik, sinkhorn, scale)
            sums = np.add.reduceat(np.multiply(terms, w, out=wt), starts, axis=1)
            big[:, :3, :3] = sums[_SYM[0]].transpose(2, 0, 1)
            big[:, :3, 3:] = big[:, 3:, :3] = sums[_SYM[1]].transpose(2, 0, 1)
            big[:, 3:, 3:] = sums[_SYM[2]].transpose(2, 0, 1)
            rhs = sums[18:24].T
            # A track with too little weight in the window keeps its state.
            ok = _well_conditioned(big)
            if not ok.any():
                return 0
            sol = np.linalg.solve(big[ok], rhs[ok][..., None])[..., 0]
            da[:, ok], dv[:, ok] = sol[:, :3].T, sol[:, 3:].T
        a, v = x0[:, :3] + da.T, x0[:, 3:] + dv.T
        # The fit must explain its plots: a track that is not on a ballistic
        # arc (a manoeuvre, or an air target the height rule took for exo)
        # leaves its weighted plots far off (mean d² of 3 for three
        # dimensions when it is on one).
        d2 = _d2(y, ip, tp, da, dv, cnt)
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


# The 6 unique entries of a symmetric 3x3 matrix, in the order 00, 01, 02,
# 11, 12, 22, and where each sits in the full matrix: _SYM[b] picks block b of
# the normal equations (rows 6b..6b+5 of the sums) as 3x3 by (N).
_S3 = np.array([[0, 1, 2], [1, 3, 4], [2, 4, 5]])
_SYM = (_S3, _S3 + 6, _S3 + 12)


def sym3_inv_logdet(cov: F64, add: F64 | None = None) -> tuple[F64, F64]:
    """Inverses and log-determinants of N symmetric positive definite 3x3
    matrices ``cov`` (N, 3, 3), each plus ``add`` (N,) times the identity if
    given.

    Returns the inverses' 6 unique entries as rows (6, N), in the order 00,
    01, 02, 11, 12, 22, and the log-determinants (N,); NaN for a matrix that
    is not positive definite. By the Cholesky factor L written out
    (A = L Lᵀ, A⁻¹ = L⁻ᵀ L⁻¹, log det A = 2 Σ log Lᵢᵢ), vectorised over N:
    numpy's batched ``inv`` and ``slogdet`` call LAPACK once per 3x3 matrix,
    ten times slower for the window's 25,000; cofactors would be as cheap but
    lose digits as the condition squared (Golub & Van Loan §4.2: Cholesky is
    backward stable). The lower triangle is read.
    """
    c00, c11, c22 = cov[:, 0, 0], cov[:, 1, 1], cov[:, 2, 2]
    if add is not None:
        c00, c11, c22 = c00 + add, c11 + add, c22 + add
    c10, c20, c21 = cov[:, 1, 0], cov[:, 2, 0], cov[:, 2, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        l00 = np.sqrt(c00)
        l10, l20 = c10 / l00, c20 / l00
        l11 = np.sqrt(c11 - l10 * l10)
        l21 = (c21 - l20 * l10) / l11
        l22 = np.sqrt(c22 - l20 * l20 - l21 * l21)
        # M = L⁻¹ (lower triangular), then A⁻¹ = Mᵀ M.
        m00, m11, m22 = 1.0 / l00, 1.0 / l11, 1.0 / l22
        m10 = -l10 * m00 * m11
        m21 = -l21 * m11 * m22
        m20 = -(l20 * m00 + l21 * m10) * m22
        out = np.empty((6, cov.shape[0]))
        out[0] = m00 * m00 + m10 * m10 + m20 * m20
        out[1] = m10 * m11 + m20 * m21
        out[2] = m20 * m22
        out[3] = m11 * m11 + m21 * m21
        out[4] = m21 * m22
        out[5] = m22 * m22
        logdet: F64 = 2.0 * (np.log(l00) + np.log(l11) + np.log(l22))
    return out, logdet


def _sym_apply(m: F64, x: F64) -> F64:
    """Symmetric 3x3 matrices ``m`` (their 6 entries as rows, (6, P)) times
    vectors ``x`` (3, P)."""
    out = np.empty_like(x)
    out[0] = m[0] * x[0] + m[1] * x[1] + m[2] * x[2]
    out[1] = m[1] * x[0] + m[3] * x[1] + m[4] * x[2]
    out[2] = m[2] * x[0] + m[4] * x[1] + m[5] * x[2]
    return out


def _well_conditioned(big: F64) -> np.ndarray:
    """Which symmetric matrices (N, 6, 6) have a 2-norm condition number
    below 1e12 (``np.linalg.cond``'s, from their eigenvalues: a symmetric
    matrix's singular values are their magnitudes; half the cost of the SVD)."""
    ev = np.abs(np.linalg.eigvalsh(big))
    with np.errstate(divide="ignore", invalid="ignore"):
        ok: np.ndarray = ev[:, -1] / ev.min(axis=1) < 1e12
    return ok


def _d2(y: F64, info: F64, tp: F64, da: F64, dv: F64, cnt: IDX) -> F64:
    """Per pair: d² of the residual ``y`` (3, P) less the fitted position and
    velocity offsets ``da + tp·dv`` (per track, (3, K); ``cnt`` pairs each,
    in order), under the plot's information ``info`` (6 unique entries,
    (6, P))."""
    # In place where it can be: the temporaries of (3, P) cost as much as
    # the arithmetic.
    nu = np.repeat(dv, cnt, axis=1)
    nu *= tp
    nu += np.repeat(da, cnt, axis=1)
    np.subtract(y, nu, out=nu)
    n0, n1, n2 = nu
    tmp = np.empty_like(n0)
    # n0 (I00 n0 + 2 I01 n1 + 2 I02 n2) + n1 (I11 n1 + 2 I12 n2) + I22 n2²
    out: F64 = np.multiply(info[1], n1)
    out += np.multiply(info[2], n2, out=tmp)
    out *= 2.0
    out += np.multiply(info[0], n0, out=tmp)
    out *= n0
    part = np.multiply(info[4], n2)
    part *= 2.0
    part += np.multiply(info[3], n1, out=tmp)
    part *= n1
    out += part
    np.multiply(info[5], n2, out=tmp)
    tmp *= n2
    out += tmp
    return out


def _curvature(engine: EngineView, x0: F64, tp: F64, kk: IDX, span_s: float) -> F64:
    """Per pair (3, P): the track's ballistic arc back to the plot's time
    minus its tangent line at the table time (gravity's share of the path),
    from 1 s steps back with the engine's gravity, linearly interpolated."""
    h = 1.0
    steps = int(np.ceil(span_s / h)) + 1
    x = x0.copy()
    grid = np.empty((3, steps + 1, x0.shape[0]))
    grid[:, 0] = 0.0
    for i in range(1, steps + 1):
        acc = engine.accel(x)
        x[:, :3] -= h * x[:, 3:] - 0.5 * h * h * acc
        x[:, 3:] -= h * acc
        t = -i * h
        grid[:, i] = (x[:, :3] - (x0[:, :3] + t * x0[:, 3:])).T
    f = np.clip(-tp / h, 0.0, steps - 1e-9)
    i0 = f.astype(np.intp)
    fr = f - i0
    flat = grid.reshape(3, -1)
    at = i0 * x0.shape[0] + kk
    lo, hi = np.take(flat, at, axis=1), np.take(flat, at + x0.shape[0], axis=1)
    hi -= lo
    hi *= fr
    out: F64 = lo + hi
    return out


class _Sinkhorn:
    """Origin probabilities of the pairs: each batch's matrix [[L, diag λ],
    [diag(1 - Pd), 1]] (plots and misses by tracks and clutter) scaled to
    doubly stochastic; the (plot, track) block is the answer.

    The pairs come sorted by track and, within a track, by batch, so the
    (track, batch) cells of the track columns are runs of pairs: only the
    cells that hold a pair are kept (a track column without a plot in its
    batch touches nothing else), and a cell's value per pair is a
    ``repeat``. The index arrays are fixed over the EM
    iterations; what depends on them alone is computed once."""

    def __init__(self, pj: IDX, kk: IDX, pb: IDX, sizes: IDX, lam: F64, miss: float) -> None:
        self.pj, self.sizes, self.lam, self.miss = pj, sizes, lam, miss
        self.nj, self.nb = lam.size, sizes.size
        self.bj = np.repeat(np.arange(self.nb), sizes)  # each plot's batch
        new = np.r_[True, (kk[1:] != kk[:-1]) | (pb[1:] != pb[:-1])]
        cstart = np.flatnonzero(new)  # each cell's first pair
        self.cell = np.cumsum(new) - 1  # each pair's cell
        self.ccount = np.diff(np.r_[cstart, pj.size])
        self.cb = pb[cstart]  # each cell's batch
        self.ones = (np.ones(cstart.size), np.ones(self.nj))

    def run(self, lik: F64, iters: int, scale: tuple[F64, F64] | None) -> tuple[F64, tuple[F64, F64]]:
        """The pairs' probabilities from their likelihoods ``lik``; ``scale``:
        the column scalings to start from (track columns per cell, clutter
        columns per plot; None: ones), returned updated."""
        pj, lam, miss, nj, nb = self.pj, self.lam, self.miss, self.nj, self.nb
        v, vc = self.ones if scale is None else scale
        u = np.ones(nj)
        for _ in range(iters):
            u = 1.0 / (np.bincount(pj, lik * np.repeat(v, self.ccount), minlength=nj) + lam * vc)
            sc = np.bincount(self.bj, vc, minlength=nb)
            um = 1.0 / (miss * v + sc[self.cb])  # miss rows
            v = 1.0 / (np.bincount(self.cell, u[pj] * lik, minlength=um.size) + miss * um)
            su = np.bincount(self.cb, um, minlength=nb)
            vc = 1.0 / (u * lam + np.repeat(su, self.sizes))
        out: F64 = u[pj] * lik * np.repeat(v, self.ccount)
        return out, (v, vc)
