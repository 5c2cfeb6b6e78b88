"""Publish a scenario's truth over MQTT: ``python -m sim_devices.truth_publisher``.

Started by ``hilgw emulate --mqtt HOST:PORT`` beside the device emulators,
with the same ``--epoch-ns`` and ``--speed``, so truth and emulated reports
share one clock. Every ``1/--hz`` s it publishes a ``hilgw.v1.TruthBatch``
(every active target's ECEF state at that instant, from
:func:`sim_devices.truth.truth_at`) on ``{prefix}/truth`` at QoS 0: a
missed batch is replaced by the next one half a second later, so there is
nothing worth queueing. It reconnects with back-off if the broker goes away
(the batches meanwhile are counted as ``unsent``).

Ready line on stdout: ``{"event": "ready", "topic": ..., "broker": [host, port],
"hz": .., "epoch_ns": .., "pid": ..}``; a ``{"event": "stopped", ...}`` line
with counters at exit. SIGINT/SIGTERM stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import time
from typing import Any

import aiomqtt
import numpy as np

from hilgw.errors import ConfigError, HilgwError
from hilgw.process import stop_with_parent
from hilgw.v1 import truth_pb2
from sim_devices.scenario import AirTarget, Scenario, resolve_scenario
from sim_devices.truth import truth_of

__all__ = ["main", "truth_batch"]


def truth_batch(scenario: Scenario, t_s: float, epoch_ns: int, sequence: int) -> truth_pb2.TruthBatch:
    """The TruthBatch of ``scenario`` at scenario time ``t_s`` (active targets only)."""
    truth = truth_of(scenario)
    ids, x, active = truth.at(t_s)
    kinds = {t.id: ("air" if isinstance(t, AirTarget) else "ballistic") for t in scenario.targets}
    msg = truth_pb2.TruthBatch(
        scenario=scenario.scenario.name,
        batch_sequence=sequence,
        time_ns=epoch_ns + round(t_s * 1e9),
        scenario_time_s=t_s,
        epoch_ns=epoch_ns,
    )
    for i in np.flatnonzero(active):
        tgt = msg.targets.add(target_id=ids[i], kind=kinds[ids[i]])
        s = tgt.state
        s.x, s.y, s.z, s.vx, s.vy, s.vz = (float(v) for v in x[i])
    return msg


def _emit(obj: dict[str, Any]) -> None:
    try:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError("--mqtt", f"expected HOST:PORT, got {text!r}")
    return host, int(port)


async def _serve(ns: argparse.Namespace, scenario: Scenario, broker: tuple[str, int]) -> int:
    epoch_ns = ns.epoch_ns if ns.epoch_ns is not None else time.time_ns()
    topic = ns.topic or f"{ns.prefix}/truth"
    period_ns = round(1e9 / ns.hz)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    counters = {"published": 0, "unsent": 0, "connections": 0}
    _emit(
        {
            "event": "ready",
            "device": "truth",
            "topic": topic,
            "broker": list(broker),
            "hz": ns.hz,
            "epoch_ns": epoch_ns,
            "speed": ns.speed,
            "pid": os.getpid(),
        }
    )
    seq = 0
    backoff = 0.2
    duration = scenario.scenario.duration_s
    try:
        while not stop.is_set():
            try:
                async with aiomqtt.Client(
                    broker[0], broker[1], identifier=f"hilgw-truth-{os.getpid()}"
                ) as cli:
                    counters["connections"] += 1
                    backoff = 0.2
                    nxt = time.time_ns()
                    while not stop.is_set():
                        now = time.time_ns()
                        if now >= nxt:
                            t_s = ns.speed * (now - epoch_ns) / 1e9
                            lap_t = math.fmod(t_s, duration) if duration > 0 and ns.loop else t_s
                            msg = truth_batch(scenario, lap_t, epoch_ns, seq)
                            # The scenario clock, as the emulators stamp their reports.
                            msg.time_ns = epoch_ns + round(t_s * 1e9)
                            msg.scenario_time_s = t_s
                            seq += 1
                            await cli.publish(topic, msg.SerializeToString(), qos=0)
                            counters["published"] += 1
                            nxt = max(nxt + period_ns, now)
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), max(0.0, (nxt - time.time_ns()) / 1e9))
            except aiomqtt.MqttError:
                counters["unsent"] += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 5.0)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        _emit({"event": "stopped", "device": "truth", **counters})
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="truth-publisher", description="Publish scenario truth over MQTT.")
    p.add_argument("--scenario", required=True, help="scenario TOML file or builtin:NAME")
    p.add_argument("--mqtt", required=True, metavar="HOST:PORT", help="the broker")
    p.add_argument("--prefix", default="hilgw", help="topic prefix; the topic is PREFIX/truth")
    p.add_argument("--topic", default=None, help="the whole topic (overrides --prefix)")
    p.add_argument("--hz", type=float, default=2.0, help="batches per second")
    p.add_argument("--epoch-ns", type=int, default=None, help="UTC ns of scenario t=0 (default: now)")
    p.add_argument("--speed", type=float, default=1.0, help="scenario seconds per wall second")
    p.add_argument("--loop", action="store_true", help="start over when the scenario's duration ends")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit codes 0 ok, 2 bad arguments or scenario."""
    stop_with_parent()  # a SIGKILLed parent leaves no emulator behind
    ns = build_parser().parse_args(argv)
    try:
        if not (ns.hz > 0 and math.isfinite(ns.hz)):
            raise ConfigError("--hz", f"must be > 0, got {ns.hz}")
        if not (ns.speed > 0 and math.isfinite(ns.speed)):
            raise ConfigError("--speed", f"must be > 0, got {ns.speed}")
        broker = _hostport(ns.mqtt)
        scenario = resolve_scenario(ns.scenario)
    except HilgwError as exc:
        print(f"truth-publisher: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(ns, scenario, broker))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
