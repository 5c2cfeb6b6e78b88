"""Gateway SIGKILL at random points with cues flowing (``cue_child.py``).

Each repetition starts the cue-path process on the same directory (audit
log, launcher record), waits a random 0.3 s to ``max_wait_s`` while it cues, and SIGKILLs
it. Figures: the audit chain verifies after every kill (a torn last line,
which the next start cuts off and records, is counted apart), the authority
at every start is HOLD, no cue id is sent again by a later process (0
re-emitted), restart time (spawn to the cue path running, p99; goal < 3 s;
most of it is Python start-up and imports).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.faults.common import Result, pct
from gateway.cue.audit import verify_file


async def run(reps: int = 50, seed: int = 15, max_wait_s: float = 2.0) -> Result:
    rng = random.Random(seed)
    d = Path(tempfile.mkdtemp(prefix="hilgw-gwkill-"))
    from tests.e2e.cue_rig import write_keys_file  # the keys file the cue config names

    write_keys_file(d)
    restart: list[float] = []
    starts: list[str] = []
    bad: list[str] = []
    torn = 0
    try:
        for i in range(reps):
            t0 = time.time_ns()
            proc = subprocess.Popen(  # noqa: ASYNC220  # a plain pipe read in a thread below
                [sys.executable, "-m", "benchmarks.faults.cue_child", str(d), str(i)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)
            parts = line.decode().split()
            if len(parts) != 3 or parts[0] != "ready":
                bad.append(f"run {i}: no start ({line!r}, exit {proc.poll()})")
                proc.kill()
                proc.wait()
                continue
            starts.append(parts[1])
            restart.append((int(parts[2]) - t0) * 1e-9)
            await asyncio.sleep(rng.uniform(0.3, max_wait_s))
            proc.kill()
            proc.wait()
            res = verify_file(d / "audit.jsonl")
            if not res.ok:
                if res.first_bad == res.records and "torn" in res.why:
                    torn += 1  # cut off and recorded (log_recovered) by the next start
                else:
                    bad.append(f"run {i}: audit {res}")
        runs_of: dict[int, set[str]] = {}
        for line in (d / "launcher.txt").read_text().splitlines():
            run_i, kind, cue_id, _seq = line.split()
            if kind == "cue":
                runs_of.setdefault(int(cue_id), set()).add(run_i)
        reemitted = sum(1 for r in runs_of.values() if len(r) > 1)
        cues = len(runs_of)
        final = verify_file(d / "audit.jsonl")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    hold = sum(1 for s in starts if s == "HOLD")
    return {
        "experiment": "gateway_kill",
        "reps": reps,
        "starts": len(starts),
        "hold_at_start": hold,
        "cues_accepted": cues,
        "cues_reemitted": reemitted,
        "audit_verified": reps - len([b for b in bad if "audit" in b]),
        "torn_tails": torn,
        "final_audit": str(final),
        "restart_p50_s": round(pct(restart, 50), 3),
        "restart_p99_s": round(pct(restart, 99), 3),
        "problems": bad,
        "goals": {
            "audit verifies every time": not [b for b in bad if "audit" in b],
            "HOLD after every start": hold == len(starts) == reps,
            "0 cues re-emitted": reemitted == 0,
            "restart p99 < 3 s": pct(restart, 99) < 3.0,
        },
    }
