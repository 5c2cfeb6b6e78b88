"""Emulator of a radar integrated by description (issue 19): the same description, the device role.

It reads the gateway's own config file, takes the device block named by
``--device`` (protocol ``can_dbc_radar`` or ``binary_radar``) and builds the
codec from that block's description in :attr:`~drivers.base.Role.DEVICE`: what
it sends is exactly what the gateway's codec was told to expect, so a
description is checked end to end without writing a line of code for the
radar. Targets are synthetic: ``--targets`` tracks flying circles around the
sensor (range, azimuth, elevation, range rate in the sensor's polar frame).

Serial: ``--pty`` opens a pseudo-terminal and writes to it (the ready line
gives its ``path`` for the gateway's ``transport.url``). CAN: the device
block's own transport (python-can; a ``virtual`` bus only reaches the same
process, use socketcan/vcan or udp_multicast across processes).

On ready one JSON line goes to stdout:
``{"event": "ready", "device": "vr200-serial", "protocol": "binary_radar", "path": "/dev/pts/7"}``.

    python -m sim_devices.described_emulator --config deploy/examples/vendor-radar/gateway.toml \\
        --device vr200-serial --pty --rate-hz 5 --duration-s 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from drivers.base import Role
from drivers.described import BinaryRadarCodec, DbcRadarCodec
from drivers.radar import TRACK_BATCH_DTYPE
from gateway.config import DeviceConfig, load_config
from gateway.sections.transports import CanTransportConfig
from hilgw.errors import ConfigError
from hilgw.process import stop_with_parent

__all__ = ["DescribedRadarEmulator", "main", "synthetic_tracks"]

_Ready = Callable[[dict[str, object]], None]


def synthetic_tracks(n: int, t_ns: int) -> npt.NDArray[np.void]:
    """``n`` tracks at time ``t_ns`` on circles around the sensor (deterministic in ``t_ns``)."""
    arr = np.zeros(n, TRACK_BATCH_DTYPE)
    t = t_ns * 1e-9
    i = np.arange(n)
    arr["sensor_track_id"] = i + 1
    arr["sensor_time_ns"] = t_ns
    arr["range_m"] = 2000.0 + 1500.0 * i + 300.0 * np.sin(0.05 * t + i)
    arr["range_rate_mps"] = 300.0 * 0.05 * np.cos(0.05 * t + i)
    # In (0, pi): a forward-right sector, representable by signed and unsigned azimuth signals.
    arr["azimuth_rad"] = 0.2 + np.mod(0.25 * i, 2.5) + 0.2 * np.sin(0.01 * t)
    arr["elevation_rad"] = np.radians(2.0 + i % 5)
    arr["sigma_range_m"] = 5.0
    arr["sigma_azimuth_rad"] = 0.002
    arr["sigma_elevation_rad"] = 0.004
    arr["sigma_range_rate_mps"] = 0.5
    arr["quality"] = 0.9
    return arr


class DescribedRadarEmulator:
    """The device end of a described radar: tracks in, wire data out (sans-I/O)."""

    def __init__(self, device: DeviceConfig) -> None:
        if device.compiled_codec is None:
            raise ConfigError(
                f"devices[{device.id}].protocol", "not a described radar (can_dbc_radar, binary_radar)"
            )
        self.device = device
        self.codec: DbcRadarCodec | BinaryRadarCodec
        if device.protocol == "can_dbc_radar":
            self.codec = DbcRadarCodec(Role.DEVICE, device.compiled_codec, id_offset=device.can_id_offset)
        else:
            self.codec = BinaryRadarCodec(Role.DEVICE, device.compiled_codec)

    def encode(self, tracks: npt.NDArray[np.void]) -> object:
        """Bytes (serial) or a list of CanFrame (CAN) carrying ``tracks``."""
        return self.codec.encode_tracks(tracks)


def _device(config_path: str, device_id: str) -> DeviceConfig:
    cfg = load_config(config_path)
    for d in cfg.devices:
        if d.id == device_id:
            return d
    raise ConfigError("--device", f"no device {device_id!r} in {config_path}")


async def _run_can(
    emu: DescribedRadarEmulator, ns: argparse.Namespace, ready: Callable[[dict[str, object]], None]
) -> None:
    from sim_devices.can_device import EmulatorCanTransport

    t = emu.device.transport
    assert isinstance(t, CanTransportConfig)
    async with EmulatorCanTransport(t) as bus:
        ready({"interface": t.interface, "channel": t.channel})
        await _loop(ns, lambda tracks: bus.send_many(emu.codec.encode_tracks(tracks)))  # type: ignore[arg-type]


async def _run_pty(
    emu: DescribedRadarEmulator, ns: argparse.Namespace, ready: Callable[[dict[str, object]], None]
) -> None:
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    ready({"path": os.ttyname(slave)})

    async def write(tracks: npt.NDArray[np.void]) -> None:
        data = emu.codec.encode_tracks(tracks)
        assert isinstance(data, bytes)
        os.write(master, data)

    try:
        await _loop(ns, write)
    finally:
        os.close(master)
        os.close(slave)


async def _loop(ns: argparse.Namespace, send: Callable[[npt.NDArray[np.void]], object]) -> None:
    period = 1.0 / ns.rate_hz
    end = time.monotonic() + ns.duration_s
    while time.monotonic() < end:
        result = send(synthetic_tracks(ns.targets, time.time_ns()))
        if asyncio.iscoroutine(result):
            await result
        await asyncio.sleep(period)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="described_emulator", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="the gateway config holding the device block")
    ap.add_argument("--device", required=True, help="id of the can_dbc_radar / binary_radar device")
    ap.add_argument(
        "--pty", action="store_true", help="serial: write to a new pty (else the block's transport)"
    )
    ap.add_argument("--targets", type=int, default=5)
    ap.add_argument("--rate-hz", type=float, default=5.0)
    ap.add_argument("--duration-s", type=float, default=60.0, help="stop after this long (bounded)")
    return ap


def main(argv: list[str] | None = None) -> int:
    stop_with_parent()  # a SIGKILLed parent leaves no emulator behind
    ns = build_parser().parse_args(argv)
    try:
        emu = DescribedRadarEmulator(_device(ns.config, ns.device))
    except ConfigError as exc:
        print(f"described_emulator: {exc}", file=sys.stderr)
        return 2

    def ready(extra: dict[str, object]) -> None:
        line = {"event": "ready", "device": emu.device.id, "protocol": emu.device.protocol, **extra}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    if emu.device.protocol == "can_dbc_radar":
        asyncio.run(_run_can(emu, ns, ready))
    elif ns.pty:
        asyncio.run(_run_pty(emu, ns, ready))
    else:
        print("described_emulator: a binary_radar emulator writes to --pty", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
