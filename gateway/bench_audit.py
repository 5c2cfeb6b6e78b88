"""A DIAGNOSTIC THAT CHEATS: how often the engine's one-scan assignment is wrong
even when its tracks are as good as they can be.

``hilgw bench fusion``'s ``oracle_assoc`` variant (gateway/bench_oracle.py)
feeds each track only its own object's plots, so its state is the engine's
best (consistent: position NEES 2.6-2.9 on the cso family). This audit runs
that engine and, at every plot batch, also solves the engine's *own*
assignment (its gates, its costs, its miss cost: ``Engine._plot_pairs`` and
``gnn_assign``) on those states, without applying it, and counts the plots
it would have given to established tracks (``min_updates`` or more updates)
that came from another object than the track's. That rate is a property of
the one-scan decision, not of the engine's history: if it is high, no change
of the one-scan cost can close the gap between ``oracle_assoc`` and the
engine (benchmarks/fusion/RESULTS.md); the decision needs more scans'
evidence.

    python -m gateway.bench_audit --scenario /tmp/hilgw-fusion-bench/cso_s1.npz
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from gateway.bench_fusion import VARIANTS, _scans, scenario_gravity, with_overrides
from gateway.bench_oracle import OracleEngine
from gateway.fusion.api import ReportArrays
from gateway.fusion.config import FusionConfig
from gateway.fusion.engine import Engine
from gateway.fusion.gating import IDX, gnn_assign
from hilgw.geo import local_geometry

#: Time bins (s from the first scan) of the printed table.
BINS = (0.0, 10.0, 20.0, 30.0, 60.0, float("inf"))


class AuditEngine(OracleEngine):
    """``oracle_assoc`` engine that also tallies its own one-scan GNN's choices."""

    def __init__(self, config: FusionConfig, accel: Any, min_updates: int, bins: tuple[float, ...]) -> None:
        super().__init__(config, accel, "oracle_assoc")
        self.min_updates = min_updates
        self.bins = np.asarray(bins, np.float64)
        nb = len(bins) - 1
        #: Per bin: takes, wrong takes, takes whose own object had a plot in
        #: the batch, wrong ones of those.
        self.takes = np.zeros(nb, np.int64)
        self.wrong = np.zeros(nb, np.int64)
        self.takes_own = np.zeros(nb, np.int64)
        self.wrong_own = np.zeros(nb, np.int64)
        self._t00: int | None = None

    def _plot_pairs(
        self, r: ReportArrays, s: int, ti: IDX, rj: IDX, t0: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        _, _, d2, ok, _, cost, _ = Engine._plot_pairs(self, r, s, ti, rj, t0)
        g = np.flatnonzero(ok & np.isfinite(d2))
        if self._t00 is None:
            self._t00 = t0
        if g.size:
            # The engine's own miss cost (Engine._batch).
            miss = float(cost.max(initial=0.0)) + self.gate[4] + 1.0
            sel = g[gnn_assign(ti[g], rj[g], cost[g], miss)]
            lt = self._track_labels(ti[sel])
            lr = r.sensor_track_id[rj[sel]].astype(np.int64)
            keep = (lt > 0) & (self.store.n_updates[ti[sel]] >= self.min_updates)
            lt, lr = lt[keep], lr[keep]
            seen = np.isin(lt, r.sensor_track_id.astype(np.int64))
            k = int(np.searchsorted(self.bins, (t0 - self._t00) * 1e-9, side="right")) - 1
            if 0 <= k < self.takes.size:
                self.takes[k] += lt.size
                self.wrong[k] += int(np.sum(lt != lr))
                self.takes_own[k] += int(seen.sum())
                self.wrong_own[k] += int(np.sum((lt != lr) & seen))
        return super()._plot_pairs(r, s, ti, rj, t0)


def audit(
    scenario: Path, config: FusionConfig, min_updates: int = 10, bins: tuple[float, ...] = BINS
) -> list[dict[str, float]]:
    """Run the audit over ``scenario`` (which must hold ``meas_truth``); one
    row per time bin: ``t_from``, ``t_to``, ``takes``, ``wrong_rate`` and
    ``wrong_rate_own_detected`` (the takes whose own object had a plot in
    that batch, so a miss did not force the choice)."""
    with np.load(scenario) as f:
        keys = ["scan_time", "meas_scan", "meas_z", "meas_sensor", "sensor_sigma", "sensor_pos", "meas_truth"]
        sc = {k: f[k] for k in keys}
        params = str(f["params_json"]) if "params_json" in f.files else "{}"
    eng = AuditEngine(config, scenario_gravity(params), min_updates, bins)
    for s, pos in enumerate(np.asarray(sc["sensor_pos"], np.float64)):
        eng.add_sensor(local_geometry(f"radar{s}", pos))
    for t_ns, rep in _scans(sc):
        eng.step(rep, t_ns)
    rows = []
    for k in range(eng.takes.size):
        rows.append(
            {
                "t_from": float(bins[k]),
                "t_to": float(bins[k + 1]),
                "takes": float(eng.takes[k]),
                "wrong_rate": float(eng.wrong[k] / max(eng.takes[k], 1)),
                "wrong_rate_own_detected": float(eng.wrong_own[k] / max(eng.takes_own[k], 1)),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: print the audit table (or ``--json``)."""
    ap = argparse.ArgumentParser(prog="python -m gateway.bench_audit", description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", type=Path, required=True)
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="default")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="FusionConfig override")
    ap.add_argument("--min-updates", type=int, default=10, help="count takes of tracks this established")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    cfg = with_overrides(VARIANTS[a.variant], a.set)
    rows = audit(a.scenario, cfg, a.min_updates)
    if a.json:
        print(json.dumps({"scenario": str(a.scenario), "variant": a.variant, "bins": rows}))
        return 0
    print(f"{a.scenario} ({a.variant}): the engine's one-scan GNN on oracle-fed tracks")
    print(f"{'t [s]':>12} {'takes':>7} {'wrong':>6} {'wrong, own detected':>20}")
    for r in rows:
        span = f"{r['t_from']:g}-{r['t_to']:g}"
        print(f"{span:>12} {r['takes']:7.0f} {r['wrong_rate']:6.3f} {r['wrong_rate_own_detected']:20.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
