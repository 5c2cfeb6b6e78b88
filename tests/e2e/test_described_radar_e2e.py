"""A partner radar integrated by description only (issue 19), end to end.

The example in deploy/examples/vendor-radar/ is config and description files
(a DBC, a layout TOML, a gateway.toml); the emulator is driven by the same
device block. Serial runs over a pty, CAN over python-can's in-process
virtual bus; the gateway side is the real driver with its real transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
import tty
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from drivers.framing import encode_frame
from gateway.bus import Topic
from gateway.config import CanTransportConfig, DeviceConfig, parse_config
from gateway.devices import driver_class
from gateway.devices.base import DeviceDriver, DriverContext, DriverServices, RawFrame, ReportsIn
from gateway.health import DeviceStats
from gateway.supervisor import Gateway
from gateway.transports import memory_registry
from hilgw.tomlconfig import read_toml
from hilgw.v1 import health_pb2, track_pb2
from sim_devices.can_device import EmulatorCanTransport
from sim_devices.described_emulator import DescribedRadarEmulator, synthetic_tracks
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "vendor-radar"
_chan = itertools.count()


def example_device(device_id: str, transport: dict[str, Any]) -> DeviceConfig:
    """The example's device block, on a test transport (everything else as shipped)."""
    raw = read_toml(EXAMPLE / "gateway.toml")
    raw["devices"] = [{**d, "transport": transport} for d in raw["devices"] if d["id"] == device_id]
    return parse_config(raw, "example", base_dir=EXAMPLE).devices[0]


def build(dev: DeviceConfig) -> tuple[DeviceDriver, Topic[ReportsIn]]:
    reports: Topic[ReportsIn] = Topic("reports")
    stats = DeviceStats(dev.id, dev.protocol, dev.transport.kind)
    ctx = DriverContext("gw", reports, Topic[RawFrame]("raw"), stats)
    driver: DeviceDriver = driver_class(dev.protocol).build(dev, ctx, DriverServices(lambda g: 0))
    return driver, reports


def replayed(dev: DeviceConfig, raw: Any) -> np.ndarray:
    """What a fresh driver publishes from the recorded raw chunks (``hilgw replay``'s path)."""
    driver, reports = build(dev)
    sub = reports.subscribe("replay", maxsize=10_000)
    for frame in raw.get_all():
        driver.feed_raw(frame.data, frame.receive_time_ns)  # type: ignore[attr-defined]
    return np.concatenate([r.source for r in sub.get_all()])


async def opened(driver: DeviceDriver) -> None:
    """Until the driver has opened its transport (it says "open: ..." then)."""
    await eventually(lambda: driver.ctx.stats.detail.startswith("open: "), what=f"{driver.config.id} open")


async def take(sub: Any, n: int) -> np.ndarray:
    """Rows of ``n`` reports from a subscription made before anything was sent."""
    rows = []
    async with asyncio.timeout(5):
        while sum(len(r) for r in rows) < n:
            got = await sub.get()
            assert got.source is not None
            rows.append(got.source)
    return np.concatenate(rows)


def assert_close(got: np.ndarray, sent: np.ndarray, range_tol: float, angle_tol: float) -> None:
    sent = sent[np.argsort(sent["sensor_track_id"])]
    got = got[np.argsort(got["sensor_track_id"])][: len(sent)]
    assert np.array_equal(got["sensor_track_id"], sent["sensor_track_id"])
    assert np.allclose(got["range_m"], sent["range_m"], atol=range_tol)
    assert np.allclose(got["azimuth_rad"], sent["azimuth_rad"], atol=angle_tol)
    assert np.allclose(got["elevation_rad"], sent["elevation_rad"], atol=angle_tol)


async def test_binary_radar_over_a_pty() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        dev = example_device("vr200-serial", {"kind": "serial", "url": os.ttyname(slave), "baudrate": 115200})
        driver, reports = build(dev)
        task = asyncio.create_task(driver.run())
        await opened(driver)
        sub = reports.subscribe("test", maxsize=10_000)
        raw = driver.ctx.raw.subscribe("test", maxsize=10_000)
        emu = DescribedRadarEmulator(dev)
        now = time.time_ns()
        sent = synthetic_tracks(4, now)
        bad = bytearray(emu.codec.compiled.dtype.itemsize)  # msg_type 0, not the layout's 0x21
        os.write(master, encode_frame(bytes(bad)) + emu.codec.encode_tracks(sent))  # type: ignore[arg-type]
        got = await take(sub, 4)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        os.close(master)
        os.close(slave)
    assert_close(got, sent, range_tol=0.05 + 1e-9, angle_tol=np.radians(0.005) + 1e-9)
    # Time of day on the wire, unwrapped against the receive time to the day of sending.
    assert np.all(np.abs(got["sensor_time_ns"] - now) < 1_000_000)  # ms on the wire
    assert np.allclose(got["range_rate_mps"], sent["range_rate_mps"], atol=0.05 + 1e-9)
    assert driver.ctx.stats.drops["const"] == 1
    # Replay: the recorded chunks give the same rows again.
    assert np.array_equal(replayed(dev, raw), got)


async def test_can_dbc_radar_over_a_virtual_bus() -> None:
    chan = f"vendor-{next(_chan)}"
    transport = {"kind": "can", "interface": "virtual", "channel": chan, "poll_s": 0.01}
    dev = example_device("vr200-can", transport)
    driver, reports = build(dev)
    task = asyncio.create_task(driver.run())
    await opened(driver)
    sub = reports.subscribe("test", maxsize=10_000)
    raw = driver.ctx.raw.subscribe("test", maxsize=10_000)
    emu = DescribedRadarEmulator(dev)
    sent = synthetic_tracks(6, time.time_ns())
    async with EmulatorCanTransport(CanTransportConfig(kind="can", interface="virtual", channel=chan)) as bus:
        await bus.send_many(emu.codec.encode_tracks(sent))  # type: ignore[arg-type]
        got = await take(sub, 6)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert_close(got, sent, range_tol=0.25 + 1e-9, angle_tol=np.radians(0.05) + 1e-9)
    assert np.allclose(got["quality"], np.round(sent["quality"] * 50) / 50)
    assert np.allclose(got["sigma_azimuth_rad"], np.radians(0.3))  # a constant of the description
    assert driver.ctx.stats.state == health_pb2.DEVICE_STATE_UP
    assert np.array_equal(replayed(dev, raw), got)


async def test_the_gateway_runs_the_example_from_its_config_to_confirmed_tracks() -> None:
    """The example's gateway.toml, as shipped but on an in-memory link: the
    supervisor builds the driver by name, registers the sensor, and fusion
    confirms the emulator's tracks."""
    name = f"vendor-gw-{next(_chan)}"
    raw = read_toml(EXAMPLE / "gateway.toml")
    raw["devices"] = [{**d, "transport": {"kind": "memory", "name": name}} for d in raw["devices"][1:]]
    raw["fusion"] = {"publish_hz": 20.0}
    cfg = parse_config(raw, "example", base_dir=EXAMPLE)
    emu = DescribedRadarEmulator(cfg.devices[0])
    try:
        async with Gateway(cfg) as gw:
            tracks = gw.tracks.subscribe("test", maxsize=1000)
            _, dev_end = memory_registry.link(name)
            await dev_end.open()
            confirmed: set[int] = set()
            for _ in range(100):  # bounded: 100 scans of 10 ms at most
                await dev_end.write(emu.codec.encode_tracks(synthetic_tracks(3, time.time_ns())))  # type: ignore[arg-type]
                await asyncio.sleep(0.01)
                for b in tracks.get_all():
                    confirmed |= {
                        t.track_id for t in b.tracks if t.status == track_pb2.TRACK_STATUS_CONFIRMED
                    }
                if len(confirmed) >= 3:
                    break
            st = gw.stats["vr200-serial"]
            assert st.reports_out > 0
            assert st.state == health_pb2.DEVICE_STATE_UP
            assert len(confirmed) >= 3
    finally:
        memory_registry.forget(name)


async def test_can_dbc_radar_counts_frames_lost_below_the_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames the kernel or the reader queue dropped (the transport's link
    counters) are the device's drops, as for the built-in CAN radar."""
    import gateway.devices.described as described

    made: list[Any] = []
    create = described.create_transport

    def keep(config: Any) -> Any:
        made.append(create(config))
        return made[-1]

    monkeypatch.setattr(described, "create_transport", keep)
    chan = f"vendor-{next(_chan)}"
    dev = example_device(
        "vr200-can", {"kind": "can", "interface": "virtual", "channel": chan, "poll_s": 0.01}
    )
    driver, reports = build(dev)
    task = asyncio.create_task(driver.run())
    try:
        await opened(driver)
        sub = reports.subscribe("test", maxsize=10_000)
        made[0].counters["kernel_overflow"] += 7  # as the reader thread does
        made[0].counters["queue_full"] += 2
        emu = DescribedRadarEmulator(dev)
        async with EmulatorCanTransport(
            CanTransportConfig(kind="can", interface="virtual", channel=chan)
        ) as bus:
            await bus.send_many(emu.codec.encode_tracks(synthetic_tracks(2, time.time_ns())))  # type: ignore[arg-type]
            await take(sub, 2)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert driver.ctx.stats.drops["kernel_overflow"] == 7
    assert driver.ctx.stats.drops["queue_full"] == 2
