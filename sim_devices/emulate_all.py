"""``hilgw emulate --scenario FILE [--only DEVICE ...] [--mqtt HOST:PORT]``: every device at once.

A small parent: each device of the scenario runs as its own child process on
its own transport (sim_devices/process.py starts them and reads their ready
lines), all on one scenario clock (one ``--epoch-ns``):

* ``serial_radar`` sensors: ``python -m sim_devices.emulate --sensor ID`` on a
  pty (default) or a loopback TCP port (``--tcp HOST:0``);
* ``asterix`` sensors: ``python -m sim_devices.frigate_emulator`` sending
  ASTERIX and own-ship NMEA to two free UDP ports on 127.0.0.1;
* ``can_radar`` sensors: ``python -m sim_devices.can_radar_emulator`` on the
  CAN bus of the sensor's ``can`` block, with its fault timeline;
* with ``--mqtt``: ``python -m sim_devices.truth_publisher`` publishing
  ``hilgw.v1.TruthBatch`` on ``{--prefix}/truth``.

Launchers (``[[launchers]]``): ``python -m sim_devices.launcher_emulator
--scenario FILE --launcher ID`` each, on a pty (``transport = "serial"``) or on
the launcher's ``can`` bus, with its keys and fault timeline from the
scenario; a CAN launcher without a ``can`` block is not started (no bus
every gateway can share), and a line on stderr says so.

Each child's ready line is relayed on stdout as ``{"event": "device",
"device": ID, "kind": ..., "ready": {...}}``; then one ``{"event": "ready",
"devices": [...], "epoch_ns": ..}`` line. A child that exits early is reported
(``{"event": "exited", ...}``). SIGINT/SIGTERM stop every child (SIGTERM, then
SIGKILL after 3 s) and end with a ``{"event": "stopped", "devices": {ID: counters}}`` line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hilgw.errors import ConfigError, HilgwError
from sim_devices.process import EmulatorProcess, start_emulator
from sim_devices.scenario import Scenario

__all__ = [
    "free_udp_port",
    "run_all",
    "start_launcher_emulator",
    "start_sensor_emulator",
    "start_truth_publisher",
]


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port free on ``host`` now (bound and released: another process may take it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def start_sensor_emulator(
    scenario_spec: str,
    scenario: Scenario,
    sensor_id: str,
    *,
    epoch_ns: int,
    speed: float = 1.0,
    transport: str = "pty",
    tcp_host: str = "127.0.0.1",
    loop: bool = False,
) -> EmulatorProcess:
    """Start the emulator of one scenario sensor as a child process; returns it once ready.

    ``transport`` ("pty" | "tcp") applies to serial radars; an asterix
    sensor's frigate emulator sends to two fresh UDP ports on 127.0.0.1, named
    in its ready line (``asterix``, ``nmea``); a can_radar sensor's emulator
    (sim_devices/can_radar_emulator.py) joins the bus of its ``can`` block,
    named in its ready line (``interface``, ``channel``, ``fd``).
    """
    kind = scenario.sensor(sensor_id).kind
    common = ["--scenario", scenario_spec, "--sensor", sensor_id, "--epoch-ns", str(epoch_ns)]
    common += ["--speed", repr(speed)]
    if kind == "serial_radar":
        link = ["--pty"] if transport == "pty" else ["--tcp", f"{tcp_host}:0"]
        return start_emulator([*common, *link, *(["--loop"] if loop else [])])
    if kind == "asterix":
        ports = [f"127.0.0.1:{free_udp_port()}", f"127.0.0.1:{free_udp_port()}"]
        # Through sim_devices.fast_exit: the frigate emulator's libasterix
        # tables take about a second to tear down at exit (see that module).
        return start_emulator(
            ["sim_devices.frigate_emulator", *common, "--asterix", ports[0], "--nmea", ports[1]],
            module="sim_devices.fast_exit",
        )
    if kind == "can_radar":
        return start_emulator(
            [*common, *(["--loop"] if loop else [])], module="sim_devices.can_radar_emulator"
        )
    raise ConfigError(f"sensors[{sensor_id}].kind", f"no emulator for kind {kind!r}")


def start_launcher_emulator(
    scenario_spec: str, launcher_id: str, *, epoch_ns: int, speed: float = 1.0
) -> EmulatorProcess:
    """Start the emulator of one scenario launcher (its transport, keys and faults from the scenario)."""
    args = ["--scenario", scenario_spec, "--launcher", launcher_id, "--epoch-ns", str(epoch_ns)]
    # --no-events: nobody reads the child's stdout past its ready line, and a
    # line per cue would fill the pipe; the verdicts are in its stopped line.
    args += ["--speed", repr(speed), "--no-events"]
    return start_emulator(args, module="sim_devices.launcher_emulator")


def start_truth_publisher(
    scenario_spec: str,
    broker: str,
    *,
    epoch_ns: int,
    speed: float = 1.0,
    prefix: str = "hilgw",
    topic: str | None = None,
    hz: float = 2.0,
) -> EmulatorProcess:
    """Start ``sim_devices.truth_publisher`` (TruthBatch on ``topic``, default ``{prefix}/truth``)."""
    args = ["--scenario", scenario_spec, "--mqtt", broker, "--topic", topic or f"{prefix}/truth"]
    args += ["--hz", repr(hz), "--epoch-ns", str(epoch_ns), "--speed", repr(speed)]
    return start_emulator(args, module="sim_devices.truth_publisher")


def _emit(obj: dict[str, Any]) -> None:
    try:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def run_all(ns: argparse.Namespace, scenario: Scenario) -> int:
    """Run every device of ``scenario`` (or ``ns.only``) as children until SIGINT/SIGTERM."""
    known = {s.id for s in scenario.sensors} | {lc.id for lc in scenario.launchers}
    only = set(ns.only or [])
    unknown = only - known
    if unknown:
        raise ConfigError("--only", f"no such device(s) in the scenario: {sorted(unknown)}")
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    epoch_ns = ns.epoch_ns if ns.epoch_ns is not None else time.time_ns()
    transport = "tcp" if ns.tcp else "pty"
    tcp_host = ns.tcp.rpartition(":")[0] if ns.tcp else "127.0.0.1"
    children: dict[str, EmulatorProcess] = {}
    try:
        sensors = [s for s in scenario.sensors if not only or s.id in only]

        def start(sensor_id: str) -> EmulatorProcess:
            return start_sensor_emulator(
                ns.scenario, scenario, sensor_id, epoch_ns=epoch_ns, speed=ns.speed,
                transport=transport, tcp_host=tcp_host, loop=ns.loop,
            )  # fmt: skip

        # Side by side (each waits for its child's ready line); relayed in file order.
        with ThreadPoolExecutor(max_workers=max(1, len(sensors))) as pool:
            futures = [(s, pool.submit(start, s.id)) for s in sensors]
            failed: BaseException | None = None
            for s, fut in futures:
                try:
                    children[s.id] = fut.result()
                except BaseException as exc:  # the others are stopped in `finally`
                    failed = failed or exc
        if failed is not None:
            raise failed
        for s in sensors:
            _emit({"event": "device", "device": s.id, "kind": s.kind, "ready": children[s.id].ready})
        for lc in scenario.launchers:
            if only and lc.id not in only:
                continue
            if lc.transport == "can" and lc.can is None:
                print(
                    f"hilgw emulate: launcher {lc.id} not started: a CAN launcher needs "
                    "can = {interface, channel, fd = true} in the scenario",
                    file=sys.stderr,
                )
                continue
            proc = start_launcher_emulator(ns.scenario, lc.id, epoch_ns=epoch_ns, speed=ns.speed)
            children[lc.id] = proc
            _emit({"event": "device", "device": lc.id, "kind": "launcher", "ready": proc.ready})
        if ns.mqtt:
            proc = start_truth_publisher(
                ns.scenario, ns.mqtt, epoch_ns=epoch_ns, speed=ns.speed, prefix=ns.prefix, hz=ns.truth_hz
            )
            children["truth"] = proc
            _emit({"event": "device", "device": "truth", "kind": "truth", "ready": proc.ready})
        _emit({"event": "ready", "devices": list(children), "epoch_ns": epoch_ns, "pid": os.getpid()})
        exited: set[str] = set()
        while not stop.wait(0.25):
            for dev, proc in children.items():
                code = proc.popen.poll()
                if code is not None and dev not in exited:
                    exited.add(dev)
                    _emit(
                        {"event": "exited", "device": dev, "code": code, "stderr": proc.stderr_text()[-500:]}
                    )
            if exited and len(exited) == len(children):
                break
    except HilgwError as exc:
        print(f"hilgw emulate: {exc}", file=sys.stderr)
        return_code = 3
    else:
        return_code = 0
    finally:
        # Stop them all at once: each stop() waits up to 3 s for its child.
        if children:
            with ThreadPoolExecutor(max_workers=len(children)) as pool:
                list(pool.map(lambda p: p.stop(), children.values()))
        _emit({"event": "stopped", "devices": {d: p.final for d, p in children.items()}})
    return return_code
