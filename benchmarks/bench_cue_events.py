#!/usr/bin/env python3
"""Cost of the cue core's events at a large picture (issue 18): heartbeat, tick, picture.

    .venv/bin/python benchmarks/bench_cue_events.py [--tracks 2700] [--events 200] [--json]

The pure :class:`gateway.cue.core.CueCore` (in-memory audit, the tests'
fake launchers and keys: ``tests/unit/cue_support.Harness``) in AUTO_CUE
with a picture of ``--tracks`` tracks, a few inside launcher L1's coverage,
the rest outside every launcher's. Then ``--events`` rounds of: one timer
tick and a heartbeat of each launcher (what a gateway with two launchers at
10 Hz sees between pictures). Printed: CPU ms per event kind (median and
p99 of ``time.perf_counter``), and per picture. Single-threaded; numbers
scale with the machine's load (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.unit.cue_support import Harness, make_batch, make_track


def _pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1e3


def run(tracks: int, events: int) -> dict[str, Any]:
    h = Harness()
    h.heartbeat()
    h.set_authority("auto_cue")
    near = [make_track(k + 1, lat=54.2 + 0.01 * k, t_ns=h.now.wall_ns) for k in range(5)]

    far = [make_track(100 + k, lat=-30.0, lon=float(k % 180)) for k in range(tracks - len(near))]

    def picture() -> float:
        """A new picture (built untimed); the seconds the core took for it and its acks."""
        t = h.now.wall_ns
        for trk in (*near, *far):
            trk.last_update_time_ns = t
            trk.contributors[0].last_update_time_ns = t
        batch = make_batch([*near, *far], t)
        t0 = time.perf_counter()
        h.apply(h.core.on_tracks(batch, h.now))
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {"picture": [], "tick": [], "heartbeat": []}
    for k in range(events):
        if k % 20 == 0:  # a picture every 20 rounds (~2 s of 10 Hz ticks); timed with its acks
            times["picture"].append(picture())
        h.now = h.now.plus(0.05)
        t0 = time.perf_counter()
        h.apply(h.core.tick(h.now))
        times["tick"].append(time.perf_counter() - t0)
        for lid in ("L1", "L2"):
            t0 = time.perf_counter()
            h.apply(h.core.on_heartbeat(lid, h.now))
            times["heartbeat"].append(time.perf_counter() - t0)
    cued = len(h.launchers["L1"].accepted)
    assert cued >= len(near), f"only {cued} cues: the bench did not exercise AUTO_CUE"
    out: dict[str, Any] = {"tracks": tracks, "events": events, "cues_accepted": cued}
    for kind, xs in times.items():
        out[f"{kind}_ms_p50"] = round(statistics.median(xs) * 1e3, 3)
        out[f"{kind}_ms_p99"] = round(_pct(xs, 0.99), 3)
        out[f"{kind}_n"] = len(xs)
    out["load_1min"] = round(os.getloadavg()[0], 2)
    out["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=2700)
    ap.add_argument("--events", type=int, default=200, help="rounds of one tick + two heartbeats")
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args()
    res = run(ns.tracks, ns.events)
    if ns.json:
        print(json.dumps(res))
        return 0
    print(f"cue core, {res['tracks']} tracks, AUTO_CUE, {res['cues_accepted']} cues accepted")
    print(f"{'event':<10} {'n':>5} {'p50 ms':>8} {'p99 ms':>8}")
    for kind in ("picture", "tick", "heartbeat"):
        n, p50, p99 = res[f"{kind}_n"], res[f"{kind}_ms_p50"], res[f"{kind}_ms_p99"]
        print(f"{kind:<10} {n:>5} {p50:>8.3f} {p99:>8.3f}")
    print(f"load {res['load_1min']}, {res['date']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
