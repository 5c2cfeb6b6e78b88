"""A stalled broker (SIGSTOP) under 2x load: memory capped, every drop counted
by reason, no cue, ack, authority change or command result dropped.

The session publishes bulk traffic (``reports``, QoS 0 and 1 alternately) at
``rate``/s and critical traffic (``cue``, ``authority``, QoS 1) at
``critical_rate``/s. The broker is stopped (SIGSTOP: the TCP connection stays
up, nothing is read) for ``stall_s``, then continued. A subscriber in its own
process counts what arrives. Figures: RSS before, at the end of the stall and
after; bulk drops by reason; critical messages sent and received (goal: all);
the largest queue depth.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

from benchmarks.faults.broker_restart import read_sink, start_sink, wait_until
from benchmarks.faults.common import Broker, Result, rss_mb
from gateway.config import MqttConfig
from gateway.outputs.mqtt import Outgoing
from gateway.outputs.session import MqttSession

PAD = b"y" * 200


async def run(
    stall_s: float = 30.0,
    rate: int = 10000,
    critical_rate: int = 20,
    queue_size: int = 10000,
    settle_s: float = 2.0,
) -> Result:
    broker = Broker()
    broker.start()
    out = Path(tempfile.mkdtemp(prefix="hilgw-sink-")) / "got.txt"
    sink = start_sink(broker.port, "faults/data/#", out)
    cfg = MqttConfig(port=broker.port, queue_size=queue_size, keepalive_s=max(30, int(stall_s * 2)))
    session = MqttSession(cfg, "faults", client_id="faults-slow")
    task = asyncio.create_task(session.run())
    sent = {"reports": 0, "cue": 0}
    max_depth = 0
    handed: set[int] = set()  # bulk sequences the broker took (QoS 1: PUBACK; QoS 0: written)

    def on_published(m: Outgoing) -> None:
        if m.payload.startswith(b"reports:"):
            handed.add(int(m.payload[8 : m.payload.index(b" ")]))

    session.on_published = on_published

    async def produce() -> None:
        nonlocal max_depth
        per_tick, crit_every = max(1, rate // 100), max(1, 100 // max(1, critical_rate))
        tick = 0
        nxt = time.monotonic()
        while True:
            for _ in range(per_tick):
                n = sent["reports"]
                session.enqueue(
                    Outgoing("faults/data/reports", b"reports:%d " % n + PAD, qos=n % 2, kind="reports")
                )
                sent["reports"] += 1
            if tick % crit_every == 0:
                n = sent["cue"]
                kind = "cue" if n % 2 else "authority"
                session.enqueue(Outgoing("faults/data/cue", b"cue:%d " % n, qos=1, kind=kind))
                sent["cue"] += 1
            tick += 1
            max_depth = max(max_depth, session.queued)
            nxt += 0.01
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    producer = asyncio.create_task(produce())
    try:
        await wait_until(lambda: session.connected, 10)
        await asyncio.sleep(settle_s)
        rss_before = rss_mb()
        broker.pause()
        await asyncio.sleep(stall_s)
        rss_stalled = rss_mb()
        broker.resume()
        await asyncio.sleep(settle_s)
        producer.cancel()
        drained = await wait_until(lambda: session.queued == 0 and not session._inflight, 120, 0.05)
        session.enqueue(Outgoing("faults/data/cue", b"end:", qos=1, kind="cue"))
        await wait_until(lambda: session.queued == 0 and not session._inflight, 10, 0.05)
        rss_after = rss_mb()
    finally:
        producer.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        rows = await asyncio.to_thread(read_sink, sink, out, 20.0)
        broker.stop()
    crit_got = {s for k, s in rows if k == "cue"}
    crit_lost = sent["cue"] - len(crit_got)
    critical_drops = sum(n for (k, _), n in session.dropped.items() if k in ("cue", "authority"))
    bulk_drops = sum(n for (k, _), n in session.dropped.items() if k == "reports")
    got_bulk = {s for k, s in rows if k == "reports"}
    bulk_got = len(got_bulk)
    # The session's own losses must all be counted drops; what the broker
    # took and did not deliver is the broker's (QoS 0 is at most once).
    session_lost = sent["reports"] - len(handed)
    after_broker = handed - got_bulk
    lost_qos1_at_broker = sum(1 for s in after_broker if s % 2 == 1)
    return {
        "experiment": "slow_consumer",
        "stall_s": stall_s,
        "rate": rate,
        "critical_rate": critical_rate,
        "queue_size": queue_size,
        "bulk_sent": sent["reports"],
        "bulk_received": bulk_got,
        "drops_by_reason": {f"{k}/{r}": n for (k, r), n in session.dropped.items()},
        "bulk_not_sent_by_session": session_lost,
        "bulk_lost_after_broker_qos0": len(after_broker) - lost_qos1_at_broker,
        "bulk_lost_after_broker_qos1": lost_qos1_at_broker,
        "critical_sent": sent["cue"],
        "critical_received": len(crit_got),
        "critical_dropped": critical_drops,
        "max_queue_depth": max_depth,
        "drained": drained,
        "rss_before_mb": round(rss_before, 1),
        "rss_stalled_mb": round(rss_stalled, 1),
        "rss_after_mb": round(rss_after, 1),
        "goals": {
            "0 critical lost": crit_lost == 0 and critical_drops == 0,
            "memory capped (stalled - before < 50 MB)": rss_stalled - rss_before < 50,
            "every session drop counted by reason": session_lost == bulk_drops,
        },
    }
