"""Broker SIGKILL + restart under load: what a QoS 1 flow through the gateway's
MQTT session loses.

The gateway's :class:`~gateway.outputs.session.MqttSession` publishes numbered
QoS 1 messages at ``rate``/s; a subscriber in its own process (``sink.py``,
persistent session, QoS 1) records what arrives. The broker is SIGKILLed
``reps`` times, down for ``down_s`` each time, then started again.

Figures: sequence gaps after dedupe (goal 0), duplicates, reconnect time from
the broker's port answering again to the session connected (p50/p99, goal
p99 < 2 s), the publisher's RSS before the first kill and after the last,
messages dropped by the session's queue (by reason).

The broker runs without persistence (as the test broker and the lab broker
do): a message it has acknowledged (PUBACK) but not yet written to the
subscriber dies with it, which no publisher can see or resend. Such a loss
shows as a gap here and is the broker's, not the session's: the session
resends everything not acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.faults.common import Broker, Result, pct, rss_mb
from gateway.config import MqttConfig
from gateway.outputs.mqtt import Outgoing
from gateway.outputs.session import MqttSession

PAD = b"x" * 80


def start_sink(port: int, topic: str, out: Path) -> subprocess.Popen[bytes]:
    sink = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.faults.sink", str(port), topic, str(out)], stdout=subprocess.PIPE
    )
    assert sink.stdout is not None
    sink.stdout.readline()  # "ready"
    return sink


def read_sink(sink: subprocess.Popen[bytes], out: Path, wait_s: float = 0.0) -> list[tuple[str, int]]:
    """Its records, after it saw the ``end:`` marker (up to ``wait_s``) or now."""
    try:
        sink.wait(wait_s)
    except subprocess.TimeoutExpired:
        sink.terminate()
        sink.wait(30)
    rows = []
    for line in out.read_bytes().splitlines():
        kind, _, seq = line.partition(b" ")
        rows.append((kind.decode(), int(seq)))
    return rows


async def wait_until(pred: object, timeout_s: float, step_s: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout_s
    while not pred():  # type: ignore[operator]
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step_s)
    return True


async def run(reps: int = 20, interval_s: float = 30.0, rate: int = 5000, down_s: float = 0.5) -> Result:
    broker = Broker()
    broker.start()
    out = Path(tempfile.mkdtemp(prefix="hilgw-sink-")) / "got.txt"
    sink = start_sink(broker.port, "faults/load", out)
    cfg = MqttConfig(port=broker.port, queue_size=200_000, reconnect_reset_s=min(10.0, interval_s / 2))
    session = MqttSession(cfg, "faults", client_id="faults-pub")
    task = asyncio.create_task(session.run())
    sent = 0
    acked: dict[int, float] = {}  # sequence -> monotonic time of its PUBACK

    def on_acked(m: Outgoing) -> None:
        if m.payload.startswith(b"load:"):
            acked[int(m.payload[5 : m.payload.index(b" ")])] = time.monotonic()

    session.on_published = on_acked

    async def produce() -> None:
        nonlocal sent
        per_tick = max(1, rate // 100)
        nxt = time.monotonic()
        while True:
            for _ in range(per_tick):
                session.enqueue(Outgoing("faults/load", b"load:%d " % sent + PAD, qos=1, kind="reports"))
                sent += 1
            nxt += 0.01
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    reconnect: list[float] = []
    outage: list[float] = []
    failed_reconnects = 0
    t0 = time.monotonic()
    rss_before = rss_after = float("nan")
    producer = asyncio.create_task(produce())
    try:
        await wait_until(lambda: session.connected, 10)
        await asyncio.sleep(min(2.0, interval_s / 2))
        rss_before = rss_mb()
        for _ in range(reps):
            await asyncio.sleep(max(0.0, interval_s - down_s))
            killed = time.monotonic()
            broker.kill()
            await asyncio.sleep(down_s)
            up = await asyncio.to_thread(broker.start)
            if await wait_until(lambda: session.connected, 30):
                done = time.monotonic()
                reconnect.append(done - up)
                outage.append(done - killed)
            else:
                failed_reconnects += 1
        await asyncio.sleep(1.0)
        producer.cancel()
        elapsed = time.monotonic() - t0
        drained = await wait_until(lambda: session.queued == 0 and not session._inflight, 60, 0.05)
        left = session.queued + len(session._inflight)
        session.enqueue(Outgoing("faults/load", b"end:", qos=1, kind="reports"))
        await wait_until(lambda: session.queued == 0 and not session._inflight, 10, 0.05)
        rss_after = rss_mb()
    finally:
        producer.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        rows = await asyncio.to_thread(read_sink, sink, out, 20.0)
        broker.stop()
    seqs = [s for k, s in rows if k == "load"]
    unique = set(seqs)
    missing = set(range(sent)) - unique
    gaps = len(missing)
    never_acked = [s for s in missing if s not in acked]
    counted = sum(session.dropped.values())

    # Acknowledged by the broker (PUBACK), never delivered: in the broker's
    # memory (its queue for a subscriber that lags) when it was SIGKILLed.
    lost_by_broker = sum(1 for s in missing if s in acked)
    return {
        "experiment": "broker_restart",
        "reps": reps,
        "interval_s": interval_s,
        "down_s": down_s,
        "rate_target": rate,
        "rate_achieved": round(sent / elapsed, 1),
        "sent": sent,
        "received": len(seqs),
        "gaps": gaps,
        "duplicates": len(seqs) - len(unique),
        "gaps_never_acked": len(never_acked),
        "session_drops_counted": counted,
        "left_in_queue": left,
        "gaps_acked_then_lost_by_broker": lost_by_broker,
        "drained": drained,
        "queue_drops": {f"{k}/{r}": n for (k, r), n in session.dropped.items()},
        "reconnect_p50_s": round(pct(reconnect, 50), 3),
        "reconnect_p99_s": round(pct(reconnect, 99), 3),
        "reconnect_max_s": round(max(reconnect, default=float("nan")), 3),
        "outage_p99_s": round(pct(outage, 99), 3),
        "failed_reconnects": failed_reconnects,
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(rss_after, 1),
        "goals": {
            "gaps == 0": gaps == 0,
            # every message the session did not deliver is a counted drop or still queued
            "undelivered = counted drops + queued": sent - len(acked) == counted + left,
            "reconnect p99 < 2 s": pct(reconnect, 99) < 2.0 and failed_reconnects == 0,
        },
    }
