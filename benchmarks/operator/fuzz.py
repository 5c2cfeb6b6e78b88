"""Random and mutated operator commands on the cue path's command topics (issue 23 §2).

Hypothesis generates the payloads: random bytes, valid signed commands with
bits flipped, bytes cut, inserted or replaced, and well-formed commands
whose fields take any value (unknown actions and authorities, huge
sequences, odd strings), some signed with a real operator key. They are
published through a real mosquitto (QoS 1, so the broker loses none) on
``authority/command`` and ``cue/command`` to a running cue path, which must
count every one (received = passed + rejected), answer within its rate, and
never fail: 0 contained faults, the task alive, the audit chain intact.

    .venv/bin/python -m benchmarks.operator.fuzz [--messages 100000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.faults.common import Broker
from gateway.bus import Topic
from gateway.config import MqttConfig
from gateway.cue.audit import verify_file
from gateway.cue.path import CuePath
from gateway.cue.signing import sign
from hilgw.v1 import cue_pb2, track_pb2
from tests.unit.cue_support import GW, KEYS, OP_SECRET, authority_command, cue_command, cue_config

BASE = f"hilgw/{GW}"
TOPICS = {"authority": f"{BASE}/authority/command", "cue": f"{BASE}/cue/command"}


def _strategies() -> st.SearchStrategy[tuple[str, bytes]]:
    now = time.time_ns()
    seeds = [
        authority_command("auto_cue", 10**12, now, gateway=GW).SerializeToString(),
        authority_command("hold", 10**12 + 1, now, gateway=GW).SerializeToString(),
        cue_command(True, 3, 10**12 + 2, now).SerializeToString(),
        bytes.fromhex("08631001"),
    ]

    def mutate(t: tuple[bytes, int, int, str]) -> bytes:
        seed, pos, val, how = t
        pos %= len(seed) + 1
        if how == "flip" and seed:
            p = pos % len(seed)
            return seed[:p] + bytes([seed[p] ^ (1 << (val % 8))]) + seed[p + 1 :]
        if how == "cut":
            return seed[:pos]
        if how == "insert":
            return seed[:pos] + bytes([val]) + seed[pos:]
        return seed[:pos] + bytes([val]) + seed[pos + 1 :]

    mutated = st.tuples(
        st.sampled_from(seeds),
        st.integers(0, 400),
        st.integers(0, 255),
        st.sampled_from(["flip", "cut", "insert", "set"]),
    ).map(mutate)

    @st.composite
    def fielded(draw: st.DrawFn) -> bytes:
        text = st.text(max_size=40)
        if draw(st.booleans()):
            cmd: Any = cue_pb2.AuthorityCommand(requested=draw(st.integers(-5, 2**31 - 1)))
        else:
            cmd = cue_pb2.CueCommand(
                action=draw(st.integers(-5, 2**31 - 1)), cue_id=draw(st.integers(0, 2**64 - 1))
            )
        cmd.operator_id = draw(st.sampled_from(["alice", "", "mallory"]) | text)
        cmd.sequence = draw(st.integers(0, 2**64 - 1))
        cmd.timestamp_ns = draw(st.sampled_from([now, 0, -1, 2**63 - 1]) | st.integers(-(2**63), 2**63 - 1))
        cmd.gateway_id = draw(st.sampled_from([GW, "", "gw-other"]))
        cmd.reason = draw(text)
        if draw(st.booleans()):
            sign(cmd, "op-alice", OP_SECRET)
        else:
            cmd.key_id = draw(st.sampled_from(["", "op-alice", "nobody"]) | text)
            cmd.mac = draw(st.binary(max_size=40))
        return bytes(cmd.SerializeToString())

    payload = st.one_of(st.binary(max_size=200), mutated, fielded(), st.binary(min_size=4097, max_size=6000))
    return st.tuples(st.sampled_from(["authority", "cue"]), payload)


def generate(n: int, seeds: int = 2000) -> list[tuple[str, bytes]]:
    """``n`` payloads: ``seeds`` drawn by hypothesis (its generation is too slow for
    100,000 at once), then the rest by seeded random mutation of those (flips,
    cuts, splices of two), so that every one differs and all are reproducible."""
    drawn: list[tuple[str, bytes]] = []

    @settings(
        max_examples=min(n, seeds), deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(_strategies())
    def collect(msg: tuple[str, bytes]) -> None:
        drawn.append(msg)

    collect()
    rng = random.Random(23)
    out = list(drawn[:n])
    while len(out) < n:
        kind, a = rng.choice(drawn)
        b = rng.choice(drawn)[1]
        how = rng.randrange(4)
        if how == 0 and a:
            p = rng.randrange(len(a))
            a = a[:p] + bytes([a[p] ^ (1 << rng.randrange(8))]) + a[p + 1 :]
        elif how == 1:
            a = a[: rng.randrange(len(a) + 1)]
        elif how == 2:
            a = a[: rng.randrange(len(a) + 1)] + b[rng.randrange(len(b) + 1) :]
        else:
            a = bytes(rng.getrandbits(8) for _ in range(rng.randrange(64)))
        out.append((rng.choice(["authority", "cue"]) if rng.random() < 0.2 else kind, a))
    return out


async def run(n: int) -> dict[str, Any]:
    t0 = time.monotonic()
    msgs = generate(n)
    gen_s = time.monotonic() - t0
    broker = Broker()
    broker.start()
    tmp = Path(tempfile.mkdtemp(prefix="hilgw-fuzz-"))
    cfg = cue_config(tmp, local_hold_signal=False)
    path = CuePath(
        cfg, GW, tracks=Topic[track_pb2.TrackBatch]("t"), mqtt=MqttConfig(port=broker.port), keys=KEYS
    )
    task = asyncio.create_task(path.run())
    import aiomqtt

    try:
        await asyncio.wait_for(path.mqtt_connected.wait(), 10)
        t1 = time.monotonic()
        async with aiomqtt.Client("127.0.0.1", broker.port, max_inflight_messages=200) as pub:
            for kind, payload in msgs:
                await pub.publish(TOPICS[kind], payload, qos=1)
        deadline = time.monotonic() + 120
        # Polling a counter of another task; bounded by the deadline.
        while path.intake.received < len(msgs) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        pub_s = time.monotonic() - t1
        await asyncio.sleep(1.5)  # the last rejection summary
        alive = not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        broker.stop()
    it = path.intake
    res = {
        "messages": len(msgs),
        "generate_s": round(gen_s, 1),
        "publish_and_handle_s": round(pub_s, 1),
        "received": it.received,
        "passed": it.passed,
        "rejected": sum(it.rejected.values()),
        "rejected_by_reason": dict(sorted(it.rejected.items())),
        "unanswered_rate_limited": path.unanswered,
        "contained_faults": path.faults,
        "task_alive": alive,
        "audit_verifies": verify_file(cfg.audit_path).ok,
        "audit_bytes": cfg.audit_path.stat().st_size,
    }
    res["every_message_counted"] = it.received == len(msgs) == it.passed + res["rejected"]
    res["goals_met"] = bool(
        res["every_message_counted"] and path.faults == 0 and alive and res["audit_verifies"]
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args()
    res = asyncio.run(run(ns.messages))
    if ns.json:
        print(json.dumps(res))
        return
    for k, v in res.items():
        print(f"{k:<26} {v}")


if __name__ == "__main__":
    main()
