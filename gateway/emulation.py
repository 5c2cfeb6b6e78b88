"""Bench mode: the scenario's sensors run as emulator processes on real
transports, and become devices of this gateway.

Each emulator is its own process, so the gateway reads real bytes from a real
pty, socket or UDP port exactly as it would from hardware:

* ``serial_radar`` sensors: ``python -m sim_devices.emulate`` on a pty or a
  loopback TCP port -> one ``serial_radar`` device;
* ``asterix`` sensors (a frigate's early-warning radar): ``python -m
  sim_devices.frigate_emulator`` sending to two free UDP ports on 127.0.0.1 ->
  two devices (docs/icd/frigate-feed.md): ``<id>-nav`` (protocol ``nmea``, the
  ship's own-ship feed) and ``<id>`` (protocol ``asterix``, with
  ``ownship.source = "<id>-nav"``, the antenna ``antenna_height_m`` up the mast
  as lever arm, and the radar's noise and azimuth reference from the scenario,
  as the ready line reports them);
* ``can_radar`` sensors: ``python -m sim_devices.can_radar_emulator`` on the
  CAN bus of the sensor's ``can`` block -> one ``can_radar`` device reading
  that bus (transport ``can`` with its interface, channel, fd and bitrate;
  ``can_id_offset`` = ``can.id_offset``; the site and wire sensor id from the
  scenario). The bus must cross processes: ``socketcan`` on a ``vcan``, or
  ``udp_multicast`` inside a network namespace; ``virtual`` does not (logged).

* launchers (``[[launchers]]``) that the gateway's ``[cue]`` section cues (a
  ``[[cue.launchers]]`` entry with the launcher's id): ``python -m
  sim_devices.launcher_emulator --scenario F --launcher ID`` on a pty or on the
  launcher's ``can`` bus -> one ``launcher`` device (its wire id, and the
  scenario's ``keys`` specs as ``cue_keys``, signing with the lowest key id).
  A launcher the gateway does not cue is not started.

A ``[[devices]]`` block with a sensor's id replaces its emulator (that is how
one device is swapped for real hardware); for an asterix sensor it replaces
both of its devices.

The gateway does not import the emulators: it runs ``python -m
sim_devices.bench_plan`` (which reads the scenario and prints, as one JSON
line, each emulator's command, the device blocks that read it, the truth
publisher's command and the sensors' coverage), starts each emulator by its
command with :func:`hilgw.process.start_emulator`, and completes the device
blocks from the ready lines (a pty path, a frigate's antenna height).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gateway.config import DeviceConfig, EmulationConfig
from hilgw.errors import ConfigError
from hilgw.process import READY_TIMEOUT_S, EmulatorProcess, start_emulator

log = logging.getLogger(__name__)

#: Suffix of the own-ship (NMEA) device of an asterix sensor (sim_devices/bench_plan.py).
NAV_SUFFIX = "-nav"
_PLAN_MODULE = "sim_devices.bench_plan"
#: Each emulator's ready line within this: several start at once, a frigate
#: emulator alone takes seconds to load its ASTERIX tables on a busy machine.
_READY_TIMEOUT_S = READY_TIMEOUT_S


def serial_url(ready: dict[str, Any]) -> str:
    """What a serial transport opens: the pty path, or ``socket://host:port`` (pyserial URL)."""
    if "path" in ready:
        return str(ready["path"])
    return f"socket://{ready['host']}:{ready['port']}"


def complete_devices(emulator: dict[str, Any], ready: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan's device blocks of one emulator, with what only its ready line knows."""
    devices: list[dict[str, Any]] = [dict(d) for d in emulator["devices"]]
    if emulator["fill"] == "serial_url":
        devices[0]["transport"] = {**devices[0]["transport"], "url": serial_url(ready)}
    elif emulator["fill"] == "frigate":
        feed = devices[1]
        # The emulator's navigation reference is at the waterline; the antenna
        # sits antenna_height_m up the ship's up axis.
        feed["ownship"] = {**feed["ownship"], "lever_arm_m": [0.0, 0.0, float(ready["antenna_height_m"])]}
        feed["asterix"] = {**feed["asterix"], "azimuth_reference": ready["azimuth_reference"]}
    return devices


class EmulatedDevices:
    def __init__(
        self, config: EmulationConfig, overridden: set[str], cued_launchers: frozenset[str] = frozenset()
    ) -> None:
        self.config = config
        self.overridden = overridden
        #: Ids of the ``[[cue.launchers]]``: the scenario launchers to start.
        self.cued_launchers = cued_launchers
        self.processes: list[EmulatorProcess] = []
        self.epoch_ns = 0
        #: The truth publisher, once :meth:`start_truth` ran.
        self.truth: EmulatorProcess | None = None
        #: Sensor id -> {range_m, az_center_deg, az_width_deg} from the scenario (the display).
        self.coverage: dict[str, dict[str, float]] = {}
        self._truth_cmd: dict[str, Any] | None = None

    async def start(self) -> list[DeviceConfig]:
        """Start one emulator per scenario sensor; return their device blocks."""
        return await asyncio.get_running_loop().run_in_executor(None, self._start_blocking)

    def _plan(self) -> dict[str, Any]:
        args = ["--scenario", self.config.scenario, "--epoch-ns", str(self.epoch_ns)]
        args += ["--speed", repr(self.config.speed)]
        args += ["--tcp"] if self.config.transport == "tcp" else []
        for dev in self.config.only or []:
            args += ["--only", dev]
        for dev in sorted(self.overridden):
            args += ["--overridden", dev]
        for dev in sorted(self.cued_launchers):
            args += ["--launcher", dev]
        with start_emulator(args, _READY_TIMEOUT_S, module=_PLAN_MODULE) as proc:
            plan = proc.ready
        if "error" in plan:
            raise ConfigError(str(plan["error"]["key"]), str(plan["error"]["reason"]))
        return plan

    def _start_blocking(self) -> list[DeviceConfig]:
        self.epoch_ns = self.config.epoch_ns or time.time_ns()
        plan = self._plan()
        self.coverage = plan["coverage"]
        self._truth_cmd = plan["truth"]
        for s in plan["skipped"]:
            log.warning("emulation: sensor %s of kind %s has no emulator yet; skipped", s["id"], s["kind"])
        emulators: list[dict[str, Any]] = plan["emulators"]

        def start(emu: dict[str, Any]) -> EmulatorProcess:
            return start_emulator(emu["args"], _READY_TIMEOUT_S, module=emu["module"])

        # Side by side (each waits for its child's ready line), but the devices
        # are listed in plan (scenario) order: fusion registers sensors in it.
        errors: list[BaseException] = []
        started: list[tuple[dict[str, Any], EmulatorProcess]] = []
        with ThreadPoolExecutor(max_workers=max(1, len(emulators))) as pool:
            futures = [(emu, pool.submit(start, emu)) for emu in emulators]
            for emu, fut in futures:
                try:
                    proc = fut.result()
                except BaseException as exc:  # stop() ends the others
                    errors.append(exc)
                    continue
                self.processes.append(proc)
                started.append((emu, proc))
        if errors:
            raise errors[0]
        devices: list[DeviceConfig] = []
        for emu, proc in started:
            blocks = complete_devices(emu, proc.ready)
            devices += [DeviceConfig.model_validate(b) for b in blocks]
            where = ", ".join(_where(b) for b in blocks)
            log.info("emulation: %s (%s) on %s (pid %s)", emu["id"], emu["kind"], where, proc.pid)
            ready = proc.ready
            if emu["kind"] == "can_radar" and ready.get("interface") == "virtual":
                log.warning(
                    "emulation: %s is on a python-can 'virtual' bus, which does not cross "
                    "processes: the gateway will not see it (use socketcan/vcan or udp_multicast)",
                    emu["id"],
                )
        return devices

    async def start_truth(self, broker: str, topic: str, hz: float = 2.0) -> None:
        """Publish the emulated scenario's truth (``TruthBatch``) on ``topic`` at ``broker`` (HOST:PORT)."""
        cmd = self._truth_cmd
        if cmd is None:
            raise ConfigError("emulation", "the truth publisher starts after the emulators")
        args = [*cmd["args"], "--mqtt", broker, "--topic", topic, "--hz", repr(hz)]
        self.truth = truth = await asyncio.to_thread(
            start_emulator, args, _READY_TIMEOUT_S, module=cmd["module"]
        )
        self.processes.append(truth)
        log.info("emulation: truth on %s at %s (pid %s)", topic, broker, truth.pid)

    async def stop(self) -> None:
        procs, self.processes = self.processes, []
        if procs:
            # All at once: each stop() may wait for its child to exit.
            await asyncio.gather(*(asyncio.to_thread(p.stop) for p in procs))


def _where(block: dict[str, Any]) -> str:
    t = block["transport"]
    if t["kind"] == "serial":
        return str(t["url"])
    if t["kind"] == "udp":
        return f"udp {t['bind_port']}"
    return f"can {t['interface']}:{t['channel']}{' fd' if t.get('fd') else ''}"
