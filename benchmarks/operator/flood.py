"""HOLD under a flood of invalid operator commands (issue 23 §1), on a real mosquitto.

One publisher process floods both command topics at its full rate (QoS 0:
the 4-byte unknown-action CueCommand, random bytes, 5 KB junk, and replays of
a captured signed command). Meanwhile an operator (another process, its own
MQTT client) raises AUTO_CUE and then publishes a signed HOLD, ``--tries``
times; the HOLD's latency is from just before its publish to the moment the
cue path's state says HOLD with that command's sequence (journaled, in
effect). A local HOLD (the 0600 UNIX socket) is timed from the client's
connect to the latch (no cue leaves: the moment the switch's own process,
gateway.cue.hold_proc, set the shared latch; ``local_hold_priority`` says
whether it ran SCHED_FIFO) and to the gateway's "OK HOLD" answer (journaled,
in effect). Run it beside two CPU-busy processes to see a host with no core
to spare (benchmarks/operator/RESULTS.md). The audit log's growth over the run is measured on
disk (fsync on). The gateway's cue path reads the command topics on its own
connection (``[mqtt] command_connection``, gateway.outputs.session.command_session).

Brokers (``--broker``):

* ``plain``: anonymous TCP, mosquitto's defaults (a lab broker with no ACL);
  the flooder is anybody.
* ``deploy``: deploy/mosquitto/hilgw.conf and hilgw.acl as shipped (TLS,
  client certificates, the ACL, the limits), port and paths rewritten, with a
  throw-away PKI. ``--attacker unauthorised`` floods with a valid certificate
  that may not write the command topics (consumer-1: the ACL drops it);
  ``--attacker operator`` with an operator's certificate (a compromised
  operator station, which no ACL can stop) on the shared command topics;
  ``--attacker operator-lane``: that station floods its own command lane
  (docs/cue-path.md §12; keys bound to operator-1 and operator-2) while
  operator B (operator-2) sends the HOLDs on B's lane; ``--attacker
  same-identity``: the HOLDs come from the flooding identity itself, on the
  flooded lane (what only the local HOLD answers).

    .venv/bin/python -m benchmarks.operator.flood [--broker plain|deploy]
        [--attacker unauthorised|operator|operator-lane|same-identity]
        [--seconds 30] [--tries 20] [--rcvbuf N] [--json]

Goals: signed HOLD p99 <= 250 ms, local HOLD p99 <= 50 ms, audit growth a few MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.faults.common import Broker, pct
from gateway.bus import Topic
from gateway.config import MqttConfig, MqttTlsConfig
from gateway.cue.keys import Key, KeyRing
from gateway.cue.local_hold import request_local_hold
from gateway.cue.path import CuePath
from gateway.outputs.commands import command_session
from gateway.outputs.mqtt import tls_context
from hilgw.v1 import cue_pb2, track_pb2
from tests.unit.cue_support import KEYS, authority_command, cue_config

HOLD = cue_pb2.AUTHORITY_HOLD
#: The gateway id the deploy ACL is written for (deploy/mosquitto/hilgw.acl).
DEPLOY_GW = "field-1"
#: Who floods, by --attacker: the certificate CN it connects with (deploy broker).
ATTACKERS = {
    "unauthorised": "consumer-1",
    "operator": "operator-1",
    "operator-lane": "operator-1",
    "same-identity": "operator-1",
}
#: Lane attackers: the HOLDs' identity (operator B, or the flooder itself).
LANE_HOLDER = {"operator-lane": "operator-2", "same-identity": "operator-1"}
#: Keys bound to the deploy PKI's operator CNs (the lanes' operator ids).
LANE_KEYS = {"operator-1": ("op-1", "71" * 32), "operator-2": ("op-2", "72" * 32)}


def _paho(client_id: str, port: int, tls: dict[str, str] | None) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    if tls is not None:
        c.tls_set_context(tls_context(MqttTlsConfig(**tls)))  # type: ignore[arg-type]
    return c


def flooder(
    port: int, seconds: float, gw: str, tls: dict[str, str] | None, topics: list[str] | None = None
) -> None:
    """The attacker: publishes junk as fast as paho lets it, then prints how much."""
    captured = authority_command("auto_cue", 5, time.time_ns(), gateway=gw).SerializeToString()
    rng = random.Random(1)
    payloads = [bytes.fromhex("08631001"), b"\x00" * 5000, captured] + [
        rng.randbytes(rng.randint(1, 64)) for _ in range(64)
    ]
    c = _paho(f"flood-{os.getpid()}", port, tls)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    topics = topics or [f"hilgw/{gw}/authority/command", f"hilgw/{gw}/cue/command"]
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(200):
            c.publish(topics[n & 1], payloads[n % len(payloads)], qos=0)
            n += 1
    c.loop_stop()
    c.disconnect()
    print(json.dumps({"sent": n, "seconds": seconds}))


def operator(
    port: int,
    gw: str,
    tls: dict[str, str] | None,
    tries: int,
    spacing_s: float,
    sock: str,
    lane: str | None = None,
) -> None:
    """The operator, in its own process (not sharing the gateway's GIL): signed
    HOLDs over MQTT, and the local switch; prints when each was sent.
    ``lane``: the operator id whose lane it publishes on, with that id's key."""
    c = _paho("operator", port, tls)
    c.connect("127.0.0.1", port)
    c.loop_start()
    topic = f"hilgw/{gw}/authority/command"
    if lane is not None:
        topic = f"hilgw/{gw}/lane/{lane}/authority"
        key_id, secret = LANE_KEYS[lane]
        signer = functools.partial(
            authority_command, key_id=key_id, secret=bytes.fromhex(secret), operator=lane, gateway=gw
        )
    else:
        signer = functools.partial(authority_command, gateway=gw)
    seq = 100
    sent: dict[int, int] = {}
    local: list[tuple[int, float, str]] = []  # (wall ns before connect, seconds to the answer, answer)
    for _ in range(tries):
        seq += 1
        c.publish(topic, signer("auto_cue", seq, time.time_ns()).SerializeToString(), qos=1)
        time.sleep(spacing_s / 3)
        seq += 1
        t = time.time_ns()
        sent[seq] = t
        c.publish(topic, signer("hold", seq, t).SerializeToString(), qos=1)
        time.sleep(spacing_s / 3)
        seq += 1  # and the local switch, from AUTO_CUE again
        c.publish(topic, signer("auto_cue", seq, time.time_ns()).SerializeToString(), qos=1)
        time.sleep(spacing_s / 3)
        t0, t0_ns = time.perf_counter(), time.time_ns()
        try:
            answer = asyncio.run(request_local_hold(Path(sock), 5.0))
        except (OSError, TimeoutError) as exc:
            answer = f"ERR {exc}"
        local.append((t0_ns, time.perf_counter() - t0, answer))
    c.loop_stop()
    c.disconnect()
    print(json.dumps({"sent": sent, "local": local}))


def _deploy_broker(tmp: Path) -> tuple[Broker, Any]:
    """mosquitto with deploy/mosquitto as shipped (tests/e2e/test_broker_tls.py rewrites it)."""
    from tests.e2e.test_broker_tls import deploy_conf, make_pki

    pki = make_pki(tmp / "pki", extra=("operator-2",))
    broker = Broker()
    broker.conf.write_text(deploy_conf(broker.port, pki, log_dest="none"))
    return broker, pki


def _tls(pki: Any, cn: str) -> dict[str, str]:
    ident = pki.clients[cn]
    return {"ca_file": str(pki.ca), "cert_file": str(ident.cert), "key_file": str(ident.key)}


async def run(
    seconds: float, tries: int, broker_kind: str, attacker: str, rcvbuf: int | None
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="hilgw-flood-"))
    tls_gw = tls_flood = tls_op = None
    holder = LANE_HOLDER.get(attacker) if broker_kind == "deploy" else None
    keys = KEYS
    flood_topics: list[str] | None = None
    if broker_kind == "deploy":
        broker, pki = _deploy_broker(tmp)
        gw = DEPLOY_GW
        tls_gw, tls_flood, tls_op = (
            _tls(pki, "hilgw-field-1"),
            _tls(pki, ATTACKERS[attacker]),
            _tls(pki, holder or "operator-1"),
        )
        if holder is not None:  # lanes: keys bound to the certificate CNs (docs/cue-path.md §12)
            keys = KeyRing(
                operator={k: Key(k, bytes.fromhex(h), op) for op, (k, h) in LANE_KEYS.items()},
                gateway=KEYS.gateway,
            )
            flood_topics = [f"hilgw/{gw}/lane/{ATTACKERS[attacker]}/{t}" for t in ("authority", "cue")]
    else:
        broker, gw = Broker(), "gw-test"
        # mosquitto's own defaults for what a slow subscriber may have waiting (1000
        # messages; QoS 0 beyond that is dropped at the broker); the faults suite's
        # broker raises them for its own purpose.
        broker.conf.write_text(
            f"listener {broker.port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n"
        )
    broker.start()
    sock = tmp / "hold.sock"
    cfg = cue_config(tmp, local_hold_socket=str(sock), local_hold_signal=False, launchers=[])
    over: dict[str, Any] = {} if rcvbuf is None else {"command_rcvbuf_bytes": rcvbuf}
    mqtt = MqttConfig(port=broker.port, tls=MqttTlsConfig(**tls_gw) if tls_gw else None, **over)  # type: ignore[arg-type]
    session = command_session(mqtt, gw)  # as the supervisor wires it: the cue path's own connection
    path = CuePath(
        cfg, gw, tracks=Topic[track_pb2.TrackBatch]("tracks"), mqtt=mqtt, session=session, keys=keys
    )
    effect: dict[int, int] = {}
    latches: list[tuple[int, bool]] = []  # (wall ns, by the local switch's thread)
    main = threading.main_thread()

    def on_state(auth: cue_pb2.AuthorityState, _cues: cue_pb2.CueList) -> None:
        if auth.authority == HOLD and auth.sequence and auth.sequence not in effect:
            effect[auth.sequence] = time.time_ns()

    latch = path.latch

    def logged_latch() -> None:
        latch()
        latches.append((path.last_latch_ns, threading.current_thread() is not main))

    path.latch = logged_latch  # type: ignore[method-assign]  # observe, before run() hands it out
    path.on_state(on_state)
    tasks = [asyncio.create_task(session.run()), asyncio.create_task(path.run())]
    me = [sys.executable, "-m", "benchmarks.operator.flood"]
    try:
        await asyncio.wait_for(path.mqtt_connected.wait(), 10)
        deadline = time.monotonic() + 10
        while holder is not None and time.monotonic() < deadline:  # the lanes subscribed (SUBACK)
            if len(path.lanes) == 2 and all(x.acks for s in path.lanes.values() for x in s._subs):
                break
            await asyncio.sleep(0.05)
        audit0 = cfg.audit_path.stat().st_size
        flood = await asyncio.create_subprocess_exec(
            *me,
            "--flooder",
            json.dumps([broker.port, seconds, gw, tls_flood, flood_topics]),
            stdout=asyncio.subprocess.PIPE,
        )
        await asyncio.sleep(min(2.0, seconds / 10))  # the flood is at full rate before the first try
        spacing = (seconds - 4) / tries
        op = await asyncio.create_subprocess_exec(
            *me,
            *["--operator", json.dumps([broker.port, gw, tls_op, tries, spacing, str(sock), holder])],
            stdout=asyncio.subprocess.PIPE,
        )
        op_out, _ = await op.communicate()
        out, _ = await flood.communicate()
        ops = json.loads(op_out.decode().strip().splitlines()[-1])
        sent = {int(k): v for k, v in ops["sent"].items()}
        # Every HOLD published is counted until it takes effect (bounded: 30 s after the flood).
        end = time.monotonic() + 30
        while any(s not in effect for s in sent) and time.monotonic() < end:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # the last summary
        flood_stats = json.loads(out.decode().strip().splitlines()[-1])
        audit_growth = cfg.audit_path.stat().st_size - audit0
        drops = session.disconnects - session.sheds  # lost, not shed (before ours is closed)
        lane_sheds = {op: s.sheds for op, s in path.lanes.items()}
        lane_read = {op: dict(s.received) for op, s in path.lanes.items()}
        local_ns = list(path.local_hold.latched_ns) if path.local_hold is not None else []
        local_prio = path.local_hold.priority if path.local_hold is not None else None
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        broker.stop()
    lat = [(effect[s] - t) * 1e-9 for s, t in sent.items() if s in effect]
    local_t = [t0 for t0, _, _ in ops["local"]]
    local_latch = []
    # When the hold process set the shared latch (wall ns, its own clock read); an
    # in-process latch by another thread if there is no hold process's record.
    by_proc = sorted(local_ns) or sorted(ns for ns, by_local in latches if by_local)
    for t0 in local_t:  # the first latch by the local switch after the client connected
        first = next((ns for ns in by_proc if ns >= t0), None)
        if first is not None:
            local_latch.append((first - t0) * 1e-9)
    hold_latch = []
    for t in sent.values():  # a verified HOLD latches in the loop's thread on arrival, before its journal
        first = next((ns for ns, by_local in latches if not by_local and ns >= t), None)
        if first is not None:
            hold_latch.append((first - t) * 1e-9)
    local_s = [dt for _, dt, _ in ops["local"]]
    local_ok = [a for _, _, a in ops["local"] if a.startswith("OK HOLD")]
    res = {
        "broker": broker_kind,
        "attacker": attacker if broker_kind == "deploy" else "anonymous",
        "command_rcvbuf_bytes": mqtt.command_rcvbuf_bytes,
        "flood_seconds": seconds,
        "flood_sent": flood_stats["sent"],
        "flood_rate_per_s": round(flood_stats["sent"] / seconds),
        "gateway_received": path.intake.received,
        "rejected": dict(sorted(path.intake.rejected.items())),
        "command_connection_drops": drops,
        "command_connection_sheds": session.sheds,
        "hold_from": (holder + " lane") if holder else "shared topic",
        "lane_sheds": lane_sheds,
        "lane_received": lane_read,
        "flood_read_then_shed": session.received["shed"],
        "holds_sent": len(sent),
        "holds_in_effect": len(lat),
        "hold_journaled_p50_ms": round(pct(lat, 50) * 1e3, 1),
        "hold_journaled_p99_ms": round(pct(lat, 99) * 1e3, 1),
        "hold_journaled_max_ms": round(max(lat, default=float("nan")) * 1e3, 1),
        "hold_latch_p50_ms": round(pct(hold_latch, 50) * 1e3, 1),
        "hold_latch_p99_ms": round(pct(hold_latch, 99) * 1e3, 1),
        "local_holds": len(local_s),
        "local_latched": len(local_latch),
        "local_latch_p50_ms": round(pct(local_latch, 50) * 1e3, 2),
        "local_latch_p99_ms": round(pct(local_latch, 99) * 1e3, 2),
        "local_holds_ok": len(local_ok),
        "local_hold_priority": local_prio,
        "local_journaled_p50_ms": round(pct(local_s, 50) * 1e3, 2),
        "local_journaled_p99_ms": round(pct(local_s, 99) * 1e3, 2),
        "audit_growth_bytes": audit_growth,
        "cue_path_faults": path.faults,
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }
    res["goals_met"] = bool(
        res["holds_in_effect"] == res["holds_sent"]
        and res["hold_journaled_p99_ms"] <= 250
        and res["local_holds_ok"] == res["local_holds"]
        and res["local_latch_p99_ms"] <= 50
        and audit_growth <= 5 * 2**20
        and path.faults == 0
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--broker", choices=["plain", "deploy"], default="plain")
    ap.add_argument("--attacker", choices=sorted(ATTACKERS), default="unauthorised")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--tries", type=int, default=20)
    ap.add_argument("--rcvbuf", type=int, default=None, help="[mqtt] command_rcvbuf_bytes (0: OS default)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--flooder", help=argparse.SUPPRESS)
    ap.add_argument("--operator", help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.flooder:
        flooder(*json.loads(ns.flooder))
        return
    if ns.operator:
        operator(*json.loads(ns.operator))
        return
    res = asyncio.run(run(ns.seconds, ns.tries, ns.broker, ns.attacker, ns.rcvbuf))
    if ns.json:
        print(json.dumps(res))
        return
    for k, v in res.items():
        print(f"{k:<24} {v}")


if __name__ == "__main__":
    main()
