"""The fusion engine: a push-style ``step(reports, t_ns)`` over stacked arrays.

One step:

1. reports newer than the picture time wait for a later step; reports older
   than the track table's time by more than ``oos_lag_s`` are counted and
   dropped (``counters["late_dropped"]``);
2. the rest are cut into batches (one sensor, one report kind, times within
   ``scan_window_s``) and processed in time order. A batch at or after the
   table's time runs the normal cycle: IMM mixing and prediction of every
   track to the batch start, spatial pre-gate, per-pair prediction to each
   report's own time, Mahalanobis gate, global-nearest-neighbour assignment
   (with ``mht_window``: revisited over that many batches, :mod:`.mht`),
   EKF (plots) or covariance-intersection (sensor tracks) updates, track
   starts, life cycle. A batch older than the table's time (within the lag)
   updates the tracks by retrodiction (:mod:`gateway.fusion.oos`);
3. tracks are predicted (copies) to ``t_ns`` and returned, with those dropped
   during the step once more as ``STATUS_DROPPED``.

The track table holds every track at one common time (the end of the last
in-sequence batch), so prediction is one batched call per batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from gateway.fusion.api import (
    F64,
    KIND_PLOT,
    STATUS_COASTING,
    STATUS_CONFIRMED,
    STATUS_DROPPED,
    STATUS_TENTATIVE,
    ReportArrays,
    SensorGeometry,
    TrackArrays,
    split_repeats,
)
from gateway.fusion.config import (
    ASSOC_COST_MIXTURE,
    ASSOC_JPDA,
    MODEL_BALLISTIC,
    MODEL_MANOEUVRE,
    FusionConfig,
)
from gateway.fusion.exo import plot_starts, switch_rates
from gateway.fusion.gating import IDX, chi2_quantile, gnn_assign, pregate
from gateway.fusion.jpda import soft_update
from gateway.fusion.kalman import covariance_intersection, ekf_update, innovation_cov, mahalanobis2
from gateway.fusion.lifecycle import apply_misses, new_rows, rows_to_arrays, snapshot
from gateway.fusion.measure import plot_dims, plot_residual
from gateway.fusion.merge import merge_duplicates
from gateway.fusion.mht import WindowMHT
from gateway.fusion.motion import (
    AccelFn,
    ecef_gravity,
    flat_gravity,
    imm_combine,
    imm_mix,
    markov_matrix,
    predict_ballistic,
    predict_cv,
    seconds,
)
from gateway.fusion.oos import oos_plot_batch
from gateway.fusion.refit import PlotWindow
from gateway.fusion.spread import spread_pairs, spread_update
from gateway.fusion.stitch import bury
from gateway.fusion.store import MAX_SENSORS, Graves, TrackStore
from gateway.fusion.twoscan import mixture_cost, record_updates, swap_test
from hilgw.errors import ConfigError

_NS = 1e-9


class Engine:
    """Multi-sensor tracker implementing :class:`gateway.fusion.api.FusionEngine`.

    ``accel`` is the ballistic model's acceleration (default
    :func:`gateway.fusion.motion.ecef_gravity`; use ``flat_gravity()`` in a
    local z-up frame). ``counters`` counts reports by fate.
    """

    def __init__(self, config: FusionConfig | None = None, accel: AccelFn | None = None) -> None:
        self.cfg = config if config is not None else FusionConfig()
        self.cfg.check()
        self.accel: AccelFn = accel if accel is not None else ecef_gravity()
        self.sensors: list[SensorGeometry] = []
        self.origins: F64 = np.empty((0, 3))
        self.to_locals: F64 = np.empty((0, 3, 3))
        self.bias: F64 = np.empty((0, 4))
        self.store = TrackStore(len(self.cfg.models))
        self.t_store: int | None = None
        self.next_id = 1
        self.counters: dict[str, int] = {
            "reports_in": 0,
            "plots_used": 0,
            "sensor_tracks_used": 0,
            "tracks_started": 0,
            "late_dropped": 0,
            "oos_used": 0,
            "held_for_later": 0,
            "tracks_merged": 0,
            "sensor_track_reseeds": 0,
            "two_scan_swaps": 0,
            "mht_clusters": 0,
            "tracks_reacquired": 0,
        }
        #: Serial of the current batch (1, 2, ...): gateway/fusion/twoscan.py.
        self.batch_serial = 0
        self._pending = ReportArrays.empty()
        self._dropped: list[TrackArrays] = []
        p = self.cfg.gate_prob
        self.gate = {d: chi2_quantile(p, d) for d in (3, 4)}
        self.gate[6] = chi2_quantile(self.cfg.t2t_gate_prob, 6)
        self.persist_gate = chi2_quantile(self.cfg.t2t_persist_gate_prob, 6)
        self.merge_gate = chi2_quantile(self.cfg.merge_gate_prob, 6)
        self.stitch_gate = chi2_quantile(self.cfg.stitch_gate_prob, 6)
        self.init_gate = {d: chi2_quantile(self.cfg.init_suppress_prob, d) for d in (3, 4, 6)}
        self._mu0 = np.asarray(self.cfg.imm_initial, dtype=np.float64)
        self.mht = WindowMHT(self) if self.cfg.mht_window > 1 else None
        c = self.cfg
        self.refit = (
            PlotWindow(c.exo_refit_window_s, c.exo_refit_every_s) if c.exo_refit_every_s > 0 else None
        )
        self.graves = Graves()  # recently lost tracks (gateway/fusion/stitch.py)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Engine:
        """Build from the gateway config's ``fusion.params`` table.

        Keys are :class:`FusionConfig` fields (lists become tuples); the
        optional key ``gravity`` is ``"ecef"`` (default: WGS-84 + J2 in the
        rotating Earth frame) or ``"flat"`` (-z, local frames). Unknown keys
        raise :class:`ConfigError`.
        """
        p = dict(params)
        gravity = p.pop("gravity", "ecef")
        names = {f.name for f in dataclasses.fields(FusionConfig)}
        unknown = sorted(set(p) - names)
        if unknown:
            raise ConfigError("fusion.params", f"unknown keys {unknown}; known: {sorted(names)}")
        if gravity not in ("ecef", "flat"):
            raise ConfigError("fusion.params.gravity", f"{gravity!r}: must be 'ecef' or 'flat'")
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in p.items()}
        cfg = FusionConfig(**kw)
        return cls(cfg, accel=flat_gravity() if gravity == "flat" else ecef_gravity())

    # ------------------------------------------------------------------ API

    def add_sensor(self, geometry: SensorGeometry) -> int:
        """Register a sensor; returns its index for ``ReportArrays.sensor``."""
        if len(self.sensors) >= MAX_SENSORS:
            raise ConfigError("fusion.sensors", f"at most {MAX_SENSORS} sensors, got one more")
        self.sensors.append(geometry)
        self.origins = np.vstack([self.origins, np.asarray(geometry.origin, np.float64).reshape(1, 3)])
        self.to_locals = np.concatenate(
            [self.to_locals, np.asarray(geometry.to_local, np.float64).reshape(1, 3, 3)]
        )
        self.bias = np.vstack([self.bias, np.zeros((1, 4))])
        return len(self.sensors) - 1

    def step(self, reports: ReportArrays, t_ns: int) -> TrackArrays:
        """Take the reports that arrived since the last call; return the picture at ``t_ns``."""
        self.counters["reports_in"] += len(reports)
        allr = ReportArrays.concat([self._pending, reports]) if len(self._pending) else reports
        later = allr.t_ns > t_ns
        self._pending = _take(allr, np.flatnonzero(later))
        self.counters["held_for_later"] = len(self._pending)
        now = _take(allr, np.flatnonzero(~later)) if later.any() else allr
        if self.t_store is not None and len(now):
            late = now.t_ns < self.t_store - int(self.cfg.oos_lag_s / _NS)
            if late.any():
                self.counters["late_dropped"] += int(late.sum())
                now = _take(now, np.flatnonzero(~late))
        for idx in self._batches(now):
            batch = _take(now, idx)
            if self.t_store is not None and int(batch.t_ns.min()) < self.t_store:
                if self.mht is not None:
                    self.mht.reset()
                self._oos_batch(batch)
            else:
                self._batch(batch)
        if self.refit is not None and self.t_store is not None and self.refit.due(self.t_store):
            self.refit.run(self, self.t_store)
        self._drop_stale(t_ns)
        merge_duplicates(self, t_ns)
        out = snapshot(self, t_ns, self._dropped)
        self._dropped = []
        return out

    # -------------------------------------------------------------- batches

    def _batches(self, r: ReportArrays) -> list[IDX]:
        """Index arrays of batches (sensor, kind, time window), by start time."""
        if len(r) == 0:
            return []
        order = np.lexsort((r.t_ns, r.kind, r.sensor))
        s, k, t = r.sensor[order], r.kind[order], r.t_ns[order]
        win = int(self.cfg.scan_window_s / _NS)
        cut = np.flatnonzero((s[1:] != s[:-1]) | (k[1:] != k[:-1]) | (np.diff(t) > win)) + 1
        parts: list[IDX] = []
        for p in np.split(order, cut):
            parts.extend(split_repeats(r, p))
        parts.sort(key=lambda p: int(r.t_ns[p].min()))
        return parts

    def predict_models(self, xm: F64, Pm: F64, dt: F64) -> tuple[F64, F64]:
        """Predict each model's state (N, M, 6) by ``dt`` (N,) seconds."""
        xo = np.empty_like(xm)
        po = np.empty_like(Pm)
        for m, name in enumerate(self.cfg.models):
            if name == MODEL_BALLISTIC:
                xo[:, m], po[:, m] = predict_ballistic(
                    xm[:, m], Pm[:, m], dt, self.cfg.q_ballistic, self.accel
                )
            elif name == MODEL_MANOEUVRE:
                xo[:, m], po[:, m] = predict_cv(xm[:, m], Pm[:, m], dt, self.cfg.q_manoeuvre)
            else:
                xo[:, m], po[:, m] = predict_cv(xm[:, m], Pm[:, m], dt, self.cfg.q_ncv)
        return xo, po

    def _advance(self, t_ns: int) -> None:
        """IMM interaction + prediction of the whole table to ``t_ns``."""
        st = self.store
        if self.t_store is None:
            self.t_store = t_ns
            return
        dt_s = (t_ns - self.t_store) * _NS
        self.t_store = t_ns
        if st.n == 0 or dt_s == 0.0:
            return
        n = st.n
        dt = np.full(n, dt_s)
        xm, Pm, mu = st.xm[:n], st.Pm[:n], st.mu[:n]
        if st.n_models > 1:
            xm, Pm, mu = imm_mix(xm, Pm, mu, markov_matrix(st.n_models, dt, switch_rates(self, xm)))
            st.mu[:n] = mu
        st.xm[:n], st.Pm[:n] = self.predict_models(xm, Pm, dt)
        st.x[:n], st.P[:n] = imm_combine(st.xm[:n], st.Pm[:n], st.mu[:n])

    def _pairs(self, r: ReportArrays, rep_pos: F64, rep_var: F64) -> tuple[IDX, IDX]:
        """Spatial pre-gate between the table (at its time) and the batch."""
        st = self.store
        n = st.n
        k = self.cfg.pregate_sigmas
        tvar = np.trace(st.P[:n, :3, :3], axis1=1, axis2=2)
        # Reports later than the table time move by up to |v| dt meanwhile.
        lag = float((r.t_ns.max() - (self.t_store or 0)) * _NS)
        speed = np.linalg.norm(st.x[:n, 3:], axis=1) + np.sqrt(np.trace(st.P[:n, 3:, 3:], axis1=1, axis2=2))
        t_rad = k * np.sqrt(tvar) + abs(lag) * speed
        return pregate(st.x[:n, :3], t_rad, rep_pos, k * np.sqrt(rep_var), self.cfg.pregate_max_m)

    def _batch(self, r: ReportArrays) -> None:
        """One in-sequence batch of one sensor and one report kind."""
        st = self.store
        cfg = self.cfg
        s = int(r.sensor[0])
        plots = int(r.kind[0]) == KIND_PLOT
        t0 = int(r.t_ns.min())
        t_end = int(r.t_ns.max())
        if self.mht is not None and plots:
            self.mht.before()
        elif self.mht is not None:
            self.mht.reset()  # the window re-runs plot batches only
        self._advance(t0)
        self.batch_serial += 1
        n_old = st.n
        o, tl = self.origins[s], self.to_locals[s]
        if plots:
            rx, rP = plot_starts(self, s, r.polar, r.polar_sigma)
        else:
            rx, rP = r.x, r.P
        rep_var = np.trace(rP[:, :3, :3], axis1=1, axis2=2)
        ti, rj = self._pairs(r, rx[:, :3], rep_var)
        if not plots:
            ti, rj = self._with_pairings(r, s, ti, rj)
        comb = np.empty(0)
        if plots:
            xm_p, Pm_p, d2, ok, near, cost, comb = self._plot_pairs(r, s, ti, rj, t0)
            if cfg.two_scan and swap_test(self, r, s, ti, rj, ok & np.isfinite(d2), comb, t0):
                # Swapped tracks changed state: score the batch again.
                xm_p, Pm_p, d2, ok, near, cost, comb = self._plot_pairs(r, s, ti, rj, t0)
            miss = float(cost.max(initial=0.0)) + self.gate[4] + 1.0
            same = np.zeros(ti.size, bool)
        else:
            xm_p, Pm_p, xc, Pc = self._predict_pairs(r, ti, rj, t0)
            d2 = mahalanobis2(r.x[rj] - xc, Pc + r.P[rj])
            same = st.paired[ti, s] & (st.stid[ti, s] == r.sensor_track_id[rj])
            other = st.paired[ti, s] & ~same
            # A persistent pairing survives a looser gate and is preferred
            # outright (cost 0); a system track never takes a second sensor
            # track of the same sensor while its pairing lives.
            ok = np.where(same, d2 < self.persist_gate, d2 < self.gate[6]) & ~other
            near = ok
            cost = np.where(same, 0.0, d2)
            miss = self.persist_gate
        ok &= np.isfinite(d2)
        g = np.flatnonzero(ok)
        sel = g[gnn_assign(ti[g], rj[g], cost[g], miss)]
        if plots and self.refit is not None:
            self.refit.add(self, r.t_ns, rx[:, :3], rP[:, :3, :3], r.polar, ti[g], rj[g], np.isin(g, sel))
        soft = plots and cfg.association == ASSOC_JPDA and g.size > 0
        spread = plots and cfg.gnn_spread and not soft and sel.size > 0
        upd = g if soft else spread_pairs(ti, rj, g, sel) if spread else sel  # per-model updates needed
        xm_a, Pm_a = xm_p[upd], Pm_p[upd]
        loglik = np.empty((upd.size, st.n_models))
        ut, ur = ti[upd], rj[upd]
        for m in range(st.n_models):
            if plots:
                nu, H, R = plot_residual(
                    o, tl, xm_a[:, m], r.polar[ur], r.polar_sigma[ur], self.bias[s][None, :]
                )
                xm_a[:, m], Pm_a[:, m], _, loglik[:, m] = ekf_update(xm_a[:, m], Pm_a[:, m], nu, H, R)
            else:
                dx = r.x[ur] - xm_a[:, m]
                Sm = Pm_a[:, m] + r.P[ur]
                _, logdet = np.linalg.slogdet(Sm)
                loglik[:, m] = -0.5 * (mahalanobis2(dx, Sm) + logdet)
                xm_a[:, m], Pm_a[:, m], _ = covariance_intersection(xm_a[:, m], Pm_a[:, m], r.x[ur], r.P[ur])
        at, ar = ti[sel], rj[sel]
        in_sel = np.searchsorted(upd, sel) if soft or spread else np.arange(sel.size)
        mu_a = st.mu[at]
        if spread:  # GNN's mean, the PDA mixture's covariance (spread.py)
            xm_a, Pm_a, loglik, in_sel = spread_update(self, r, ut, ur, xm_a, Pm_a, loglik, in_sel, n_old)
        if st.n_models > 1 and not soft:
            w = mu_a * np.exp(loglik - loglik.max(axis=1, keepdims=True))
            mu_a = w / w.sum(axis=1, keepdims=True)
        if plots and cfg.estimate_bias:
            self._learn_bias(s, at, ar, r, xm_a[in_sel], mu_a)
        if soft:
            chosen = np.zeros(upd.size, bool)
            chosen[in_sel] = True
            soft_update(self, r, t0, t_end, n_old, ut, ur, xm_a, Pm_a, loglik, chosen)
        else:
            # Updated rows go from their report's time to t_end, the others from t0.
            dt_rest = np.full(n_old, (t_end - t0) * _NS)
            dt_rest[at] = seconds(t_end - r.t_ns[ar])
            if cfg.two_scan and sel.size:
                record_updates(self, r, s, at, ar, xm_p[sel], Pm_p[sel], comb[sel] if plots else None)
            if sel.size:
                st.xm[at], st.Pm[at], st.mu[at] = xm_a, Pm_a, mu_a
            if t_end != t0 and n_old:
                st.xm[:n_old], st.Pm[:n_old] = self.predict_models(st.xm[:n_old], st.Pm[:n_old], dt_rest)
            if sel.size or t_end != t0:
                st.x[:n_old], st.P[:n_old] = imm_combine(st.xm[:n_old], st.Pm[:n_old], st.mu[:n_old])
        self.t_store = t_end
        if self.mht is not None and plots and not soft:
            self.mht.after(r, s, ti[g], rj[g], at, ar, t0, t_end)
        if not plots:
            at, ar = self._reseed(r, ti, rj, same, sel, at, ar, t_end)

        # Bookkeeping of the hits.
        st.n_updates[at] += 1
        st.last_ns[at] = np.maximum(st.last_ns[at], r.t_ns[ar])
        st.seen_ns[at, s] = r.t_ns[ar]
        if not plots:
            st.paired[at, s] = True
            st.stid[at, s] = r.sensor_track_id[ar]
            self.counters["sensor_tracks_used"] += int(sel.size)
        else:
            self.counters["plots_used"] += int(sel.size)
        hit = np.zeros(n_old, bool)
        hit[at] = True
        apply_misses(self, s, hit)

        # Unused reports start tracks.
        # A plot inside a wide gate of a track it did not get is that
        # target's plot lost to association, not a new target: no start.
        # Only the wide gate of a track that took no plot suppresses: a track
        # that took one has had its detection of this scan, so another plot
        # near it is another object (CSO, a separating fragment).
        free = np.ones(len(r), bool)
        free[ar] = False
        took = hit[ti] if plots else np.zeros(ti.size, bool)
        free[rj[near & np.isfinite(d2) & ~took]] = False
        # A sensor track inside the wide gate of an existing track is most
        # likely that target seen by one more sensor whose young track missed
        # the pairing gate: it starts tentative (not in the picture), to be
        # folded into the existing track (merge.py) or confirmed by M of N.
        dup = np.zeros(len(r), bool)
        if not plots:
            dup[rj[np.isfinite(d2) & (d2 < self.init_gate[6])]] = True
        for part, conf in ((free & ~dup, True), (free & dup, False)):
            fr = np.flatnonzero(part)
            if fr.size:
                new_rows(
                    self,
                    s,
                    _take(r, fr),
                    rx[fr],
                    rP[fr],
                    t_end,
                    confirmed=conf and not plots and cfg.sensor_track_confirms,
                )

    def _predict_pairs(self, r: ReportArrays, ti: IDX, rj: IDX, t0: int) -> tuple[F64, F64, F64, F64]:
        """Per pair: each model's track state at the report's time, and their combination."""
        st = self.store
        dtp = seconds(r.t_ns - t0)
        if np.any(dtp != 0.0):
            xm_p, Pm_p = self.predict_models(st.xm[ti], st.Pm[ti], dtp[rj])
        else:
            xm_p, Pm_p = st.xm[ti], st.Pm[ti]
        xc, Pc = imm_combine(xm_p, Pm_p, st.mu[ti]) if st.n_models > 1 else (xm_p[:, 0], Pm_p[:, 0])
        return xm_p, Pm_p, xc, Pc

    def _plot_pairs(
        self, r: ReportArrays, s: int, ti: IDX, rj: IDX, t0: int
    ) -> tuple[F64, F64, F64, np.ndarray, np.ndarray, F64, F64]:
        """Score the (track, plot) pairs of a plot batch: per-model predictions,
        d², gate and wide gate, the GNN cost and the combined-Gaussian cost."""
        cfg = self.cfg
        o, tl = self.origins[s], self.to_locals[s]
        xm_p, Pm_p, xc, Pc = self._predict_pairs(r, ti, rj, t0)
        nu, H, R = plot_residual(o, tl, xc, r.polar[rj], r.polar_sigma[rj], self.bias[s][None, :])
        _, S = innovation_cov(Pc, H, R)
        d2 = mahalanobis2(nu, S)
        dims = plot_dims(r.polar[rj], r.polar_sigma[rj])
        ok = d2 < np.where(dims > 3, self.gate[4], self.gate[3])
        near = d2 < np.where(dims > 3, self.init_gate[4], self.init_gate[3])
        # Negative log likelihood, not d² alone: with d² a young track's
        # wide S wins plots from the settled track of the same target
        # (BLK §8.4 "GNN with likelihood costs").
        _, logdet = np.linalg.slogdet(S)
        comb = d2 + logdet
        cost = comb
        if cfg.assoc_cost == ASSOC_COST_MIXTURE and self.store.n_models > 1:
            # Only where the cost decides anything: pairs sharing a track or a
            # plot with another gated pair (gnn_assign takes lone pairs as is).
            g = np.flatnonzero(ok & np.isfinite(d2))
            shared = (np.bincount(ti[g], minlength=self.store.n)[ti[g]] > 1) | (
                np.bincount(rj[g], minlength=len(r))[rj[g]] > 1
            )
            k = g[shared]
            cost = comb.copy()
            if k.size:
                cost[k] = mixture_cost(self, o, tl, s, r, ti[k], rj[k], xm_p[k], Pm_p[k], comb[k])
        return xm_p, Pm_p, d2, ok, near, cost, comb

    def _with_pairings(self, r: ReportArrays, s: int, ti: IDX, rj: IDX) -> tuple[IDX, IDX]:
        """Add the (system track, report) pair of every persistent sensor-track
        pairing of sensor ``s`` the spatial pre-gate left out (the sensor
        track jumped): the pairing, not the distance, names the candidate."""
        st = self.store
        rows = np.flatnonzero(st.paired[: st.n, s])
        if rows.size == 0:
            return ti, rj
        keys = st.stid[rows, s]
        order = np.argsort(keys)
        pos = np.searchsorted(keys[order], r.sensor_track_id)
        pos = np.minimum(pos, rows.size - 1)
        hit = keys[order][pos] == r.sensor_track_id
        pt, pr = rows[order][pos[hit]], np.flatnonzero(hit)
        key = np.concatenate([ti, pt]).astype(np.int64) * len(r) + np.concatenate([rj, pr])
        _, first = np.unique(key, return_index=True)
        both_t, both_r = np.concatenate([ti, pt]), np.concatenate([rj, pr])
        return both_t[first], both_r[first]

    def _reseed(
        self, r: ReportArrays, ti: IDX, rj: IDX, same: np.ndarray, sel: IDX, at: IDX, ar: IDX, t_end: int
    ) -> tuple[IDX, IDX]:
        """A sensor track that jumped out of its own system track's persistence
        gate, when no other sensor feeds that track now: the system track is
        restarted from the report and keeps its id (one sensor track, one
        system track id), instead of a new track per jump with the old one
        left coasting. Returns the hits extended by those rows."""
        st = self.store
        s = int(r.sensor[0])
        chosen = np.zeros(ti.size, bool)
        chosen[sel] = True
        used_r = np.zeros(len(r), bool)
        used_r[ar] = True
        used_t = np.zeros(st.n, bool)
        used_t[at] = True
        cand = same & ~chosen & ~used_r[rj] & ~used_t[ti]
        if not cand.any():
            return at, ar
        n_s = len(self.sensors)
        recent = (st.seen_ns[ti, :n_s] > 0) & ((t_end - st.seen_ns[ti, :n_s]) * _NS <= self.cfg.coast_after_s)
        recent[:, s] = False
        cand &= ~recent.any(axis=1)
        rows, reps = ti[cand], rj[cand]
        if rows.size == 0:
            return at, ar
        x, P = predict_cv(r.x[reps], r.P[reps], seconds(t_end - r.t_ns[reps]), self.cfg.q_ncv)
        st.xm[rows] = x[:, None, :]
        st.Pm[rows] = P[:, None, :, :]
        st.x[rows], st.P[rows] = x, P
        self.counters["sensor_track_reseeds"] += int(rows.size)
        return np.concatenate([at, rows]), np.concatenate([ar, reps])

    def _oos_batch(self, r: ReportArrays) -> None:
        """A batch older than the table: retrodicted plot updates, or sensor
        tracks predicted forward to the table time and fused there."""
        self.counters["oos_used"] += len(r)
        if int(r.kind[0]) == KIND_PLOT:
            oos_plot_batch(self, r)
            return
        assert self.t_store is not None  # an OOS batch needs a table time
        dt = seconds(self.t_store - r.t_ns)
        x, P = predict_cv(r.x, r.P, dt, self.cfg.q_ncv)
        moved = ReportArrays(
            r.sensor,
            r.sensor_track_id,
            r.kind,
            np.full(len(r), self.t_store),
            x,
            P,
            r.quality,
            r.polar,
            r.polar_sigma,
        )
        self._batch(moved)

    def _learn_bias(self, s: int, at: IDX, ar: IDX, r: ReportArrays, xm_a: F64, mu_a: F64) -> None:
        """Per-sensor registration bias from post-update residuals.

        Only confirmed tracks also held by another sensor say anything about
        *this* sensor's bias (a track fed by one sensor absorbs its bias).
        Exponential smoothing of the mean residual; the common bias of all
        sensors is unobservable this way and stays in the tracks.
        """
        st = self.store
        others = (st.mask[at] & ~np.uint64(1 << s)) != 0
        use = others & (st.status[at] == STATUS_CONFIRMED)
        if not use.any():
            return
        x = np.einsum("nm,nmd->nd", mu_a[use], xm_a[use])
        nu, _, _ = plot_residual(
            self.origins[s],
            self.to_locals[s],
            x,
            r.polar[ar[use]],
            r.polar_sigma[ar[use]],
            self.bias[s][None, :],
        )
        step = np.nanmean(nu, axis=0)
        step[3] = 0.0 if not np.isfinite(step[3]) else step[3]
        self.bias[s] += self.cfg.bias_gain * step

    def _drop_stale(self, t_ns: int) -> None:
        """Coast tracks not updated for ``coast_after_s``, drop those not
        updated for ``drop_after_s`` (time-based backstop of the life cycle)."""
        st = self.store
        n = st.n
        if n == 0:
            return
        age = (t_ns - st.last_ns[:n]) * _NS
        coast = (age > self.cfg.coast_after_s) & (st.status[:n] == STATUS_CONFIRMED)
        st.status[:n][coast] = STATUS_COASTING
        # A sensor silent on a track for drop_after_s no longer holds it: its
        # bit and its sensor-track pairing go (the pairing must not capture
        # a reused sensor track number much later).
        silent = (t_ns - st.seen_ns[:n]) * _NS > self.cfg.drop_after_s
        st.paired[:n] &= ~silent
        gone = np.packbits(silent[:, ::-1], axis=1, bitorder="big")
        st.mask[:n] &= ~_bits_u64(gone)
        tentative = st.status[:n] == STATUS_TENTATIVE
        stale = (age > self.cfg.drop_after_s) | (tentative & (age > self.cfg.coast_after_s))
        if stale.any():
            bury(self, np.flatnonzero(stale))
            self.drop_rows(stale)

    def drop_rows(self, drop: np.ndarray) -> None:
        """Remove rows (bool mask over live rows), remembering them for the output."""
        st = self.store
        rows = np.flatnonzero(drop)
        if rows.size == 0:
            return
        st.status[rows] = STATUS_DROPPED
        self._dropped.append(rows_to_arrays(self, rows, st.x[rows], st.P[rows], self.t_store or 0))
        st.keep(~drop)


def _bits_u64(packed: np.ndarray) -> np.ndarray:
    """(n, 8) uint8 packed big-endian (sensor 63 first) -> (n,) uint64 masks."""
    return np.ascontiguousarray(packed).view(">u8")[:, 0].astype(np.uint64)


def _take(r: ReportArrays, idx: IDX) -> ReportArrays:
    return ReportArrays(*(getattr(r, f)[idx] for f in ReportArrays.__slots__))


__all__ = ["Engine"]
