"""CAN radar front-end emulator: ``python -m sim_devices.can_radar_emulator``.

Puts on a CAN bus what the radar of docs/icd/can-radar.md would: track
reports (five classic frames each, or one CAN FD frame with ``--fd``) at the
sensor's update rate and a status heartbeat at 1 Hz, built by the *same*
codec as the gateway's driver with the device role.

Reports come from a scenario sensor (:class:`sim_devices.sensor_model.SensorModel`,
``--scenario``/``--sensor``), or, with ``--synthetic N``, from N simple
constant-rate tracks (for benchmarks and tests that need no scenario).

Faults for testing the gateway's reassembly: ``--drop P`` loses each frame
with probability P, ``--duplicate P`` sends a frame twice, ``--shuffle``
sends each report's parts in a random order.

One JSON line on stdout when ready (``{"event": "ready", ...}``) and one when
stopped (with counters). Exit codes: 0 done, 2 bad arguments, 3 bus failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from drivers.base import Role
from drivers.can_radar import TRACK_BATCH_DTYPE, CanFrame, CanRadarCodec, SensorState, Status
from gateway.config import CanTransportConfig
from gateway.transports.can import CanTransport
from hilgw.errors import HilgwError, TransportError

__all__ = ["SyntheticTracks", "build_parser", "main"]


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
    p.add_argument(
        "--interface", default="virtual", help="python-can interface (virtual, socketcan, udp_multicast, ...)"
    )
    p.add_argument("--channel", default="hilgw-can", help="python-can channel")
    p.add_argument("--bitrate", type=int, default=None)
    p.add_argument("--fd", action="store_true", help="CAN FD: one 64-byte frame per report (ICD §5)")
    p.add_argument("--id-offset", type=int, default=0, help="added to every DBC arbitration id")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--scenario", default=None, help="scenario file or builtin:NAME (uses its sensor model)")
    src.add_argument("--synthetic", type=int, default=None, metavar="N", help="N simple tracks, no scenario")
    p.add_argument("--sensor", default=None, help="sensor id in the scenario (default: the first)")
    p.add_argument("--rate-hz", type=float, default=2.0, help="report rate of --synthetic")
    p.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: until SIGTERM)")
    p.add_argument("--epoch-ns", type=int, default=None, help="UTC ns of scenario time 0 (default: now)")
    p.add_argument("--drop", type=float, default=0.0, help="probability of losing a frame")
    p.add_argument("--duplicate", type=float, default=0.0, help="probability of sending a frame twice")
    p.add_argument("--shuffle", action="store_true", help="send each report's parts in random order")
    p.add_argument("--seed", type=int, default=1)
    return p


def _emit(obj: dict[str, Any]) -> None:
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


class CanRadarEmulator:
    """The emulator's loop, usable in-process (tests) as well as from :func:`main`."""

    def __init__(self, ns: argparse.Namespace, transport: CanTransport, epoch_ns: int) -> None:
        self.ns = ns
        self.transport = transport
        self.epoch_ns = epoch_ns
        self.codec = CanRadarCodec(Role.DEVICE, fd=ns.fd, id_offset=ns.id_offset)
        self.rng = np.random.default_rng(ns.seed)
        self.counters = {"frames_sent": 0, "reports_sent": 0, "frames_dropped": 0, "frames_duplicated": 0}
        self.source: Any
        self.update_hz: float
        if ns.scenario is not None:
            from sim_devices.scenario import resolve_scenario
            from sim_devices.sensor_model import SensorModel

            scenario = resolve_scenario(ns.scenario)
            sensor_id = ns.sensor or scenario.sensors[0].id
            self.source = SensorModel(scenario, sensor_id, epoch_ns=epoch_ns)
            self.update_hz = float(scenario.sensor(sensor_id).update_hz)
        else:
            self.source = SyntheticTracks(ns.synthetic or 8, epoch_ns)
            self.update_hz = ns.rate_hz

    def _reports(self, t_s: float) -> npt.NDArray[np.void]:
        out = self.source.scan(t_s)
        reports: npt.NDArray[np.void] = out if isinstance(out, np.ndarray) else out.reports
        return reports

    def _faults(self, frames: list[CanFrame]) -> list[CanFrame]:
        ns = self.ns
        if ns.shuffle and not ns.fd:
            groups = [frames[i : i + 5] for i in range(0, len(frames), 5)]
            frames = [g[j] for g in groups for j in self.rng.permutation(len(g))]
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

    async def run(self, stop: asyncio.Event) -> None:
        period = 1.0 / self.update_hz
        next_scan = next_status = time.monotonic()
        start = time.time_ns()
        while not stop.is_set():
            now = time.monotonic()
            if self.ns.duration and time.time_ns() - start >= self.ns.duration * 1e9:
                return
            if now >= next_status:
                await self._send([self.codec.send(self._status())])
                next_status += 1.0
            if now >= next_scan:
                t_s = (time.time_ns() - self.epoch_ns) * 1e-9
                reports = self._reports(t_s)
                frames = self._faults(self.codec.encode_reports(reports))
                await self._send(frames)
                self.counters["reports_sent"] += len(reports)
                next_scan += period
            delay = max(0.0, min(next_scan, next_status) - time.monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):  # not wait_for: see launcher_emulator.CanLink
                    await stop.wait()

    def _status(self) -> Status:
        n = getattr(self.source, "track_count", None)
        count = int(n) if isinstance(n, int) else int(getattr(self.source, "n", 0))
        return Status(
            sensor_time_ns=time.time_ns(),
            state=SensorState.OK,
            time_sync_locked=True,
            radiating=True,
            track_count=min(count, 4095),
            uptime_s=int((time.time_ns() - self.epoch_ns) // 1_000_000_000) if self.ns.fd else 0,
        )

    async def _send(self, frames: list[CanFrame]) -> None:
        if frames:
            await self.transport.send_many(frames)
            self.counters["frames_sent"] += len(frames)


async def _serve(ns: argparse.Namespace) -> int:
    cfg = CanTransportConfig(
        kind="can", interface=ns.interface, channel=ns.channel, bitrate=ns.bitrate, fd=ns.fd
    )
    transport = CanTransport(cfg)
    try:
        await transport.open()
    except TransportError as exc:
        print(f"can_radar_emulator: {exc}", file=sys.stderr)
        return 3
    epoch_ns = ns.epoch_ns if ns.epoch_ns is not None else time.time_ns()
    try:
        emu = CanRadarEmulator(ns, transport, epoch_ns)
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
            "interface": ns.interface,
            "channel": ns.channel,
            "fd": ns.fd,
            "update_hz": emu.update_hz,
            "epoch_ns": epoch_ns,
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
        _emit({"event": "stopped", "device": "can_radar", **emu.counters})
    return rc


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    ns = build_parser().parse_args(argv)
    if not 0 <= ns.drop < 1 or not 0 <= ns.duplicate < 1 or ns.rate_hz <= 0:
        print("can_radar_emulator: --drop/--duplicate must be in [0, 1), --rate-hz > 0", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(ns))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
