"""``hilgw replay`` on damaged recordings: 0 tracebacks, every damage named.

A small sound recording (tests/recording_support.py: one serial radar, raw
frames and a TrackBatch per step, several chunks) is damaged ``--cases``
times: 1 to 8 flipped bits, cut at a random byte, or whole chunks
duplicated, swapped, dropped or taken from another recording. Each case is
replayed in this process through the command itself
(``gateway.cli.main(["replay", "--max-speed", ...])``); what counts:

* ``traceback``: an exception escaped the command (must be 0);
* ``refused``: exit 2 with one ``hilgw: recording:`` or ``config error`` line;
* ``replayed``: the damage was harmless to replay (exit 0: a flipped bit in
  a field no reader uses, e.g. a library name or padding);
* for cut files, whether ``hilgw replay --recover`` then gives a part that
  replays.

    .venv/bin/python benchmarks/fuzz_recordings.py [--cases 1000] [--seed 1] [--json]

Results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.cli import main as hilgw  # noqa: E402
from tests.recording_support import CORRUPTIONS, corrupt, make_recording  # noqa: E402


def run(argv: list[str]) -> tuple[int | None, str, str | None]:
    """(exit code, stderr, traceback or None) of one in-process ``hilgw`` call."""
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = hilgw(argv)
    except BaseException:  # counting exactly these is the point
        return None, err.getvalue(), traceback.format_exc()
    return code, err.getvalue(), None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    ns = ap.parse_args(argv)
    rng = random.Random(ns.seed)
    outcome: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {k: Counter() for k in CORRUPTIONS}
    crashes: Counter[str] = Counter()
    first_tb: list[str] = []
    multi_line = 0
    recovered = Counter[str]()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "a").mkdir()
        (root / "b").mkdir()
        sound = make_recording(root / "a", scans=30).read_bytes()
        foreign = make_recording(root / "b", scans=30, t0=1_900_000_000_000_000_000).read_bytes()
        for n in range(ns.cases):
            kind = CORRUPTIONS[n % len(CORRUPTIONS)]
            case = root / f"case-{n}.mcap"
            case.write_bytes(corrupt(sound, kind, rng, foreign))
            code, err, tb = run(["replay", "--max-speed", "--no-progress", str(case)])
            if tb is not None:
                what = "traceback"
                crashes[tb.strip().splitlines()[-1].split(":")[0]] += 1
                if len(first_tb) < 3:
                    first_tb.append(tb)
            elif code == 0:
                what = "replayed"
            elif code == 2:
                what = "refused"
                if err.strip().count("\n") > 0:
                    multi_line += 1
                    if len(first_tb) < 3:
                        first_tb.append(f"refused on more than one line:\n{err}")
            else:
                what = f"exit {code}"
            outcome[what] += 1
            by_kind[kind][what] += 1
            if kind == "truncate" and what == "refused" and "--recover" in err:
                rc, _, tb2 = run(["replay", "--recover", str(case)])
                fixed = case.with_name(f"{case.stem}.recovered.mcap")
                if tb2 is not None:
                    recovered["traceback"] += 1
                    crashes["recover: " + tb2.strip().splitlines()[-1].split(":")[0]] += 1
                elif fixed.exists():
                    rc, _, tb3 = run(["replay", "--max-speed", "--no-progress", str(fixed)])
                    recovered["replays" if rc == 0 and tb3 is None else "does not replay"] += 1
                    fixed.unlink()
                else:
                    recovered["nothing kept"] += 1
            case.unlink()
    result = {
        "cases": ns.cases,
        "seed": ns.seed,
        "tracebacks": outcome["traceback"] + recovered["traceback"],
        "refused_one_line": outcome["refused"] - multi_line,
        "refused_multi_line": multi_line,
        "replayed_harmless": outcome["replayed"],
        "other_exit": sum(v for k, v in outcome.items() if k.startswith("exit")),
        "by_kind": {k: dict(v) for k, v in by_kind.items()},
        "cut_then_recovered": dict(recovered),
        "by_exception": dict(crashes),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if ns.json:
        print(json.dumps(result))
    else:
        print(f"{'cases':<22} {ns.cases} (seed {ns.seed})")
        print(f"{'tracebacks':<22} {result['tracebacks']}")
        print(f"{'refused, one line':<22} {result['refused_one_line']}")
        print(f"{'replayed (harmless)':<22} {result['replayed_harmless']}")
        print(f"{'other exit codes':<22} {result['other_exit']}")
        print(f"{'':<22} {'refused':>8} {'replayed':>9} {'traceback':>10}")
        for kind, c in by_kind.items():
            print(f"{kind:<22} {c['refused']:>8} {c['replayed']:>9} {c['traceback']:>10}")
        print(f"{'cut, then --recover':<22} {dict(recovered)}")
        for name, count in crashes.most_common():
            print(f"  {count:>5}  {name}")
        print(f"{'seconds':<22} {result['seconds']}")
        for tb in first_tb:
            print(tb, file=sys.stderr)
    return 1 if result["tracebacks"] else 0


if __name__ == "__main__":
    sys.exit(main())
