"""Fuzz the config and scenario loaders: mutated shipped files, 0 tracebacks.

Every shipped gateway config (``deploy/examples/*.toml``) and scenario
(``sim_devices/scenarios/*.toml``) is mutated at random (byte flips, cut
files, bad UTF-8, deep nesting, non-finite and huge numbers, duplicated and
dropped lines) and handed to the loader in this process (``load_config``,
``load_scenario``). A :class:`hilgw.errors.ConfigError` (what ``hilgw`` prints
as one line with exit 2) or a successful load is fine; any other exception is
a traceback a user would see, and is counted and shown.

    .venv/bin/python benchmarks/fuzz_config.py [--cases 5000] [--seed 1] [--json]

Results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.config import load_config  # noqa: E402
from hilgw.errors import ConfigError  # noqa: E402
from sim_devices.scenario import load_scenario  # noqa: E402

#: Tokens spliced in where a value or a key is: what a typo, a bad editor or
#: an attacker writes.
TOKENS = [
    b"inf", b"-inf", b"nan", b"+nan", b"1e308", b"1e309", b"-1e309", b"9" * 400, b"0x7fffffffffffffff",
    b"-1", b"0", b"1.5", b'""', b"[]", b"{}", b"true", b"1979-05-27T07:32:00Z", b"\xff\xfe", b"\xc3",
    b"\x00", b"\n[", b"\n[[devices]]\n", b"\n[cue]\n", b"'''", b'"""', b"= =", b"[" * 2000,
    b"a = " + b"[" * 5000, b"a = " + b"{b = " * 3000, b"\\u0000", b"\\UFFFFFFFF",
]  # fmt: skip


def shipped_files() -> list[tuple[str, Path]]:
    """(kind, path) of every config and scenario the project ships."""
    configs = sorted((ROOT / "deploy" / "examples").glob("*.toml"))
    scenarios = sorted((ROOT / "sim_devices" / "scenarios").glob("*.toml"))
    return [("config", p) for p in configs] + [("scenario", p) for p in scenarios]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random mutations of ``data``."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1) if buf else 0
        if op == 0 and buf:  # bit flip
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # token at a random place
            buf[pos:pos] = rng.choice(TOKENS)
        elif op == 2:  # token replaces a value (after the first '=' of a line)
            lines = bytes(buf).split(b"\n")
            cand = [i for i, ln in enumerate(lines) if b"=" in ln]
            if cand:
                i = rng.choice(cand)
                key = lines[i].split(b"=", 1)[0]
                lines[i] = key + b"= " + rng.choice(TOKENS)
                buf = bytearray(b"\n".join(lines))
        elif op == 3:  # cut
            del buf[pos:]
        elif op == 4 and buf:  # delete a span
            del buf[pos : pos + rng.randint(1, 64)]
        elif op == 5:  # duplicate or drop a line
            lines = bytes(buf).split(b"\n")
            i = rng.randrange(len(lines))
            if rng.random() < 0.5:
                lines.insert(i, lines[i])
            else:
                del lines[i]
            buf = bytearray(b"\n".join(lines))
        else:  # random bytes
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(buf)


LOADERS: dict[str, Callable[[Path], Any]] = {"config": load_config, "scenario": load_scenario}


def run_case(kind: str, path: Path) -> tuple[str, str | None]:
    """("loaded" | "refused", None), or ("traceback", the traceback)."""
    try:
        loaded = LOADERS[kind](path)
    except ConfigError as exc:
        if "\n" in str(exc):
            return "traceback", f"ConfigError spans lines: {str(exc)[:200]!r}"
        return "refused", None
    except BaseException:  # counting exactly these is the point
        return "traceback", traceback.format_exc()
    bad = _non_finite(loaded.model_dump())
    if bad:
        return "traceback", f"NonFiniteAccepted: {bad}"
    return "loaded", None


def _non_finite(node: Any, key: str = "") -> str | None:
    """Dotted key of the first non-finite float a loaded model kept, if any."""
    if isinstance(node, float) and not math.isfinite(node):
        return key or "<root>"
    items = (
        node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list | tuple) else ()
    )
    for k, v in items:
        found = _non_finite(v, f"{key}.{k}" if key else str(k))
        if found:
            return found
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    ns = ap.parse_args(argv)
    sys.setrecursionlimit(1000)  # the interpreter's default, as `hilgw` runs with
    rng = random.Random(ns.seed)
    files = [(kind, path, path.read_bytes()) for kind, path in shipped_files()]
    outcome: Counter[str] = Counter()
    crashes: Counter[str] = Counter()
    first: dict[str, str] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(ns.cases):
            kind, path, data = files[n % len(files)]
            case = Path(tmp) / f"{n}-{path.name}"
            case.write_bytes(mutate(data, rng))
            what, tb = run_case(kind, case)
            case.unlink()
            outcome[what] += 1
            if tb is not None:
                last = tb.strip().splitlines()[-1].split(":")[0][:100]
                crashes[last] += 1
                first.setdefault(last, tb)
    elapsed = time.perf_counter() - t0
    result = {
        "cases": ns.cases,
        "seed": ns.seed,
        "files": [str(p.relative_to(ROOT)) for _, p, _ in files],
        "loaded": outcome["loaded"],
        "refused_one_line": outcome["refused"],
        "tracebacks": outcome["traceback"],
        "by_exception": dict(crashes.most_common()),
        "seconds": round(elapsed, 1),
    }
    if ns.json:
        print(json.dumps(result))
    else:
        print(f"{'files':<22} {len(files)} ({', '.join(p.name for _, p, _ in files)})")
        print(f"{'cases':<22} {ns.cases} (seed {ns.seed})")
        print(f"{'loaded':<22} {result['loaded']}")
        print(f"{'refused, one line':<22} {result['refused_one_line']}")
        print(f"{'tracebacks':<22} {result['tracebacks']}")
        for last, count in crashes.most_common():
            print(f"  {count:>5}  {last}")
        print(f"{'seconds':<22} {result['seconds']}")
        for tb in list(first.values())[:3]:
            print(tb, file=sys.stderr)
    return 1 if outcome["traceback"] else 0


if __name__ == "__main__":
    sys.exit(main())
