"""Fuzz campaign over every codec in drivers/, both roles: 0 foreign exceptions.

For each target (codec, role, public call; see tests/fuzz_support.py) it
feeds ``--n`` inputs (default 1,000,000) made by a seeded ``random.Random``
from valid wire data: random bytes, bit flips, truncations, splices,
repeated fields, edge values, CAN id/flag changes, dropped, doubled and
reordered frames. It prints, per target, the inputs fed, the seconds, the
outcome counts (events by type, drops by reason, LocalProtocolError refusals
of encode targets) and the foreign exceptions (anything else: a bug), with
the first example of each. ``--json`` prints one JSON object instead.

Bounded: each target stops at ``--n`` inputs or ``--max-seconds``,
whichever comes first (a target cut short by time is marked). ``--jobs``
splits each target's inputs over worker processes (each its own seeded
stream). Exit status 1 when any foreign exception was seen.

    .venv/bin/python benchmarks/fuzz_codecs.py [--n 1000000] [--jobs 2] [--only can_radar] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz_support import Tally, Target, run_one, targets


@cache
def _by_name() -> dict[str, Target]:
    return {t.name: t for t in targets()}


def fuzz_part(name: str, n: int, seed: str, max_seconds: float) -> tuple[Tally, float, bool]:
    """One worker's share of a target (runs in a worker process)."""
    # Garbage floats make numpy warn (overflow in a divide) before the codec refuses them.
    warnings.simplefilter("ignore", RuntimeWarning)
    return fuzz(_by_name()[name], n, seed, max_seconds)


def fuzz(target: Target, n: int, seed: str, max_seconds: float) -> tuple[Tally, float, bool]:
    """Feed ``n`` inputs (fewer if time runs out); the tally, seconds, and whether time ran out."""
    r = random.Random(f"{seed}:{target.name}")
    tally = Tally()
    codec = target.make()
    since_reset = 0
    t0 = time.perf_counter()
    deadline = t0 + max_seconds
    for i in range(n):
        if since_reset >= target.reset_every:
            codec, since_reset = target.make(), 0
        if run_one(target, codec, target.gen(r), tally) is not None:
            codec, since_reset = target.make(), 0  # a bug may have left the codec broken
        since_reset += 1
        if i % 1024 == 1023 and time.perf_counter() > deadline:
            return tally, time.perf_counter() - t0, True
    return tally, time.perf_counter() - t0, False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="inputs per codec and role")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--max-seconds", type=float, default=900.0, help="time limit per target")
    ap.add_argument("--only", default="", help="run targets whose name contains this")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes per target")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ns = ap.parse_args(argv)
    results: dict[str, Any] = {}
    foreign_total = 0
    names = [t.name for t in targets() if ns.only in t.name]
    jobs = max(1, ns.jobs)
    pool = ProcessPoolExecutor(jobs) if jobs > 1 else None
    for name in names:
        shares = [ns.n // jobs + (1 if k < ns.n % jobs else 0) for k in range(jobs)]
        t0 = time.perf_counter()
        if pool is None:
            parts = [fuzz_part(name, ns.n, str(ns.seed), ns.max_seconds)]
        else:
            futures = [
                pool.submit(fuzz_part, name, share, f"{ns.seed}/{k}", ns.max_seconds)
                for k, share in enumerate(shares)
            ]
            parts = [f.result() for f in futures]
        secs = time.perf_counter() - t0
        tally, cut = Tally(), any(p[2] for p in parts)
        for part, _, _ in parts:
            tally.inputs += part.inputs
            tally.outcomes.update(part.outcomes)
            tally.foreign.update(part.foreign)
            for key, example in part.examples.items():
                tally.examples.setdefault(key, example)
        foreign_total += tally.foreign_total
        results[name] = {
            "inputs": tally.inputs,
            "seconds": round(secs, 1),
            "time_limited": cut,
            "foreign": tally.foreign_total,
            "foreign_by_type": dict(tally.foreign),
            "outcomes": dict(sorted(tally.outcomes.items())),
            "examples": tally.examples,
        }
        if not ns.json:
            _print_target(name, results[name])
        else:  # progress, so a long run shows where it is
            line = f"{name}: {tally.inputs:,} inputs, {secs:.0f} s, foreign {tally.foreign_total}"
            print(line, file=sys.stderr)
    if pool is not None:
        pool.shutdown()
    summary = {"n": ns.n, "seed": ns.seed, "jobs": jobs, "targets": results, "foreign_total": foreign_total}
    if ns.json:
        print(json.dumps(summary))
    else:
        print(f"\nforeign exceptions, all targets: {foreign_total}")
    return 1 if foreign_total else 0


def _print_target(name: str, res: dict[str, Any]) -> None:
    cut = "  (time limit)" if res["time_limited"] else ""
    print(f"\n{name}: {res['inputs']:,} inputs in {res['seconds']} s, foreign {res['foreign']}{cut}")
    for key, count in res["outcomes"].items():
        print(f"  {key:<40} {count:>10,}")
    for key, example in res["examples"].items():
        print(f"  FOREIGN {key}\n    e.g. {example[:200]}")


if __name__ == "__main__":
    sys.exit(main())
