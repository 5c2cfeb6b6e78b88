"""CAN radar end to end: emulator -> python-can bus -> driver -> normalised reports.

* in one process on python-can's ``virtual`` bus (classic, and FD with faults);
* across processes on ``udp_multicast``, only inside a network namespace this
  test creates (``unshare -n``; loopback up, multicast routed to it), never on
  the machine's real interfaces; skipped with the reason where that is not possible.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
import time
from typing import Any

import pytest

from gateway.bus import Topic
from gateway.config import CanTransportConfig, DeviceConfig
from gateway.devices.base import DriverContext, RawFrame, ReportsIn
from gateway.devices.can_radar import CanRadarDriver
from gateway.health import DeviceStats
from gateway.transports.can import CanTransport
from hilgw.geo import site_geometry
from hilgw.v1 import health_pb2
from sim_devices.can_radar_emulator import CanRadarEmulator, build_parser
from tests.can_support import virtual_bus_open
from tests.netns import REPO, emit_result, run_in_netns
from tests.waiting import WAIT_S, eventually, wait_ready

pytestmark = pytest.mark.e2e

_chan = itertools.count()
SITE = {"lat_deg": 52.0, "lon_deg": 4.0, "alt_m": 10.0}


def make_driver(transport: dict[str, Any]) -> tuple[CanRadarDriver, Topic[ReportsIn]]:
    dev = DeviceConfig.model_validate(
        {"id": "can-radar", "protocol": "can_radar", "transport": transport, "site": SITE}
    )
    reports: Topic[ReportsIn] = Topic("reports")
    ctx = DriverContext("gw", reports, Topic[RawFrame]("raw"), DeviceStats("can-radar", "can_radar", "can"))
    ctx.sensor_index = 0
    geo = site_geometry("can-radar", **SITE)
    return CanRadarDriver(dev, ctx, geo), reports


async def collect(reports: Topic[ReportsIn], n: int, within_s: float) -> int:
    sub = reports.subscribe("test", maxsize=100_000)
    got = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within_s):
            while got < n:
                got += len((await sub.get()).reports.t_ns)
    return got


@pytest.mark.parametrize("fd", [False, True], ids=["classic", "fd"])
async def test_in_process_virtual_bus(fd: bool) -> None:
    chan = f"e2e-{next(_chan)}"
    driver, reports = make_driver(
        {"kind": "can", "interface": "virtual", "channel": chan, "fd": fd, "poll_s": 0.01}
    )
    args = ["--channel", chan, "--synthetic", "20", "--rate-hz", "20", "--duplicate", "0.05", "--shuffle"]
    ns = build_parser().parse_args([*args, "--fd"] if fd else args)
    stop = asyncio.Event()
    task = asyncio.create_task(driver.run())
    await virtual_bus_open(chan)
    async with CanTransport(CanTransportConfig(kind="can", interface="virtual", channel=chan)) as tx:
        emu = CanRadarEmulator(ns, tx, time.time_ns())
        emu_task = asyncio.create_task(emu.run(stop))
        got = await collect(reports, 100, WAIT_S)
        stop.set()
        await emu_task
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    stats = driver.ctx.stats
    assert got >= 100
    assert stats.state == health_pb2.DEVICE_STATE_UP, stats.detail  # the status frame arrived
    assert stats.device_time_ns > 0
    assert stats.reports_out >= 100
    if not fd:
        # A duplicated report part is a counted duplicate; a duplicated status
        # frame is simply a second status (decoded, not a drop).
        assert 0 < stats.drops["duplicate"] <= emu.counters["frames_duplicated"]
    assert "incomplete" not in stats.drops
    assert "range" not in stats.drops


GROUP = "239.74.163.2"


async def _netns_main() -> dict[str, Any]:
    """Runs inside the namespace: emulator as a child process, driver here."""
    transport = {"kind": "can", "interface": "udp_multicast", "channel": GROUP, "poll_s": 0.02}
    driver, reports = make_driver(transport)
    task = asyncio.create_task(driver.run())
    # Joined the group before the emulator sends (it says "open: ..." until the first frame).
    await eventually(
        lambda: driver.ctx.stats.detail.startswith("open: "), what="the driver's bus open", task=task
    )
    emu = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sim_devices.can_radar_emulator", "--interface", "udp_multicast",
        "--channel", GROUP, "--synthetic", "10", "--rate-hz", "10", "--duration", "60",
        stdout=asyncio.subprocess.PIPE, cwd=str(REPO),
    )  # fmt: skip
    assert emu.stdout is not None
    (ready,) = await wait_ready(emu, what="CAN radar emulator")
    got = await collect(reports, 50, WAIT_S)
    emu.terminate()
    stopped = json.loads(await asyncio.wait_for(emu.stdout.readline(), WAIT_S))
    await emu.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    st = driver.ctx.stats
    return {"ready": ready, "stopped": stopped, "got": got, "state": st.state, "drops": dict(st.drops)}


def netns_body() -> None:
    emit_result(asyncio.run(_netns_main()))


def test_cross_process_udp_multicast_in_a_network_namespace() -> None:
    res = run_in_netns("from tests.e2e.test_can_e2e import netns_body; netns_body()", timeout_s=180)
    assert res["ready"]["event"] == "ready"
    assert res["ready"]["interface"] == "udp_multicast"
    assert res["got"] >= 50
    assert res["state"] == health_pb2.DEVICE_STATE_UP
    assert res["stopped"]["frames_sent"] > 0
