"""The frigate emulator process: ``python -m sim_devices.frigate_emulator``.

A ship sails its scenario route (``[[ships]]``) with an early-warning radar
(a scenario sensor of kind ``"asterix"``) and sends, over UDP, what a
frigate's combat system would put on its feed, with the *same* codecs the
gateway decodes with (device role):

* ASTERIX (drivers/asterix): per scan one datagram (or a few) with a CAT034
  north marker, CAT048 target reports of the radar (I048/020 single PSR
  detection, ρ, θ, 3-D height, track number, ground speed/heading) and CAT062
  system tracks of the ship's SDPS (WGS-84 position, altitude, velocity,
  I062/500 accuracies); a CAT065 SDPS status every second. Every item is
  within the standard's range or omitted (docs/icd/asterix.md, "What the
  emulator sends"): a ballistic target above I062/130's 150,000 ft carries
  its height in I062/340 HEIGHT.
* NMEA 0183 (drivers/nmea): GGA, VTG, HDT and PASHR of the own ship at
  ``nmea_hz``, to its own UDP destination.

The radar model: coverage (range, elevation, azimuth sector, 4/3-Earth radar
horizon), detection probability, Gaussian noise (range, azimuth, height,
speed), radar track numbers (12-bit, I048/161) kept while a target is missed
for at most ``track_drop_scans`` scans, and clutter as short-lived false
tracks. The measurement frame is :func:`hilgw.ship.radar_frames`
of the ship at the scan time: the one convention the gateway inverts.

Truth: the scenario's targets, or (``--dis-port``) the entities of a DIS
simulator (sim_devices/dis_input.py).

Faults: the sensor's ``[[faults]]`` of the scenario (sim_devices/faults.py):
dropout (nothing sent), garbage (a junk datagram before each ASTERIX one),
duplicate, delay and clock_step (every reported time jumps) — see
:class:`sim_devices.faults.DatagramFaults`.

Several radars on one stream: ``--sensor`` repeated (each its own SAC/SIC,
ship or shore site, update rate); their scans interleave on the one ASTERIX
destination, each with its CAT034 north marker and CAT065 status of SIC + 1
(a shore radar: a ship lying at its first waypoint, ``start_time_s`` beyond
the run). NMEA and faults are those of the first radar's.

Ready line on stdout: ``{"event": "ready", "sensor": ..., "asterix": [host,
port], "nmea": [host, port], "sac": .., "sic": .., "antenna_height_m": ..,
"dis_port": ..}``; at exit a ``{"event": "stopped", ...}`` line with counters.
Multicast destinations get TTL 1 and leave by ``--multicast-if``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import sys
import time
import zlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from drivers.asterix import (
    AsterixCodec,
    ServiceMessage065,
)
from drivers.asterix.events import AsterixRecordEvent
from drivers.base import Role
from drivers.nmea import NmeaCodec
from hilgw.errors import ConfigError, HilgwError, LocalProtocolError
from hilgw.process import stop_with_parent
from sim_devices.dis_input import DisTruth, open_listener
from sim_devices.faults import DatagramFaults, FaultSchedule
from sim_devices.frigate_model import FrigateModel, TruthFn
from sim_devices.process import READY_TIMEOUT_S, EmulatorProcess, start_emulator
from sim_devices.scenario import (
    Scenario,
    resolve_scenario,
)

__all__ = ["Counters", "encode_scan", "main", "start_frigate_emulator"]

RECORDS_PER_DATAGRAM = 60
STATUS_PERIOD_S = 1.0


@dataclass(slots=True)
class Counters:
    """What the emulator sent; printed in the ``stopped`` line."""

    scans: int = 0
    datagrams: int = 0
    records: int = 0
    nmea_sentences: int = 0
    encode_skipped: int = 0
    send_errors: int = 0


def _hostport(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(what, f"expected HOST:PORT, got {text!r}")
    return host, int(port)


class Sender:
    """One UDP socket; multicast destinations leave by ``mcast_if`` with TTL 1."""

    def __init__(self, counters: Counters, mcast_if: str) -> None:
        self.counters = counters
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(mcast_if))
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        self.sock.setblocking(False)

    def send(self, data: bytes, dest: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, dest)
            self.counters.datagrams += 1
        except OSError:  # nobody listening (ICMP), buffer full: UDP loses it, so do we, counted
            self.counters.send_errors += 1


def encode_scan(codec: AsterixCodec, events: list[AsterixRecordEvent], counters: Counters) -> list[bytes]:
    """Datagrams of one scan (<= RECORDS_PER_DATAGRAM records each); unencodable events skipped, counted."""
    ok: list[AsterixRecordEvent] = []
    for ev in events:
        try:
            codec.send(ev)
        except LocalProtocolError:
            counters.encode_skipped += 1
            continue
        ok.append(ev)
    out = []
    for i in range(0, len(ok), RECORDS_PER_DATAGRAM):
        chunk = ok[i : i + RECORDS_PER_DATAGRAM]
        # Group by category so each datagram has few blocks (ASTERIX Part 1 §4).
        chunk.sort(key=lambda e: type(e).__name__)
        out.append(codec.send(chunk))
        counters.records += len(chunk)
    return out


async def _serve(ns: argparse.Namespace, scenario: Scenario, sensor_ids: list[str]) -> int:
    sensor_id = sensor_ids[0]
    epoch_ns = ns.epoch_ns if ns.epoch_ns is not None else time.time_ns()
    counters = Counters()
    faults = FaultSchedule.of(scenario, sensor_id)
    fault_rng = np.random.default_rng((scenario.scenario.seed, zlib.crc32(sensor_id.encode()), 0xFA17))
    sender = DatagramFaults(Sender(counters, ns.multicast_if).send, faults, fault_rng)
    ast_dest = _hostport(ns.asterix, "--asterix")
    # --split-asterix: each radar's datagrams also to a destination of its own
    # (the same bytes), so a bench can compare one stream with one port per radar.
    split = [_hostport(h, "--split-asterix") for h in ns.split_asterix.split(",")] if ns.split_asterix else []
    nmea_dest = _hostport(ns.nmea, "--nmea") if ns.nmea else None
    truth_fn: TruthFn | None = None
    dis_port = None
    dis: DisTruth | None = None
    if ns.dis_port is not None:
        dis = DisTruth(epoch_ns)
        listener = await open_listener(dis, "127.0.0.1", ns.dis_port, time.time_ns)
        dis_port = listener.port
        truth_fn = dis.at
    # Several radars on one stream (issue 22): one model each, one socket and
    # destination for all; their scans interleave on the wire by time.
    models = [FrigateModel(scenario, sid, epoch_ns, truth_fn) for sid in sensor_ids]
    model = models[0]  # the own ship of the NMEA feed and the fault schedule are the first radar's
    codec = AsterixCodec(Role.DEVICE, source=sensor_id)
    ncodec = NmeaCodec(Role.DEVICE, source=sensor_id)
    c = model.sensor
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _emit(
        {
            "event": "ready",
            "sensor": sensor_id,
            "asterix": list(ast_dest),
            "nmea": list(nmea_dest) if nmea_dest else None,
            "sac": c.sac,
            "sic": c.sic,
            "antenna_height_m": model.ship.cfg.antenna_height_m,
            "azimuth_reference": c.azimuth_reference,
            "dis_port": dis_port,
            "epoch_ns": epoch_ns,
            "speed": ns.speed,
            "update_hz": c.update_hz,
            "pid": os.getpid(),
            "split_asterix": [list(d) for d in split],
            "sensors": [
                {
                    "sensor": m.sensor.id,
                    "sac": m.sensor.sac,
                    "sic": m.sensor.sic,
                    "update_hz": m.sensor.update_hz,
                }
                for m in models
            ],
        }
    )
    speed = ns.speed

    def t_of(now_ns: int) -> float:
        return float(speed * (now_ns - epoch_ns) / 1e9)

    ks = [max(0, math.ceil(t_of(time.time_ns()) * m.sensor.update_hz)) for m in models]
    m = max(0, math.ceil(t_of(time.time_ns()) * c.nmea_hz))
    next_status = time.time_ns()
    duration = scenario.scenario.duration_s
    try:
        while not stop.is_set():
            now = time.time_ns()
            t_now = t_of(now)
            # The radar whose next scan is due first.
            i = min(range(len(models)), key=lambda j: ks[j] / models[j].sensor.update_hz)
            mi = models[i]
            t_scan, t_nav = ks[i] / mi.sensor.update_hz, m / c.nmea_hz
            if duration > 0 and t_scan >= duration:
                break
            due_scan = epoch_ns + round((t_scan / speed + mi.sensor.latency_s) * 1e9)
            due_nav = epoch_ns + round(t_nav / speed * 1e9)
            due_fault = sender.flush(now)
            # A clock_step fault: the ship's clock (every reported time) jumps.
            step_ns = round(faults.clock_step_s(t_now) * 1e9) if faults else 0
            for mm in models:
                mm.epoch_ns = epoch_ns + step_ns
            if now >= next_status:
                for mm in models:
                    st = ServiceMessage065(
                        mm.sensor.sac,
                        mm.sensor.sic + 1,
                        1,
                        1,
                        epoch_ns + step_ns + round(t_now * 1e9),
                        nogo=0,
                    )
                    data = codec.send(st)
                    sender.send(data, ast_dest, t_now, now, junk=True)
                    if split:
                        sender.send(data, split[models.index(mm)], t_now, now, junk=True)
                    counters.records += 1
                next_status = max(next_status + round(STATUS_PERIOD_S * 1e9), now)
            elif now >= due_scan:
                events, _ = mi.scan(t_scan)
                for dg in encode_scan(codec, events, counters):
                    sender.send(dg, ast_dest, t_now, now, junk=True)
                    if split:
                        sender.send(dg, split[i], t_now, now, junk=True)
                counters.scans += 1
                ks[i] += 1
            elif now >= due_nav:
                if nmea_dest is not None:
                    sentences = model.nmea(t_nav)
                    data = b"".join(ncodec.send(f) for f in sentences)
                    sender.send(data, nmea_dest, t_now, now, junk=False)
                    counters.nmea_sentences += len(sentences)
                m += 1
            else:
                wake = min(due_scan, due_nav, next_status)
                edge = faults.next_change(t_now) if faults else None
                if edge is not None:
                    wake = min(wake, epoch_ns + round(edge / speed * 1e9))
                if due_fault is not None:
                    wake = min(wake, due_fault)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, (wake - time.time_ns()) / 1e9))
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        extra = dict(dis.counters) if dis is not None else {}
        _emit({"event": "stopped", "sensor": sensor_id, **asdict(counters), **sender.counts(), "dis": extra})
    return 0


def _emit(obj: dict[str, Any]) -> None:
    try:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="frigate-emulator", description="Emulate a frigate's ASTERIX + NMEA feed."
    )
    p.add_argument("--scenario", required=True, help="scenario TOML file or builtin:NAME")
    p.add_argument(
        "--sensor",
        action="append",
        help="id of an asterix sensor (default: the first); repeat it to send several radars on one stream",
    )
    p.add_argument("--asterix", required=True, metavar="HOST:PORT", help="where ASTERIX datagrams go")
    p.add_argument(
        "--split-asterix",
        metavar="HOST:PORT,...",
        help="also send each radar's datagrams to its own destination (one per --sensor, in order)",
    )
    p.add_argument("--nmea", metavar="HOST:PORT", help="where own-ship NMEA datagrams go")
    p.add_argument("--multicast-if", default="127.0.0.1", help="local address multicast leaves by")
    p.add_argument("--epoch-ns", type=int, default=None, help="UTC ns of scenario t=0 (default: now)")
    p.add_argument("--speed", type=float, default=1.0, help="scenario seconds per wall second")
    p.add_argument("--dis-port", type=int, default=None, help="take truth from DIS ESPDUs on 127.0.0.1:PORT")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit codes 0 ok, 2 bad arguments or scenario."""
    stop_with_parent()  # a SIGKILLed parent leaves no emulator behind
    ns = build_parser().parse_args(argv)
    try:
        if not (ns.speed > 0 and math.isfinite(ns.speed)):
            raise ConfigError("--speed", f"must be > 0, got {ns.speed}")
        scenario = resolve_scenario(ns.scenario)
        ids = [s.id for s in scenario.sensors if s.kind == "asterix"]
        sensor_ids = ns.sensor or ids[:1] or [""]
        for sensor_id in sensor_ids:
            if sensor_id not in ids:
                raise ConfigError(
                    "--sensor", f"no asterix sensor {sensor_id!r} (have: {', '.join(ids) or 'none'})"
                )
        if ns.split_asterix and len(ns.split_asterix.split(",")) != len(sensor_ids):
            raise ConfigError("--split-asterix", f"one destination per --sensor ({len(sensor_ids)})")
        if len(set(sensor_ids)) != len(sensor_ids):
            raise ConfigError("--sensor", "a sensor given twice")
        sacsic = [(scenario.sensor(i).sac, scenario.sensor(i).sic) for i in sensor_ids]
        if len(set(sacsic)) != len(sacsic):
            raise ConfigError("--sensor", f"two radars with the same SAC/SIC on one stream: {sacsic}")
        _hostport(ns.asterix, "--asterix")
    except HilgwError as exc:
        print(f"frigate-emulator: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(ns, scenario, sensor_ids))
    except KeyboardInterrupt:
        return 130


def start_frigate_emulator(args: list[str], timeout_s: float = READY_TIMEOUT_S) -> EmulatorProcess:
    """Start ``python -m sim_devices.frigate_emulator *args`` and wait for its ready line
    (the contract of :func:`sim_devices.process.start_emulator`)."""
    return start_emulator(args, timeout_s, module="sim_devices.frigate_emulator")


if __name__ == "__main__":
    sys.exit(main())
