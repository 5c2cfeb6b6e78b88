"""Sliding-window multi-scan assignment for closely spaced objects.

A hypothesis-oriented MHT with N-scan pruning, restricted to where it matters
(Blackman & Popoli 1999, §16.3; Poore's sliding-window S-D assignment). GNN
decides each plot batch at once; between closely spaced objects that one
radar does not resolve those decisions are close calls, and a wrong one drags
a track onto its neighbour. Here every plot batch is kept for a window of
``mht_window`` batches (three is one scan of three staggered radars). After
GNN has run on a batch, the tracks that compete for plots anywhere in the
window (clusters: connected components of the gate graph of those batches)
are filtered again from their state before the window, batch by batch, with
a beam of ``mht_hypotheses`` global hypotheses per cluster:

* each hypothesis is expanded by its best assignment of the batch (2-D
  assignment with a private "missed" column per track) and by the
  ``mht_hypotheses - 1`` cheapest assignments that differ from it by one pair
  swap (a cheap first level of Murty's k-best partition);
* a hypothesis scores -2 ln of its likelihood ratio: per hit the IMM mixture
  likelihood of the plot, ln P_D and the clutter density; per miss
  ln (1 - P_D);
* the beam keeps the cheapest hypotheses of each cluster; at the end the best
  one sets the cluster's tracks, and its states after the oldest batch become
  the new start of the window, so the oldest decision is final (N-scan
  pruning: hypotheses are regrown from there at the next batch).

The candidates of a batch are the plots GNN gave to the cluster's tracks: the
MHT decides *which* track takes which of them (the swaps that trade objects
between tracks) and who misses; plots that started tracks stay theirs, and
the life cycle counts GNN's hits. Tracks born within the window are left
to GNN; a sensor-track or out-of-sequence batch ends the window (the
re-filter runs plot batches only). Why by hand: no library runs MHT on stacked numpy
track tables (Stone Soup's MHT enumerates hypotheses per track object, about
100 × slower per scan on this bench); the assignment itself is scipy's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gateway.fusion.api import F64, ReportArrays
from gateway.fusion.exo import switch_rates
from gateway.fusion.gating import IDX
from gateway.fusion.kalman import ekf_update
from gateway.fusion.measure import plot_residual
from gateway.fusion.motion import imm_combine, imm_mix, markov_matrix, seconds
from gateway.fusion.twoscan import quiet_logsumexp
from gateway.fusion.view import EngineView

__all__ = ["WindowMHT"]

_NS = 1e-9
_BIG = 1e9


@dataclass(slots=True)
class _Snap:
    """The track table (by id) just before a batch: time, ids, IMM states."""

    t_ns: int
    tid: np.ndarray
    xm: F64
    Pm: F64
    mu: F64


@dataclass(slots=True)
class _Entry:
    """One plot batch of the window, with GNN's gate graph and choice (by track id)."""

    snap: _Snap
    r: ReportArrays
    s: int
    t0: int
    t_end: int
    g_tid: np.ndarray
    g_r: IDX
    a_tid: np.ndarray
    a_r: IDX


@dataclass(slots=True)
class _Cluster:
    tid: np.ndarray  # track ids (T,)
    # per window step: candidate plots (P,) and gated (local track, local plot)
    plots: list[IDX]
    gt: list[IDX]
    gp: list[IDX]


class WindowMHT:
    """The window and the per-batch re-solve; owned by the engine."""

    def __init__(self, engine: EngineView) -> None:
        self.e = engine
        self.n = engine.cfg.mht_window
        self.k = engine.cfg.mht_hypotheses
        self.win: list[_Entry] = []
        self._snap: _Snap | None = None
        pd = engine.cfg.p_detect
        # -2 ln of a hit's likelihood ratio against "clutter": the mixture
        # cost (2π terms included) + 2 ln(λ / P_D); a miss: -2 ln(1 - P_D).
        self.hit_const = 2.0 * np.log(engine.cfg.clutter_density / pd)
        self.miss_cost = -2.0 * np.log(1.0 - pd)

    def reset(self) -> None:
        """Forget the window (an out-of-sequence batch changed the tracks)."""
        self.win = []
        self._snap = None

    def before(self) -> None:
        """Snapshot the table before an in-sequence plot batch."""
        st = self.e.store
        n = st.n
        self._snap = _Snap(
            self.e.t_store or 0, st.track_id[:n].copy(), st.xm[:n].copy(), st.Pm[:n].copy(), st.mu[:n].copy()
        )

    def after(self, r: ReportArrays, s: int, gi: IDX, gr: IDX, at: IDX, ar: IDX, t0: int, t_end: int) -> None:
        """Record the batch (gated pairs ``gi``/``gr``, GNN's ``at``/``ar``, table
        rows) and re-solve the clusters of the window; tracks are at ``t_end``."""
        if self._snap is None:
            return
        st = self.e.store
        self.win.append(_Entry(self._snap, r, s, t0, t_end, st.track_id[gi], gr, st.track_id[at], ar))
        self._snap = None
        if len(self.win) > self.n:
            self.win.pop(0)
        if len(self.win) < 2:
            return
        clusters = self._clusters()
        if clusters:
            self._solve(clusters)
            self.e.counters["mht_clusters"] += len(clusters)

    # ------------------------------------------------------------ clusters

    def _clusters(self) -> list[_Cluster]:
        """Components of the window's gate graph (tracks alive over the whole
        window, plots GNN gave them) where some plot is gated by 2+ tracks."""
        st = self.e.store
        elig = np.intersect1d(self.win[0].snap.tid, st.track_id[: st.n])
        if elig.size < 2:
            return []
        t_nodes: list[np.ndarray] = []
        p_nodes: list[np.ndarray] = []
        off = 0
        per: list[tuple[np.ndarray, IDX, int]] = []
        for e in self.win:
            # Candidate plots: those GNN gave to an eligible track.
            a_ok = np.isin(e.a_tid, elig)
            cand = np.zeros(len(e.r), bool)
            cand[e.a_r[a_ok]] = True
            taken_other = np.zeros(len(e.r), bool)
            taken_other[e.a_r[~a_ok]] = True
            keep = np.isin(e.g_tid, elig) & cand[e.g_r] & ~taken_other[e.g_r]
            gt, gp = e.g_tid[keep], e.g_r[keep]
            per.append((gt, gp, off))
            t_nodes.append(gt)
            p_nodes.append(gp + off)
            off += len(e.r)
        all_t = np.concatenate(t_nodes)
        all_p = np.concatenate(p_nodes)
        if all_t.size == 0:
            return []
        shared_p = np.bincount(all_p, minlength=off)[all_p] > 1
        if not shared_p.any():
            return []
        hot_t = np.unique(all_t[shared_p])
        use = np.isin(all_t, hot_t)
        all_t, all_p = all_t[use], all_p[use]
        # scipy on this variant's path only: the default worker never imports it (issue 18).
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        tu, t_loc = np.unique(all_t, return_inverse=True)
        nt = tu.size
        g = coo_matrix((np.ones(all_t.size), (t_loc, nt + all_p)), shape=(nt + off, nt + off))
        _, lab = connected_components(g, directed=False)
        comp_t = lab[:nt]
        out = []
        for c in np.unique(comp_t):
            tids = tu[comp_t == c]
            if tids.size < 2:
                continue
            cl = _Cluster(tids, [], [], [])
            for gt, gp, _ in per:
                m = np.isin(gt, tids)
                pl, p_loc = np.unique(gp[m], return_inverse=True)
                cl.plots.append(pl)
                cl.gt.append(np.searchsorted(tids, gt[m]))
                cl.gp.append(p_loc)
            out.append(cl)
        return out

    # --------------------------------------------------------------- solve

    def _solve(self, clusters: list[_Cluster]) -> None:
        e = self.e
        st = e.store
        snap0 = self.win[0].snap
        order = np.argsort(snap0.tid)
        # Beam state: per cluster a list of hypotheses; all hypotheses' track
        # rows stacked: X (R, M, 6), P, MU; hyp c, cost, row offset, parent.
        xs, ps, mus, hc, hoff = [], [], [], [], []
        off = 0
        for ci, cl in enumerate(clusters):
            rows = order[np.searchsorted(snap0.tid[order], cl.tid)]
            xs.append(snap0.xm[rows])
            ps.append(snap0.Pm[rows])
            mus.append(snap0.mu[rows])
            hc.append(ci)
            hoff.append(off)
            off += cl.tid.size
        X, P, MU = np.concatenate(xs), np.concatenate(ps), np.concatenate(mus)
        h_clu = np.array(hc)
        h_off = np.array(hoff)
        h_cost = np.zeros(len(clusters))
        sizes = np.array([cl.tid.size for cl in clusters])
        history: list[tuple[F64, F64, F64, np.ndarray, np.ndarray]] = []
        t_prev = snap0.t_ns
        for b, ent in enumerate(self.win):
            X, P, MU = self._predict(X, P, MU, t_prev, ent.t0)
            X, P, MU, h_clu, h_off, h_cost, parent = self._expand(
                clusters, b, ent, X, P, MU, h_clu, h_off, h_cost, sizes
            )
            if ent.t_end != ent.t0:
                X, P = e.predict_models(X, P, np.full(X.shape[0], (ent.t_end - ent.t0) * _NS))
            t_prev = ent.t_end
            history.append((X, P, MU, h_off, parent))
        # Best hypothesis per cluster; backtrack its rows through the steps.
        best = np.full(len(clusters), -1)
        for h in range(h_clu.size):
            c = h_clu[h]
            if best[c] < 0 or h_cost[h] < h_cost[best[c]]:
                best[c] = h
        cur = best
        path: list[np.ndarray] = [np.empty(0, np.int64)] * len(self.win)
        for b in range(len(self.win) - 1, -1, -1):
            path[b] = cur
            cur = history[b][4][cur]
        rows_of = np.concatenate([np.arange(sizes[c]) for c in range(len(clusters))])
        tids = np.concatenate([cl.tid for cl in clusters])

        def gather(b: int) -> tuple[F64, F64, F64]:
            hX, hP, hMU, hoff_b, _ = history[b]
            idx = np.repeat(hoff_b[path[b]], sizes) + rows_of
            return hX[idx], hP[idx], hMU[idx]

        # The table now: the best hypotheses' states.
        fx, fp, fmu = gather(len(self.win) - 1)
        live = st.track_id[: st.n]
        lo = np.argsort(live)
        rws = lo[np.searchsorted(live[lo], tids)]
        st.xm[rws], st.Pm[rws], st.mu[rws] = fx, fp, fmu
        st.x[rws], st.P[rws] = imm_combine(fx, fp, fmu)
        # The window's later starts: the states along the best path.
        for b in range(len(self.win) - 1):
            sx, sp, smu = gather(b)
            snap = self.win[b + 1].snap
            so = np.argsort(snap.tid)
            pos = np.searchsorted(snap.tid[so], tids)
            ok = (pos < snap.tid.size) & (snap.tid[so][np.minimum(pos, snap.tid.size - 1)] == tids)
            r = so[pos[ok]]
            snap.xm[r], snap.Pm[r], snap.mu[r] = sx[ok], sp[ok], smu[ok]

    def _predict(self, X: F64, P: F64, MU: F64, t_from: int, t_to: int) -> tuple[F64, F64, F64]:
        dt_s = (t_to - t_from) * _NS
        if dt_s == 0.0:
            return X, P, MU
        dt = np.full(X.shape[0], dt_s)
        if MU.shape[1] > 1:
            X, P, MU = imm_mix(X, P, MU, markov_matrix(MU.shape[1], dt, switch_rates(self.e, X)))
        X, P = self.e.predict_models(X, P, dt)
        return X, P, MU

    def _expand(
        self,
        clusters: list[_Cluster],
        b: int,
        ent: _Entry,
        X: F64,
        P: F64,
        MU: F64,
        h_clu: np.ndarray,
        h_off: np.ndarray,
        h_cost: F64,
        sizes: np.ndarray,
    ) -> tuple[F64, F64, F64, np.ndarray, np.ndarray, F64, np.ndarray]:
        """One batch: score every hypothesis' gated pairs, expand, keep the beam."""
        e = self.e
        # Pairs (row, plot) of every hypothesis.
        pr_row, pr_plot, pr_h, pr_t, pr_p = [], [], [], [], []
        for h in range(h_clu.size):
            cl = clusters[h_clu[h]]
            gt, gp = cl.gt[b], cl.gp[b]
            pr_row.append(h_off[h] + gt)
            pr_plot.append(cl.plots[b][gp])
            pr_h.append(np.full(gt.size, h))
            pr_t.append(gt)
            pr_p.append(gp)
        row = np.concatenate(pr_row).astype(np.intp)
        plot = np.concatenate(pr_plot).astype(np.intp)
        ph = np.concatenate(pr_h)
        pt = np.concatenate(pr_t)
        pp = np.concatenate(pr_p)
        r = ent.r
        n_m = MU.shape[1]
        xm, Pm = X[row], P[row]
        dtp = seconds(r.t_ns[plot] - ent.t0)
        if np.any(dtp != 0.0):
            xm, Pm = e.predict_models(xm, Pm, dtp)
        o, tl = e.origins[ent.s], e.to_locals[ent.s]
        ux, uP = np.empty_like(xm), np.empty_like(Pm)
        ll = np.empty((row.size, n_m))
        for m in range(n_m):
            bias = e.bias[ent.s][None, :]
            nu, H, R = plot_residual(o, tl, xm[:, m], r.polar[plot], r.polar_sigma[plot], bias)
            ux[:, m], uP[:, m], _, ll[:, m] = ekf_update(xm[:, m], Pm[:, m], nu, H, R)
        lmu = np.log(np.maximum(MU[row], 1e-300)) + ll
        top = lmu.max(axis=1)
        lse = top + np.log(np.exp(lmu - top[:, None]).sum(axis=1))
        # The hypothesis score uses the engine's association likelihood.
        cost = -2.0 * quiet_logsumexp(e, lmu, xm, MU[row]) + self.hit_const
        cost = np.where(np.isfinite(cost), cost, _BIG)
        w = np.exp(lmu - lse[:, None])
        # Expand each hypothesis.
        pstart = np.searchsorted(ph, np.arange(h_clu.size + 1))
        kids: list[tuple[int, float, np.ndarray]] = []  # (parent, cost, pair idx per track or -1)
        for h in range(h_clu.size):
            c = h_clu[h]
            T = int(sizes[c])
            npl = clusters[c].plots[b].size
            a, z = int(pstart[h]), int(pstart[h + 1])
            C = np.full((T, npl + T), _BIG)
            C[:, npl:][np.diag_indices(T)] = self.miss_cost
            pidx = np.full((T, npl), -1, np.int64)
            C[pt[a:z], pp[a:z]] = cost[a:z]
            pidx[pt[a:z], pp[a:z]] = np.arange(a, z)
            # Imported here: scipy.optimize is ~9 MB in every fusion worker
            # process, for a window that is off by default (issue 18).
            from scipy.optimize import linear_sum_assignment

            ri, cj = linear_sum_assignment(C)
            col = np.empty(T, np.int64)
            col[ri] = cj
            base = float(C[ri, cj].sum())
            kids.append((h, h_cost[h] + base, _pairs_of(col, pidx, npl)))
            if self.k > 1 and T > 1:
                # One-swap neighbours of the best assignment, cheapest first.
                # Cost of track i taking j's column (j's "missed" column: i misses).
                cc = np.where(col[None, :] >= npl, self.miss_cost, C[np.arange(T)[:, None], col[None, :]])
                own = np.diag(cc)
                delta = cc + cc.T - own[:, None] - own[None, :]
                iu, ju = np.triu_indices(T, 1)
                d = delta[iu, ju]
                okd = d < _BIG / 2
                iu, ju, d = iu[okd], ju[okd], d[okd]
                for q in np.argsort(d)[: self.k - 1]:
                    col2 = col.copy()
                    col2[iu[q]], col2[ju[q]] = col[ju[q]], col[iu[q]]
                    kids.append((h, h_cost[h] + base + float(d[q]), _pairs_of(col2, pidx, npl)))
        # Beam: the k cheapest kids per cluster.
        k_par = np.array([k[0] for k in kids])
        k_cost = np.array([k[1] for k in kids])
        k_clu = h_clu[k_par]
        keep_idx: list[int] = []
        for c in np.unique(k_clu):
            mc = np.flatnonzero(k_clu == c)
            keep_idx.extend(mc[np.argsort(k_cost[mc], kind="stable")[: self.k]].tolist())
        keep_idx.sort(key=lambda i: (k_clu[i], k_cost[i]))
        nX, nP, nMU, n_off = [], [], [], []
        off = 0
        for i in keep_idx:
            h, _, pi = kids[i]
            T = int(sizes[h_clu[h]])
            rows = h_off[h] + np.arange(T)
            x, p, mu = X[rows].copy(), P[rows].copy(), MU[rows].copy()
            hit = pi >= 0
            x[hit], p[hit], mu[hit] = ux[pi[hit]], uP[pi[hit]], w[pi[hit]]
            nX.append(x)
            nP.append(p)
            nMU.append(mu)
            n_off.append(off)
            off += T
        sel = np.array(keep_idx)
        return (
            np.concatenate(nX),
            np.concatenate(nP),
            np.concatenate(nMU),
            k_clu[sel],
            np.array(n_off),
            k_cost[sel],
            k_par[sel],
        )


def _pairs_of(col: np.ndarray, pidx: np.ndarray, npl: int) -> np.ndarray:
    """Pair index per track of an assignment (columns >= npl: missed): -1 if none."""
    T = col.size
    out = np.full(T, -1, np.int64)
    real = col < npl
    out[real] = pidx[np.arange(T)[real], col[real]]
    return out
