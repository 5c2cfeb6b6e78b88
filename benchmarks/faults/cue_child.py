"""The process that ``gateway_kill`` SIGKILLs: a cue path (fsync'ed audit log,
no MQTT) cueing an in-memory launcher whose acceptances outlive the process.

    python -m benchmarks.faults.cue_child DIR RUN

Prints ``ready <authority at start> <unix ns>`` once its cue path runs, then
raises AUTO_CUE (a signed command) and feeds a track picture whose track ids
change every 0.2 s, so cues and cancels flow until it is killed. Every cue
and cancel the launcher accepts is appended (flushed) to DIR/launcher.txt as
``RUN kind cue_id sequence``; the launcher's sequence floor is read back from
there at start, as a real launcher keeps it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from gateway.bus import Topic
from gateway.cue.authority import authority_name
from gateway.cue.link import Heartbeat
from gateway.cue.memory_link import FakeLauncher, MemoryLink
from gateway.cue.path import CuePath
from gateway.cue.seal import Sealed
from hilgw.v1 import cue_pb2, track_pb2
from tests.unit.cue_support import GW, KEYS, L1_SECRET, authority_command, cue_config, make_batch, make_track


async def main(d: Path, run: int) -> None:
    cfg = cue_config(d, cue_validity_s=1.0, ack_timeout_s=0.2)
    tracks: Topic[track_pb2.TrackBatch] = Topic("tracks")
    path = CuePath(cfg, GW, tracks=tracks, keys=KEYS, fsync=True)
    log = (d / "launcher.txt").open("a")
    floor = 0
    if (d / "launcher.txt").exists():
        for line in (d / "launcher.txt").read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:
                floor = max(floor, int(parts[3]))
    launcher = FakeLauncher("L1", {1: L1_SECRET}, time.time_ns, last_sequence=floor)
    link = MemoryLink(launcher, path.launcher_event)
    path.add_link(link)
    inner_cue, inner_cancel = launcher.receive_cue, launcher.receive_cancel

    def receive_cue(sealed: Sealed) -> cue_pb2.CueAck | None:
        n = len(launcher.accepted)
        ack = inner_cue(sealed)
        cue = sealed.message
        if len(launcher.accepted) > n:
            log.write(f"{run} cue {cue.cue_id} {cue.sequence}\n")
            log.flush()
        return ack

    def receive_cancel(sealed: Sealed) -> None:
        n = len(launcher.cancels)
        inner_cancel(sealed)
        cancel = sealed.message
        if len(launcher.cancels) > n:
            log.write(f"{run} cancel {cancel.cue_id} {cancel.sequence}\n")
            log.flush()

    launcher.receive_cue = receive_cue  # type: ignore[method-assign]
    launcher.receive_cancel = receive_cancel  # type: ignore[method-assign]
    first: list[str] = []

    def on_state(a: cue_pb2.AuthorityState, _c: cue_pb2.CueList) -> None:
        if not first:
            first.append(authority_name(a.authority))
            print(f"ready {first[0]} {time.time_ns()}", flush=True)

    path.on_state(on_state)
    task = asyncio.create_task(path.run())
    await asyncio.sleep(0.1)
    # Sequences must rise across restarts (the journal keeps the last): use the clock.
    path.command(
        "authority", authority_command("auto_cue", time.time_ns() // 1000, time.time_ns()).SerializeToString()
    )
    while not task.done():
        t = time.time_ns()
        tid = 1 + int(time.monotonic() * 5) % 50
        tracks.publish(make_batch([make_track(tid, t_ns=t)], t))
        path.launcher_event(Heartbeat("L1"))
        await asyncio.sleep(0.05)
    await task


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
