"""Stone Soup reference tracker on a fusion-bench scenario (run in its own venv).

Stone Soup is not a project dependency; install it into a throwaway environment::

    python3 -m venv /tmp/ss-venv && /tmp/ss-venv/bin/pip install stonesoup==1.9.1
    /tmp/ss-venv/bin/python benchmarks/fusion/stonesoup_ref.py SCENARIO.npz --tracks-out T.npz [--json]
    .venv/bin/python -m benchmarks.fusion.score SCENARIO.npz T.npz

Configuration (the reference bench's): nearly-constant velocity (q = 10 m²/s³ per
axis), one CartesianToElevationBearingRange model per radar (site = translation
offset), Kalman predictor + extended Kalman updater, Mahalanobis distance
hypothesiser with gate 4, GNN by 2-D assignment on a k-d tree of the detections
(``DetectionKDTreeGNN2D``; ``--assoc gnn2d`` for the plain one), a 3-point
initiator (prior velocity 0 ± 2 km/s per axis, its own deleter after 3 scans without
update), tracks deleted after 6 scans without update. Fed one scan (one radar's
plots, one time stamp) at a time; only the tracker's update calls are timed.

This file imports nothing of the project (it runs with Stone Soup's numpy), and
writes the bench's tracks format: every state of every track, as the reference did.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import time
from typing import Any

import numpy as np
from stonesoup.dataassociator.neighbour import GNNWith2DAssignment
from stonesoup.dataassociator.tree import DetectionKDTreeGNN2D
from stonesoup.deleter.time import UpdateTimeStepsDeleter
from stonesoup.hypothesiser.distance import DistanceHypothesiser
from stonesoup.initiator.simple import MultiMeasurementInitiator
from stonesoup.measures import Mahalanobis
from stonesoup.models.measurement.nonlinear import CartesianToElevationBearingRange
from stonesoup.models.transition.linear import CombinedLinearGaussianTransitionModel, ConstantVelocity
from stonesoup.predictor.kalman import KalmanPredictor
from stonesoup.tracker.simple import MultiTargetTracker
from stonesoup.types.angle import Bearing, Elevation
from stonesoup.types.array import CovarianceMatrix, StateVector
from stonesoup.types.detection import Detection
from stonesoup.types.state import GaussianState
from stonesoup.updater.kalman import ExtendedKalmanUpdater


def tracker(a: argparse.Namespace) -> MultiTargetTracker:
    """The reference configuration (module docstring)."""
    predictor = KalmanPredictor(CombinedLinearGaussianTransitionModel([ConstantVelocity(a.q)] * 3))
    updater = ExtendedKalmanUpdater(measurement_model=None)  # each detection carries its radar's model
    hyp = DistanceHypothesiser(predictor, updater, measure=Mahalanobis(), missed_distance=a.gate)

    def associator() -> Any:
        if a.assoc == "gnn2d":
            return GNNWith2DAssignment(hyp)
        # The k-d tree is built on raw (el, az, r); the radius acts as a range gate.
        return DetectionKDTreeGNN2D(hypothesiser=hyp, predictor=predictor, updater=updater, max_distance=1e4)

    v = a.init_speed_sigma**2
    prior = GaussianState(StateVector(np.zeros(6)), CovarianceMatrix(np.diag([0.0, v, 0.0, v, 0.0, v])))
    init = MultiMeasurementInitiator(
        prior_state=prior,
        deleter=UpdateTimeStepsDeleter(3),
        data_associator=associator(),
        updater=updater,
        min_points=3,
    )
    return MultiTargetTracker(
        initiator=init,
        deleter=UpdateTimeStepsDeleter(a.delete_after),
        detector=None,
        data_associator=associator(),
        updater=updater,
    )


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenario")
    ap.add_argument("--tracks-out", required=True)
    ap.add_argument("--assoc", choices=["kdtree", "gnn2d"], default="kdtree")
    ap.add_argument("--q", type=float, default=10.0)
    ap.add_argument("--gate", type=float, default=4.0)
    ap.add_argument("--init-speed-sigma", type=float, default=2000.0)
    ap.add_argument("--delete-after", type=int, default=6)
    ap.add_argument("--max-scans", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    with np.load(a.scenario) as f:
        sc = {
            k: f[k]
            for k in (
                "epoch",
                "scan_time",
                "meas_scan",
                "meas_sensor",
                "meas_z",
                "sensor_pos",
                "sensor_sigma",
            )
        }
    epoch = dt.datetime.fromisoformat(str(sc["epoch"]))
    n_scans = len(sc["scan_time"]) if a.max_scans is None else min(a.max_scans, len(sc["scan_time"]))
    models = [
        CartesianToElevationBearingRange(
            ndim_state=6,
            mapping=(0, 2, 4),
            noise_covar=CovarianceMatrix(np.diag(sig**2)),
            translation_offset=StateVector(pos),
        )
        for pos, sig in zip(sc["sensor_pos"], sc["sensor_sigma"], strict=True)
    ]
    stamps = [epoch + dt.timedelta(seconds=float(t)) for t in sc["scan_time"][:n_scans]]
    scans: list[set[Detection]] = [set() for _ in range(n_scans)]
    for k, s, z in zip(sc["meas_scan"], sc["meas_sensor"], sc["meas_z"], strict=True):
        if k < n_scans:
            sv = StateVector([Elevation(z[0]), Bearing(z[1]), z[2]])
            scans[k].add(Detection(sv, timestamp=stamps[k], measurement_model=models[s]))
    trk = tracker(a)
    wall = np.zeros(n_scans)
    cpu = np.zeros(n_scans)  # thread CPU time: on a shared machine wall time includes waiting for a core
    seen: set[Any] = set()
    for k in range(n_scans):
        t1, c1 = time.perf_counter(), time.thread_time()
        _, tracks = trk.update_tracker(stamps[k], scans[k])
        wall[k] = time.perf_counter() - t1
        cpu[k] = time.thread_time() - c1
        seen |= tracks
    ids, times, states = [], [], []
    for i, track in enumerate(sorted(seen, key=lambda t: t.id)):
        for st in track.states:
            ids.append(i)
            times.append((st.timestamp - epoch).total_seconds())
            states.append(np.asarray(st.state_vector, float).ravel())
    np.savez_compressed(
        a.tracks_out,
        track_id=np.array(ids, np.int64),
        track_time=np.array(times),
        track_state=np.array(states).reshape(-1, 6),
        state_order=np.array("x,vx,y,vy,z,vz"),
        scan_wall_s=wall,
    )
    res = {
        "scenario": a.scenario,
        "tracker": f"stonesoup {a.assoc} + EKF (NCV q={a.q:g})",
        "scans": n_scans,
        "measurements": int(sum(len(s) for s in scans)),
        "scan_ms_median": 1e3 * float(np.median(wall)),
        "scan_ms_p99": 1e3 * float(np.percentile(wall, 99)),
        "scan_cpu_ms_median": 1e3 * float(np.median(cpu)),
        "scan_cpu_ms_p99": 1e3 * float(np.percentile(cpu, 99)),
        "total_s": float(wall.sum()),
        "total_cpu_s": float(cpu.sum()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "tracks": len(seen),
    }
    print(json.dumps(res) if a.json else "\n".join(f"{k}: {v}" for k, v in res.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
