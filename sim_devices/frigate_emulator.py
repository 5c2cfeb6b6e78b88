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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pymap3d

from drivers.asterix import (
    AsterixCodec,
    ServiceMessage034,
    ServiceMessage065,
    SystemTrack062,
    TargetReport048,
)
from drivers.asterix.events import AsterixRecordEvent
from drivers.base import Role
from drivers.nmea import NmeaCodec, OwnShipFix
from hilgw.errors import ConfigError, HilgwError, LocalProtocolError
from hilgw.geo import ecef_to_polar, wrap_2pi
from hilgw.ship import ShipStates, enu_bases, radar_frames
from sim_devices.dis_input import DisTruth, open_listener
from sim_devices.faults import DatagramFaults, FaultSchedule
from sim_devices.process import EmulatorProcess, start_emulator
from sim_devices.scenario import (
    AirTarget,
    Scenario,
    ScenarioInfo,
    SensorConfig,
    ShipConfig,
    SiteConfig,
    Waypoint,
    resolve_scenario,
)
from sim_devices.truth import compile_truth, truth_at

__all__ = ["FrigateModel", "ShipMotion", "main", "start_frigate_emulator"]

DEG = math.pi / 180.0
_KR2 = 2.0 * (4.0 / 3.0) * 6_371_008.8  # 2kR of the 4/3-Earth radar horizon (Skolnik §8.2)
#: Item limits (docs/icd/asterix.md, "What the emulator sends"): the standard's
#: range where it gives one (CAT062 ed. 1.21 I062/130: -1,500..150,000 ft), else
#: the field width: I048/040 RHO u16 of 1/256 NM, I048/110 s14 of 25 ft, I048/200
#: GSP u16 of 2^-14 NM/s, I062/185 s16 of 0.25 m/s, I062/340 HEIGHT s16 of 25 ft.
MAX_RHO_M = 65535 / 256 * 1852.0
MAX_3DH_M = 8191 * 25 * 0.3048
GEO_ALT_RANGE_M = (-1500 * 0.3048, 150_000 * 0.3048)
MAX_HEIGHT_340_M = 32767 * 25 * 0.3048
MAX_GSP_MPS = 65535 / 2**14 * 1852.0
MAX_V062_MPS = 8191.75
RECORDS_PER_DATAGRAM = 60
STATUS_PERIOD_S = 1.0


class ShipMotion:
    """A ship's route as a function of scenario time (great-circle legs at height 0)."""

    def __init__(self, ship: ShipConfig) -> None:
        self.cfg = ship
        wps = [Waypoint(lat_deg=w.lat_deg, lon_deg=w.lon_deg, alt_m=0.0) for w in ship.waypoints]
        route = AirTarget(
            kind="air", id=ship.id, waypoints=wps, speed_mps=ship.speed_mps, start_time_s=ship.start_time_s
        )
        w0 = ship.waypoints[0]
        scn = Scenario(
            scenario=ScenarioInfo(name=ship.id),
            sites=[SiteConfig(id="route", lat_deg=w0.lat_deg, lon_deg=w0.lon_deg, alt_m=0.0)],
            targets=[route],
        )
        self.truth = compile_truth(scn)
        assert self.truth.air is not None  # one air-like route was compiled
        self.t0 = float(self.truth.air.t_start[0])
        self.t1 = float(self.truth.air.t_end[0])

    def at(self, t_s: float) -> ShipStates:
        """The radar antenna's state at ``t_s`` (one row; attitude from course and sea motion)."""
        c = self.cfg
        moving = self.t0 <= t_s <= self.t1
        tt = min(max(t_s, self.t0), self.t1)
        _, x, _ = self.truth.at(tt)
        p = x[0, :3]
        v = x[0, 3:] if moving else np.zeros(3)
        lat, lon, _ = pymap3d.ecef2geodetic(p[0], p[1], p[2], deg=False)
        enu = enu_bases(np.array([lat]), np.array([lon]))[0]
        ve, vn = float(enu[0] @ x[0, 3:]), float(enu[1] @ x[0, 3:])  # course even when lying still
        att = np.array(
            [
                math.atan2(ve, vn) % (2 * math.pi),
                c.pitch_amplitude_deg * DEG * math.sin(2 * math.pi * t_s / c.pitch_period_s),
                c.roll_amplitude_deg * DEG * math.sin(2 * math.pi * t_s / c.roll_period_s),
            ]
        )
        # The antenna sits antenna_height_m up the mast: the ship's up axis (deck frame).
        level = ShipStates(
            p[None, :],
            np.array([lat]),
            np.array([lon]),
            np.zeros(1),
            v[None, :],
            att[None, :],
            np.zeros((1, 3, 3)),
            np.zeros((1, 3)),
            np.ones(1, bool),
        )
        pos = p + radar_frames(level, "deck")[0, 2] * c.antenna_height_m
        return ShipStates(
            pos=pos[None, :],
            lat=np.array([lat]),
            lon=np.array([lon]),
            h=np.array([c.antenna_height_m]),
            vel=v[None, :],
            att=att[None, :],
            pos_cov=np.zeros((1, 3, 3)),
            att_var=np.zeros((1, 3)),
            valid=np.ones(1, bool),
        )


TruthFn = Callable[[float], tuple[tuple[str, ...], np.ndarray, np.ndarray]]


class FrigateModel:
    """The radar and SDPS of one ``asterix`` sensor, scan by scan (stateful: track numbers, clutter)."""

    def __init__(
        self, scenario: Scenario, sensor_id: str, epoch_ns: int, truth: TruthFn | None = None
    ) -> None:
        self.sensor: SensorConfig = scenario.sensor(sensor_id)
        if self.sensor.kind != "asterix" or self.sensor.ship is None:
            raise ConfigError(f"sensors[{sensor_id}]", "not an asterix sensor on a ship")
        self.ship = ShipMotion(scenario.ship(self.sensor.ship))
        self.epoch_ns = int(epoch_ns)
        self.truth: TruthFn = truth if truth is not None else (lambda t: truth_at(scenario, t))
        self.rng = np.random.default_rng((scenario.scenario.seed, zlib.crc32(sensor_id.encode())))
        self.track_no: dict[int, int] = {}
        self.last_seen: dict[int, int] = {}
        self.next_no = 1
        self.scan_no = 0
        self.clutter: list[tuple[int, float, float, float, int]] = []  # number, rho, theta, height, last scan

    def _number(self) -> int:
        n = self.next_no
        self.next_no = n % 4095 + 1  # I048/161 is 12 bits; 0 is not used
        return n

    def scan(self, t_s: float) -> tuple[list[AsterixRecordEvent], list[int]]:
        """One scan: the CAT034/048/062 events and, per CAT048 event, its truth row (-1 clutter)."""
        c = self.sensor
        rng = self.rng
        scan_no = self.scan_no
        self.scan_no += 1
        t_ns = self.epoch_ns + round(t_s * 1e9)
        ship = self.ship.at(t_s)
        tl = radar_frames(ship, c.azimuth_reference)
        _, x, active = self.truth(t_s)
        rows = np.flatnonzero(active)
        events: list[AsterixRecordEvent] = [ServiceMessage034(c.sac, c.sic, 1, t_ns, 0.0)]
        truth_rows: list[int] = []
        if rows.size:
            xa = x[rows]
            pol = ecef_to_polar(ship.pos[0], tl[0], xa)
            geod = pymap3d.ecef2geodetic(xa[:, 0], xa[:, 1], xa[:, 2], deg=False)
            # pymap3d returns scalars for one-element input: keep arrays.
            lat, lon, h = (np.atleast_1d(np.asarray(v, np.float64)) for v in geod)
            ok = (pol[:, 0] >= c.range_min_m) & (pol[:, 0] <= min(c.range_max_m, MAX_RHO_M * 0.99))
            el_level = ecef_to_polar(ship.pos[0], radar_frames(ship, "north")[0], xa)[:, 2]
            ok &= (el_level >= c.elevation_min_deg * DEG) & (el_level <= c.elevation_max_deg * DEG)
            if c.azimuth_width_deg < 360.0:
                off = np.abs((pol[:, 1] - c.azimuth_center_deg * DEG + math.pi) % (2 * math.pi) - math.pi)
                ok &= off <= c.azimuth_width_deg * DEG / 2
            horizon = np.sqrt(_KR2 * ship.h[0]) + np.sqrt(_KR2 * np.maximum(h, 0.0))
            ok &= (el_level >= 0.0) | (pol[:, 0] <= horizon)
            detected = ok & (rng.random(rows.size) < c.detection_probability)
            for i in np.flatnonzero(detected):
                r = int(rows[i])
                if r not in self.track_no or scan_no - self.last_seen[r] - 1 > c.track_drop_scans:
                    self.track_no[r] = self._number()
                self.last_seen[r] = scan_no
                events += self._target(
                    r, t_ns, pol[i], float(lat[i]), float(lon[i]), float(h[i]), xa[i], ship
                )
                truth_rows.append(r)
        for number, rho, theta, height in self._clutter(scan_no):
            events.append(TargetReport048(c.sac, c.sic, t_ns, rho, theta, height, number, None, None))
            truth_rows.append(-1)
        return events, truth_rows

    def _target(
        self,
        r: int,
        t_ns: int,
        pol: np.ndarray,
        lat: float,
        lon: float,
        h: float,
        x: np.ndarray,
        ship: ShipStates,
    ) -> list[AsterixRecordEvent]:
        c, rng = self.sensor, self.rng
        enu = enu_bases(np.array([lat]), np.array([lon]))[0]
        ve, vn = float(enu[0] @ x[3:]), float(enu[1] @ x[3:])
        gs = math.hypot(ve, vn)
        n = rng.standard_normal(8)
        rho = max(float(pol[0] + n[0] * c.sigma_range_m), 1.0)
        theta = float(wrap_2pi(pol[1] + n[1] * c.sigma_angle_mrad * 1e-3))
        height = h + n[2] * c.sigma_height_m if abs(h) < MAX_3DH_M * 0.99 else None
        gs_m = abs(gs + n[3] * c.sigma_speed_mps)
        hdg_m = math.atan2(ve, vn) + n[4] * c.sigma_speed_mps / max(gs, c.sigma_speed_mps)
        tn = self.track_no[r]
        # I048/200 omitted (not wrapped, not the whole record skipped) beyond GSP's 4 NM/s.
        speed = (gs_m, hdg_m % (2 * math.pi)) if gs_m < MAX_GSP_MPS * 0.99 else (None, None)
        plot = TargetReport048(c.sac, c.sic, t_ns, rho, theta, height, tn, *speed)
        # The SDPS track: truth + noise with the accuracies it reports (I062/500).
        s_xy = max(c.sigma_range_m, pol[0] * c.sigma_angle_mrad * 1e-3) * 0.5
        dlat = n[5] * s_xy / 6_371_000.0
        dlon = n[6] * s_xy / (6_371_000.0 * max(math.cos(lat), 1e-6))
        geo = h + n[7] * 30.0  # within the 50 m the gateway assumes for I062/130 (no I062/500 AGA read)
        # Above I062/130's 150,000 ft (a ballistic target) the altitude goes in
        # I062/340 HEIGHT instead, and I062/080 SRC says "no source" for I062/130.
        in_130 = GEO_ALT_RANGE_M[0] <= geo <= GEO_ALT_RANGE_M[1]
        vx = ve + rng.standard_normal() * c.sigma_speed_mps
        vy = vn + rng.standard_normal() * c.sigma_speed_mps
        has_v = max(abs(vx), abs(vy)) < MAX_V062_MPS
        track = SystemTrack062(
            sac=c.sac,
            sic=c.sic + 1,
            track_number=tn,
            t_ns=t_ns,
            lat_rad=lat + dlat,
            lon_rad=lon + dlon,
            vx_mps=vx if has_v else None,
            vy_mps=vy if has_v else None,
            geo_alt_m=geo if in_130 else None,
            altitude_source=2 if in_130 else 0,  # I062/080 SRC 2: 3-D radar
            measured_height_m=geo if not in_130 and abs(geo) < MAX_HEIGHT_340_M else None,
            sigma_x_m=min(s_xy, 32000.0),
            sigma_y_m=min(s_xy, 32000.0),
            sigma_vx_mps=min(c.sigma_speed_mps, 63.0),
            sigma_vy_mps=min(c.sigma_speed_mps, 63.0),
        )
        return [plot, track]

    def _clutter(self, scan_no: int) -> list[tuple[int, float, float, float]]:
        c, rng = self.sensor, self.rng
        self.clutter = [cl for cl in self.clutter if cl[4] >= scan_no]
        for _ in range(int(rng.poisson(c.clutter_rate)) if c.clutter_rate > 0 else 0):
            life = int(rng.integers(1, c.clutter_lifetime_scans + 1))
            rho = float(rng.uniform(c.range_min_m, min(c.range_max_m, MAX_RHO_M * 0.99)))
            theta = float(rng.uniform(0.0, 2 * math.pi))
            self.clutter.append(
                (self._number(), rho, theta, float(rng.uniform(0.0, 3000.0)), scan_no + life - 1)
            )
        return [(n, r, t, h) for n, r, t, h, _ in self.clutter]

    def nmea(self, t_s: float) -> list[OwnShipFix]:
        """The own-ship sentences at ``t_s`` (navigation reference at the waterline)."""
        s = self.ship.at(t_s)
        t_ns = self.epoch_ns + round(t_s * 1e9)
        enu = enu_bases(s.lat, s.lon)[0]
        ve, vn = float(enu[0] @ s.vel[0]), float(enu[1] @ s.vel[0])
        lat, lon = float(s.lat[0]), float(s.lon[0])
        hdg, pitch, roll = (float(a) for a in s.att[0])
        return [
            OwnShipFix(
                "GGA",
                "GP",
                t_ns,
                t_ns,
                lat_rad=lat,
                lon_rad=lon,
                alt_msl_m=0.0,
                geoid_sep_m=0.0,
                fix_quality=1,
                num_sats=12,
                hdop=0.8,
            ),
            OwnShipFix(
                "VTG",
                "GP",
                t_ns,
                t_ns,
                course_rad=math.atan2(ve, vn) % (2 * math.pi),
                speed_mps=math.hypot(ve, vn),
            ),
            OwnShipFix("HDT", "HE", t_ns, t_ns, heading_rad=hdg),
            OwnShipFix(
                "PASHR", "P", t_ns, t_ns, heading_rad=hdg, roll_rad=roll, pitch_rad=pitch, heave_m=0.0
            ),
        ]


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


def start_frigate_emulator(args: list[str], timeout_s: float = 10.0) -> EmulatorProcess:
    """Start ``python -m sim_devices.frigate_emulator *args`` and wait for its ready line
    (the contract of :func:`sim_devices.process.start_emulator`)."""
    return start_emulator(args, timeout_s, module="sim_devices.frigate_emulator")


if __name__ == "__main__":
    sys.exit(main())
