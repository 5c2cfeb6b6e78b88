"""A DIAGNOSTIC THAT CHEATS: why the engine's GNN gives a track a wrong plot.

Runs the engine as ``oracle_firstT`` does (gateway/bench_oracle.py: truth
association for the first ``--oracle-s`` seconds, so every track starts on
the right object; the engine's own association after) and, at every plot
batch after that, looks at each confirmed track's assignment with the truth
(``meas_truth``, the truth states): which object the plot it took came
from, its own object's plot (if detected) and who took it, the track's
error against its object (position NEES), its IMM model probabilities, and
how far apart the two objects are in the radar's measurement space under
the track's innovation covariance. A track's "own" object is the one its
state is nearest now (position NEES; ``--by-first-object``: the one it
started on), so a track that has already changed objects is judged on the
one it follows. Each wrong take is put in one class, in this order:

  clutter      the plot was a false alarm;
  own_missed   its own object had no plot in the batch (Pd), and the track
               took a neighbour's plot rather than miss;
  stolen       its own plot went to a tentative or young track (< 10 updates)
               (a start on an already tracked object);
  inconsistent the track is off its object: position NEES > chi2(3, 0.999)
               = 16.3, or manoeuvre model probability > 0.5;
  unresolved   the two objects lie within 1 sigma of each other under the
               track's S (d2 of h(own) - h(other) < 1): no filter could tell;
  other        a consistent track, resolvable objects, own plot in the batch.

It also prints, at 10, 20 and 30 s, how many pairs of nearby tracks hold
states that favour the swapped labelling of the objects they started on
(:func:`identity_odds`): with ``--oracle-s 1e9`` (truth association
throughout) that is the identity the filter itself leaves uncertain, with
the default the pairs that have exchanged objects since the hand-over.
Results: benchmarks/fusion/RESULTS.md.

    python -m benchmarks.fusion.assoc_diag --scenario /tmp/cso-h/cso_s1.npz
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

import gateway.fusion.engine as engine_mod
from gateway.bench_fusion import VARIANTS, _scans, scenario_gravity, with_overrides
from gateway.bench_oracle import OracleEngine
from gateway.fusion.api import STATUS_CONFIRMED, ReportArrays
from gateway.fusion.config import FusionConfig
from gateway.fusion.gating import IDX
from gateway.fusion.kalman import innovation_cov, mahalanobis2
from gateway.fusion.measure import plot_residual
from hilgw.geo import ecef_to_polar, local_geometry

NEES_BAD = 16.27  # chi2(3) 0.999 quantile
SNAP_S = (10.0, 20.0, 30.0)
CLASSES = ("clutter", "own_missed", "stolen", "inconsistent", "unresolved", "other")


class DiagEngine(OracleEngine):
    """``oracle_firstT`` engine that records every assignment after T."""

    def __init__(
        self, config: FusionConfig, accel: Any, oracle_s: float, truth: dict[str, Any], follow: bool
    ) -> None:
        super().__init__(config, accel, "oracle_first10")
        self.follow = follow
        self.oracle_s = oracle_s
        self.truth = truth
        self.t_scan = np.round(np.asarray(truth["truth_time"], np.float64) * 1e9).astype(np.int64)
        self.rows: list[dict[str, Any]] = []
        self.track_stats: list[tuple[float, float, float, float, float]] = []
        self._pp: tuple[Any, ...] | None = None
        self.snaps: dict[float, tuple[Any, ...]] = {}
        self._t00: int | None = None

    def _plot_pairs(self, r: ReportArrays, s: int, ti: IDX, rj: IDX, t0: int) -> Any:
        if self._t00 is None:
            self._t00 = t0
            self._t_first = t0
        # bench_oracle reads the oracle span from the mode name: override it.
        own = (t0 - self._t00) * 1e-9 >= self.oracle_s
        if own:
            out = super(OracleEngine, self)._plot_pairs(r, s, ti, rj, t0)
        else:
            saved = self.mode
            self.mode = "oracle_assoc"
            out = super()._plot_pairs(r, s, ti, rj, t0)
            self.mode = saved
        self._pp = (r, s, ti, rj, t0, own, *out)
        return out

    def _snapshot(self, t_snap: float, t0: int) -> None:
        """Identity evidence of the tracks' states at t_snap (see ``identity_odds``)."""
        st = self.store
        n = st.n
        lab = self._track_labels(np.arange(n))
        keep = (st.status[:n] == STATUS_CONFIRMED) & (lab > 0)
        k = int(np.searchsorted(self.t_scan, t0))
        ts = self.truth["truth_state"][:, k][:, [0, 2, 4, 1, 3, 5]]
        self.snaps[t_snap] = (lab[keep].copy(), st.x[:n][keep].copy(), st.P[:n][keep].copy(), ts)

    def on_assign(self, sel_local: IDX) -> None:
        """Called with gnn_assign's result (indices into the gated pairs)."""
        if self._pp is None:
            return
        r, s, ti, rj, t0, own, _xm, _pm, d2, ok, _near, cost, _comb = self._pp
        self._pp = None
        assert self._t00 is not None
        t_rel = (t0 - self._t00) * 1e-9
        for t_snap in SNAP_S:
            if t_snap not in self.snaps and t_rel >= t_snap:
                self._snapshot(t_snap, t0)
        g = np.flatnonzero(ok & np.isfinite(d2))
        sel = g[sel_local]
        st = self.store
        n = st.n
        k = int(np.searchsorted(self.t_scan, t0))
        if k >= self.t_scan.size or self.t_scan[k] != t0:
            return
        ts = self.truth["truth_state"][:, k]  # (N, 6) x vx y vy z vz
        tpos = ts[:, [0, 2, 4]]
        tvel = ts[:, [1, 3, 5]]
        o, tl = self.origins[s], self.to_locals[s]
        lab_t = self._track_labels(np.arange(n))
        lab_r = r.sensor_track_id.astype(np.int64)
        took = np.full(n, -1, np.int64)
        took[ti[sel]] = rj[sel]
        taker = np.full(len(r), -1, np.int64)
        taker[rj[sel]] = ti[sel]
        conf = (st.status[:n] == STATUS_CONFIRMED) & (lab_t > 0)
        mi = self.cfg.models.index("manoeuvre") if "manoeuvre" in self.cfg.models else -1
        live = np.asarray(self.truth["truth_exists"][:, k], bool)
        first_t = lab_t.copy()
        if self.follow:
            # The object each track is on now: the one nearest its state by
            # position NEES (it may have changed objects since its start).
            for i in np.flatnonzero(conf):
                e_all = tpos - st.x[i, :3][None, :]
                nees_all = np.einsum("ni,ni->n", e_all, np.linalg.solve(st.P[i, :3, :3], e_all.T).T)
                nees_all[~live] = np.inf
                lab_t[i] = int(np.argmin(nees_all)) + 1
        for i in np.flatnonzero(conf):
            first = int(first_t[i])
            L = int(lab_t[i])
            e = st.x[i, :3] - tpos[L - 1]
            nees = float(e @ np.linalg.solve(st.P[i, :3, :3], e))
            mu_m = float(st.mu[i, mi]) if mi >= 0 else 0.0
            ev = st.x[i, 3:] - tvel[L - 1]
            self.track_stats.append((t_rel, nees, mu_m, float(np.linalg.norm(e)), float(np.linalg.norm(ev))))
            if not own:
                continue
            j = int(took[i])
            own_plots = np.flatnonzero(lab_r == L)
            jo = int(own_plots[0]) if own_plots.size else -1
            # The track's innovation covariance (combined state) at this radar.
            x6 = st.x[i : i + 1]
            pol = np.zeros((1, 4))
            sig = r.polar_sigma[:1].copy()
            _, H, R = plot_residual(o, tl, x6, pol, sig, self.bias[s][None, :])
            _, S = innovation_cov(st.P[i : i + 1], H, R)
            hL = ecef_to_polar(o, tl, np.r_[tpos[L - 1], tvel[L - 1]][None, :])[0]
            rec: dict[str, Any] = {
                "t": t_rel,
                "track": int(st.track_id[i]),
                "label": L,
                "first_label": first,
                "n_upd": int(st.n_updates[i]),
                "nees": nees,
                "mu_man": mu_m,
                "sig_r": float(np.sqrt(S[0, 0, 0] - R[0, 0, 0])),
                "sig_cr": float(np.sqrt(S[0, 1, 1] - R[0, 1, 1]) * hL[0]),
                "own_plot": jo >= 0,
                "own_in_gate": bool(np.any((ti[g] == i) & (rj[g] == jo))) if jo >= 0 else False,
            }
            if j < 0:
                rec["kind"] = "miss"
                if jo >= 0:
                    tk = int(taker[jo])
                    rec["own_taker_label"] = int(lab_t[tk]) if tk >= 0 else -2
            elif lab_r[j] == L:
                rec["kind"] = "right"
            else:
                other = int(lab_r[j])
                rec["kind"] = "wrong"
                rec["other"] = other
                pj = np.flatnonzero((ti == i) & (rj == j))[0]
                rec["d2_taken"] = float(d2[pj])
                rec["cost_taken"] = float(cost[pj])
                if jo >= 0:
                    po = np.flatnonzero((ti == i) & (rj == jo))
                    rec["d2_own"] = float(d2[po[0]]) if po.size else float("inf")
                    rec["cost_own"] = float(cost[po[0]]) if po.size else float("inf")
                    tk = int(taker[jo])
                    rec["own_taker_label"] = int(lab_t[tk]) if tk >= 0 else -1
                    rec["own_taker_nupd"] = int(st.n_updates[tk]) if tk >= 0 else -1
                    rec["own_taker_status"] = int(st.status[tk]) if tk >= 0 else -1
                    if tk >= 0 and lab_t[tk] == int(lab_r[j]) and int(lab_r[j]) > 0:
                        # A pair swap: are the two tracks in the radar's
                        # range in the opposite order to their objects?
                        rA = ecef_to_polar(o, tl, st.x[i : i + 1])[0, 0]
                        rB = ecef_to_polar(o, tl, st.x[tk : tk + 1])[0, 0]
                        rb = ecef_to_polar(o, tl, np.r_[tpos[int(lab_r[j]) - 1], 0, 0, 0][None, :])[0, 0]
                        rec["pair_inverted"] = bool((rA - rB) * (hL[0] - rb) < 0)
                        rec["pair_dr_tracks"] = float(rA - rB)
                if other > 0:
                    hO = ecef_to_polar(o, tl, np.r_[tpos[other - 1], tvel[other - 1]][None, :])[0]
                    dz = np.zeros(4)
                    dz[:3] = hL[:3] - hO[:3]
                    rec["dr"] = float(dz[0])
                    rec["dcr"] = float(np.hypot(dz[1], dz[2]) * hL[0])
                    rec["d2_sep"] = float(mahalanobis2(dz[None, :], S)[0])
                    # Does the other object's own track exist, and what did it take?
                    ot = np.flatnonzero(conf & (lab_t == other))
                    rec["other_track"] = int(ot.size)
                    if ot.size:
                        jj = int(took[ot[0]])
                        rec["other_track_took"] = int(lab_r[jj]) if jj >= 0 else -1
                rec["cls"] = classify(rec)
            self.rows.append(rec)


def pair_llr(snap: tuple[Any, ...], radius_m: float = 2000.0) -> dict[tuple[int, int], float]:
    """For every pair of tracks (A started on a, B on b) within ``radius_m``:
    ln LR of that labelling against the swapped one given the two tracks'
    6-D states and the true states of a and b,
    LR = N(a; A) N(b; B) / (N(b; A) N(a; B)); keyed by (a, b), a < b. Whether
    the tracks' states still tell the two objects apart (the true
    trajectories given): not a bound on a tracker, which must also find the
    trajectories from unlabelled plots."""
    lab, x, P, ts = snap

    def ll(k: int, t: np.ndarray) -> float:
        e = t - x[k]
        return -0.5 * float(e @ np.linalg.solve(P[k], e))

    out: dict[tuple[int, int], float] = {}
    for i in range(lab.size):
        for j in range(i + 1, lab.size):
            if np.linalg.norm(x[i, :3] - x[j, :3]) > radius_m or lab[i] == lab[j]:
                continue
            ti, tj = ts[lab[i] - 1], ts[lab[j] - 1]
            key = (int(min(lab[i], lab[j])), int(max(lab[i], lab[j])))
            out[key] = ll(i, ti) + ll(j, tj) - ll(i, tj) - ll(j, ti)
    return out


def identity_odds(snap: tuple[Any, ...]) -> dict[str, float]:
    """Over the pairs of :func:`pair_llr`: P(swap) = 1 / (1 + LR), summed and counted."""
    llr = np.array(list(pair_llr(snap).values()))
    pw = 1.0 / (1.0 + np.exp(np.clip(llr, -700.0, 700.0)))
    return {
        "pairs": float(pw.size),
        "expected_swaps": float(pw.sum()),
        "pairs_p_swap_gt_0.1": float(np.sum(pw > 0.1)),
        "pairs_p_swap_gt_0.3": float(np.sum(pw > 0.3)),
    }


def exchanges(eng: DiagEngine, t_a: float, t_b: float, radar: int = 0) -> dict[str, Any]:
    """Pairs of tracks whose states favour their start labelling at ``t_a`` and
    the swapped one at ``t_b`` (they exchanged objects), against those that
    kept it: how far apart the two objects are in ``radar``'s range and in 3-D."""
    if t_a not in eng.snaps or t_b not in eng.snaps:
        return {}
    pa, pb = pair_llr(eng.snaps[t_a]), pair_llr(eng.snaps[t_b])
    o, tl = eng.origins[radar], eng.to_locals[radar]
    ra = ecef_to_polar(o, tl, eng.snaps[t_a][3])[:, 0]
    tsb = eng.snaps[t_b][3]
    rb = ecef_to_polar(o, tl, tsb)[:, 0]
    out: dict[str, Any] = {"from_s": t_a, "to_s": t_b, "radar": radar}
    for name, want in (("exchanged", False), ("kept", True)):
        ps = [p for p, v in pb.items() if (v > 0) == want and pa.get(p, -1.0) > 0]
        if not ps:
            continue
        dra = np.array([abs(ra[a - 1] - ra[b - 1]) for a, b in ps])
        drb = np.array([abs(rb[a - 1] - rb[b - 1]) for a, b in ps])
        sep = np.array([np.linalg.norm(tsb[a - 1, :3] - tsb[b - 1, :3]) for a, b in ps])
        out[name] = {
            "pairs": len(ps),
            "range_sep_from_m_median": float(np.median(dra)),
            "range_sep_from_m_p90": float(np.percentile(dra, 90)),
            "range_sep_to_m_median": float(np.median(drb)),
            "sep_3d_to_m_median": float(np.median(sep)),
        }
    return out


def classify(rec: dict[str, Any]) -> str:
    """The class of one wrong take (module doc), first match in order."""
    if rec["other"] == 0:
        return "clutter"
    if not rec["own_plot"]:
        return "own_missed"
    if rec.get("own_taker_label", -1) >= 0 and (
        rec.get("own_taker_status") != STATUS_CONFIRMED or rec.get("own_taker_nupd", 99) < 10
    ):
        return "stolen"
    if rec["nees"] > NEES_BAD or rec["mu_man"] > 0.5:
        return "inconsistent"
    if rec.get("d2_sep", 99.0) < 1.0:
        return "unresolved"
    return "other"


def run(scenario: Path, config: FusionConfig, oracle_s: float, follow: bool = True) -> DiagEngine:
    """Run the diagnostic engine over ``scenario`` (which must hold the truth)."""
    with np.load(scenario) as f:
        sc = {k: f[k] for k in f.files}
    params = str(sc.get("params_json", "{}"))
    eng = DiagEngine(config, scenario_gravity(params), oracle_s, sc, follow)
    orig = engine_mod.gnn_assign

    def wrapped(ti: IDX, rj: IDX, cost: np.ndarray, miss: float) -> IDX:
        out = orig(ti, rj, cost, miss)
        eng.on_assign(out)
        return out

    engine_mod.gnn_assign = wrapped  # type: ignore[assignment]
    try:
        for s, pos in enumerate(np.asarray(sc["sensor_pos"], np.float64)):
            eng.add_sensor(local_geometry(f"radar{s}", pos))
        for t_ns, rep in _scans(sc):
            eng.step(rep, t_ns)
    finally:
        engine_mod.gnn_assign = orig
    return eng


def summarise(eng: DiagEngine, t_lo: float, t_hi: float) -> dict[str, Any]:
    """Decisions, wrong takes per class and medians of their attributes in [t_lo, t_hi)."""
    rows = [r for r in eng.rows if t_lo <= r["t"] < t_hi]
    kinds = Counter(r["kind"] for r in rows)
    wrong = [r for r in rows if r["kind"] == "wrong"]
    cls = Counter(r["cls"] for r in wrong)
    ts = np.array([x for x in eng.track_stats if t_lo <= x[0] < t_hi]).reshape(-1, 5)
    miss_own = [r for r in rows if r["kind"] == "miss" and r["own_in_gate"]]

    def med(key: str, rs: list[dict[str, Any]]) -> float:
        v = [abs(r[key]) for r in rs if key in r and np.isfinite(r[key])]
        return float(np.median(v)) if v else float("nan")

    out: dict[str, Any] = {
        "t": [t_lo, t_hi],
        "decisions": dict(kinds),
        "wrong_classes": {c: cls.get(c, 0) for c in CLASSES},
        "miss_with_own_in_gate": len(miss_own),
        "nees_mean": float(ts[:, 1].mean()) if ts.size else float("nan"),
        "nees_median": float(np.median(ts[:, 1])) if ts.size else float("nan"),
        "mu_man_median": float(np.median(ts[:, 2])) if ts.size else float("nan"),
        "pos_err_median": float(np.median(ts[:, 3])) if ts.size else float("nan"),
    }
    for c in CLASSES:
        rs = [r for r in wrong if r["cls"] == c]
        if rs:
            out[f"{c}_median"] = {
                k: med(k, rs) for k in ("dr", "dcr", "d2_sep", "d2_taken", "d2_own", "nees", "sig_r")
            }
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: one JSON line per identity snapshot and per time bin."""
    prog = "python -m benchmarks.fusion.assoc_diag"
    ap = argparse.ArgumentParser(prog=prog, description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--scenario", type=Path, required=True)
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="default")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="FusionConfig override")
    ap.add_argument("--oracle-s", type=float, default=10.0)
    ap.add_argument(
        "--by-first-object",
        action="store_true",
        help="judge a track against the object it started on (default: the one it is nearest now)",
    )
    ap.add_argument("--dump", type=Path, help="write every record as JSON lines")
    a = ap.parse_args(argv)
    cfg = with_overrides(VARIANTS[a.variant], a.set)
    eng = run(a.scenario, cfg, a.oracle_s, not a.by_first_object)
    if a.dump:
        with a.dump.open("w") as f:
            for rec in eng.rows:
                f.write(json.dumps(rec) + "\n")
    for t_snap, snap in sorted(eng.snaps.items()):
        print(json.dumps({"identity_evidence_at_s": t_snap, **identity_odds(snap)}))
    print(json.dumps({"identity_exchanges": exchanges(eng, SNAP_S[0], SNAP_S[-1])}))
    for lo, hi in ((0.0, 10.0), (10.0, 20.0), (20.0, 30.0), (30.0, 60.0), (60.0, 1e9)):
        print(json.dumps(summarise(eng, lo, hi)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
