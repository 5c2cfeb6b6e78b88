"""``python -m benchmarks.faults [--quick] [--json] [--only NAME ...]``: run the fault experiments.

Full mode is what benchmarks/faults/RESULTS.md reports (about 15 minutes);
``--quick`` runs each experiment once or twice for a few seconds (what the
default test suite runs, tests/e2e/test_faults_suite.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

from benchmarks.faults import (
    broker_restart,
    can_bus_off,
    clock_step,
    cue_broker,
    gateway_kill,
    serial_unplug,
    slow_consumer,
)
from benchmarks.faults.common import Result, verdict

#: name -> (full-mode call, quick-mode call)
EXPERIMENTS: dict[str, tuple[Callable[[], Awaitable[Result]], Callable[[], Awaitable[Result]]]] = {
    "broker_restart": (
        lambda: broker_restart.run(reps=20, interval_s=30.0, rate=5000, down_s=0.5),
        lambda: broker_restart.run(reps=1, interval_s=1.5, rate=1000, down_s=0.3),
    ),
    "cue_broker": (
        lambda: cue_broker.run(reps=20, grace_s=2.0),
        lambda: cue_broker.run(reps=2, grace_s=1.0),
    ),
    "gateway_kill": (
        lambda: gateway_kill.run(reps=50),
        lambda: gateway_kill.run(reps=2, max_wait_s=0.6),
    ),
    "serial_unplug": (
        lambda: serial_unplug.run(reps=100),
        lambda: serial_unplug.run(reps=1),
    ),
    "can_bus_off": (
        lambda: can_bus_off.run(reps=20),
        lambda: can_bus_off.run(reps=2),
    ),
    "clock_step": (
        lambda: clock_step.run(steps=20),
        lambda: clock_step.run(steps=2),
    ),
    "slow_consumer": (
        lambda: slow_consumer.run(stall_s=60.0, rate=10000),
        lambda: slow_consumer.run(stall_s=1.5, rate=2000, queue_size=1000, settle_s=0.5),
    ),
}

KEY_FIGURES = {
    "broker_restart": [
        "sent",
        "gaps",
        "gaps_never_acked",
        "duplicates",
        "reconnect_p99_s",
        "rss_before_mb",
        "rss_after_mb",
    ],
    "cue_broker": ["reps", "task_deaths", "hold_after_loss_max_s", "audit_verifies", "violations"],
    "gateway_kill": ["reps", "audit_verified", "hold_at_start", "cues_reemitted", "restart_p99_s"],
    "serial_unplug": ["reps", "to_down_p99_s", "to_up_p99_s", "missed", "tasks_threads_fds_after"],
    "can_bus_off": ["reps", "reported_max_ms", "recovered", "reader_threads_left"],
    "clock_step": [
        "steps",
        "cues_accepted",
        "refused_by_launcher",
        "negative_durations",
        "refused_but_shown_acked",
    ],
    "slow_consumer": ["bulk_sent", "drops_by_reason", "critical_sent", "critical_received", "rss_stalled_mb"],
}


def table(results: list[Result]) -> str:
    lines = [f"{'experiment':<16} {'goal':<48} {'verdict':<8} figures", "-" * 110]
    for r in results:
        figs = ", ".join(f"{k}={r.get(k)}" for k in KEY_FIGURES.get(r["experiment"], []))
        for i, (goal, ok) in enumerate(r["goals"].items()):
            name = r["experiment"] if i == 0 else ""
            lines.append(f"{name:<16} {goal:<48} {verdict(ok):<8} {figs if i == 0 else ''}")
    return "\n".join(lines)


async def main(names: list[str], quick: bool, as_json: bool) -> list[Result]:
    results = []
    for name in names:
        started = time.monotonic()
        res = await EXPERIMENTS[name][1 if quick else 0]()
        res["seconds"] = round(time.monotonic() - started, 1)
        res["mode"] = "quick" if quick else "full"
        results.append(res)
        print(json.dumps(res), flush=True)
    if not as_json:
        print()
        print(table(results))
    return results


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="one or two short repetitions of each")
    ap.add_argument("--json", action="store_true", help="only the JSON objects, no table")
    ap.add_argument("--only", nargs="+", choices=sorted(EXPERIMENTS), default=list(EXPERIMENTS))
    ns = ap.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)  # the experiments provoke what the gateway logs
    results = asyncio.run(main(ns.only, ns.quick, ns.json))
    return 0 if all(all(v is not False for v in r["goals"].values()) for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(cli())
