"""The radar emulator process: ``hilgw emulate`` / ``python -m sim_devices.emulate``.

Without ``--sensor``, ``hilgw emulate --scenario FILE [--only DEVICE] [--mqtt
HOST:PORT]`` runs every device of the scenario, each as its own process
(:mod:`sim_devices.emulate_all`). With ``--sensor ID`` it is one of them:
it runs one sensor of a scenario and writes what that radar front-end would put
on its serial line, using the *same* codec as the gateway's driver with the
device role (drivers/serial_radar): track reports at the sensor's update rate,
a STATUS heartbeat at 1 Hz (docs/icd/serial-radar.md §5.2).

Transports:

* ``--pty``: a pseudo-terminal pair; the gateway opens the printed slave path
  as if it were a serial device. The slave is put in raw mode so no byte is
  translated. The emulator keeps the slave open too, so the gateway may close
  and reopen it.
* ``--tcp HOST:PORT``: listen (PORT 0 = ephemeral); one gateway connection at
  a time (pyserial URL ``socket://HOST:PORT``); a new connection replaces the
  old one, so a gateway that restarted without closing gets back in.

Writes never block the emulator: a serial line with nobody listening, or a
reader too slow, loses bytes, and so does this process: it counts them
(``bytes_dropped``). On the pty, a full buffer means nobody reads; the stale
bytes queued there are flushed (and counted) so a gateway that connects later
starts on fresh frames.

Time: scenario time t maps to UTC ``epoch_ns + t·10⁹`` (the sensor clock adds
its configured error), and runs ``speed`` times as fast as the wall clock:
t = speed · (now - epoch). Several emulators given the same ``--epoch-ns`` show
one consistent scenario.

Faults: the sensor's ``[[faults]]`` timeline (:mod:`sim_devices.faults`),
evaluated on the scenario clock: ``dropout`` (nothing written), ``garbage``
(a junk frame before each write), ``bad_crc``, ``duplicate``, ``delay``
(bytes held, order kept), ``clock_step`` (reported times jump),
``silent_heartbeat`` (no STATUS) and ``serial_unplug``: the pty pair (or the
TCP listener and its connection) is closed for the window and reopened after
it. A pty emulator with an unplug fault gives the gateway a stable symlink
(ready ``path``; the pty itself is ``pty``) that follows the new pty, as a
udev name follows a re-plugged USB adapter. What was done is counted
(``fault_*`` in the ``stopped`` line).

On ready, one JSON line goes to stdout, e.g.
``{"event": "ready", "sensor": "radar-fwd", "transport": "pty", "path": "/dev/pts/7", ...}``
and at exit one ``{"event": "stopped", ...}`` line with the counters.
SIGINT / SIGTERM stop it within a second. Exit codes: 0 ok, 2 bad arguments or scenario,
3 transport could not be opened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import math
import os
import signal
import sys
import tempfile
import termios
import time
import tty
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from drivers.base import Role
from drivers.radar import SensorState, Status
from drivers.serial_radar import SerialRadarCodec
from hilgw.errors import ConfigError, HilgwError, TransportError
from hilgw.process import stop_with_parent
from sim_devices.faults import DelayLine, FaultSchedule, corrupt_crc, duplicate_frames, garbage
from sim_devices.scenario import Scenario, resolve_scenario
from sim_devices.sensor_model import SensorModel

__all__ = ["Counters", "Emulator", "PtyLink", "TcpLink", "main"]

DEFAULT_SCENARIO = "builtin:demo"
STATUS_PERIOD_S = 1.0
#: Scans whose send time is further behind than this are skipped (counted),
#: e.g. after the process was stopped in a debugger: a radar does not replay.
MAX_LAG_S = 1.0
#: TCP: stop queueing once this many bytes wait in the socket's send buffer.
TCP_HIGH_WATER = 64 * 1024


@dataclass(slots=True)
class Counters:
    """What the emulator did; printed in the ``stopped`` line."""

    scans: int = 0
    scans_skipped: int = 0
    frames: int = 0
    bytes_sent: int = 0
    bytes_dropped: int = 0
    bytes_received: int = 0
    connections: int = 0
    #: Fault injection (sim_devices/faults.py): bytes withheld by a dropout or
    #: unplug, frames corrupted / duplicated, junk frames, unplugs.
    fault_bytes_withheld: int = 0
    fault_crc_corrupted: int = 0
    fault_duplicated: int = 0
    fault_garbage_frames: int = 0
    fault_unplugs: int = 0


class PtyLink:
    """Master side of a raw pty pair; non-blocking writes that drop rather than wait."""

    kind = "pty"

    def __init__(self, counters: Counters, *, stable_link: bool = False) -> None:
        self.counters = counters
        self.plugged = False
        self.master = self.slave = -1
        self.path = ""
        self._open_pair()
        self.pty_path = self.path
        #: With ``stable_link`` the gateway opens a symlink to the current pty
        #: slave: an unplugged-and-replugged line gets a new pty, and the link
        #: follows it, as a udev name follows a USB adapter (deploy/udev/).
        self._linkdir: str | None = None
        if stable_link:
            self._linkdir = tempfile.mkdtemp(prefix="hilgw-pty-")
            self.path = os.path.join(self._linkdir, "tty")
            os.symlink(self.pty_path, self.path)

    def _open_pair(self) -> None:
        self.master, self.slave = os.openpty()
        # Raw mode on the slave: no CR/LF mapping, no echo, no signals from bytes
        # such as 0x03 — the line carries binary frames (ICD §3).
        tty.setraw(self.slave, termios.TCSANOW)
        self.path = os.ttyname(self.slave)
        os.set_blocking(self.master, False)
        self.plugged = True

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        # ICD v1 is simplex (device -> gateway); read and discard whatever the
        # other side writes so its writes never block either.
        loop.add_reader(self.master, self._drain_input)

    async def unplug(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fault "serial_unplug": close the pty pair (the gateway's reads fail) and remove the link."""
        if not self.plugged:
            return
        self.plugged = False
        loop.remove_reader(self.master)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._linkdir is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    async def replug(self, loop: asyncio.AbstractEventLoop) -> None:
        """End of the unplug: a new pty pair, and the stable link pointed at it."""
        if self.plugged:
            return
        stable = self.path if self._linkdir is not None else None
        self._open_pair()
        self.pty_path = self.path
        if stable is not None:
            tmp = stable + ".new"
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            os.symlink(self.pty_path, tmp)
            os.replace(tmp, stable)  # atomic: the gateway never sees a missing link mid-swap
            self.path = stable
        self.start(loop)

    def _drain_input(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while chunk := os.read(self.master, 4096):
                self.counters.bytes_received += len(chunk)
                if len(chunk) < 4096:
                    break

    def write(self, data: bytes) -> None:
        if not self.plugged:
            self.counters.fault_bytes_withheld += len(data)
            return
        view = memoryview(data)
        try:
            n = os.write(self.master, view)
        except (BlockingIOError, InterruptedError):
            n = 0
        self.counters.bytes_sent += n
        if n < len(data):
            # Buffer full: nobody is reading. Count what is lost, and flush the
            # stale bytes queued for the slave as a line without listener would.
            queued = _queued_bytes(self.slave)
            termios.tcflush(self.slave, termios.TCIFLUSH)
            self.counters.bytes_dropped += (len(data) - n) + queued

    def ready_info(self) -> dict[str, Any]:
        return {"transport": "pty", "path": self.path, "pty": self.pty_path}

    async def close(self, loop: asyncio.AbstractEventLoop) -> None:
        await self.unplug(loop)
        if self._linkdir is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            with contextlib.suppress(OSError):
                os.rmdir(self._linkdir)


def _queued_bytes(fd: int) -> int:
    buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    return int.from_bytes(buf, sys.byteorder)


class TcpLink:
    """A loopback TCP listener serving one gateway connection at a time."""

    kind = "tcp"

    def __init__(self, counters: Counters, host: str, port: int) -> None:
        self.counters = counters
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        try:
            self._server = await asyncio.start_server(self._on_client, self.host, self.port)
        except OSError as exc:
            raise TransportError(f"cannot listen on {self.host}:{self.port}: {exc.strerror}") from None
        self.port = self._server.sockets[0].getsockname()[1]

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        old, self._writer = self._writer, writer
        self.counters.connections += 1
        if old is not None:  # one peer at a time: the newest wins
            old.close()
        try:
            while chunk := await reader.read(4096):  # simplex link: discard input
                self.counters.bytes_received += len(chunk)
        except OSError:
            pass
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()

    async def unplug(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fault "serial_unplug": drop the connection and stop listening (connects are refused)."""
        if self._server is None:
            return
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        server, self._server = self._server, None
        server.close()

    async def replug(self, loop: asyncio.AbstractEventLoop) -> None:
        """End of the unplug: listen again on the same port."""
        if self._server is None:
            await self.open()

    @property
    def plugged(self) -> bool:
        return self._server is not None

    def write(self, data: bytes) -> None:
        if self._server is None:
            self.counters.fault_bytes_withheld += len(data)
            return
        w = self._writer
        if w is None or w.is_closing() or w.transport.get_write_buffer_size() > TCP_HIGH_WATER:
            self.counters.bytes_dropped += len(data)
            return
        w.write(data)
        self.counters.bytes_sent += len(data)

    def ready_info(self) -> dict[str, Any]:
        return {"transport": "tcp", "host": self.host, "port": self.port}

    async def close(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 0.5)


Link = PtyLink | TcpLink


class Emulator:
    """One emulated sensor writing to a link; :meth:`run` until ``stop`` is set."""

    def __init__(
        self,
        scenario: Scenario,
        sensor_id: str,
        link: Link,
        *,
        epoch_ns: int,
        speed: float = 1.0,
        loop_scenario: bool = False,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.scenario = scenario
        self.sensor = scenario.sensor(sensor_id)
        self.model = SensorModel(scenario, sensor_id, epoch_ns=epoch_ns)
        self.codec = SerialRadarCodec(Role.DEVICE, sensor_id=self.model.wire_id)
        self.link = link
        self.counters = link.counters
        self.epoch_ns = epoch_ns
        self.speed = speed
        self.loop_scenario = loop_scenario
        self.clock = clock
        self._started_ns = clock()
        self._lap = 0
        #: The device's fault timeline (``[[faults]]`` of the scenario), and its
        #: own random stream so faults do not change the sensor model's draws.
        self.faults = FaultSchedule.of(scenario, sensor_id)
        self._fault_rng = np.random.default_rng(
            (scenario.scenario.seed, zlib.crc32(sensor_id.encode()), 0xFA17)
        )
        self._delay = DelayLine()
        self._last_release_ns = 0

    def _wall_ns(self, t_s: float) -> int:
        """UTC ns at which scenario time ``t_s`` comes."""
        return self.epoch_ns + round(t_s / self.speed * 1e9)

    async def _apply_faults(self, now_ns: int) -> int | None:
        """Plug/unplug the line and release delayed bytes; returns the next wall time a fault changes."""
        f = self.faults
        if not f:
            return None
        t = self.scenario_time(now_ns)
        unplug = f.active_kind("serial_unplug", t) is not None
        loop = asyncio.get_running_loop()
        if unplug and self.link.plugged:
            await self.link.unplug(loop)
            self.counters.fault_unplugs += 1
            self.counters.fault_bytes_withheld += self._delay.clear()
        elif not unplug and not self.link.plugged:
            await self.link.replug(loop)
        for data in self._delay.pop_due(now_ns):
            self.link.write(data)
        wakes = [w for w in (self._delay.next_release_ns(),) if w is not None]
        edge = f.next_change(t)
        if edge is not None:
            wakes.append(self._wall_ns(edge))
        return min(wakes) if wakes else None

    def _out(self, data: bytes, now_ns: int) -> None:
        """Write ``data`` through the active faults (sim_devices/faults.py)."""
        f = self.faults
        if not f:
            self.link.write(data)
            return
        t = self.scenario_time(now_ns)
        c, rng = self.counters, self._fault_rng
        if f.active_kind("dropout", t) or f.active_kind("serial_unplug", t):
            c.fault_bytes_withheld += len(data)
            return
        p = f.probability("bad_crc", t)
        if p > 0:
            data, n = corrupt_crc(data, rng, p)
            c.fault_crc_corrupted += n
        p = f.probability("duplicate", t)
        if p > 0:
            data, n = duplicate_frames(data, rng, p)
            c.fault_duplicated += n
        n_junk = f.garbage_bytes(t)
        if n_junk:
            data = garbage(n_junk, rng) + data
            c.fault_garbage_frames += 1
        delay = f.delay_s(t)
        if delay > 0 or len(self._delay):
            # A serial line keeps byte order: nothing overtakes what is held.
            release = max(now_ns + round(delay * 1e9), self._last_release_ns)
            self._last_release_ns = release
            self._delay.push(release, data)
            return
        self.link.write(data)

    def scenario_time(self, wall_ns: int) -> float:
        """Scenario time (s) at UTC ``wall_ns``."""
        return self.speed * (wall_ns - self.epoch_ns) / 1e9

    def _send_wall_ns(self, k: int) -> int:
        t_k = k / self.sensor.update_hz
        return self.epoch_ns + round((t_k / self.speed + self.sensor.latency_s) * 1e9)

    async def run(self, stop: asyncio.Event) -> int:
        """Send scans and heartbeats until ``stop`` is set or a non-looping scenario ends."""
        hz = self.sensor.update_hz
        duration = self.scenario.scenario.duration_s
        k = max(0, math.ceil(self.scenario_time(self.clock()) * hz - 1e-9))
        next_status_ns = self.clock()
        while not stop.is_set():
            now = self.clock()
            fault_wake = await self._apply_faults(now)
            if now >= next_status_ns:
                self._send_status(now)
                next_status_ns += round(STATUS_PERIOD_S * 1e9)
                if next_status_ns < now:  # stalled: heartbeat from now on
                    next_status_ns = now + round(STATUS_PERIOD_S * 1e9)
            send_ns = self._send_wall_ns(k)
            if now >= send_ns:
                if (now - send_ns) / 1e9 > MAX_LAG_S:
                    k_now = math.ceil(self.scenario_time(now) * hz - 1e-9)
                    self.counters.scans_skipped += max(0, k_now - k)
                    k = max(k + 1, k_now)
                    continue
                t_k = k / hz
                if duration > 0 and t_k >= duration and not self.loop_scenario:
                    return 0
                self._send_scan(t_k, duration)
                k += 1
                continue
            wake_ns = min(send_ns, next_status_ns, fault_wake if fault_wake is not None else send_ns)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, (wake_ns - self.clock()) / 1e9))
        return 0

    def _send_scan(self, t_k: float, duration: float) -> None:
        truth_t = t_k
        if duration > 0 and self.loop_scenario:
            lap, truth_t = divmod(t_k, duration)
            if int(lap) != self._lap:  # the scenario starts over: the tracker too
                self._lap = int(lap)
                self.model.reset()
        scan = self.model.scan(t_k, truth_t_s=truth_t)
        self.counters.scans += 1
        if len(scan.reports):
            reports = scan.reports
            step_s = self.faults.clock_step_s(t_k) if self.faults else 0.0
            if step_s:  # fault "clock_step": the device clock jumped
                reports = reports.copy()
                t_dev = reports["sensor_time_ns"].astype(np.int64) + round(step_s * 1e9)
                reports["sensor_time_ns"] = np.maximum(t_dev, 0)
            self._out(self.codec.encode_track_batch(reports), self.clock())
            self.counters.frames += len(scan.reports)

    def _send_status(self, now_ns: int) -> None:
        t_now = self.scenario_time(now_ns)
        if self.faults and self.faults.active_kind("silent_heartbeat", t_now):
            return
        step_s = self.faults.clock_step_s(t_now) if self.faults else 0.0
        status = Status(
            sensor_time_ns=max(0, self.model.sensor_time_ns(t_now) + round(step_s * 1e9)),
            state=SensorState.OK,
            time_sync_locked=True,
            radiating=True,
            track_count=min(self.model.track_count, 0xFFFF),
            uptime_s=max(0, (now_ns - self._started_ns) // 1_000_000_000),
        )
        self._out(self.codec.send(status), now_ns)
        self.counters.frames += 1


def build_parser() -> argparse.ArgumentParser:
    """The ``hilgw emulate`` command line."""
    p = argparse.ArgumentParser(
        prog="hilgw emulate",
        description=(
            "Emulate one sensor of a scenario (--sensor) on a pty or a loopback TCP port, "
            "or every device of it, each as its own process (sim_devices/emulate_all.py)."
        ),
    )
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, help="scenario TOML file or builtin:NAME")
    p.add_argument("--sensor", help="run this one serial radar in this process (default: every device)")
    p.add_argument(
        "--only", action="append", metavar="DEVICE", help="every-device mode: run only DEVICE (repeatable)"
    )
    p.add_argument("--mqtt", metavar="HOST:PORT", help="every-device mode: publish truth to this broker")
    p.add_argument("--prefix", default="hilgw", help="truth topic prefix (topic PREFIX/truth)")
    p.add_argument("--truth-hz", type=float, default=2.0, help="truth batches per second")
    link = p.add_mutually_exclusive_group()
    link.add_argument(
        "--pty", action="store_true", help="create a raw pty pair and print the slave path (the default)"
    )
    link.add_argument("--tcp", metavar="HOST:PORT", help="listen on HOST:PORT (PORT 0 = any)")
    p.add_argument("--epoch-ns", type=int, default=None, help="UTC ns of scenario t=0 (default: now)")
    p.add_argument("--speed", type=float, default=1.0, help="scenario seconds per wall second")
    p.add_argument("--loop", action="store_true", help="start the scenario over when its duration ends")
    return p


def _parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError("--tcp", f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _emit(obj: dict[str, Any]) -> None:
    try:
        sys.stdout.write(json.dumps(obj, separators=(", ", ": ")) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # The parent stopped reading: nothing left to tell it. Point stdout at
        # /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


async def _serve(
    scenario: Scenario,
    sensor_id: str,
    ns: argparse.Namespace,
    epoch_ns: int,
    hostport: tuple[str, int] | None,
) -> int:
    loop = asyncio.get_running_loop()
    counters = Counters()
    link: Link
    try:
        if hostport is None:
            unplug = "serial_unplug" in FaultSchedule.of(scenario, sensor_id).kinds()
            link = PtyLink(counters, stable_link=unplug)
            link.start(loop)
        else:
            link = TcpLink(counters, *hostport)
            await link.open()
    except (OSError, TransportError) as exc:
        print(f"hilgw emulate: {exc}", file=sys.stderr)
        return 3
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    emu = Emulator(scenario, sensor_id, link, epoch_ns=epoch_ns, speed=ns.speed, loop_scenario=ns.loop)
    _emit(
        {
            "event": "ready",
            "sensor": sensor_id,
            "wire_id": emu.model.wire_id,
            **link.ready_info(),
            "epoch_ns": epoch_ns,
            "speed": ns.speed,
            "update_hz": emu.sensor.update_hz,
            "pid": os.getpid(),
        }
    )
    try:
        rc = await emu.run(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await link.close(loop)
        _emit({"event": "stopped", "sensor": sensor_id, **asdict(counters)})
    return rc


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hilgw emulate``; returns the process exit code."""
    stop_with_parent()  # a SIGKILLed parent leaves no emulator behind
    ns = build_parser().parse_args(argv)
    try:
        if not ns.speed > 0 or not np.isfinite(ns.speed):
            raise ConfigError("--speed", f"must be > 0, got {ns.speed}")
        hostport = _parse_hostport(ns.tcp) if ns.tcp else None
        scenario = resolve_scenario(ns.scenario)
        if ns.sensor is None:
            from sim_devices.emulate_all import run_all

            if ns.mqtt:
                _parse_hostport(ns.mqtt)
            return run_all(ns, scenario)
        if ns.only or ns.mqtt:
            raise ConfigError("--sensor", "--only and --mqtt are for every-device mode (no --sensor)")
        sensor_id = ns.sensor
        try:
            kind = scenario.sensor(sensor_id).kind
        except KeyError:
            known = ", ".join(s.id for s in scenario.sensors)
            raise ConfigError(
                "--sensor", f"no sensor {sensor_id!r} in the scenario (have: {known})"
            ) from None
        if kind != "serial_radar":
            raise ConfigError(
                "--sensor",
                f"sensor {sensor_id!r} is a {kind}; --sensor runs a serial_radar in this process, "
                f"--only {sensor_id} runs any device as its own process",
            )
    except HilgwError as exc:
        print(f"hilgw emulate: {exc}", file=sys.stderr)
        return 2
    epoch_ns = ns.epoch_ns if ns.epoch_ns is not None else time.time_ns()
    try:
        return asyncio.run(_serve(scenario, sensor_id, ns, epoch_ns, hostport))
    except KeyboardInterrupt:  # a SIGINT before the handler was installed
        return 130


if __name__ == "__main__":
    sys.exit(main())
