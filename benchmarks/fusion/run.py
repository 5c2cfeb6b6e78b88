"""Run the fusion engine over scenario families and seeds; print floor, clairvoyant and hilgw.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.fusion.run                      # all families, seed 1 (~1-2 min)
    .venv/bin/python -m benchmarks.fusion.run --family cso --seeds 1 2 3 --variants default imm
    .venv/bin/python -m benchmarks.fusion.run --family straight --n 300 1000 --seeds 1
    .venv/bin/python -m benchmarks.fusion.run --scaling 1000 2000 5000 10000   # time per scan vs N
    ... --json                                                     # one JSON object

Per family and seed it generates the scenario once (cached in ``--work``), computes
the floor (PCRLB, ``floor.py``) and scores the clairvoyant reference (cached too),
then runs each engine variant (``gateway.bench_fusion.VARIANTS``, the names
``hilgw bench fusion --variant`` takes) in a fresh process so that its peak RSS is
its own, and scores its tracks (``metrics.py``). Time per scan covers
``Engine.step`` only: wall time and the thread's CPU time (on a shared machine
the wall time includes waiting for a core). ``--scaling`` runs the default variant on the straight
family at each N (duration ``--scaling-duration``) and reports time per scan.

The cache is keyed by family, seed and overrides only: delete ``--work`` after
changing the generator or the floor.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.fusion import floor, scenarios
from benchmarks.fusion.metrics import Tracks, score

FAMILIES = ["straight", "cso", "manoeuvre", "mixed"]
COLS = [
    ("family", "{:<10}"),
    ("seed", "{:>4}"),
    ("N", "{:>5}"),
    ("who", "{:<16}"),
    ("ospa", "{:>7.1f}"),
    ("gospa", "{:>8.0f}"),
    ("held", "{:>9}"),
    ("ids_per_object", "{:>7.3f}"),
    ("id_switches", "{:>6}"),
    ("id_swaps", "{:>5}"),
    ("false_track_ids", "{:>6}"),
    ("vel_err_mean", "{:>6.1f}"),
    ("scan_ms_median", "{:>7.2f}"),
    ("scan_ms_p99", "{:>7.2f}"),
    ("scan_cpu_ms_median", "{:>7.2f}"),
    ("peak_rss_mb", "{:>6.0f}"),
]
HEAD = [
    "family",
    "seed",
    "N",
    "who",
    "OSPA",
    "GOSPA",
    "held",
    "ids/obj",
    "switch",
    "swap",
    "false",
    "v err",
    "ms med",
    "ms p99",
    "cpu med",
    "RSS",
]


def _load(path: Path) -> dict[str, Any]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def reference(path: Path, t0: float) -> dict[str, Any]:
    """Floor and clairvoyant figures of a scenario file (cached beside it)."""
    cache = path.with_suffix(".floor.json")
    if cache.exists():
        out: dict[str, Any] = json.loads(cache.read_text())
        return out
    scen = _load(path)
    fl = floor.pcrlb(scen, t0)
    tr = floor.clairvoyant(scen)
    cl = score(scen, Tracks.from_arrays(tr["track_id"], tr["track_time"], tr["track_state"]), t0=t0)
    out = {"floor": fl, "clairvoyant": cl}
    cache.write_text(json.dumps(out))
    return out


def run_variant(path: Path, variant: str, work: Path, sets: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run ``python -m gateway.bench_fusion --variant`` in a fresh process; its figures.

    ``sets``: ``KEY=JSON`` overrides of the variant's FusionConfig (``--set``)."""
    tracks = work / f"tracks_{variant}_{path.name}"
    cmd = [sys.executable, "-m", "gateway.bench_fusion", "--scenario", str(path), "--tracks-out", str(tracks)]
    cmd += ["--variant", variant, "--json"] + [f"--set={kv}" for kv in sets]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    res: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    res["tracks"] = str(tracks)
    return res


def _row(family: str, seed: int, n: int, who: str, m: dict[str, Any]) -> dict[str, Any]:
    row = {"family": family, "seed": seed, "N": n, "who": who}
    row.update(m)
    if "held" in m and "objects" in m:
        row["held"] = f"{m['held']}/{m['objects']}"
    return row


def _fmt(row: dict[str, Any]) -> str:
    out = []
    for key, fmt in COLS:
        v = row.get(key)
        if v is None or (isinstance(v, float) and np.isnan(v)):
            out.append("—".rjust(_width(fmt)))
        else:
            out.append(fmt.format(v))
    return " ".join(out)


def _width(fmt: str) -> int:
    m = re.match(r"\{:[<>]?(\d+)", fmt)
    return int(m.group(1)) if m else 0


def header() -> str:
    """The table's header line."""
    cells = zip(HEAD, (_width(f) for _, f in COLS), strict=True)
    return " ".join(h.ljust(w) if i == 0 or i == 3 else h.rjust(w) for i, (h, w) in enumerate(cells))


def family_rows(
    family: str,
    seed: int,
    kw: dict[str, Any],
    variants: list[str],
    work: Path,
    t0: float,
    with_ref: bool,
    sets: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Floor, clairvoyant and every variant on one scenario."""
    path = scenarios.cached(work, family, seed, **kw)
    n = int(json.loads(str(np.load(path)["params_json"]))["n_targets"])
    rows = []
    if with_ref:
        ref = reference(path, t0)
        rows.append(_row(family, seed, n, "floor (PCRLB)", {"ospa": ref["floor"]["floor"]}))
        rows.append(_row(family, seed, n, "clairvoyant", ref["clairvoyant"]))
    for v in variants:
        res = run_variant(path, v, work, sets)
        with np.load(res["tracks"]) as tr:
            trk = Tracks.from_arrays(tr["track_id"], tr["track_time"], tr["track_state"])
        m = score(_load(path), trk, t0=t0)
        keys = ("scan_ms_median", "scan_ms_p99", "scan_cpu_ms_median", "scan_cpu_ms_p99", "peak_rss_mb")
        m.update({k: res.get(k) for k in (*keys, "measurements", "scans")})
        rows.append(_row(family, seed, n, f"hilgw {v}", m))
    return rows


def scaling(
    ns: list[int], duration: float, work: Path, variant: str, sets: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Time per scan of one variant on the straight family at each N."""
    rows = []
    for n in ns:
        path = scenarios.cached(work, "straight", 1, n=n, duration=duration)
        res = run_variant(path, variant, work, sets)
        rows.append(
            {
                "N": n,
                "variant": variant,
                "measurements": res["measurements"],
                "scan_ms_median": res["scan_ms_median"],
                "scan_ms_p99": res["scan_ms_p99"],
                "scan_cpu_ms_median": res.get("scan_cpu_ms_median"),
                "scan_cpu_ms_p99": res.get("scan_cpu_ms_p99"),
                "peak_rss_mb": res["peak_rss_mb"],
                "meas_per_s": res["meas_per_s"],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    from gateway.bench_fusion import VARIANTS

    ap = argparse.ArgumentParser(prog="python -m benchmarks.fusion.run", description=__doc__.split("\n")[0])
    ap.add_argument("--family", nargs="+", choices=FAMILIES, default=None, help="default: all four")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1])
    ap.add_argument("--n", nargs="+", type=int, default=None, help="targets (straight, manoeuvre)")
    ap.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["default"])
    ap.add_argument("--no-reference", action="store_true", help="skip floor and clairvoyant")
    ap.add_argument(
        "--scaling", nargs="+", type=int, default=None, help="straight-family N for time per scan"
    )
    ap.add_argument("--scaling-duration", type=float, default=60.0, help="seconds of each scaling scenario")
    ap.add_argument(
        "--work", type=Path, default=Path("/tmp/hilgw-fusion-bench"), help="scenario/tracks cache"
    )
    ap.add_argument("--t0", type=float, default=30.0)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="FusionConfig override for every variant",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    families = a.family or (FAMILIES if a.scaling is None else [])
    rows: list[dict[str, Any]] = []
    if not a.json and families:
        print(header(), flush=True)
    for fam in families:
        sizes: list[int | None] = list(a.n) if a.n and fam in ("straight", "manoeuvre") else [None]
        for n in sizes:
            kw = {} if n is None else {"n": n}
            for seed in a.seeds:
                new = family_rows(fam, seed, kw, a.variants, a.work, a.t0, not a.no_reference, tuple(a.set))
                rows += new
                if not a.json:
                    for r in new:
                        print(_fmt(r), flush=True)
    scale = scaling(a.scaling, a.scaling_duration, a.work, a.variants[0], tuple(a.set)) if a.scaling else []
    if scale and not a.json:
        print(f"\ntime per scan, straight family, {a.scaling_duration:g} s, variant {a.variants[0]}:")
        print(
            f"{'N':>6} {'plots':>9} {'ms med':>8} {'ms p99':>8} {'cpu med':>8} {'cpu p99':>8} {'RSS MB':>7}"
        )
        for r in scale:
            cpu_med, cpu_p99 = r["scan_cpu_ms_median"] or np.nan, r["scan_cpu_ms_p99"] or np.nan
            print(
                f"{r['N']:>6} {r['measurements']:>9} {r['scan_ms_median']:>8.2f} {r['scan_ms_p99']:>8.2f} "
                f"{cpu_med:>8.2f} {cpu_p99:>8.2f} {r['peak_rss_mb']:>7.0f}"
            )
    wall = time.perf_counter() - t_start
    if a.json:
        print(json.dumps({"rows": rows, "scaling": scale, "wall_s": wall}, default=str))
    else:
        print(f"({wall:.0f} s; time per scan: Engine.step only, on a shared machine: noisy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
