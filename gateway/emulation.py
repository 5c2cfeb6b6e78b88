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
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gateway.config import DeviceConfig, EmulationConfig, SiteConfig
from hilgw.errors import ConfigError

log = logging.getLogger(__name__)

#: Scenario sensor kinds the emulation manager can start, with the gateway
#: protocol that reads them.
_PROTOCOL = {"serial_radar": "serial_radar", "asterix": "asterix", "can_radar": "can_radar"}
#: Suffix of the own-ship (NMEA) device of an asterix sensor.
NAV_SUFFIX = "-nav"


class EmulatedDevices:
    def __init__(
        self, config: EmulationConfig, overridden: set[str], cued_launchers: frozenset[str] = frozenset()
    ) -> None:
        self.config = config
        self.overridden = overridden
        #: Ids of the ``[[cue.launchers]]``: the scenario launchers to start.
        self.cued_launchers = cued_launchers
        self.processes: list[Any] = []
        self.epoch_ns = 0
        #: The truth publisher, once :meth:`start_truth` ran.
        self.truth: Any = None

    async def start(self) -> list[DeviceConfig]:
        """Start one emulator per scenario sensor; return their device blocks."""
        return await asyncio.get_running_loop().run_in_executor(None, self._start_blocking)

    def _start_blocking(self) -> list[DeviceConfig]:
        from sim_devices.emulate_all import start_sensor_emulator
        from sim_devices.scenario import resolve_scenario

        scenario = resolve_scenario(self.config.scenario)
        wanted = set(self.config.only) if self.config.only else None
        if wanted is not None:
            unknown = wanted - {s.id for s in scenario.sensors} - {lc.id for lc in scenario.launchers}
            if unknown:
                raise ConfigError("emulation.only", f"no such device(s) in the scenario: {sorted(unknown)}")
        self.epoch_ns = time.time_ns()
        chosen = []
        for sensor in scenario.sensors:
            if sensor.id in self.overridden or (wanted is not None and sensor.id not in wanted):
                continue
            if sensor.kind not in _PROTOCOL:
                log.warning(
                    "emulation: sensor %s of kind %s has no emulator yet; skipped", sensor.id, sensor.kind
                )
                continue
            chosen.append(sensor)

        def start(sensor_id: str) -> Any:
            return start_sensor_emulator(
                self.config.scenario,
                scenario,
                sensor_id,
                epoch_ns=self.epoch_ns,
                speed=self.config.speed,
                transport=self.config.transport,
            )

        # Start them side by side (each waits for its child's ready line), but
        # list the devices in scenario order: fusion registers sensors in it.
        with ThreadPoolExecutor(max_workers=max(1, len(chosen))) as pool:
            futures = [pool.submit(start, s.id) for s in chosen]
            errors: list[BaseException] = []
            for fut in futures:
                try:
                    self.processes.append(fut.result())
                except BaseException as exc:  # stop() below ends the others
                    errors.append(exc)
        if errors:
            raise errors[0]
        devices: list[DeviceConfig] = []
        for sensor, proc in zip(chosen, self.processes, strict=True):
            ready = proc.ready
            if sensor.kind == "serial_radar":
                devices.append(self._serial_radar(scenario, sensor.id, proc.serial_url))
                log.info("emulation: %s on %s (pid %s)", sensor.id, proc.serial_url, proc.pid)
            elif sensor.kind == "can_radar":
                devices.append(self._can_radar(scenario, sensor.id))
                log.info(
                    "emulation: %s on can %s:%s%s (pid %s)",
                    sensor.id, ready["interface"], ready["channel"], " fd" if ready["fd"] else "", proc.pid,
                )  # fmt: skip
                if ready["interface"] == "virtual":
                    log.warning(
                        "emulation: %s is on a python-can 'virtual' bus, which does not cross "
                        "processes: the gateway will not see it (use socketcan/vcan or udp_multicast)",
                        sensor.id,
                    )
            else:
                devices += self._frigate(scenario, sensor.id, ready)
                log.info(
                    "emulation: %s on udp %s, own ship on udp %s (pid %s)",
                    sensor.id, ready["asterix"][1], ready["nmea"][1], proc.pid,
                )  # fmt: skip
        devices += self._launchers(scenario, wanted)
        return devices

    def _launchers(self, scenario: Any, wanted: set[str] | None) -> list[DeviceConfig]:
        """Start the emulators of the scenario launchers the gateway cues; their device blocks."""
        from sim_devices.emulate_all import start_launcher_emulator

        devices: list[DeviceConfig] = []
        for lc in scenario.launchers:
            if lc.id not in self.cued_launchers or lc.id in self.overridden:
                continue
            if wanted is not None and lc.id not in wanted:
                continue
            where = f"launchers[{lc.id}]"
            if not lc.keys:
                raise ConfigError(f"{where}.keys", "a launcher the gateway cues needs at least one key")
            if lc.transport == "can" and lc.can is None:
                raise ConfigError(
                    f"{where}.can", "a CAN launcher needs can = {interface, channel, fd = true}"
                )
            proc = start_launcher_emulator(
                self.config.scenario, lc.id, epoch_ns=self.epoch_ns, speed=self.config.speed
            )
            self.processes.append(proc)
            if lc.transport == "serial":
                transport: dict[str, Any] = {"kind": "serial", "url": proc.ready["path"], "baudrate": 921600}
            else:
                transport = _can_transport(lc.can, fd=True)  # the launcher ICD is CAN FD
            devices.append(
                DeviceConfig.model_validate(
                    {
                        "id": lc.id,
                        "protocol": "launcher",
                        "transport": transport,
                        "launcher_id": scenario.launcher_wire_id(lc.id),
                        "cue_key_id": min(lc.keys),
                        "cue_keys": dict(lc.keys),
                        "can_id_offset": lc.can.id_offset if lc.can is not None else 0,
                    }
                )
            )
            log.info("emulation: launcher %s on %s (pid %s)", lc.id, transport.get("url", "can"), proc.pid)
        return devices

    @staticmethod
    def _serial_radar(scenario: Any, sensor_id: str, url: str) -> DeviceConfig:
        return DeviceConfig.model_validate(
            {
                "id": sensor_id,
                "protocol": "serial_radar",
                "transport": {"kind": "serial", "url": url, "baudrate": 921600},
                "site": _site(scenario, sensor_id),
                "wire_sensor_id": scenario.wire_id(sensor_id),
            }
        )

    @staticmethod
    def _can_radar(scenario: Any, sensor_id: str) -> DeviceConfig:
        """The ``can_radar`` device block reading the bus of the sensor's ``can`` block."""
        bus = scenario.sensor(sensor_id).can
        return DeviceConfig.model_validate(
            {
                "id": sensor_id,
                "protocol": "can_radar",
                "transport": _can_transport(bus, fd=bus.fd),
                "site": _site(scenario, sensor_id),
                "wire_sensor_id": scenario.wire_id(sensor_id),
                "can_id_offset": bus.id_offset,
            }
        )

    @staticmethod
    def _frigate(scenario: Any, sensor_id: str, ready: dict[str, Any]) -> list[DeviceConfig]:
        """The ``nmea`` and ``asterix`` device blocks of one frigate emulator (docs/icd/frigate-feed.md)."""
        s = scenario.sensor(sensor_id)
        nav_id = f"{sensor_id}{NAV_SUFFIX}"
        nav = DeviceConfig.model_validate(
            {
                "id": nav_id,
                "protocol": "nmea",
                "transport": {"kind": "udp", "bind_host": "127.0.0.1", "bind_port": int(ready["nmea"][1])},
            }
        )
        feed = DeviceConfig.model_validate(
            {
                "id": sensor_id,
                "protocol": "asterix",
                "transport": {
                    "kind": "udp",
                    "bind_host": "127.0.0.1",
                    "bind_port": int(ready["asterix"][1]),
                },
                # The emulator's navigation reference is at the waterline; the
                # antenna sits antenna_height_m up the ship's up axis.
                "ownship": {"source": nav_id, "lever_arm_m": [0.0, 0.0, float(ready["antenna_height_m"])]},
                "asterix": {
                    "azimuth_reference": ready["azimuth_reference"],
                    "sigma_range_m": s.sigma_range_m,
                    "sigma_azimuth_mrad": s.sigma_angle_mrad,
                    "sigma_height_m": s.sigma_height_m,
                    "sigma_ground_speed_mps": s.sigma_speed_mps,
                },
            }
        )
        return [nav, feed]

    async def start_truth(self, broker: str, topic: str, hz: float = 2.0) -> None:
        """Publish the emulated scenario's truth (``TruthBatch``) on ``topic`` at ``broker`` (HOST:PORT)."""
        from sim_devices.emulate_all import start_truth_publisher

        def start() -> Any:
            return start_truth_publisher(
                self.config.scenario,
                broker,
                epoch_ns=self.epoch_ns,
                speed=self.config.speed,
                topic=topic,
                hz=hz,
            )

        self.truth = await asyncio.to_thread(start)
        self.processes.append(self.truth)
        log.info("emulation: truth on %s at %s (pid %s)", topic, broker, self.truth.pid)

    async def stop(self) -> None:
        procs, self.processes = self.processes, []
        if procs:
            # All at once: each stop() may wait for its child to exit.
            await asyncio.gather(*(asyncio.to_thread(p.stop) for p in procs))


def _site(scenario: Any, sensor_id: str) -> SiteConfig:
    """The gateway ``site`` block of a scenario sensor (position and orientation of its site)."""
    st = scenario.site(scenario.sensor(sensor_id).site)
    return SiteConfig(
        lat_deg=st.lat_deg,
        lon_deg=st.lon_deg,
        alt_m=st.alt_m,
        yaw_deg=st.yaw_deg,
        pitch_deg=st.pitch_deg,
        roll_deg=st.roll_deg,
    )


def _can_transport(bus: Any, *, fd: bool) -> dict[str, Any]:
    """The gateway ``transport`` block reading a scenario ``can`` bus."""
    out: dict[str, Any] = {"kind": "can", "interface": bus.interface, "channel": bus.channel, "fd": fd}
    if bus.bitrate is not None:
        out["bitrate"] = bus.bitrate
    return out
