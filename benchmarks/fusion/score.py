"""Score a tracks file against a scenario: OSPA, GOSPA and track-identity figures.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.fusion.score SCENARIO.npz TRACKS.npz [--json]
        [--c 1000] [--p 1] [--t0 30] [--gate 1000] [--switch-cost 250] [--held 0.9]

Defaults are the reference bench's (OSPA c = 1000 m, p = 1, times t >= 30 s);
GOSPA uses α = 2 and the same c and p. Definitions: ``benchmarks/fusion/metrics.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.fusion.metrics import Tracks, score

ROWS = [
    ("OSPA [m]", "ospa", "{:.1f}"),
    ("  localisation [m]", "ospa_loc", "{:.1f}"),
    ("  cardinality [m]", "ospa_card", "{:.1f}"),
    ("GOSPA [m]", "gospa", "{:.0f}"),
    ("  missed objects / time", "gospa_missed", "{:.2f}"),
    ("  false tracks / time", "gospa_false", "{:.2f}"),
    ("objects held", "held_text", "{}"),
    ("ids per object", "ids_per_object", "{:.3f}"),
    ("id switches", "id_switches", "{}"),
    ("id swaps", "id_swaps", "{}"),
    ("track ids (never on an object)", "ids_text", "{}"),
    ("velocity error, mean [m/s]", "vel_err_mean", "{:.2f}"),
    ("velocity error, 95th pct [m/s]", "vel_err_p95", "{:.2f}"),
]


def score_files(scenario: Path, tracks: Path, **kw: Any) -> dict[str, Any]:
    """Load both files and score them (keyword arguments as :func:`metrics.score`)."""
    with np.load(scenario) as sc, np.load(tracks) as tr:
        scen = {k: sc[k] for k in ("truth_time", "truth_state", "truth_exists") if k in sc.files}
        trk = Tracks.from_arrays(tr["track_id"], tr["track_time"], tr["track_state"])
    res = score(scen, trk, **kw)
    res["scenario"] = str(scenario)
    res["tracks"] = str(tracks)
    return res


def table(res: dict[str, Any]) -> str:
    """Two-column text table of one result."""
    res = dict(res)
    res["held_text"] = f"{res['held']} of {res['objects']} ({100 * res['held_frac']:.1f} %)"
    res["ids_text"] = f"{res['track_ids']} ({res['false_track_ids']})"
    lines = [
        f"{res['tracks']} on {res['scenario']} (c = {res['c']:g} m, p = {res['p']:g}, t >= {res['t0']:g} s)"
    ]
    lines += [f"  {name:<32} {fmt.format(res[key])}" for name, key, fmt in ROWS]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fusion.score", description=__doc__.split("\n")[0])
    ap.add_argument("scenario", type=Path)
    ap.add_argument("tracks", type=Path)
    ap.add_argument("--c", type=float, default=1000.0, help="cut-off [m]")
    ap.add_argument("--p", type=float, default=1.0, help="order")
    ap.add_argument("--t0", type=float, default=30.0, help="score times t >= t0 [s]")
    ap.add_argument("--gate", type=float, default=None, help="identity pairing distance [m] (default c)")
    ap.add_argument(
        "--switch-cost", type=float, default=250.0, help="identity: preference for the last pairing [m]"
    )
    ap.add_argument("--held", type=float, default=0.9, help="held: paired at >= this fraction of its times")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    res = score_files(
        a.scenario, a.tracks, c=a.c, p=a.p, t0=a.t0, gate=a.gate, held_frac=a.held, switch_cost=a.switch_cost
    )
    print(json.dumps(res) if a.json else table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
