"""CAN radar front-end emulator: ``python -m sim_devices.can_radar_emulator``.

Puts on a CAN bus what the radar of docs/icd/can-radar.md would: track
reports (five classic frames each, or one CAN FD frame with ``--fd``) at the
sensor's update rate and a status heartbeat at 1 Hz, built by the *same*
codec as the gateway's driver with the device role.

Reports come from a scenario sensor (:class:`sim_devices.sensor_model.SensorModel`,
``--scenario``/``--sensor``; default the first ``can_radar`` sensor), or, with
``--synthetic N``, from N simple constant-rate tracks (for benchmarks and
tests that need no scenario).

The bus: ``--interface``/``--channel``/``--fd``/``--bitrate``/``--id-offset``,
each taken from the sensor's ``can`` block (sim_devices/scenario.py,
:class:`~sim_devices.scenario.CanBusConfig`) when not given, else
``virtual`` / ``hilgw-can`` / classic / none / 0.

Time: as the serial radar emulator (sim_devices/emulate.py), scenario time t
maps to UTC ``epoch_ns + t·10⁹`` and runs ``--speed`` times as fast as the
wall clock; scan k (t = k / update_hz) leaves at ``epoch + t/speed +
latency_s``. Emulators given the same ``--epoch-ns`` show one scenario.

Faults: the sensor's ``[[faults]]`` timeline (:mod:`sim_devices.faults`),
evaluated on the scenario clock: ``dropout`` (no frame sent), ``delay``
(frames held ``delay_s`` wall seconds, order kept), ``duplicate`` (a frame
sent twice with ``probability``), ``clock_step`` (reported sensor times
jump by ``step_s``), ``silent_heartbeat`` (no status frame) and
``can_bus_off``: at the start of the window one error frame as SocketCAN
reports bus-off (error flag, ``CAN_ERR_BUSOFF`` = 0x40 in the id, 8 data
bytes), then nothing (held frames are lost) until the window ends, then a
status at once and reports on schedule. Whole-run switches for testing the
gateway's reassembly: ``--drop P`` loses each frame with probability P,
``--duplicate P`` sends a frame twice, ``--shuffle`` sends each report's parts
in a random order.

One JSON line on stdout when ready (``{"event": "ready", ...}``: interface,
channel, fd, ...) and one when stopped (with counters, ``fault_*`` for what
each fault did). Exit codes: 0 done, 2 bad arguments or scenario, 3 bus failure.
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
import zlib
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from drivers.base import Role
from drivers.can_radar import CanRadarCodec
from drivers.radar import TRACK_BATCH_DTYPE, SensorState, Status
from gateway.sections.transports import CanTransportConfig
from gateway.transports.can import CAN_ERR_BUSOFF, CanTransport
from hilgw.can import CanFrame
from hilgw.errors import ConfigError, HilgwError, TransportError
from hilgw.process import stop_with_parent
from sim_devices.can_device import EmulatorCanTransport
from sim_devices.faults import FaultSchedule
from sim_devices.scenario import Scenario

if TYPE_CHECKING:
    from sim_devices.sensor_model import SensorModel

__all__ = [
    "COUNTERS",
    "CanRadarEmulator",
    "SyntheticTracks",
    "build_parser",
    "main",
    "resolve_bus",
]

STATUS_PERIOD_NS = 1_000_000_000
#: Scans whose send time is further behind than this are skipped (counted), as
#: in sim_devices/emulate.py: a radar does not replay what it missed.
MAX_LAG_S = 1.0
#: Error frames put on the bus when a can_bus_off fault starts (SocketCAN reports one).
BUS_OFF_ERROR_FRAMES = 1
#: Classic TrackId is 12 bits (ICD §4.1): scenario track ids wrap within 1..4095.
_CLASSIC_TRACK_IDS = 4095
#: The ``stopped`` line's counters. ``frames_dropped``/``frames_duplicated``: the
#: --drop/--duplicate switches. ``fault_*``, the scenario's timeline: frames not
#: sent in a dropout, held by a delay, sent twice; reports and statuses sent with a
#: stepped clock; statuses left out; bus-off windows, error frames sent, frames
#: lost while bus-off.
COUNTERS = (
    "scans", "scans_skipped", "frames_sent", "reports_sent", "frames_dropped", "frames_duplicated",
    "fault_frames_withheld", "fault_frames_delayed", "fault_duplicated", "fault_clock_stepped",
    "fault_heartbeats_silenced", "fault_bus_offs", "fault_error_frames", "fault_bus_off_withheld",
)  # fmt: skip
_BUS_DEFAULTS: dict[str, Any] = {
    "interface": "virtual",
    "channel": "hilgw-can",
    "fd": False,
    "bitrate": None,
    "id_offset": 0,
}


class SyntheticTracks:
    """N constant-rate polar tracks (no scenario): a stand-in source of reports."""

    def __init__(self, n: int, epoch_ns: int) -> None:
        self.n = n
        self.epoch_ns = epoch_ns
        i = np.arange(n, dtype=np.float64)
        self._r0 = 40_000.0 + 1_000.0 * (i % 1000)  # within the classic Range signal (1677 km)
        self._az0 = np.mod(0.3 * i, 2 * np.pi)
        self._el = 0.02 + 0.001 * (i % 50)
        self._rdot = -150.0 - (i % 7) * 20.0
        self._azdot = 1e-3 * ((i % 5) - 2)

    def scan(self, t_s: float) -> npt.NDArray[np.void]:
        out = np.zeros(self.n, dtype=TRACK_BATCH_DTYPE)
        out["sensor_track_id"] = np.arange(self.n) % 4096
        out["sensor_time_ns"] = self.epoch_ns + int(t_s * 1e9)
        out["range_m"] = np.maximum(self._r0 + self._rdot * t_s, 1_000.0)
        out["azimuth_rad"] = np.mod(self._az0 + self._azdot * t_s, 2 * np.pi)
        out["elevation_rad"] = self._el
        out["range_rate_mps"] = self._rdot
        out["azimuth_rate_radps"] = self._azdot
        out["sigma_range_m"] = 15.0
        out["sigma_azimuth_rad"] = 2e-3
        out["sigma_elevation_rad"] = 2e-3
        out["sigma_range_rate_mps"] = 1.0
        out["sigma_azimuth_rate_radps"] = 5e-4
        out["sigma_elevation_rate_radps"] = 5e-4
        out["quality"] = 0.9
        out["rates_valid"] = True
        return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sim_devices.can_radar_emulator", description=__doc__.split("\n")[0]
    )
    bus = "default: the sensor's can block, else"
    p.add_argument(
        "--interface",
        default=None,
        help=f"python-can interface (virtual, socketcan, udp_multicast, ...; {bus} virtual)",
    )
    p.add_argument("--channel", default=None, help=f"python-can channel ({bus} hilgw-can)")
    p.add_argument("--bitrate", type=int, default=None, help=f"nominal bitrate ({bus} none)")
    p.add_argument(
        "--fd",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"CAN FD: one 64-byte frame per report (ICD §5; {bus} classic)",
    )
    p.add_argument("--id-offset", type=int, default=None, help=f"added to every DBC arbitration id ({bus} 0)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--scenario", default=None, help="scenario file or builtin:NAME (uses its sensor model)")
    src.add_argument("--synthetic", type=int, default=None, metavar="N", help="N simple tracks, no scenario")
    p.add_argument("--sensor", default=None, help="sensor id in the scenario (default: the first can_radar)")
    p.add_argument("--rate-hz", type=float, default=2.0, help="report rate of --synthetic")
    p.add_argument("--duration", type=float, default=0.0, help="wall seconds to run (0: until SIGTERM)")
    p.add_argument("--epoch-ns", type=int, default=None, help="UTC ns of scenario time 0 (default: now)")
    p.add_argument("--speed", type=float, default=1.0, help="scenario seconds per wall second")
    p.add_argument("--loop", action="store_true", help="start the scenario over when its duration ends")
    p.add_argument("--drop", type=float, default=0.0, help="probability of losing a frame")
    p.add_argument("--duplicate", type=float, default=0.0, help="probability of sending a frame twice")
    p.add_argument("--shuffle", action="store_true", help="send each report's parts in random order")
    p.add_argument("--seed", type=int, default=1)
    return p


def _emit(obj: dict[str, Any]) -> None:
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def _pick_sensor(scenario: Scenario, sensor_id: str | None) -> str:
    """``sensor_id``, checked; default the first can_radar sensor, else the first with a site."""
    if sensor_id is None:
        ids = [s.id for s in scenario.sensors if s.kind == "can_radar"]
        ids += [s.id for s in scenario.sensors if s.kind != "asterix"]
        if not ids:
            raise ConfigError("--sensor", "the scenario has no radar sensor on a site")
        return str(ids[0])
    try:
        kind = scenario.sensor(sensor_id).kind
    except KeyError:
        known = ", ".join(s.id for s in scenario.sensors)
        raise ConfigError("--sensor", f"no sensor {sensor_id!r} in the scenario (have: {known})") from None
    if kind == "asterix":
        raise ConfigError("--sensor", f"sensor {sensor_id!r} is an asterix (ship) sensor, not a land radar")
    return sensor_id


def resolve_bus(ns: argparse.Namespace, scenario: Scenario | None = None) -> Scenario | None:
    """Fill the bus options of ``ns`` in place; returns the scenario (loaded if ``ns.scenario``).

    What the command line gives wins; then the scenario sensor's ``can`` block;
    then the defaults (virtual / hilgw-can / classic / no bitrate / offset 0).
    Also sets ``ns.sensor`` to the chosen sensor in scenario mode.
    """
    block: dict[str, Any] = {}
    if ns.scenario is not None:
        if scenario is None:
            from sim_devices.scenario import resolve_scenario

            scenario = resolve_scenario(ns.scenario)
        ns.sensor = _pick_sensor(scenario, ns.sensor)
        cfg = scenario.sensor(ns.sensor).can
        if cfg is not None:
            block = cfg.model_dump()
    for key, default in _BUS_DEFAULTS.items():
        if getattr(ns, key, None) is None:
            setattr(ns, key, block.get(key, default))
    return scenario


class CanRadarEmulator:
    """The emulator's loop, usable in-process (tests) as well as from :func:`main`.

    :meth:`step` does everything due at a wall time and says when to come
    back; :meth:`run` is the loop around it. ``ns`` is the parsed command line
    (bus options filled by :func:`resolve_bus`, called here if needed).
    """

    def __init__(
        self,
        ns: argparse.Namespace,
        transport: CanTransport,
        epoch_ns: int,
        *,
        scenario: Scenario | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        scenario = resolve_bus(ns, scenario)
        self.ns = ns
        self.transport = transport
        self.epoch_ns = epoch_ns
        self.speed = float(getattr(ns, "speed", 1.0))
        self.loop_scenario = bool(getattr(ns, "loop", False))
        self.clock = clock
        self.codec = CanRadarCodec(Role.DEVICE, fd=bool(ns.fd), id_offset=int(ns.id_offset))
        self.rng = np.random.default_rng(ns.seed)
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.sensor_id: str | None = None
        self.wire_id: int | None = None
        self.model: SensorModel | None = None
        self.synthetic: SyntheticTracks | None = None
        self.latency_s = 0.0
        self.duration_s = 0.0
        if scenario is not None:
            from sim_devices.sensor_model import SensorModel

            self.sensor_id = str(ns.sensor)
            sensor = scenario.sensor(self.sensor_id)
            self.model = SensorModel(scenario, self.sensor_id, epoch_ns=epoch_ns)
            self.wire_id = self.model.wire_id
            self.update_hz = float(sensor.update_hz)
            self.latency_s = float(sensor.latency_s)
            self.duration_s = float(scenario.scenario.duration_s)
            self.faults = FaultSchedule.of(scenario, self.sensor_id)
            self._fault_rng = np.random.default_rng(
                (scenario.scenario.seed, zlib.crc32(self.sensor_id.encode()), 0xFA17)
            )
        else:
            self.synthetic = SyntheticTracks(ns.synthetic or 8, epoch_ns)
            self.update_hz = float(ns.rate_hz)
            self.faults = FaultSchedule(())
            self._fault_rng = np.random.default_rng(ns.seed)
        if "can_bus_off" in self.faults.kinds() and not isinstance(transport, EmulatorCanTransport):
            raise ConfigError(
                f"sensors[{self.sensor_id}]",
                "a can_bus_off fault needs an EmulatorCanTransport (error frames)",
            )
        self._started_ns = clock()
        self._k: int | None = None
        self._next_status_ns: int | None = None
        self._lap = 0
        self._bus_off = False
        self._held: deque[tuple[int, list[CanFrame]]] = deque()
        self._last_release_ns = 0

    # --- time --------------------------------------------------------------------

    def scenario_time(self, wall_ns: int) -> float:
        """Scenario time (s) at UTC ``wall_ns``."""
        return self.speed * (wall_ns - self.epoch_ns) / 1e9

    def _wall_ns(self, t_s: float) -> int:
        """UTC ns at which scenario time ``t_s`` comes."""
        return self.epoch_ns + round(t_s / self.speed * 1e9)

    def _send_wall_ns(self, k: int) -> int:
        return self.epoch_ns + round((k / self.update_hz / self.speed + self.latency_s) * 1e9)

    @property
    def bus_off(self) -> bool:
        """Whether a can_bus_off fault holds the emulated controller off the bus now."""
        return self._bus_off

    # --- the loop ----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Send scans and heartbeats until ``stop``, ``--duration`` or a non-looping scenario's end."""
        start_ns = self.clock()
        end_ns = start_ns + round(self.ns.duration * 1e9) if self.ns.duration else None
        while not stop.is_set():
            now = self.clock()
            if end_ns is not None and now >= end_ns:
                return
            wake = await self.step(now)
            if wake is None:
                return
            if end_ns is not None:
                wake = min(wake, end_ns)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, (wake - self.clock()) / 1e9)):
                    await stop.wait()  # not wait_for: see launcher_emulator.CanLink

    async def step(self, now_ns: int) -> int | None:
        """Do what is due at UTC ``now_ns``; return when to step next, or None when done."""
        t = self.scenario_time(now_ns)
        fault_wake = await self._apply_faults(now_ns, t)
        if self._next_status_ns is None:
            self._next_status_ns = now_ns
        if now_ns >= self._next_status_ns:
            await self._send_status(now_ns, t)
            self._next_status_ns += STATUS_PERIOD_NS
            if self._next_status_ns < now_ns:  # stalled: heartbeat from now on
                self._next_status_ns = now_ns + STATUS_PERIOD_NS
        hz = self.update_hz
        if self._k is None:
            self._k = max(0, math.ceil(t * hz - 1e-9))
        while True:
            k = self._k
            send_ns = self._send_wall_ns(k)
            if now_ns < send_ns:
                break
            if (now_ns - send_ns) / 1e9 > MAX_LAG_S:
                k_now = math.ceil(t * hz - 1e-9)
                self.counters["scans_skipped"] += max(0, k_now - k)
                self._k = max(k + 1, k_now)
                continue
            t_k = k / hz
            if self.duration_s > 0 and t_k >= self.duration_s and not self.loop_scenario:
                return None
            await self._send_scan(t_k, now_ns)
            self._k = k + 1
        wakes = [send_ns, self._next_status_ns]
        if fault_wake is not None:
            wakes.append(fault_wake)
        return min(wakes)

    # --- faults ------------------------------------------------------------------

    async def _apply_faults(self, now_ns: int, t: float) -> int | None:
        """Enter/leave bus-off, release held frames; returns the next wall time a fault changes."""
        f = self.faults
        if not f:
            return None
        c = self.counters
        off = f.active_kind("can_bus_off", t) is not None
        if off and not self._bus_off:
            self._bus_off = True
            c["fault_bus_offs"] += 1
            # Off the bus: what the controller still held is lost.
            c["fault_bus_off_withheld"] += sum(len(frames) for _, frames in self._held)
            self._held.clear()
            assert isinstance(self.transport, EmulatorCanTransport)  # checked in __init__
            for _ in range(BUS_OFF_ERROR_FRAMES):
                await self.transport.send_error_frame(CAN_ERR_BUSOFF)
                c["fault_error_frames"] += 1
        elif not off and self._bus_off:
            self._bus_off = False
            self._next_status_ns = now_ns  # back on the bus: a heartbeat at once
        while self._held and self._held[0][0] <= now_ns:
            await self._send(self._held.popleft()[1])
        wakes = [self._held[0][0]] if self._held else []
        edge = f.next_change(t)
        if edge is not None:
            wakes.append(self._wall_ns(edge))
        return min(wakes) if wakes else None

    def _cli_faults(self, frames: list[CanFrame]) -> list[CanFrame]:
        """The whole-run switches --shuffle, --drop, --duplicate."""
        ns = self.ns
        if ns.shuffle and not ns.fd:
            groups = [frames[i : i + 5] for i in range(0, len(frames), 5)]
            frames = [g[j] for g in groups for j in self.rng.permutation(len(g))]
        if not ns.drop and not ns.duplicate:
            return frames
        out: list[CanFrame] = []
        for f in frames:
            if ns.drop and self.rng.random() < ns.drop:
                self.counters["frames_dropped"] += 1
                continue
            out.append(f)
            if ns.duplicate and self.rng.random() < ns.duplicate:
                self.counters["frames_duplicated"] += 1
                out.append(f)
        return out

    async def _out(self, frames: list[CanFrame], now_ns: int) -> None:
        """Send ``frames`` through the switches and the faults active at ``now_ns``."""
        frames = self._cli_faults(frames)
        if not frames:
            return
        f, c = self.faults, self.counters
        if not f:
            await self._send(frames)
            return
        if self._bus_off:
            c["fault_bus_off_withheld"] += len(frames)
            return
        t = self.scenario_time(now_ns)
        if f.active_kind("dropout", t):
            c["fault_frames_withheld"] += len(frames)
            return
        p = f.probability("duplicate", t)
        if p > 0:
            out: list[CanFrame] = []
            for fr in frames:
                out.append(fr)
                if self._fault_rng.random() < p:
                    out.append(fr)
                    c["fault_duplicated"] += 1
            frames = out
        delay = f.delay_s(t)
        if delay > 0 or self._held:
            # Order kept: nothing overtakes what is held.
            release = max(now_ns + round(delay * 1e9), self._last_release_ns)
            self._last_release_ns = release
            self._held.append((release, frames))
            c["fault_frames_delayed"] += len(frames)
            return
        await self._send(frames)

    # --- frames ------------------------------------------------------------------

    def _reports(self, t_k: float) -> npt.NDArray[np.void]:
        if self.model is None:
            assert self.synthetic is not None  # one source or the other (__init__)
            return self.synthetic.scan(t_k)
        truth_t = t_k
        if self.duration_s > 0 and self.loop_scenario:
            lap, truth_t = divmod(t_k, self.duration_s)
            if int(lap) != self._lap:  # the scenario starts over: the tracker too
                self._lap = int(lap)
                self.model.reset()
        reports: npt.NDArray[np.void] = self.model.scan(t_k, truth_t_s=truth_t).reports
        if len(reports) and not self.codec.fd:
            reports = reports.copy()
            ids = reports["sensor_track_id"].astype(np.int64)
            reports["sensor_track_id"] = (ids - 1) % _CLASSIC_TRACK_IDS + 1
        return reports

    async def _send_scan(self, t_k: float, now_ns: int) -> None:
        reports = self._reports(t_k)
        self.counters["scans"] += 1
        if not len(reports):
            return
        step_s = self.faults.clock_step_s(t_k) if self.faults else 0.0
        if step_s:  # fault "clock_step": the device clock jumped
            reports = reports.copy()
            t_dev = reports["sensor_time_ns"].astype(np.int64) + round(step_s * 1e9)
            reports["sensor_time_ns"] = np.maximum(t_dev, 0)
            self.counters["fault_clock_stepped"] += len(reports)
        self.counters["reports_sent"] += len(reports)
        await self._out(self.codec.encode_reports(reports), now_ns)

    async def _send_status(self, now_ns: int, t: float) -> None:
        f = self.faults
        if f and f.active_kind("silent_heartbeat", t):
            self.counters["fault_heartbeats_silenced"] += 1
            return
        step_s = f.clock_step_s(t) if f else 0.0
        if step_s:
            self.counters["fault_clock_stepped"] += 1
        if self.model is not None:
            t_dev, tracks = self.model.sensor_time_ns(t), self.model.track_count
        else:
            t_dev, tracks = self.epoch_ns + round(t * 1e9), self.synthetic.n if self.synthetic else 0
        status = Status(
            sensor_time_ns=max(0, t_dev + round(step_s * 1e9)),
            state=SensorState.OK,
            time_sync_locked=True,
            radiating=True,
            track_count=min(tracks, 4095),
            uptime_s=max(0, (now_ns - self._started_ns) // 1_000_000_000) if self.codec.fd else 0,
        )
        await self._out([self.codec.send(status)], now_ns)

    async def _send(self, frames: list[CanFrame]) -> None:
        if frames:
            await self.transport.send_many(frames)
            self.counters["frames_sent"] += len(frames)


async def _serve(ns: argparse.Namespace) -> int:
    try:
        scenario = resolve_bus(ns)
    except (HilgwError, KeyError) as exc:
        print(f"can_radar_emulator: {exc}", file=sys.stderr)
        return 2
    cfg = CanTransportConfig(
        kind="can", interface=ns.interface, channel=ns.channel, bitrate=ns.bitrate, fd=ns.fd
    )
    transport = EmulatorCanTransport(cfg)
    try:
        await transport.open()
    except TransportError as exc:
        print(f"can_radar_emulator: {exc}", file=sys.stderr)
        return 3
    epoch_ns = ns.epoch_ns if ns.epoch_ns is not None else time.time_ns()
    try:
        emu = CanRadarEmulator(ns, transport, epoch_ns, scenario=scenario)
    except (HilgwError, KeyError) as exc:
        await transport.close()
        print(f"can_radar_emulator: {exc}", file=sys.stderr)
        return 2
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _emit(
        {
            "event": "ready",
            "device": "can_radar",
            "sensor": emu.sensor_id,
            "wire_id": emu.wire_id,
            "interface": ns.interface,
            "channel": ns.channel,
            "fd": bool(ns.fd),
            "bitrate": ns.bitrate,
            "id_offset": ns.id_offset,
            "update_hz": emu.update_hz,
            "epoch_ns": epoch_ns,
            "speed": emu.speed,
            "pid": os.getpid(),
        }
    )
    rc = 0
    try:
        await emu.run(stop)
    except (TransportError, HilgwError) as exc:
        print(f"can_radar_emulator: {exc}", file=sys.stderr)
        rc = 3
    finally:
        await transport.close()
        _emit({"event": "stopped", "device": "can_radar", "sensor": emu.sensor_id, **emu.counters})
    return rc


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    stop_with_parent()  # a SIGKILLed parent leaves no emulator behind
    ns = build_parser().parse_args(argv)
    if not 0 <= ns.drop < 1 or not 0 <= ns.duplicate < 1 or ns.rate_hz <= 0:
        print("can_radar_emulator: --drop/--duplicate must be in [0, 1), --rate-hz > 0", file=sys.stderr)
        return 2
    if not ns.speed > 0 or not math.isfinite(ns.speed):
        print(f"can_radar_emulator: --speed must be > 0, got {ns.speed}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(ns))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
