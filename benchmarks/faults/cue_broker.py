"""The cue path under broker restarts: it never dies, authority follows the
documented policy (docs/cue-path.md §11), the audit shows it.

A cue path (real :class:`~gateway.cue.path.CuePath`, its own MQTT session, an
in-memory launcher with heartbeats, a confirmed track in its volume) runs in
AUTO_CUE, raised by a signed command over the broker. Each repetition
SIGKILLs the broker, alternately for a *blip* (shorter than
``operator_link_timeout_s``: authority and the live cue must be kept) and an
*outage* (longer: HOLD with reason ``operator_link_lost`` no earlier than the
grace, the live cue cancelled); then the broker comes back, the path must
reconnect by itself and an operator raises AUTO_CUE again over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

from benchmarks.faults.broker_restart import wait_until
from benchmarks.faults.common import Broker, Result, pct
from gateway.bus import Topic
from gateway.config import MqttConfig
from gateway.cue.audit import read_records, verify_file
from gateway.cue.link import Heartbeat
from gateway.cue.memory_link import FakeLauncher, MemoryLink
from gateway.cue.path import CuePath
from hilgw.v1 import cue_pb2, track_pb2
from tests.unit.cue_support import GW, KEYS, L1_SECRET, authority_command, cue_config, make_batch, make_track

AUTO, HOLD = cue_pb2.AUTHORITY_AUTO_CUE, cue_pb2.AUTHORITY_HOLD


async def run(reps: int = 10, grace_s: float = 2.0, blip_s: float = 0.3) -> Result:
    import aiomqtt

    broker = Broker()
    broker.start()
    tmp = Path(tempfile.mkdtemp(prefix="hilgw-cue-faults-"))
    cfg = cue_config(tmp, operator_link_timeout_s=grace_s, cue_validity_s=600.0)
    mq = MqttConfig(port=broker.port, reconnect_initial_s=0.05, reconnect_max_s=0.5, reconnect_reset_s=1.0)
    tracks: Topic[track_pb2.TrackBatch] = Topic("tracks")
    path = CuePath(cfg, GW, tracks=tracks, keys=KEYS, fsync=True, mqtt=mq, mqtt_port=broker.port)
    launcher = FakeLauncher("L1", {1: L1_SECRET}, time.time_ns)
    path.add_link(MemoryLink(launcher, path.launcher_event))
    task = asyncio.create_task(path.run())
    seq = [0]

    def authority() -> int:
        return int(path.core.authority.value) if path.core is not None else -1

    async def feed() -> None:
        while True:
            t = time.time_ns()
            tracks.publish(make_batch([make_track(1, t_ns=t)], t))
            path.launcher_event(Heartbeat("L1"))
            await asyncio.sleep(0.05)

    async def raise_auto() -> bool:
        seq[0] += 1
        cmd = authority_command("auto_cue", seq[0], time.time_ns())
        async with aiomqtt.Client("127.0.0.1", broker.port) as op:
            await op.publish(f"hilgw/{GW}/authority/command", cmd.SerializeToString(), qos=1)
        return await wait_until(lambda: authority() == AUTO, 10) and await wait_until(
            lambda: (
                any(c.status == cue_pb2.CUE_STATUS_ACKED for c in path.core.cue_list().cues)  # type: ignore[union-attr]
                if path.core
                else False
            ),
            10,
        )

    feeder = asyncio.create_task(feed())
    violations: list[str] = []
    hold_after: list[float] = []
    reconnect: list[float] = []
    blips = outages = 0
    try:
        await wait_until(lambda: path.mqtt_connected.is_set(), 10)
        if not await raise_auto():
            violations.append("could not raise AUTO_CUE at start")
        for i in range(reps):
            long = i % 2 == 1
            cancels = len(launcher.cancels)

            def cancelled(before: int = cancels) -> bool:
                return len(launcher.cancels) > before

            killed = time.monotonic()
            broker.kill()
            if long:
                outages += 1
                if await wait_until(lambda: authority() == HOLD, grace_s + 5):
                    hold_after.append(time.monotonic() - killed)
                    if hold_after[-1] < grace_s - 0.05:
                        violations.append(f"rep {i}: HOLD after {hold_after[-1]:.2f} s, before the grace")
                else:
                    violations.append(f"rep {i}: no HOLD after an outage of {grace_s + 5} s")
                if not await wait_until(cancelled, 5):
                    violations.append(f"rep {i}: live cue not cancelled on HOLD")
            else:
                blips += 1
                await asyncio.sleep(blip_s)
            up = await asyncio.to_thread(broker.start)
            if await wait_until(lambda: path.mqtt_connected.is_set(), 30):
                reconnect.append(time.monotonic() - up)
            else:
                violations.append(f"rep {i}: no reconnect")
            if task.done():
                violations.append(f"rep {i}: cue path task ended: {task}")
                break
            if not long:
                if authority() != AUTO or len(launcher.cancels) != cancels:
                    violations.append(f"rep {i}: a blip of {blip_s} s changed authority or cancelled a cue")
            elif not await raise_auto():
                violations.append(f"rep {i}: could not raise AUTO_CUE after the outage")
    finally:
        feeder.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        broker.stop()
    records = list(read_records(cfg.audit_path))
    lost = [
        r for r in records if r["kind"] == "authority_changed" and r["data"]["reason"] == "operator_link_lost"
    ]
    audit_ok = verify_file(cfg.audit_path).ok
    if len(lost) != outages:
        violations.append(f"audit: {len(lost)} operator_link_lost changes for {outages} outages")
    return {
        "experiment": "cue_broker",
        "reps": reps,
        "blips": blips,
        "outages": outages,
        "grace_s": grace_s,
        "task_deaths": int(task.done() and not task.cancelled()),
        "hold_after_loss_p50_s": round(pct(hold_after, 50), 3),
        "hold_after_loss_max_s": round(max(hold_after, default=float("nan")), 3),
        "reconnect_p99_s": round(pct(reconnect, 99), 3),
        "audit_records": len(records),
        "audit_verifies": audit_ok,
        "violations": violations,
        "goals": {"never crashes, policy followed, audited": not violations and audit_ok},
    }
