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
whichever comes first (a target cut short by time is marked). Exit status 1
when any foreign exception was seen.

    .venv/bin/python benchmarks/fuzz_codecs.py [--n 1000000] [--seed 14] [--only can_radar] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz_support import Tally, Target, run_one, targets


def fuzz(target: Target, n: int, seed: int, max_seconds: float) -> tuple[Tally, float, bool]:
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
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ns = ap.parse_args(argv)
    results: dict[str, Any] = {}
    foreign_total = 0
    for target in targets():
        if ns.only not in target.name:
            continue
        tally, secs, cut = fuzz(target, ns.n, ns.seed, ns.max_seconds)
        foreign_total += tally.foreign_total
        results[target.name] = {
            "inputs": tally.inputs,
            "seconds": round(secs, 1),
            "time_limited": cut,
            "foreign": tally.foreign_total,
            "foreign_by_type": dict(tally.foreign),
            "outcomes": dict(sorted(tally.outcomes.items())),
            "examples": tally.examples,
        }
        if not ns.json:
            _print_target(target.name, results[target.name])
    summary = {"n": ns.n, "seed": ns.seed, "targets": results, "foreign_total": foreign_total}
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
