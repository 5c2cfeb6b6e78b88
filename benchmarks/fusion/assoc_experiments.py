"""Association experiments on closely spaced objects that did NOT help (kept to
reproduce benchmarks/fusion/RESULTS.md, "Why the GNN takes wrong plots").

They were measured on the default of 822f339 (before ``gnn_spread``): pass
``--set gnn_spread=false`` to reproduce them. Each variant patches the engine
in this process only (module functions of ``gateway.fusion.engine``:
``gnn_assign``, ``ekf_update``, ``Engine`` methods), runs ``hilgw bench
fusion``'s loop on one scenario and scores it. Nothing
here is used by the gateway; the patches reach into engine internals and may
break when those change.

* ``inflate``: the chosen plot's R is divided by max(β, ``--bmin``) for
  confirmed exo tracks, β the Fitzgerald cheap-JPDA marginal of the chosen
  pair (``--dims``: which of range, azimuth, elevation);
* ``skip``: no state update when β < 0.5 (the hit still counts);
* ``debias``: the chosen plot's innovation minus the expected contamination
  Σ_k π_k (ĥ_k − ĥ_A) over the competing tracks k, π_k the posterior of the
  swap of A's and k's plots of the batch (``--scale``; with the mixture
  spread added to R unless ``--no-spread``);
* ``anchors``: every ``--every`` s, pairs of nearby exo tracks whose current
  6-D states fit each other's earlier states (predicted ballistically)
  better by more than ``--margin`` (−2 ln LR) swap their states;
* ``ncv_gravity``: the NCV model (``--models``: and the manoeuvre model) is
  predicted with gravity above the exo height;
* ``config``: ``--set KEY=JSON`` overrides only.

    python -m benchmarks.fusion.assoc_experiments --scenario /tmp/cso-h/cso_s1.npz \\
        --variant inflate --bmin 0.2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

import gateway.fusion.engine as E
from benchmarks.fusion.score import score_files
from gateway.bench_fusion import BENCH_CONFIG, run_bench, with_overrides
from gateway.fusion.api import STATUS_COASTING, STATUS_CONFIRMED, STATUS_TENTATIVE
from gateway.fusion.config import MODEL_BALLISTIC, MODEL_MANOEUVRE, MODEL_NCV
from gateway.fusion.exo import exo_rows
from gateway.fusion.measure import plot_residual
from gateway.fusion.motion import imm_combine, predict_ballistic

VARIANTS = ("config", "inflate", "skip", "debias", "anchors", "ncv_gravity")


@contextlib.contextmanager
def _patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


class _Tap:
    """The last engine, its last ``_plot_pairs`` result, and per-chosen-pair
    changes to the next ``ekf_update`` calls (the chosen pairs, in order)."""

    def __init__(self) -> None:
        self.eng: Any = None
        self.pp: Any = None
        self.r_scale: np.ndarray | None = None
        self.nu_shift: np.ndarray | None = None
        self.r_add: np.ndarray | None = None


def _chosen_beta(tap: _Tap, ti: np.ndarray, rj: np.ndarray, cost: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """Cheap-JPDA marginal (Fitzgerald 1990) of each chosen pair, from the GNN costs."""
    cfg = tap.eng.cfg
    lg = -0.5 * cost + np.log(cfg.p_detect) - 1.5 * np.log(2 * np.pi) - np.log(cfg.clutter_density)
    top = lg.max()
    g = np.exp(lg - top)
    b = (1 - cfg.p_detect) * np.exp(-top)
    comp = tap.eng.store.status[ti] != STATUS_TENTATIVE
    gc = np.where(comp, g, 0.0)
    t_sum = np.bincount(ti, gc, int(ti.max()) + 1)
    r_sum = np.bincount(rj, gc, int(rj.max()) + 1)
    beta: np.ndarray = (g / (t_sum[ti] + r_sum[rj] - gc + b))[sel]
    return beta


def _exo_confirmed(eng: Any, rows: np.ndarray) -> np.ndarray:
    st = eng.store
    out: np.ndarray = (st.status[rows] != STATUS_TENTATIVE) & exo_rows(eng, st.x[rows])
    return out


def _debias(tap: _Tap, sel_l: np.ndarray, scale: float, spread: bool) -> None:
    eng = tap.eng
    r, s, ti, rj, (xm_p, Pm_p, d2, ok, _near, cost, _comb) = tap.pp
    g = np.flatnonzero(ok & np.isfinite(d2))
    st = eng.store
    tg, rg, cg = ti[g], rj[g], cost[g]
    xc, _ = imm_combine(xm_p[g], Pm_p[g], st.mu[tg])
    nu, _, _ = plot_residual(
        eng.origins[s], eng.to_locals[s], xc, r.polar[rg], r.polar_sigma[rg], eng.bias[s][None, :]
    )
    comp = st.status[tg] != STATUS_TENTATIVE
    a_rows, p_cols = tg[sel_l], rg[sel_l]
    use = _exo_confirmed(eng, a_rows)
    cmap = {(int(a), int(b)): float(c) for a, b, c in zip(tg, rg, cg, strict=True)}
    took = {int(a): int(b) for a, b in zip(a_rows, p_cols, strict=True)}
    by_plot: dict[int, list[int]] = {}
    for idx, b in enumerate(rg):
        by_plot.setdefault(int(b), []).append(idx)
    shift = np.zeros((sel_l.size, 4))
    m2 = np.zeros((sel_l.size, 4, 4))
    for n, (a, p) in enumerate(zip(a_rows, p_cols, strict=True)):
        if not use[n]:
            continue
        c_ap = cmap[(int(a), int(p))]
        for idx in by_plot[int(p)]:
            k = int(tg[idx])
            if k == int(a) or not comp[idx]:
                continue
            q = took.get(k)
            if q is None:  # k missed: {p->A, k missed} against {p->k, A missed}
                x = (float(cg[idx]) - c_ap) / 2
            else:  # k took q: the swap of p and q between A and k
                c_aq = cmap.get((int(a), q))
                if c_aq is None:
                    continue
                x = (c_aq + float(cg[idx]) - c_ap - cmap[(k, q)]) / 2
            pi = 1.0 / (1.0 + np.exp(min(x, 700.0)))
            d = nu[sel_l[n]] - nu[idx]
            shift[n] += pi * d
            m2[n] += pi * np.outer(d, d)
    shift *= scale
    tap.nu_shift = shift
    tap.r_add = (m2 - shift[:, :, None] * shift[:, None, :]) if spread else None


def _anchor_check(eng: Any, every_s: float, margin: float, counts: dict[str, int]) -> None:
    st = eng.store
    n = st.n
    if n < 2 or eng.t_store is None:
        return
    last = getattr(eng, "_anchor_t", None)
    if last is not None and (eng.t_store - last) * 1e-9 < every_s:
        return
    eng._anchor_t = eng.t_store
    anc: dict[int, tuple[np.ndarray, np.ndarray, int]] = eng.__dict__.setdefault("_anchors", {})
    live = (st.status[:n] == STATUS_CONFIRMED) | (st.status[:n] == STATUS_COASTING)
    rows = np.flatnonzero(live & exo_rows(eng, st.x[:n]))
    r2 = np.array([r for r in rows if int(st.track_id[r]) in anc], np.intp)
    if r2.size >= 2:
        a = [anc[int(st.track_id[r])] for r in r2]
        xa, pa = np.stack([v[0] for v in a]), np.stack([v[1] for v in a])
        dt = np.array([(eng.t_store - v[2]) * 1e-9 for v in a])
        xa, pa = predict_ballistic(xa, pa, dt, eng.cfg.q_ballistic, eng.accel)
        xc, pc = st.x[r2], st.P[r2]
        pairs = cKDTree(xc[:, :3]).query_pairs(3000.0, output_type="ndarray")
        if pairs.size:
            i, j = pairs[:, 0], pairs[:, 1]

            def cost(u: np.ndarray, v: np.ndarray) -> np.ndarray:
                e = xc[v] - xa[u]
                S = pa[u] + pc[v]
                out: np.ndarray = (
                    np.einsum("ni,ni->n", e, np.linalg.solve(S, e[..., None])[..., 0])
                    + np.linalg.slogdet(S)[1]
                )
                return out

            gain = cost(i, i) + cost(j, j) - cost(i, j) - cost(j, i)
            used = np.zeros(r2.size, bool)
            for k in np.argsort(-gain):
                if gain[k] < margin:
                    break
                if used[i[k]] or used[j[k]]:
                    continue
                used[i[k]] = used[j[k]] = True
                ra, rb = r2[i[k]], r2[j[k]]
                for f in ("xm", "Pm", "mu", "x", "P"):
                    arr = getattr(st, f)
                    tmp = arr[ra].copy()
                    arr[ra] = arr[rb]
                    arr[rb] = tmp
                counts["anchor_swaps"] += 1
    for r in rows:
        anc[int(st.track_id[r])] = (st.x[r].copy(), st.P[r].copy(), eng.t_store)


def run_variant(scenario: Path, a: argparse.Namespace) -> dict[str, Any]:
    """Run one variant (``a``: the parsed CLI) over ``scenario``; return its figures."""
    cfg = with_overrides(BENCH_CONFIG, a.set)
    if a.variant in ("inflate", "skip", "debias") and cfg.gnn_spread:
        # With the spread every gated pair is updated, not only the chosen
        # ones, and these patches address the chosen pairs' updates.
        raise SystemExit(f"--variant {a.variant} needs --set gnn_spread=false (the default before dc45f31)")
    tap = _Tap()
    counts = {"anchor_swaps": 0}
    o_init, o_pp, o_gnn, o_ekf = E.Engine.__init__, E.Engine._plot_pairs, E.gnn_assign, E.ekf_update
    o_batch, o_pm = E.Engine._batch, E.Engine.predict_models

    def init(self: Any, *args: Any, **kw: Any) -> None:
        o_init(self, *args, **kw)
        tap.eng = self

    def plot_pairs(self: Any, r: Any, s: int, ti: Any, rj: Any, t0: int) -> Any:
        out = o_pp(self, r, s, ti, rj, t0)
        tap.pp = (r, s, ti, rj, out)
        return out

    def gnn(ti: np.ndarray, rj: np.ndarray, cost: np.ndarray, miss: float) -> np.ndarray:
        sel: np.ndarray = o_gnn(ti, rj, cost, miss)
        tap.r_scale = tap.nu_shift = tap.r_add = None
        if sel.size == 0 or tap.pp is None or tap.eng is None:
            return sel
        use = _exo_confirmed(tap.eng, ti[sel])
        if a.variant == "inflate":
            fac = np.where(use, 1.0 / np.maximum(_chosen_beta(tap, ti, rj, cost, sel), a.bmin), 1.0)
            tap.r_scale = fac
        elif a.variant == "skip":
            tap.r_scale = np.where(use & (_chosen_beta(tap, ti, rj, cost, sel) < 0.5), 1e6, 1.0)
        elif a.variant == "debias":
            _debias(tap, sel, a.scale, not a.no_spread)
        tap.pp = None
        return sel

    def ekf(x: np.ndarray, P: np.ndarray, nu: np.ndarray, H: np.ndarray, R: np.ndarray) -> Any:
        if tap.r_scale is not None and tap.r_scale.shape[0] == x.shape[0]:
            R = R.copy()
            for d, c in enumerate("rae"):
                if c in a.dims:
                    R[:, d, d] *= tap.r_scale
        if tap.nu_shift is not None and tap.nu_shift.shape[0] == x.shape[0]:
            nu = nu - tap.nu_shift
            if tap.r_add is not None:
                R = R + tap.r_add
                R[:, 3, 3] = np.maximum(R[:, 3, 3], 1.0)
        return o_ekf(x, P, nu, H, R)

    def batch(self: Any, r: Any) -> None:
        o_batch(self, r)
        _anchor_check(self, a.every, a.margin, counts)

    def predict_models(self: Any, xm: np.ndarray, Pm: np.ndarray, dt: np.ndarray) -> tuple[Any, Any]:
        xo, po = o_pm(self, xm, Pm, dt)
        exo = exo_rows(self, xm[:, 0]) if xm.shape[0] else np.zeros(0, bool)
        if exo.any():
            qs = {MODEL_NCV: self.cfg.q_ncv, MODEL_MANOEUVRE: self.cfg.q_manoeuvre, MODEL_BALLISTIC: None}
            for m, name in enumerate(self.cfg.models):
                if name in a.models and qs.get(name) is not None:
                    xo[exo, m], po[exo, m] = predict_ballistic(
                        xm[exo, m], Pm[exo, m], dt[exo], qs[name], self.accel
                    )
        return xo, po

    patches = [(E.Engine, "__init__", init), (E.Engine, "_plot_pairs", plot_pairs), (E, "gnn_assign", gnn)]
    patches.append((E, "ekf_update", ekf))
    if a.variant == "anchors":
        patches.append((E.Engine, "_batch", batch))
    if a.variant == "ncv_gravity":
        patches.append((E.Engine, "predict_models", predict_models))
    with contextlib.ExitStack() as stack:
        for obj, name, val in patches:
            stack.enter_context(_patched(obj, name, val))
        out = Path(a.work) / f"tracks_exp_{a.variant}_{scenario.stem}_{os.getpid()}.npz"
        res = run_bench(scenario, out, cfg)
    sc = score_files(scenario, out)
    keys = ("ospa", "held", "ids_per_object", "id_switches", "id_swaps")
    return {
        "scenario": scenario.name,
        "variant": a.variant,
        **counts,
        "scan_cpu_ms_median": round(res["scan_cpu_ms_median"], 2),
        **{k: sc[k] for k in keys},
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: one JSON line per scenario."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fusion.assoc_experiments")
    ap.add_argument("--scenario", type=Path, nargs="+", required=True)
    ap.add_argument("--variant", choices=VARIANTS, default="config")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="FusionConfig override")
    ap.add_argument("--bmin", type=float, default=0.2, help="inflate: floor of β")
    ap.add_argument("--dims", default="rae", help="inflate: r (range), a (azimuth), e (elevation)")
    ap.add_argument("--scale", type=float, default=1.0, help="debias: scale of the correction")
    ap.add_argument("--no-spread", action="store_true", help="debias: no mixture spread in R")
    ap.add_argument("--every", type=float, default=5.0, help="anchors: seconds between checks")
    ap.add_argument("--margin", type=float, default=2.0, help="anchors: -2 ln LR margin of a swap")
    ap.add_argument("--models", nargs="+", default=["ncv"], help="ncv_gravity: models given gravity")
    ap.add_argument("--work", default="/tmp", help="where the tracks files go")
    a = ap.parse_args(argv)
    for sc in a.scenario:
        print(json.dumps(run_variant(sc, a)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
