#!/usr/bin/env python3
"""Where the gateway's time goes: a cProfile dump summed by pipeline stage.

    .venv/bin/python benchmarks/bench_latency.py --rates max --profile /tmp/gw.prof
    .venv/bin/python benchmarks/profile_breakdown.py /tmp/gw.prof.max [--json]

Each function's own time (``tottime``) goes to the first stage whose pattern
matches its file or name, so the stages add up to the profiled total. C
functions (numpy, protobuf) go to the stage of the Python function that
called them, split by that caller's share; a few are unambiguous by name
(``posix.read`` is the transport, ``epoll.poll`` is the loop waiting: idle).
"""

from __future__ import annotations

import argparse
import json
import pstats
import sys

#: (stage, substrings of "file:function"); the first match wins.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("idle (epoll wait)", ("select.epoll",)),
    ("transport read", ("posix.read", "serial_asyncio", "/transports/", "serial/serialposix")),
    ("decode", ("/drivers/",)),
    ("report protobuf", ("reports_to_proto",)),
    ("normalise", ("normalise.py:", "geo.py", "/devices/")),
    ("track protobuf", ("tracks_to_proto",)),
    ("fusion", ("/fusion/", "fusion_stage")),
    ("bus + MQTT feed", ("bus.py", "supervisor.py", "stages.py", "prometheus_client")),
    ("MQTT publish", ("paho", "aiomqtt", "session.py", "_socket.socket", "outputs/")),
    ("event loop", ("asyncio", "selectors", "_contextvars", "events.py")),
    ("start-up (imports)", ("importlib", "<frozen", "dataclasses.py")),
)


#: C functions named for themselves, not for their caller.
_BY_NAME = ("select.epoll", "posix.read", "_socket.socket")


def _stage(file: str, func: str) -> str:
    key = f"{file}:{func}"
    for name, pats in STAGES:
        if any(p in key for p in pats):
            return name
    return "other"


def breakdown(path: str) -> dict[str, float]:
    st = pstats.Stats(path)
    out = {name: 0.0 for name, _ in STAGES}
    out["other"] = 0.0
    for (file, _line, func), (_cc, _nc, tt, _ct, callers) in st.stats.items():  # type: ignore[attr-defined]
        by_caller = file == "~" or "site-packages/numpy/" in file  # C, or numpy's thin wrappers
        if not by_caller or any(p in func for p in _BY_NAME) or not callers:
            out[_stage(file, func)] += tt
            continue
        # Its time by caller (pstats keeps tottime per caller); a numpy
        # wrapper calling numpy C stays one level short: counted as "other".
        for (cfile, _cline, cfunc), (_c, _n, ctt, _ctt) in callers.items():
            out[_stage(cfile, cfunc)] += ctt
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args()
    b = breakdown(ns.profile)
    total = sum(b.values())
    busy = total - b["idle (epoll wait)"]
    if ns.json:
        print(json.dumps({"total_s": total, "busy_s": busy, "stages_s": b}))
        return 0
    print(f"{'stage':<20} {'seconds':>8} {'% of busy':>10}")
    for name, t in sorted(b.items(), key=lambda kv: -kv[1]):
        share = "" if name.startswith("idle") else f"{100 * t / busy:9.1f}%"
        print(f"{name:<20} {t:8.2f} {share:>10}")
    print(f"{'total (busy)':<20} {total:8.2f} ({busy:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
