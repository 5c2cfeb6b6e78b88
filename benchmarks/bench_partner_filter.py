"""The partner release filter: cost per picture and a property campaign.

Run: ``.venv/bin/python benchmarks/bench_partner_filter.py [--cases N] [--json]``.

1. **Cost**: filter + build + serialise a PartnerPicture from a fused picture
   of 1000 tracks (2 contributors each, half the sources releasable), for
   profiles without an area, with a circle and with a polygon: median, p99
   and max per picture, tracks/s. Goal (issue 17): <= 1 ms p99 per batch of
   1000 tracks.
2. **Campaign**: ``--cases`` random pictures x markings x profiles (default
   10,000), each checked against the independent per-track reference in
   tests/unit/partner_support.py (which decides on the TrackBatch protobuf's
   markings): violations (a released track, field or status the profile
   does not allow, or an allowed one missing) must be 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.partners.release import Picture, ReleaseFilter, SourceMarkings
from gateway.sections.partners import ReleaseProfile
from tests.unit.partner_support import random_tracks
from tests.unit.test_partner_release import T0, check_case

PROFILES = {
    "no area": {"fields": ["position", "velocity", "status"], "statuses": ["confirmed", "coasting"]},
    "circle": {"fields": ["position", "velocity"], "circle": {"lat_deg": 57, "lon_deg": 10, "radius_m": 2e6}},
    "polygon": {"polygon": {"vertices": [(50.0, 0.0), (50.0, 25.0), (65.0, 30.0), (70.0, 5.0)]}},
}


def cost(name: str, raw: dict[str, object], m: int = 1000, repeats: int = 400) -> dict[str, float]:
    rng = np.random.default_rng(7)
    markings = tuple(SourceMarkings(1, frozenset({"alpha"} if i % 2 == 0 else {"bravo"})) for i in range(8))
    tracks = random_tracks(rng, m, 8, T0)
    # A worst case for the build: every track confirmed and finite, fed by
    # two releasable sources, so (nearly) all of them leave.
    k = np.arange(2 * m)
    tracks = replace(
        tracks,
        status=np.full(m, 2, np.int8),
        x=np.nan_to_num(tracks.x),
        contrib_row=(k // 2).astype(np.int32),
        contrib_sensor=(2 * (k % 4)).astype(np.int32),
        contrib_sensor_track_id=np.zeros(2 * m, np.uint32),
        contrib_t_ns=np.full(2 * m, T0, np.int64),
    )
    f = ReleaseFilter("alpha", "nation-x", ReleaseProfile.model_validate(raw))
    times = []
    cpu = []
    released = 0
    for k in range(repeats):
        pic = Picture(k, T0 + k * 10**9, tracks, markings)
        t0, c0 = time.perf_counter(), time.thread_time()
        rel = f.apply(pic)
        rel.picture.SerializeToString()
        cpu.append(time.thread_time() - c0)
        times.append(time.perf_counter() - t0)
        released = rel.released
    a = np.array(times[20:]) * 1e3  # the first ones warm the pseudonym cache
    c = np.array(cpu[20:]) * 1e3
    return {
        "profile": name,
        "tracks_in": m,
        "released": released,
        "median_ms": float(np.median(a)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
        # CPU time of this thread: the filter's own cost, without the time it
        # waited for a core on a busy machine.
        "cpu_median_ms": float(np.median(c)),
        "cpu_p99_ms": float(np.percentile(c, 99)),
        "tracks_per_s": float(m / np.median(a) * 1e3),
    }


def campaign(cases: int) -> dict[str, float]:
    t0 = time.perf_counter()
    tracks = violations = 0
    first_bad: int | None = None
    for seed in range(cases):
        try:
            tracks += check_case(seed)
        except AssertionError:
            violations += 1
            first_bad = seed if first_bad is None else first_bad
    return {
        "cases": cases,
        "tracks_checked": tracks,
        "violations": violations,
        "first_bad_seed": -1 if first_bad is None else first_bad,
        "seconds": time.perf_counter() - t0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args()
    rows = [cost(name, raw) for name, raw in PROFILES.items()]
    camp = campaign(ns.cases)
    if ns.json:
        print(json.dumps({"cost": rows, "campaign": camp}))
    else:
        head = (
            "profile",
            "tracks",
            "released",
            "median ms",
            "p99 ms",
            "max ms",
            "cpu p50",
            "cpu p99",
            "tracks/s",
        )
        print("{:<10} {:>6} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>10}".format(*head))
        for r in rows:
            print(
                f"{r['profile']:<10} {r['tracks_in']:>6} {r['released']:>8} {r['median_ms']:>10.3f} "
                f"{r['p99_ms']:>8.3f} {r['max_ms']:>8.3f} {r['cpu_median_ms']:>8.3f} {r['cpu_p99_ms']:>8.3f} "
                f"{r['tracks_per_s']:>10.0f}"
            )
        print(
            f"campaign: {camp['cases']} cases, {camp['tracks_checked']} tracks checked, "
            f"{camp['violations']} violations, {camp['seconds']:.1f} s"
        )
    return 1 if camp["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
