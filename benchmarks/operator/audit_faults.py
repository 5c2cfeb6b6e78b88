"""Fault injection at every step of the audit flush (issue 23 §5), ``--runs`` times.

Each run appends records and flushes on a log that grows run after run; one
fault is armed at a random step (``write``, a short write then a failing
one, ``fsync``, the head file's write, its rename) and a random call; after
it the gateway either dies at once or flushes again; then, as after a
SIGKILL, the log is reopened (the cue path's start: verify, restore) and a
cue core is started on it. Counted: runs whose fault fired, runs whose chain
verified (with the head file's MAC), runs whose cue path started, records
written twice (must be 0).

    .venv/bin/python -m benchmarks.operator.audit_faults [--runs 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gateway.cue.audit import AuditLog, verify_file
from gateway.cue.book import Now
from gateway.cue.core import CueCore
from tests.unit.cue_support import GW, KEYS, M0, T0, cue_config
from tests.unit.test_audit_faults import KEY, STEPS, _campaign


def run(runs: int, seed: int = 23) -> dict[str, Any]:
    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="hilgw-auditfaults-"))
    fired = verified = started = 0
    failures: Counter[str] = Counter()
    t0 = time.monotonic()
    for i in range(runs):
        d = root / str(i % 20)  # 20 logs, each through ~runs/20 faults
        d.mkdir(exist_ok=True)
        try:
            with pytest.MonkeyPatch.context() as mp:
                fired += _campaign(d, rng, mp)
            verified += verify_file(d / "audit.jsonl", head_key=KEY).ok
        except AssertionError as exc:
            failures[str(exc)[:80]] += 1
            continue
        cfg = cue_config(d)
        audit, history = AuditLog.open(cfg.audit_path, fsync=False, head_key=KEY)
        CueCore(cfg, KEYS, GW, audit, Now(T0, M0), history, sealers={}).tick(Now(T0, M0))
        audit.close()
        started += 1
    res = {
        "runs": runs,
        "steps": list(STEPS),
        "faults_fired": fired,
        "chain_verified": verified,
        "cue_path_started": started,
        "failures": dict(failures),
        "seconds": round(time.monotonic() - t0, 1),
    }
    res["goals_met"] = verified == runs and started == runs and not failures
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args()
    res = run(ns.runs)
    if ns.json:
        print(json.dumps(res))
        return
    for k, v in res.items():
        print(f"{k:<18} {v}")


if __name__ == "__main__":
    main()
