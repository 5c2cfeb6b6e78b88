"""Launcher end to end: gateway driver <-> launcher emulator.

* CAN FD on python-can's ``virtual`` bus in one process: ack, nack on
  request, stale cue, no ack, silent heartbeat;
* serial: the emulator as a separate process on a pty it creates.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.base import Role
from drivers.launcher import Ack, AckResult, Cue, LauncherCanCodec, LauncherStatus, NackReason
from gateway.bus import Topic
from gateway.config import CanTransportConfig, DeviceConfig
from gateway.devices.base import DriverContext, RawFrame, ReportsIn
from gateway.devices.launcher import LauncherDriver, LauncherIn
from gateway.health import DeviceStats
from gateway.transports.can import CanTransport
from hilgw.errors import LocalProtocolError, TransportError
from hilgw.v1 import health_pb2
from sim_devices.faults import FaultSchedule
from sim_devices.launcher_emulator import Behaviour, CanLink, LauncherEmulator, LauncherFaults, serve
from sim_devices.scenario_faults import FaultConfig, FaultKind
from tests.waiting import WAIT_S, eventually, wait_ready

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
KEY = bytes(range(100, 132))
LID = 3
_chan = itertools.count()
_seq = itertools.count(int(time.time()))  # the caller numbers cues (the cue path, ICD §7.3)


def driver_for(transport: dict[str, Any], **over: Any) -> LauncherDriver:
    dev = DeviceConfig.model_validate(
        {
            "id": "launcher-1",
            "protocol": "launcher",
            "transport": transport,
            "launcher_id": LID,
            "cue_key_id": 7,
            "cue_keys": {"7": "hex:" + KEY.hex()},
            **over,
        }
    )
    ctx = DriverContext(
        "gw",
        Topic[ReportsIn]("reports"),
        Topic[RawFrame]("raw"),
        DeviceStats("launcher-1", "launcher", "can"),
    )
    return LauncherDriver(dev, ctx)


def a_cue(window_s: float = 5.0, offset_s: float = 0.0) -> Cue:
    now = time.time_ns() + int(offset_s * 1e9)
    return Cue(
        launcher_id=LID,
        key_id=0,  # the driver fills in its configured key id
        cue_id=501,
        system_track_id=12,
        time_of_validity_ns=now,
        valid_from_ns=now - 1_000_000_000,
        valid_until_ns=now + int(window_s * 1e9),
        position_m=(4_000_000.0, 300_000.0, 4_900_000.0),
        velocity_mps=(100.0, 50.0, -20.0),
        pos_sigma_max_m=40.0,
        pos_sigma_min_m=10.0,
        vel_sigma_max_mps=5.0,
        vel_sigma_min_mps=1.0,
        sequence=next(_seq),
    )


@contextlib.asynccontextmanager
async def can_link(
    behaviour: Behaviour,
    *,
    launcher_keys: dict[int, bytes] | None = None,
    icd_version: int = 2,
    faults: LauncherFaults | None = None,
    **over: Any,
) -> AsyncIterator[tuple[LauncherDriver, LauncherEmulator]]:
    chan = f"launch-{next(_chan)}"
    transport = {"kind": "can", "interface": "virtual", "channel": chan, "fd": True, "poll_s": 0.01}
    driver = driver_for(transport, **over)
    emu = LauncherEmulator(LID, {7: KEY}, behaviour)
    tx = CanTransport(CanTransportConfig(kind="can", interface="virtual", channel=chan, fd=True, poll_s=0.01))
    await tx.open()
    stop = asyncio.Event()
    emu_task = asyncio.create_task(
        serve(
            emu,
            CanLink(
                tx,
                LauncherCanCodec(
                    Role.DEVICE, launcher_id=LID, keys=launcher_keys or {7: KEY}, icd_version=icd_version
                ),
            ),
            stop,
            20.0,
            faults,
        )
    )
    task = asyncio.create_task(driver.run())
    try:
        await asyncio.wait_for(driver.wait_connected(), WAIT_S)
        yield driver, emu
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await emu_task
        await tx.close()


async def next_ack(events: Topic[LauncherIn], within_s: float = WAIT_S) -> Ack | None:
    sub = events.subscribe("test")
    try:
        async with asyncio.timeout(within_s):
            while True:
                item = await sub.get()
                if isinstance(item.event, Ack):
                    return item.event
    except TimeoutError:
        return None
    finally:
        sub.close()


async def test_cue_is_acked_and_heartbeats_mark_the_launcher_up() -> None:
    async with can_link(Behaviour()) as (driver, emu):
        heard: list[LauncherIn] = []
        driver.add_listener(heard.append)
        waiter = asyncio.create_task(next_ack(driver.events))
        sent = await driver.send_cue(a_cue())
        ack = await waiter
        assert ack is not None
        assert ack.result is AckResult.ACK
        assert ack.cue_sequence == sent.sequence
        assert ack.cue_id == 501
        assert sent.key_id == 7
        assert len(sent.mac) == 32
        assert 501 in emu.validator.held
        await eventually(lambda: any(isinstance(h.event, LauncherStatus) for h in heard), what="a heartbeat")
        await eventually(lambda: driver.ctx.stats.state == health_pb2.DEVICE_STATE_UP, what="launcher UP")
        assert driver.ctx.stats.frames_out == 2  # body + MAC frame
        second = await driver.send_cue(a_cue())
        assert second.sequence == (sent.sequence or 0) + 1


@pytest.mark.parametrize(
    ("behaviour", "cue_offset_s", "want"),
    [
        (Behaviour(nack=NackReason.NOT_READY), 0.0, NackReason.NOT_READY),
        (Behaviour(), -30.0, NackReason.STALE),  # window closed by the launcher's clock
    ],
    ids=["told-to-nack", "stale"],
)
async def test_nacks(behaviour: Behaviour, cue_offset_s: float, want: NackReason) -> None:
    async with can_link(behaviour) as (driver, _):
        waiter = asyncio.create_task(next_ack(driver.events))
        await driver.send_cue(a_cue(offset_s=cue_offset_s))
        ack = await waiter
        assert ack is not None
        assert ack.result is AckResult.NACK
        assert ack.reason is want


async def test_no_ack_and_late_ack() -> None:
    async with can_link(Behaviour(no_ack=True)) as (driver, emu):
        waiter = asyncio.create_task(next_ack(driver.events, 0.4))
        await driver.send_cue(a_cue())
        assert await waiter is None
        assert emu.log[-1]["reason"] == "NONE"  # accepted, just not answered
    async with can_link(Behaviour(ack_delay_s=0.5)) as (driver, _):
        waiter = asyncio.create_task(next_ack(driver.events, 2.0))
        t0 = time.monotonic()
        await driver.send_cue(a_cue())
        assert await waiter is not None
        assert time.monotonic() - t0 >= 0.45


async def test_silent_heartbeat_sends_no_status() -> None:
    async with can_link(Behaviour(silent_heartbeat=True)) as (driver, _):
        heard: list[LauncherIn] = []
        driver.add_listener(heard.append)
        await asyncio.sleep(0.4)
        assert not any(isinstance(h.event, LauncherStatus) for h in heard)


async def test_a_launcher_signing_with_another_key_is_never_heard() -> None:
    """ICD v2 §7.5: every heartbeat and ack fails verification, is dropped and
    counted (auth_bad_mac), reported to rejection listeners, and the device
    never comes UP, so the cue path never hears an authenticated heartbeat."""
    async with can_link(Behaviour(), launcher_keys={7: bytes(32)}) as (driver, emu):
        heard: list[LauncherIn] = []
        rejected: list[str] = []
        driver.add_listener(heard.append)
        driver.add_rejection_listener(lambda _dev, r: rejected.append(r.reason))
        await driver.send_cue(a_cue())
        await eventually(lambda: emu.log and driver.ctx.stats.drops["auth_bad_mac"] >= 3, what="3 bad MACs")
        assert emu.log[-1]["reason"] == "NONE"  # the launcher took the cue; its ack is not believed
        assert not heard
        drops = driver.ctx.stats.drops
        assert drops["auth_bad_mac"] >= 3
        assert set(rejected) == {"auth_bad_mac"}
        assert 2 <= len(rejected) <= drops["auth_bad_mac"]  # (the listener came after the first frames)
        assert driver.ctx.stats.state != health_pb2.DEVICE_STATE_UP


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("launcher_forged", "auth_bad_mac"),
        ("launcher_replayed", "auth_replayed"),
        ("launcher_stale", "auth_stale"),
    ],
)
async def test_forged_replayed_stale_answers_from_the_emulator_are_dropped(
    kind: FaultKind, reason: str
) -> None:
    """The emulator's fault window (0.4 s to 1.0 s) puts attacker answers on the bus
    instead of its own: the driver drops every one under the fault's reason and
    hears no heartbeat then; before and after, heartbeats pass."""
    schedule = FaultSchedule([FaultConfig(device="d", kind=kind, start_s=0.4, duration_s=0.6)], "d")
    faults = LauncherFaults(schedule, epoch_ns=time.time_ns(), seed=1)
    async with can_link(Behaviour(), faults=faults) as (driver, _):
        heard: list[tuple[float, LauncherIn]] = []
        driver.add_listener(lambda item: heard.append((faults.t(), item)))
        faults.epoch_ns = time.time_ns()  # scenario time 0 once the link is up (a loaded machine is slow)
        await asyncio.sleep(max(0.0, 1.4 - faults.t()))
    times = [t for t, h in heard if isinstance(h.event, LauncherStatus)]
    assert any(t < 0.4 for t in times)
    assert any(t > 1.05 for t in times)
    assert not [t for t in times if 0.45 < t < 0.95]  # (edges: a frame in flight)
    drops = driver.ctx.stats.drops
    assert drops[reason] >= 5
    assert set(drops) == {reason}
    assert faults.counts[f"replies_{kind.removeprefix('launcher_')}"] >= drops[reason]


async def test_answer_age_is_judged_at_frame_receipt_not_when_the_loop_gets_to_it() -> None:
    """A loaded gateway: its loop takes each batch of frames 1.5 s (> reply_max_age_s)
    after the transport received them. The age check (ICD §7.5) is against the
    frame's receive stamp, so fresh heartbeats still verify; judged at processing
    time they would all be refused as auth_stale and the launcher would look lost."""
    async with can_link(Behaviour()) as (driver, _):
        driver.ctx.wall_ns = lambda: time.time_ns() + 1_500_000_000
        heard: list[LauncherIn] = []
        driver.add_listener(heard.append)
        await asyncio.sleep(0.5)
    assert [h for h in heard if isinstance(h.event, LauncherStatus)]
    assert driver.ctx.stats.drops["auth_stale"] == 0


async def test_a_v1_launcher_is_refused_unless_accepted(caplog: pytest.LogCaptureFixture) -> None:
    async with can_link(Behaviour(), icd_version=1) as (driver, _):
        heard: list[LauncherIn] = []
        driver.add_listener(heard.append)
        await eventually(lambda: driver.ctx.stats.drops["auth_v1"] >= 2, what="2 v1 frames refused")
        assert not heard
        assert "accept_launcher_icd_v1" in driver.ctx.stats.last_error
    assert "accept_launcher_icd_v1 = true" not in caplog.text
    with caplog.at_level("WARNING"):
        async with can_link(Behaviour(), icd_version=1, accept_launcher_icd_v1=True) as (driver, _):
            waiter = asyncio.create_task(next_ack(driver.events))
            await driver.send_cue(a_cue())
            got = await waiter
            assert got is not None
            assert got.icd_version == 1
            assert driver.ctx.stats.state == health_pb2.DEVICE_STATE_UP
    assert "accept_launcher_icd_v1 = true" in caplog.text  # a WARNING at every start


async def test_the_driver_keeps_no_sequence_counter() -> None:
    """The cue path numbers cues (ICD §7.3): none, or one not above the last sent, is refused."""
    async with can_link(Behaviour()) as (driver, _):
        with pytest.raises(LocalProtocolError, match="sequence None"):
            await driver.send_cue(dataclasses.replace(a_cue(), sequence=None))
        sent = await driver.send_cue(a_cue())
        with pytest.raises(LocalProtocolError, match="not above"):
            await driver.send_cue(dataclasses.replace(a_cue(), sequence=sent.sequence))


async def test_send_while_the_link_is_down_raises() -> None:
    driver = driver_for({"kind": "can", "interface": "virtual", "channel": "never-opened", "fd": True})
    with pytest.raises(TransportError, match="down"):
        await driver.send_cue(a_cue())


async def test_serial_link_with_the_emulator_in_another_process() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sim_devices.launcher_emulator", "--transport", "serial",
        "--launcher-id", str(LID), "--key", f"7:{KEY.hex()}", "--heartbeat-hz", "10", "--duration", "120",
        stdout=asyncio.subprocess.PIPE, cwd=str(REPO),
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        (ready,) = await wait_ready(proc, what="launcher emulator")
        driver = driver_for({"kind": "serial", "url": ready["path"], "baudrate": 921600})
        task = asyncio.create_task(driver.run())
        await asyncio.wait_for(driver.wait_connected(), WAIT_S)
        waiter = asyncio.create_task(next_ack(driver.events))
        sent = await driver.send_cue(a_cue())
        ack = await waiter
        assert ack is not None
        assert ack.result is AckResult.ACK
        assert ack.cue_sequence == sent.sequence
        line = json.loads(await asyncio.wait_for(proc.stdout.readline(), WAIT_S))
        # The emulator verified the very tag the driver sealed (one MAC per cue).
        want = {
            "event": "cue",
            "cue_id": 501,
            "sequence": sent.sequence,
            "reason": "NONE",
            "mac": sent.mac.hex(),
        }
        assert line == want
        await eventually(lambda: driver.ctx.stats.state == health_pb2.DEVICE_STATE_UP, what="launcher UP")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        proc.terminate()
        await proc.wait()
