"""``python -m sim_devices.bench_plan``: what the gateway's bench mode starts, as one JSON line.

The gateway does not import the emulators (docs/architecture.md, "Bench
mode"): it runs this command, reads the plan it prints, starts each emulator
by the command the plan gives (:func:`hilgw.process.start_emulator`) and
completes the device blocks from their ready lines. Everything that needs the
scenario file is here, beside the emulators that read it:

* per scenario sensor with an emulator: ``module`` and ``args`` of its
  emulator, the gateway ``devices`` blocks that read it, and ``fill``: what
  the gateway takes from the ready line (``serial_url`` for a serial radar's
  pty or TCP port, ``frigate`` for the antenna height and azimuth reference);
* per launcher the gateway cues (``--launcher``): the same, ``fill`` =
  ``serial_url`` on a pty;
* ``truth``: the truth publisher's module and scenario args;
* ``coverage``: each sensor's range and sector, for the situation display.

The line is ``{"event": "ready", ...}`` (the contract of :func:`hilgw.process.start_emulator`);
a problem is ``{"event": "ready", "error": {"key": .., "reason": ..}}`` (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hilgw.errors import ConfigError
from sim_devices.emulate_all import free_udp_port
from sim_devices.scenario import Scenario, resolve_scenario

__all__ = ["NAV_SUFFIX", "bench_plan", "can_radar_device", "main"]

#: Suffix of the own-ship (NMEA) device of an asterix sensor.
NAV_SUFFIX = "-nav"
_EMULATED = ("serial_radar", "asterix", "can_radar")


def _site(scenario: Scenario, sensor_id: str) -> dict[str, float]:
    st = scenario.site(scenario.sensor(sensor_id).site)
    return {
        "lat_deg": st.lat_deg, "lon_deg": st.lon_deg, "alt_m": st.alt_m,
        "yaw_deg": st.yaw_deg, "pitch_deg": st.pitch_deg, "roll_deg": st.roll_deg,
    }  # fmt: skip


def _can_transport(bus: Any, *, fd: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "can", "interface": bus.interface, "channel": bus.channel, "fd": fd}
    if bus.bitrate is not None:
        out["bitrate"] = bus.bitrate
    return out


def can_radar_device(scenario: Scenario, sensor_id: str) -> dict[str, Any]:
    """The ``can_radar`` device block reading the bus of the sensor's ``can`` block."""
    bus = scenario.sensor(sensor_id).can
    if bus is None:  # the scenario parser requires one for a can_radar sensor
        raise ConfigError(f"sensors[{sensor_id}].can", "a can_radar sensor needs a can block")
    return {
        "id": sensor_id,
        "protocol": "can_radar",
        "transport": _can_transport(bus, fd=bus.fd),
        "site": _site(scenario, sensor_id),
        "wire_sensor_id": scenario.wire_id(sensor_id),
        "can_id_offset": bus.id_offset,
    }


def _sensor(scenario: Scenario, spec: str, sensor_id: str, common: list[str], tcp: bool) -> dict[str, Any]:
    s = scenario.sensor(sensor_id)
    if s.kind == "serial_radar":
        block = {
            "id": sensor_id,
            "protocol": "serial_radar",
            "transport": {"kind": "serial", "url": "", "baudrate": 921600},  # the url: from the ready line
            "site": _site(scenario, sensor_id),
            "wire_sensor_id": scenario.wire_id(sensor_id),
        }
        link = ["--tcp", "127.0.0.1:0"] if tcp else ["--pty"]
        return {
            "module": "sim_devices.emulate",
            "args": [*common, *link],
            "devices": [block],
            "fill": "serial_url",
        }
    if s.kind == "can_radar":
        block = can_radar_device(scenario, sensor_id)
        return {"module": "sim_devices.can_radar_emulator", "args": common, "devices": [block], "fill": None}
    # asterix: the frigate emulator sends ASTERIX and own-ship NMEA to two free ports.
    ports = free_udp_port(), free_udp_port()
    nav_id = f"{sensor_id}{NAV_SUFFIX}"
    nav = {
        "id": nav_id,
        "protocol": "nmea",
        "transport": {"kind": "udp", "bind_host": "127.0.0.1", "bind_port": ports[1]},
    }
    feed = {
        "id": sensor_id,
        "protocol": "asterix",
        "transport": {"kind": "udp", "bind_host": "127.0.0.1", "bind_port": ports[0]},
        # lever_arm_m and azimuth_reference: from the ready line (the emulator's ship model).
        "ownship": {"source": nav_id},
        "asterix": {
            "sigma_range_m": s.sigma_range_m,
            "sigma_azimuth_mrad": s.sigma_angle_mrad,
            "sigma_height_m": s.sigma_height_m,
            "sigma_ground_speed_mps": s.sigma_speed_mps,
        },
    }
    args = ["sim_devices.frigate_emulator", *common, "--asterix", f"127.0.0.1:{ports[0]}"]
    args += ["--nmea", f"127.0.0.1:{ports[1]}"]
    # Through sim_devices.fast_exit: libasterix's tables take a second to tear down at exit.
    return {"module": "sim_devices.fast_exit", "args": args, "devices": [nav, feed], "fill": "frigate"}


def _launcher(scenario: Scenario, spec: str, lc: Any, epoch_ns: int, speed: float) -> dict[str, Any]:
    where = f"launchers[{lc.id}]"
    if not lc.keys:
        raise ConfigError(f"{where}.keys", "a launcher the gateway cues needs at least one key")
    if lc.transport == "can" and lc.can is None:
        raise ConfigError(f"{where}.can", "a CAN launcher needs can = {interface, channel, fd = true}")
    serial = lc.transport == "serial"
    block = {
        "id": lc.id,
        "protocol": "launcher",
        # The launcher ICD is CAN FD; a serial launcher's pty path comes from the ready line.
        "transport": {"kind": "serial", "url": "", "baudrate": 921600}
        if serial
        else _can_transport(lc.can, fd=True),
        "launcher_id": scenario.launcher_wire_id(lc.id),
        "cue_key_id": min(lc.keys),
        "cue_keys": {str(k): v for k, v in lc.keys.items()},
        "can_id_offset": lc.can.id_offset if lc.can is not None else 0,
    }
    # --no-events: nobody reads the child's stdout past its ready line.
    args = [
        "--scenario",
        spec,
        "--launcher",
        lc.id,
        "--epoch-ns",
        str(epoch_ns),
        "--speed",
        repr(speed),
        "--no-events",
    ]
    fill = "serial_url" if serial else None
    return {
        "id": lc.id,
        "module": "sim_devices.launcher_emulator",
        "args": args,
        "devices": [block],
        "fill": fill,
    }


def bench_plan(
    spec: str, *, epoch_ns: int, speed: float, tcp: bool, only: set[str] | None,
    overridden: set[str], launchers: set[str],
) -> dict[str, Any]:  # fmt: skip
    """The plan (module docstring); ConfigError naming the key when the scenario does not allow it."""
    scenario = resolve_scenario(spec)
    if only is not None:
        unknown = only - {s.id for s in scenario.sensors} - {lc.id for lc in scenario.launchers}
        if unknown:
            raise ConfigError("emulation.only", f"no such device(s) in the scenario: {sorted(unknown)}")
    common_tail = ["--epoch-ns", str(epoch_ns), "--speed", repr(speed)]
    emulators, skipped = [], []
    for s in scenario.sensors:
        if s.id in overridden or (only is not None and s.id not in only):
            continue
        if s.kind not in _EMULATED:
            skipped.append({"id": s.id, "kind": s.kind})
            continue
        common = ["--scenario", spec, "--sensor", s.id, *common_tail]
        emulators.append({"id": s.id, "kind": s.kind, **_sensor(scenario, spec, s.id, common, tcp)})
    for lc in scenario.launchers:
        if lc.id not in launchers or lc.id in overridden or (only is not None and lc.id not in only):
            continue
        emulators.append({"kind": "launcher", **_launcher(scenario, spec, lc, epoch_ns, speed)})
    coverage = {
        s.id: {
            "range_m": s.range_max_m,
            "az_center_deg": s.azimuth_center_deg,
            "az_width_deg": s.azimuth_width_deg,
        }
        for s in scenario.sensors
    }
    truth = {"module": "sim_devices.truth_publisher", "args": ["--scenario", spec, *common_tail]}
    out = {"event": "ready", "emulators": emulators, "skipped": skipped}
    return {**out, "truth": truth, "coverage": coverage}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_plan", description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--epoch-ns", type=int, required=True)
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--tcp", action="store_true", help="serial radars on loopback TCP instead of ptys")
    ap.add_argument("--only", action="append", help="only these devices (repeatable)")
    ap.add_argument("--overridden", action="append", default=[], help="devices the config replaces")
    ap.add_argument("--launcher", action="append", default=[], help="launchers the gateway cues")
    ns = ap.parse_args(argv)
    try:
        out = bench_plan(
            ns.scenario, epoch_ns=ns.epoch_ns, speed=ns.speed, tcp=ns.tcp,
            only=set(ns.only) if ns.only else None, overridden=set(ns.overridden), launchers=set(ns.launcher),
        )  # fmt: skip
    except ConfigError as exc:
        print(json.dumps({"event": "ready", "error": {"key": exc.key, "reason": exc.reason}}), flush=True)
        return 2
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
