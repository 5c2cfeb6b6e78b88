"""``hilgw bench fusion``: run the fusion engine on a fusion-bench scenario file.

Reads the bench's scenario format (an ``.npz`` written by
``python -m benchmarks.fusion.scenarios``, documented in
``benchmarks/fusion/README.md``: three radars in a local Cartesian frame, z up,
plots of (elevation, azimuth, range) per scan) and writes its tracks format
(``track_id``, ``track_time`` [s], ``track_state`` in the order
x, vx, y, vy, z, vz; confirmed tracks only, one row per track per scan).
Score the tracks file with ``python -m benchmarks.fusion.score``; run whole
scenario families with ``python -m benchmarks.fusion.run``.

The frame is the engine's "ECEF" here: each radar is a
:func:`hilgw.geo.local_geometry` with forward = x, right = y, up = z, so
azimuth = atan2(dy, dx) as in the scenario. Gravity is the scenario's: -z
(:func:`gateway.fusion.motion.flat_gravity`) unless its ``params_json`` names a
central field (the ballistic families: the Earth's centre at (0, 0, -a), spin
axis z, not rotating), which is :func:`gateway.fusion.motion.ecef_gravity`
shifted to that centre. State order is converted at this boundary only.

Timing covers ``Engine.step`` per scan (one sensor's plots), not the file
loading or the building of the report arrays.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from gateway.bench_oracle import ORACLE_MODES, OracleEngine
from gateway.fusion.api import KIND_PLOT, STATUS_COASTING, STATUS_CONFIRMED, ReportArrays
from gateway.fusion.config import MODEL_BALLISTIC, MODEL_MANOEUVRE, MODEL_NCV, FusionConfig
from gateway.fusion.engine import Engine
from gateway.fusion.motion import AccelFn, ecef_gravity, flat_gravity
from hilgw.geo import local_geometry

# The engine's own default (one configuration for straight, manoeuvring and
# ballistic targets: IMM NCV + ballistic + manoeuvre, GNN with IMM mixture-likelihood costs), the same
# one `hilgw run` uses. The variants are only there to compare against it
# (figures in benchmarks/fusion/RESULTS.md).
BENCH_CONFIG = FusionConfig()
VARIANTS: dict[str, FusionConfig] = {
    "default": BENCH_CONFIG,
    # without track re-acquisition (gateway/fusion/stitch.py): the default until 2026-12-06 afternoon
    "nostitch": dataclasses.replace(BENCH_CONFIG, stitch_window_s=0.0),
    # the default with hard (GNN) updates
    "gnn": dataclasses.replace(BENCH_CONFIG, association="gnn"),
    # association costs with the manoeuvre model of every track (the default
    # before the exo-atmospheric rule, gateway/fusion/twoscan.py quiet_logsumexp)
    "loud": dataclasses.replace(BENCH_CONFIG, assoc_quiet_above_m=1e9),
    # above assoc_quiet_above_m the cost from the ballistic model alone (NCV left out too)
    "ballcost": dataclasses.replace(BENCH_CONFIG, assoc_quiet_models=(MODEL_MANOEUVRE, MODEL_NCV)),
    # without the exo-atmospheric start prior and manoeuvre exit rate (gateway/fusion/exo.py)
    "noexo": dataclasses.replace(BENCH_CONFIG, exo_init_speed_sigma_mps=0.0, exo_exit_rate_hz=0.0),
    # the default with cheap-JPDA updates of confirmed tracks
    "jpda": dataclasses.replace(BENCH_CONFIG, association="jpda"),
    # GNN costs from one moment-matched Gaussian per track (the default before
    # the IMM mixture likelihood, gateway/fusion/twoscan.py)
    "combined": dataclasses.replace(BENCH_CONFIG, assoc_cost="combined"),
    # one-batch look-ahead swap test of crossed plots (gateway/fusion/twoscan.py)
    "two_scan": dataclasses.replace(BENCH_CONFIG, two_scan=True),
    # GNN's covariances as they were before the PDA-mixture spread (gateway/fusion/spread.py),
    # without the window refit either: the default of that time
    "nospread": dataclasses.replace(BENCH_CONFIG, gnn_spread=False, exo_refit_every_s=0.0),
    # The default before the window refit of exo tracks (gateway/fusion/refit.py).
    "norefit": dataclasses.replace(BENCH_CONFIG, exo_refit_every_s=0.0),
    # sliding-window multi-scan assignment (gateway/fusion/mht.py): one scan of three radars
    "mht": dataclasses.replace(BENCH_CONFIG, mht_window=3),
    "mht6": dataclasses.replace(BENCH_CONFIG, mht_window=6),
    # the former bench default: NCV only, q = 1, GNN
    "ncv": dataclasses.replace(BENCH_CONFIG, models=(MODEL_NCV,), imm_initial=(1.0,), association="gnn"),
    # the former `--imm`: NCV + ballistic, GNN
    "imm": dataclasses.replace(
        BENCH_CONFIG,
        models=(MODEL_NCV, MODEL_BALLISTIC),
        imm_initial=(0.99, 0.01),
        imm_switch_rate_hz=0.01,
        association="gnn",
    ),
}
IMM_BENCH_CONFIG = VARIANTS["imm"]
# Diagnostics that CHEAT (read the truth's plot origins): gateway/bench_oracle.py.
for _mode in ORACLE_MODES:
    VARIANTS[_mode] = BENCH_CONFIG


_TO_BENCH = [0, 3, 1, 4, 2, 5]  # (x, y, z, vx, vy, vz) -> (x, vx, y, vy, z, vz)
_NAN6 = np.full(6, np.nan)
_NAN66 = np.full((6, 6), np.nan)


def _scans(sc: Any) -> list[tuple[int, ReportArrays]]:
    """Per scan: (time ns, plots) with polar = (range, azimuth, elevation, NaN).

    ``sensor_track_id`` is 0, or the originating object + 1 when ``sc`` holds
    ``meas_truth`` (only the oracle diagnostics load it)."""
    scan_time = np.asarray(sc["scan_time"], np.float64)
    meas_scan = np.asarray(sc["meas_scan"], np.int64)
    z = np.asarray(sc["meas_z"], np.float64)  # (el, az, r)
    sensor = np.asarray(sc["meas_sensor"], np.int32)
    sig = np.asarray(sc["sensor_sigma"], np.float64)  # (σ_el, σ_az, σ_r)
    t_ns = np.round(scan_time * 1e9).astype(np.int64)
    polar = np.column_stack([z[:, 2], z[:, 1], z[:, 0], np.full(len(z), np.nan)])
    psig = np.column_stack([sig[sensor, 2], sig[sensor, 1], sig[sensor, 0], np.full(len(z), np.nan)])
    label = (np.asarray(sc["meas_truth"], np.int64) + 1 if "meas_truth" in sc else np.zeros(len(z))).astype(
        np.uint32
    )
    bounds = np.searchsorted(meas_scan, np.arange(len(scan_time) + 1))
    out = []
    for k in range(len(scan_time)):
        a, b = int(bounds[k]), int(bounds[k + 1])
        m = b - a
        out.append(
            (
                int(t_ns[k]),
                ReportArrays(
                    sensor=sensor[a:b].copy(),
                    sensor_track_id=label[a:b].copy(),
                    kind=np.full(m, KIND_PLOT, np.int8),
                    t_ns=np.full(m, t_ns[k], np.int64),
                    x=np.broadcast_to(_NAN6, (m, 6)),  # plots: the engine reads polar only
                    P=np.broadcast_to(_NAN66, (m, 6, 6)),
                    quality=np.ones(m),
                    polar=polar[a:b].copy(),
                    polar_sigma=psig[a:b].copy(),
                ),
            )
        )
    return out


def scenario_gravity(params_json: str) -> AccelFn:
    """The acceleration of unpowered bodies in a scenario's frame (its ``params_json``)."""
    grav = json.loads(params_json).get("gravity", "none")
    if not isinstance(grav, dict) or grav.get("model") != "central":
        return flat_gravity()
    centre = np.asarray(grav["centre"], np.float64)
    field = ecef_gravity(j2=bool(grav.get("j2", False)), rotating=False)

    def accel(x: np.ndarray) -> np.ndarray:
        shifted = x.copy()
        shifted[:, :3] -= centre
        return field(shifted)

    return accel


def run_bench(
    scenario: Path, tracks_out: Path | None, config: FusionConfig = BENCH_CONFIG, oracle: str | None = None
) -> dict[str, Any]:
    """Run the engine over every scan of ``scenario``; write ``tracks_out``.

    ``oracle`` (one of ``ORACLE_MODES``) runs the cheating diagnostic of
    :mod:`gateway.bench_oracle` instead, which reads the plots' origins.

    Returns the figures: scans, measurements, time per scan (median, p99,
    mean, max) in ms, measurements per second, peak RSS in MB, tracks.
    """
    with np.load(scenario) as f:
        # Only what a tracker may use (not the truth): keeps the RSS honest.
        keys = ["scan_time", "meas_scan", "meas_z", "meas_sensor", "sensor_sigma", "sensor_pos"]
        sc = {k: f[k] for k in keys + (["meas_truth"] if oracle else [])}
        params = str(f["params_json"]) if "params_json" in f.files else "{}"
    scans = _scans(sc)
    accel = scenario_gravity(params)
    engine = OracleEngine(config, accel, oracle) if oracle else Engine(config, accel=accel)
    for s, pos in enumerate(np.asarray(sc["sensor_pos"], np.float64)):
        engine.add_sensor(local_geometry(f"radar{s}", pos))

    per_scan = np.zeros(len(scans))
    # CPU time of this thread too: on a shared machine the wall time per scan
    # includes waiting for a core, the CPU time does not.
    cpu_scan = np.zeros(len(scans))
    ids: list[np.ndarray] = []
    times: list[np.ndarray] = []
    states: list[np.ndarray] = []
    n_meas = 0
    for k, (t_ns, rep) in enumerate(scans):
        t1, c1 = time.perf_counter(), time.thread_time()
        pic = engine.step(rep, t_ns)
        per_scan[k] = time.perf_counter() - t1
        cpu_scan[k] = time.thread_time() - c1
        n_meas += len(rep)
        keep = (pic.status == STATUS_CONFIRMED) | (pic.status == STATUS_COASTING)
        ids.append(pic.track_id[keep])
        times.append(np.full(int(keep.sum()), t_ns * 1e-9))
        states.append(pic.x[keep][:, _TO_BENCH])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB

    track_id = np.concatenate(ids) if ids else np.empty(0, np.uint64)
    if tracks_out is not None:
        np.savez_compressed(
            tracks_out,
            track_id=track_id.astype(np.int64),
            track_time=np.concatenate(times) if times else np.empty(0),
            track_state=np.concatenate(states) if states else np.empty((0, 6)),
            state_order=np.array("x,vx,y,vy,z,vz"),
            scan_wall_s=per_scan,
        )
    total = float(per_scan.sum())
    return {
        "scenario": str(scenario),
        "scans": len(scans),
        "measurements": n_meas,
        "scan_ms_median": 1e3 * float(np.median(per_scan)),
        "scan_ms_p99": 1e3 * float(np.percentile(per_scan, 99)),
        "scan_ms_mean": 1e3 * float(per_scan.mean()),
        "scan_ms_max": 1e3 * float(per_scan.max()),
        "scan_cpu_ms_median": 1e3 * float(np.median(cpu_scan)),
        "scan_cpu_ms_p99": 1e3 * float(np.percentile(cpu_scan, 99)),
        "meas_per_s": n_meas / total if total > 0 else float("inf"),
        "peak_rss_mb": peak_mb,
        "tracks_confirmed_total": int(np.unique(track_id).size),
        "counters": dict(engine.counters),
        "config": dataclasses.asdict(config),
    }


def with_overrides(config: FusionConfig, pairs: list[str]) -> FusionConfig:
    """``config`` with the fields of ``--set KEY=JSON`` options replaced (a JSON
    list becomes a tuple; a value that is not JSON is taken as a bare string,
    e.g. ``association=jpda``)."""
    over: dict[str, Any] = {}
    for kv in pairs:
        k, _, v = kv.partition("=")
        try:
            val = json.loads(v)
        except json.JSONDecodeError:
            val = v
        over[k] = tuple(val) if isinstance(val, list) else val
    return dataclasses.replace(config, **over) if over else config


def main(argv: list[str] | None = None) -> int:
    """CLI: ``--scenario FILE.npz [--tracks-out FILE.npz] [--variant NAME] [--json]``."""
    ap = argparse.ArgumentParser(prog="hilgw bench fusion", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", type=Path, required=True)
    ap.add_argument("--tracks-out", type=Path, default=None)
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument(
        "--variant",
        choices=sorted(VARIANTS),
        default="default",
        help="engine configuration to compare with the default",
    )
    ap.add_argument("--imm", action="store_true", help="same as --variant imm (the former IMM option)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override one FusionConfig field, e.g. --set q_manoeuvre=1000",
    )
    a = ap.parse_args(argv)
    if not a.scenario.is_file():
        ap.error(f"--scenario {a.scenario}: no such file (write one: python -m benchmarks.fusion.scenarios)")
    cfg = with_overrides(VARIANTS["imm" if a.imm else a.variant], a.set)
    res = run_bench(a.scenario, a.tracks_out, cfg, oracle=a.variant if a.variant in ORACLE_MODES else None)
    res["variant"] = "imm" if a.imm else a.variant
    if a.json:
        print(json.dumps(res))
    else:
        print(
            f"{res['scenario']}: {res['scans']} scans, {res['measurements']} measurements\n"
            f"time per scan: median {res['scan_ms_median']:.2f} ms, p99 {res['scan_ms_p99']:.2f} ms "
            f"(mean {res['scan_ms_mean']:.2f}, max {res['scan_ms_max']:.2f}); CPU median "
            f"{res['scan_cpu_ms_median']:.2f} ms, p99 {res['scan_cpu_ms_p99']:.2f} ms\n"
            f"measurements/s: {res['meas_per_s']:.0f}\n"
            f"peak RSS: {res['peak_rss_mb']:.1f} MB\n"
            f"confirmed tracks: {res['tracks_confirmed_total']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
