"""The gateway's wall clock stepped by +-2 s under a running cue path (a fake
clock: the cue path's ``clock`` returns UTC + an offset that jumps, the
monotonic clock runs on, as after an NTP step).

An in-memory launcher judges every cue against the true clock (as a launcher
with its own synchronised clock would). Figures: durations the cue path
reports (cue-to-ack latency, validity windows) never negative; cues the
launcher refused as stale that the gateway still shows as acked (goal 0:
no stale cue accepted or taken for live); cues sent while the step lasted that the launcher refused as
``stale``/``not_yet_valid`` (the cost of a stepped clock, where the time-sync
inhibit of docs/cue-path.md §5 is not configured); the audit chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import time
from pathlib import Path

from benchmarks.faults.common import Result
from gateway.bus import Topic
from gateway.cue.audit import verify_file
from gateway.cue.book import Now
from gateway.cue.link import Heartbeat
from gateway.cue.memory_link import FakeLauncher, MemoryLink
from gateway.cue.path import CuePath
from hilgw.v1 import cue_pb2, track_pb2
from tests.unit.cue_support import GW, KEYS, L1_SECRET, authority_command, cue_config, make_batch, make_track


async def run(steps: int = 20, hold_s: float = 0.5, seed: int = 15) -> Result:
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="hilgw-clock-"))
    cfg = cue_config(tmp, cue_validity_s=1.0, ack_timeout_s=0.2, command_max_age_s=10.0)
    offset = [0]

    def clock() -> Now:
        return Now(time.time_ns() + offset[0], time.monotonic_ns())

    tracks: Topic[track_pb2.TrackBatch] = Topic("tracks")
    path = CuePath(cfg, GW, tracks=tracks, keys=KEYS, fsync=False, clock=clock)
    launcher = FakeLauncher("L1", {1: L1_SECRET}, time.time_ns)
    path.add_link(MemoryLink(launcher, path.launcher_event))
    latencies: list[float] = []
    path.on_ack_latency(lambda _l, s: latencies.append(s))
    task = asyncio.create_task(path.run())

    async def feed() -> None:
        while True:
            t = clock().wall_ns  # the picture carries the gateway's (stepped) time, as fusion's would
            tid = 1 + int(time.monotonic() * 5) % 50
            tracks.publish(make_batch([make_track(tid, t_ns=t)], t))
            path.launcher_event(Heartbeat("L1"))
            await asyncio.sleep(0.05)

    feeder = asyncio.create_task(feed())
    try:
        await asyncio.sleep(0.2)
        path.command("authority", authority_command("auto_cue", 1, clock().wall_ns).SerializeToString())
        await asyncio.sleep(1.0)
        for _ in range(steps):
            offset[0] = rng.choice((-2, 2)) * 1_000_000_000
            await asyncio.sleep(hold_s)
            offset[0] = 0
            await asyncio.sleep(hold_s)
    finally:
        feeder.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    windows_bad = sum(1 for c in launcher.accepted if c.valid_until_ns <= c.valid_from_ns)
    # The launcher's own check: accepted means its clock was inside the window.
    refused = {why: sum(1 for w, _ in launcher.rejected if w == why) for why in ("stale", "not_yet_valid")}
    # No stale cue taken for live: none the launcher refused shows ACKED at the gateway.
    refused_ids = {c.cue_id for _, c in launcher.rejected}
    assert path.core is not None
    shown_live = sum(
        1
        for c in path.core.cue_list().cues
        if c.cue_id in refused_ids and c.status == cue_pb2.CUE_STATUS_ACKED
    )
    audit = verify_file(cfg.audit_path)
    negative = sum(1 for s in latencies if s < 0)
    return {
        "experiment": "clock_step",
        "steps": steps,
        "cues_accepted": len(launcher.accepted),
        "refused_by_launcher": refused,
        "negative_durations": negative,
        "bad_windows": windows_bad,
        "refused_but_shown_acked": shown_live,
        "ack_latency_min_s": round(min(latencies, default=float("nan")), 4),
        "audit": str(audit),
        "goals": {
            "no negative durations": negative == 0 and windows_bad == 0,
            "no stale cue accepted or taken for live": shown_live == 0 and bool(launcher.accepted),
            "audit verifies": audit.ok,
        },
    }
