"""Tune the fusion engine on many generated scenarios, scored with the bench's OSPA.

Usage::

    .venv/bin/python benchmarks/bench_fusion_sweep.py --bench-dir ../shared/fusion-bench \
        --work /tmp/fb --n 50 --seeds 2 3 4 --clutter 20 --pd 0.9 \
        --set q_ncv=1.0 --set models='["ncv"]'

Scenarios are generated on the fly with the bench's ``gen_scenario.generate``
(cached in ``--work``) and scored with its ``score_ospa.score``; both are
imported from ``--bench-dir``, not copied. Prints one line per scenario and
the mean OSPA.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from gateway.bench_fusion import BENCH_CONFIG, run_bench


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def scenario(bench: Path, work: Path, n: int, seed: int, clutter: float, pd: float) -> Path:
    """Generate (once) and return the path of a scenario file."""
    out = work / f"scen_n{n}_s{seed}_c{clutter:g}_pd{pd:g}.npz"
    if not out.exists():
        gen = _load(bench / "gen_scenario.py", "gen_scenario")
        sc = gen.generate(n, seed=seed, clutter_rate=clutter, pd=pd)
        np.savez_compressed(out, **sc)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench-dir", type=Path, default=Path("../shared/fusion-bench"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/fusion-sweep"))
    ap.add_argument("--n", type=int, nargs="+", default=[50])
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
    scorer = _load(a.bench_dir / "score_ospa.py", "score_ospa")
    files = list(a.scenario)
    for n in a.n:
        for seed in a.seeds:
            for c in a.clutter:
                for pd in a.pd:
                    files.append(scenario(a.bench_dir, a.work, n, seed, c, pd))
    scores = []
    for f in files:
        tracks = a.work / ("tracks_" + f.name)
        res = run_bench(f, tracks, cfg)
        with np.load(f) as sc, np.load(tracks) as tr:
            s = scorer.score(sc["truth_time"], sc["truth_state"], tr["track_time"], tr["track_state"])
        scores.append(s["ospa_mean"])
        print(
            f"{f.name}: OSPA {s['ospa_mean']:.2f} (loc {s['loc_mean']:.2f} card {s['card_mean']:.2f}) "
            f"tracks {s['n_tracks_mean']:.1f}/{s['n_truth_mean']:.0f}  "
            f"scan median {res['scan_ms_median']:.2f} ms "
            f"p99 {res['scan_ms_p99']:.2f} ms  RSS {res['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    print(f"mean OSPA {np.mean(scores):.2f} over {len(scores)} scenarios; overrides {over}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
