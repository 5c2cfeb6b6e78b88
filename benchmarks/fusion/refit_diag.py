"""A DIAGNOSTIC THAT CHEATS: how good is the exo window refit's answer, and
is what limits it the start of its EM or the EM itself?

Runs the default engine over a scenario (its own association throughout). At
each refit instant asked for (``--at``), the refit is run three times on
copies of the engine, and each copy's error against the truth is taken over
the objects paired with a non-tentative track (OSPA pairing, c = 1 km):

  em_history  the engine's own refit (EM, first weights the pairs its
              assignment took): what the engine does;
  ls_truth    no EM: one weighted least squares with the truth's origins
              (a track's plots are those of the object it is paired with
              now): the window's answer with the association known;
  em_truth    the EM started from those truth weights.

``before`` is the engine's picture just before the refit. If ``em_truth``
ends where ``em_history`` does and not near ``ls_truth``, the EM's fixed
point, not its start, is what stands between the refit and known
association. Reads ``meas_truth``, which no tracker may read.
Results: benchmarks/fusion/RESULTS.md.

    python -m benchmarks.fusion.refit_diag --scenario /tmp/cso_s1.npz --at 30 45 60 90
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.fusion.metrics import match
from gateway.bench_fusion import BENCH_CONFIG, _scans, scenario_gravity
from gateway.fusion.api import STATUS_TENTATIVE, ReportArrays
from gateway.fusion.engine import Engine
from gateway.fusion.refit import PlotWindow
from hilgw.geo import local_geometry

_ENGINE_ORDER = [0, 2, 4, 1, 3, 5]  # bench (x, vx, y, vy, z, vz) -> engine (x, y, z, vx, vy, vz)
FITS = ("em_history", "ls_truth", "em_truth")


class RecordingEngine(Engine):
    """The engine, recording the object (+1, 0 for clutter) of every plot its
    refit window keeps, batch by batch, in step with the window; the refit is
    left to :func:`run` (``self.refit.run`` is not called by ``step``)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        assert self.refit is not None, "the configuration has no exo refit"
        self.labels: list[tuple[int, np.ndarray]] = []
        self._batch_labels = np.zeros(0, np.int64)
        self._window_add = self.refit.add
        self.refit.add = self._add  # type: ignore[method-assign]
        self.refit.due = lambda t_ns: False  # type: ignore[method-assign]

    def _batch(self, r: ReportArrays) -> None:
        self._batch_labels = r.sensor_track_id.astype(np.int64)
        super()._batch(r)

    def _add(self, engine: Any, t_ns: Any, pos: np.ndarray, *rest: Any) -> None:
        w = self.refit
        assert w is not None
        last = w.batches[-1] if w.batches else None
        self._window_add(engine, t_ns, pos, *rest)
        if w.batches and w.batches[-1] is not last:
            kept = w.batches[-1][2]  # copies of rows of pos
            d = np.linalg.norm(kept[:, None, :] - pos[None, :, :], axis=2)
            self.labels.append((w.batches[-1][0], self._batch_labels[np.argmin(d, axis=1)]))
        first = w.batches[0][0] if w.batches else None
        self.labels = [lb for lb in self.labels if first is not None and lb[0] >= first]


def _errors(eng: Engine, truth: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Mean position and velocity error of the paired objects; the pairs (objects, rows)."""
    st, n = eng.store, eng.store.n
    rows = np.flatnonzero(st.status[:n] != STATUS_TENTATIVE)
    r, c, d = match(truth[:, :3], st.x[rows, :3], 1000.0)
    dv = np.linalg.norm(truth[r, 3:] - st.x[rows[c], 3:], axis=1)
    return float(d.mean()), float(dv.mean()), r, rows[c]


def _truth_weights(eng: RecordingEngine, objs: np.ndarray, rows: np.ndarray) -> list[tuple[Any, ...]]:
    """The window's batches with the first weights of the truth: a pair is
    taken when its plot came from the object its track is paired with."""
    w = eng.refit
    assert w is not None
    assert len(eng.labels) == len(w.batches)
    row_of = {int(i): k for k, i in enumerate(eng.store.track_id[: eng.store.n].tolist())}
    obj_of_row = {int(rw): int(o) + 1 for o, rw in zip(objs, rows, strict=True)}
    out = []
    for b, (_, lab) in zip(w.batches, eng.labels, strict=True):
        want = np.array([obj_of_row.get(row_of.get(int(i), -1), -1) for i in b[6]])
        out.append((*b[:7], (lab[b[5]] == want).astype(float)))
    return out


def run(scenario: Path, at_s: list[float]) -> list[dict[str, Any]]:
    """The engine over ``scenario``, its refit every ``exo_refit_every_s``; the three fits at ``at_s``."""
    with np.load(scenario) as f:
        keys = ["scan_time", "meas_scan", "meas_z", "meas_sensor", "sensor_sigma", "sensor_pos", "meas_truth"]
        sc = {k: f[k] for k in keys}
        params = str(f["params_json"]) if "params_json" in f.files else "{}"
        t_truth, x_truth, exists = f["truth_time"], f["truth_state"], f["truth_exists"]
    eng = RecordingEngine(BENCH_CONFIG, accel=scenario_gravity(params))
    for s, pos in enumerate(np.asarray(sc["sensor_pos"], np.float64)):
        eng.add_sensor(local_geometry(f"radar{s}", pos))
    every = BENCH_CONFIG.exo_refit_every_s
    out: list[dict[str, Any]] = []
    due, todo = every, sorted(at_s)
    for t_ns, rep in _scans(sc):
        eng.step(rep, t_ns)
        t = t_ns * 1e-9
        if t + 1e-9 < due:
            continue
        due += every
        k = int(np.argmin(np.abs(t_truth - t)))
        truth = x_truth[exists[:, k], k][:, _ENGINE_ORDER]
        if todo and t + 1e-9 >= todo[0]:
            todo.pop(0)
            pos_e, vel_e, objs, rows = _errors(eng, truth)
            row: dict[str, Any] = {"t_s": round(t, 2), "before": (pos_e, vel_e)}
            for fit in FITS:
                e2 = copy.deepcopy(eng)
                w2 = e2.refit
                assert isinstance(w2, PlotWindow)
                if fit != "em_history":
                    w2.batches = _truth_weights(e2, objs, rows)
                moved = w2.run(e2, e2.t_store or t_ns, iterations=0 if fit == "ls_truth" else 5)
                row[fit] = (*_errors(e2, truth)[:2], moved)
            out.append(row)
            if not todo:
                break
        eng.refit.run(eng, eng.t_store or t_ns)  # type: ignore[union-attr]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.fusion.refit_diag", description=(__doc__ or "").split("\n")[0]
    )
    ap.add_argument("--scenario", type=Path, required=True)
    ap.add_argument(
        "--at", type=float, nargs="+", default=[30.0, 45.0, 60.0, 90.0], help="refit instants [s]"
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    rows = run(a.scenario, a.at)
    if a.json:
        print(json.dumps({"scenario": str(a.scenario), "rows": rows}))
        return 0
    print(f"{a.scenario}: mean error of the paired objects, position m / velocity m/s (tracks moved)")
    print(f"{'t [s]':>6} {'before':>14} " + " ".join(f"{f:>20}" for f in FITS))
    for r in rows:
        cells = [f"{r[f][0]:7.1f} / {r[f][1]:4.1f} ({r[f][2]:3d})" for f in FITS]
        print(
            f"{r['t_s']:>6.1f} {r['before'][0]:7.1f} / {r['before'][1]:4.1f} "
            + " ".join(f"{c:>20}" for c in cells)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
