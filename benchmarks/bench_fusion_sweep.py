"""Tune the fusion engine on many generated scenarios, scored with the bench's OSPA.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.bench_fusion_sweep --work /tmp/fb --family straight \
        --n 50 --seeds 2 3 4 --clutter 20 --pd 0.9 --set q_ncv=1.0 --set models='["ncv"]'

Scenarios are generated on the fly with ``benchmarks.fusion.scenarios`` (cached
in ``--work``) and scored with ``benchmarks.fusion.metrics``. Prints one line
per scenario and the mean OSPA.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.fusion import scenarios
from benchmarks.fusion.metrics import Tracks, score
from gateway.bench_fusion import BENCH_CONFIG, run_bench


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", choices=sorted(scenarios.FAMILIES), default="straight")
    ap.add_argument("--work", type=Path, default=Path("/tmp/fusion-sweep"))
    ap.add_argument("--n", type=int, nargs="+", default=[50], help="targets (straight, manoeuvre)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--clutter", type=float, nargs="+", default=[20.0])
    ap.add_argument("--pd", type=float, nargs="+", default=[0.9])
    ap.add_argument("--scenario", type=Path, nargs="*", default=[], help="extra scenario files")
    ap.add_argument("--set", action="append", default=[], help="FusionConfig field=JSON value")
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    over: dict[str, Any] = {}
    for kv in a.set:
        k, v = kv.split("=", 1)
        val = json.loads(v)
        over[k] = tuple(val) if isinstance(val, list) else val
    cfg = dataclasses.replace(BENCH_CONFIG, **over)
    cfg.check()
    files = list(a.scenario)
    sized = a.family in ("straight", "manoeuvre")
    for n in a.n if sized else [0]:
        for seed in a.seeds:
            for c in a.clutter:
                for pd in a.pd:
                    kw: dict[str, Any] = {"clutter": c, "pd": pd} | ({"n": n} if sized else {})
                    files.append(scenarios.cached(a.work, a.family, seed, **kw))
    scores = []
    for f in files:
        tracks = a.work / ("tracks_" + f.name)
        res = run_bench(f, tracks, cfg)
        with np.load(f) as sc, np.load(tracks) as tr:
            scen = {k: sc[k] for k in sc.files if k.startswith("truth_")}
            s = score(scen, Tracks.from_arrays(tr["track_id"], tr["track_time"], tr["track_state"]))
        scores.append(s["ospa"])
        print(
            f"{f.name}: OSPA {s['ospa']:.2f} (loc {s['ospa_loc']:.2f} card {s['ospa_card']:.2f}) "
            f"tracks {s['n_tracks_mean']:.1f}/{s['n_truth_mean']:.0f}  "
            f"scan median {res['scan_ms_median']:.2f} ms "
            f"p99 {res['scan_ms_p99']:.2f} ms  RSS {res['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    print(f"mean OSPA {np.mean(scores):.2f} over {len(scores)} scenarios; overrides {over}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
