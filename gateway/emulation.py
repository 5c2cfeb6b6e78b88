"""Bench mode: the scenario's sensors run as emulator processes on real
transports (ptys or loopback TCP), and become devices of this gateway.

Each emulator is its own process (``python -m sim_devices.emulate``), so the
gateway reads real bytes from a real pty or socket exactly as it would from
hardware. A ``[[devices]]`` block with a sensor's id replaces its emulator
(that is how one device is swapped for real hardware).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from gateway.config import DeviceConfig, EmulationConfig, SiteConfig
from hilgw.errors import ConfigError

log = logging.getLogger(__name__)

#: Scenario sensor kinds the emulation manager can start today, with the
#: gateway protocol that reads them.
_PROTOCOL = {"serial_radar": "serial_radar"}


class EmulatedDevices:
    def __init__(self, config: EmulationConfig, overridden: set[str]) -> None:
        self.config = config
        self.overridden = overridden
        self.processes: list[Any] = []
        self.epoch_ns = 0

    async def start(self) -> list[DeviceConfig]:
        """Start one emulator per scenario sensor; return their device blocks."""
        return await asyncio.get_running_loop().run_in_executor(None, self._start_blocking)

    def _start_blocking(self) -> list[DeviceConfig]:
        from sim_devices.process import start_emulator
        from sim_devices.scenario import resolve_scenario

        scenario = resolve_scenario(self.config.scenario)
        wanted = set(self.config.only) if self.config.only else None
        if wanted is not None:
            unknown = wanted - {s.id for s in scenario.sensors}
            if unknown:
                raise ConfigError("emulation.only", f"no such sensor(s) in the scenario: {sorted(unknown)}")
        self.epoch_ns = time.time_ns()
        devices: list[DeviceConfig] = []
        for sensor in scenario.sensors:
            if sensor.id in self.overridden or (wanted is not None and sensor.id not in wanted):
                continue
            protocol = _PROTOCOL.get(sensor.kind)
            if protocol is None:
                log.warning(
                    "emulation: sensor %s of kind %s has no emulator yet; skipped", sensor.id, sensor.kind
                )
                continue
            link = ["--pty"] if self.config.transport == "pty" else ["--tcp", "127.0.0.1:0"]
            proc = start_emulator(
                [
                    "--scenario",
                    self.config.scenario,
                    "--sensor",
                    sensor.id,
                    *link,
                    "--epoch-ns",
                    str(self.epoch_ns),
                    "--speed",
                    str(self.config.speed),
                ]
            )
            self.processes.append(proc)
            ready = proc.ready
            url = ready["path"] if "path" in ready else f"socket://{ready['host']}:{ready['port']}"
            site = scenario.site(sensor.site)
            devices.append(
                DeviceConfig.model_validate(
                    {
                        "id": sensor.id,
                        "protocol": protocol,
                        "transport": {"kind": "serial", "url": url, "baudrate": 921600},
                        "site": SiteConfig(
                            lat_deg=site.lat_deg,
                            lon_deg=site.lon_deg,
                            alt_m=site.alt_m,
                            yaw_deg=site.yaw_deg,
                            pitch_deg=site.pitch_deg,
                            roll_deg=site.roll_deg,
                        ),
                        "wire_sensor_id": scenario.wire_id(sensor.id),
                    }
                )
            )
            log.info("emulation: %s on %s (pid %s)", sensor.id, url, proc.pid)
        return devices

    async def stop(self) -> None:
        procs, self.processes = self.processes, []
        if procs:
            await asyncio.get_running_loop().run_in_executor(None, lambda: [p.stop() for p in procs])
