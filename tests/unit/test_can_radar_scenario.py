"""The CAN radar as a scenario sensor kind: the ``can`` block, its wire limits,
and the fault timeline applied by sim_devices/can_radar_emulator.py.

The emulator runs in-process on python-can's ``virtual`` bus and is stepped
at chosen wall times (:meth:`CanRadarEmulator.step`), so every fault window is
hit exactly, with no sleeping; a plain ``can.Bus`` on the same channel reads
what it put on the bus. The last tests run a real gateway in-process on the
virtual bus through a bus-off (DeviceHealth shows it, then recovers) and one
emulator process started the way ``hilgw emulate`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import can
import pytest

from drivers.base import Rejected, Role
from drivers.can_radar import CLASSIC_DB, FD_DB, CanRadarCodec
from drivers.radar import Status, TrackReportBatch
from gateway.config import CanTransportConfig, DeviceConfig, parse_config
from gateway.supervisor import Gateway
from gateway.transports.can import CAN_ERR_BUSOFF
from hilgw.can import CanFrame
from hilgw.errors import ConfigError
from hilgw.v1 import health_pb2
from sim_devices.bench_plan import can_radar_device
from sim_devices.can_device import EmulatorCanTransport
from sim_devices.can_radar_emulator import CanRadarEmulator, build_parser, resolve_bus
from sim_devices.emulate_all import start_sensor_emulator
from sim_devices.scenario import _WIRE_LIMITS, FAULT_TARGETS, load_scenario, parse_scenario
from tests.can_support import SENSOR, fault, scenario_toml, virtual_bus_open

_chan = itertools.count()
UP, DEGRADED, DOWN, RESTARTING = (
    health_pb2.DEVICE_STATE_UP,
    health_pb2.DEVICE_STATE_DEGRADED,
    health_pb2.DEVICE_STATE_DOWN,
    health_pb2.DEVICE_STATE_RESTARTING,
)


# --- the scenario model ---------------------------------------------------------------


def parse(text: str) -> Any:
    return parse_scenario(tomllib.loads(text), source="t.toml")


def test_can_radar_needs_its_can_block() -> None:
    text = scenario_toml("c").replace('can = { interface = "virtual", channel = "c" }', "")
    with pytest.raises(ConfigError, match=r"sensors\[radar-can\].*needs can = "):
        parse(text)


def test_can_block_is_rejected_on_other_kinds() -> None:
    text = scenario_toml("c").replace('kind = "can_radar"', 'kind = "serial_radar"')
    with pytest.raises(ConfigError, match=r"sensors\[radar-can\].*only for kind = 'can_radar'"):
        parse(text)


def test_can_block_is_read() -> None:
    scn = parse(scenario_toml("bus7", can_extra=", fd = true, bitrate = 500000, id_offset = 16"))
    bus = scn.sensor(SENSOR).can
    assert (bus.interface, bus.channel, bus.fd, bus.bitrate, bus.id_offset) == (
        "virtual",
        "bus7",
        True,
        500000,
        16,
    )
    assert scn.device_kind(SENSOR) == "can_radar"


def test_id_offset_must_keep_the_radar_ids_11_bit() -> None:
    top = max(m.frame_id for db in (CLASSIC_DB, FD_DB) for m in db.messages)
    parse(scenario_toml("c", can_extra=f", id_offset = {0x7FF - top}"))
    with pytest.raises(ConfigError, match=r"id_offset = \d+ puts the radar's id"):
        parse(scenario_toml("c", can_extra=f", id_offset = {0x7FF - top + 1}"))


def test_sigma_limits_follow_classic_or_fd() -> None:
    big = scenario_toml("c").replace("sigma_range_m = 10.0", "sigma_range_m = 300.0")
    with pytest.raises(ConfigError, match=r"sigma_range_m = 300.0 exceeds what can_radar on classic CAN"):
        parse(big)
    parse(big.replace('channel = "c"', 'channel = "c", fd = true'))  # u16 on CAN FD: fits
    with pytest.raises(ConfigError, match="on CAN FD can carry"):
        parse(big.replace("300.0", "700.0").replace('channel = "c"', 'channel = "c", fd = true'))


def _dbc_max(db: Any, message: str, signal: str) -> float:
    return float(db.get_message_by_name(message).get_signal_by_name(signal).maximum)


def test_wire_limits_are_the_dbc_ones() -> None:
    for key, db, msg in (("can_radar", CLASSIC_DB, "RADAR_TRK_ACC"), ("can_radar:fd", FD_DB, "RADAR_TRK_FD")):
        lim = _WIRE_LIMITS[key]
        assert lim["sigma_range_m"] == pytest.approx(_dbc_max(db, msg, "SigmaRange"))
        assert lim["sigma_angle_mrad"] == pytest.approx(1e3 * _dbc_max(db, msg, "SigmaAzimuth"))
        assert lim["sigma_angle_mrad"] == pytest.approx(1e3 * _dbc_max(db, msg, "SigmaElevation"))
        assert lim["sigma_range_rate_mps"] == pytest.approx(_dbc_max(db, msg, "SigmaRangeRate"))
        assert lim["sigma_angle_rate_mradps"] == pytest.approx(1e3 * _dbc_max(db, msg, "SigmaAzimuthRate"))


def test_fault_kinds_that_apply_to_a_can_radar() -> None:
    applies = {k for k, kinds in FAULT_TARGETS.items() if "can_radar" in kinds}
    assert applies == {"dropout", "delay", "duplicate", "clock_step", "silent_heartbeat", "can_bus_off"}
    assert "launcher:can" in FAULT_TARGETS["can_bus_off"]
    parse(scenario_toml("c", faults=fault("can_bus_off", 1.0, 1.0)))
    with pytest.raises(ConfigError, match=r"faults\[0\]\.kind.*bad_crc fault does not apply"):
        parse(scenario_toml("c", faults=fault("bad_crc", 1.0, 1.0)))


# --- the emulator's bus -----------------------------------------------------------------


def test_bus_comes_from_the_can_block_unless_given(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(scenario_toml("from-file", can_extra=", fd = true, id_offset = 8"))
    ns = build_parser().parse_args(["--scenario", str(path)])
    resolve_bus(ns)
    assert (ns.sensor, ns.interface, ns.channel, ns.fd, ns.bitrate, ns.id_offset) == (
        SENSOR,
        "virtual",
        "from-file",
        True,
        None,
        8,
    )
    ns = build_parser().parse_args(
        ["--scenario", str(path), "--channel", "mine", "--no-fd", "--id-offset", "0"]
    )
    resolve_bus(ns)
    assert (ns.interface, ns.channel, ns.fd, ns.id_offset) == ("virtual", "mine", False, 0)
    ns = build_parser().parse_args(["--synthetic", "3"])
    resolve_bus(ns)
    assert (ns.interface, ns.channel, ns.fd, ns.id_offset) == ("virtual", "hilgw-can", False, 0)


def test_unknown_sensor_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(scenario_toml("c"))
    ns = build_parser().parse_args(["--scenario", str(path), "--sensor", "nope"])
    with pytest.raises(ConfigError, match=r"no sensor 'nope' in the scenario \(have: radar-can\)"):
        resolve_bus(ns)


# --- fault application, stepped ------------------------------------------------------


@dataclass
class Rig:
    emu: CanRadarEmulator
    rx: can.BusABC
    epoch_ns: int

    def wall(self, t_s: float) -> int:
        return self.epoch_ns + round(t_s * 1e9)

    async def at(self, t_s: float) -> list[can.Message]:
        """Step the emulator at scenario time ``t_s``; everything it put on the bus."""
        await self.emu.step(self.wall(t_s))
        out = []
        while (m := self.rx.recv(0.0)) is not None:
            out.append(m)
        return out

    async def run(self, t0: float, t1: float, dt: float = 0.05) -> list[tuple[float, list[can.Message]]]:
        """Steps every ``dt`` from ``t0`` to ``t1`` (exclusive): [(t, messages)]."""
        n = round((t1 - t0) / dt)
        return [(round(t0 + i * dt, 6), await self.at(t0 + i * dt)) for i in range(n)]


@contextlib.asynccontextmanager
async def rig(tmp_path: Path, faults: str = "", can_extra: str = "") -> AsyncIterator[Rig]:
    chan = f"can-scn-{next(_chan)}"
    path = tmp_path / "scenario.toml"
    path.write_text(scenario_toml(chan, faults, can_extra))
    ns = build_parser().parse_args(["--scenario", str(path)])
    scenario = resolve_bus(ns)
    rx = can.Bus(interface="virtual", channel=chan)
    tx = EmulatorCanTransport(CanTransportConfig(kind="can", interface=ns.interface, channel=ns.channel))
    await tx.open()
    epoch = time.time_ns()
    try:
        yield Rig(CanRadarEmulator(ns, tx, epoch, scenario=scenario), rx, epoch)
    finally:
        await tx.close()
        rx.shutdown()


def data_frames(msgs: list[can.Message]) -> list[can.Message]:
    return [m for m in msgs if not m.is_error_frame]


def is_status(m: can.Message) -> bool:
    return bool(CLASSIC_DB.get_message_by_frame_id(m.arbitration_id).name == "RADAR_STATUS")


def decode(msgs: list[can.Message], t_rx: int, fd: bool = False) -> list[Any]:
    codec = CanRadarCodec(Role.GATEWAY, fd=fd)
    frames = [CanFrame(m.arbitration_id, bytes(m.data), m.is_fd, False, t_rx) for m in data_frames(msgs)]
    return codec.receive_frames(frames)


async def test_no_fault_reports_and_status_flow(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        seen = await r.run(0.0, 1.0)
    msgs = [m for _, ms in seen for m in ms]
    assert sum(map(is_status, msgs)) == 1  # 1 Hz, the first at once
    assert len(msgs) - 1 == 5 * 10  # 10 scans of one target, five classic parts each
    assert r.emu.counters["reports_sent"] == 10


async def test_dropout_sends_nothing_then_resumes(tmp_path: Path) -> None:
    async with rig(tmp_path, fault("dropout", 1.0, 1.0)) as r:
        seen = await r.run(0.0, 3.0)
    during = [m for t, ms in seen if 1.0 <= t < 2.0 for m in ms]
    before = [m for t, ms in seen if t < 1.0 for m in ms]
    after = [m for t, ms in seen if t >= 2.0 for m in ms]
    assert during == []
    assert len(before) > 0
    assert len(after) > 0
    assert any(is_status(m) for m in after)  # the heartbeat comes back with the rest
    c = r.emu.counters
    # 10 scans (5 frames each) and the status of t = 1 s were withheld.
    assert c["fault_frames_withheld"] == 10 * 5 + 1
    assert c["frames_sent"] == len(before) + len(after)


async def test_clock_step_shifts_reported_sensor_time(tmp_path: Path) -> None:
    async with rig(tmp_path, fault("clock_step", 1.0, 1.0, step_s=-30.0)) as r:
        seen = await r.run(0.0, 3.0)
    offsets: dict[bool, list[float]] = {True: [], False: []}
    for t, ms in seen:
        t_rx = r.wall(t)
        for ev in decode(ms, t_rx):
            assert not isinstance(ev, Rejected), ev
            times = ev.reports["sensor_time_ns"] if isinstance(ev, TrackReportBatch) else [ev.sensor_time_ns]
            offsets[1.0 <= t < 2.0] += [(int(x) - t_rx) / 1e9 for x in times]
    assert offsets[True]
    assert offsets[False]
    assert all(-30.0 - 0.11 < o <= -30.0 + 1e-3 for o in offsets[True]), offsets[True]
    assert all(-0.11 < o <= 1e-3 for o in offsets[False]), offsets[False]
    assert r.emu.counters["fault_clock_stepped"] == len(offsets[True])


async def test_bus_off_error_frame_then_silence_then_resume(tmp_path: Path) -> None:
    async with rig(tmp_path, fault("can_bus_off", 1.0, 1.0)) as r:
        seen = await r.run(0.0, 3.0)
        assert not r.emu.bus_off
    errors = [(t, m) for t, ms in seen for m in ms if m.is_error_frame]
    assert len(errors) == 1
    t_err, err = errors[0]
    assert t_err == 1.0
    # As SocketCAN reports bus-off: error flag, CAN_ERR_BUSOFF in the id, 8 data bytes.
    assert err.arbitration_id & CAN_ERR_BUSOFF
    assert not err.is_extended_id
    assert err.dlc == 8
    at_start = next(ms for t, ms in seen if t == 1.0)
    assert at_start[0].is_error_frame
    assert len(at_start) == 1
    assert [m for t, ms in seen if 1.0 < t < 2.0 for m in ms] == []
    first_back = next(ms for t, ms in seen if t == 2.0)
    assert is_status(first_back[0])  # a heartbeat at once, then the reports on schedule
    assert sum(len(data_frames(ms)) for t, ms in seen if t >= 2.0) >= 5 * 9
    c = r.emu.counters
    assert (c["fault_bus_offs"], c["fault_error_frames"]) == (1, 1)
    assert c["fault_bus_off_withheld"] == 10 * 5 + 1  # the scans of t = 1.0 .. 1.9, the status of 1.0


async def test_duplicate_sends_each_frame_twice(tmp_path: Path) -> None:
    async with rig(tmp_path, fault("duplicate", 0.3, 0.5)) as r:  # probability 1; no status due
        seen = await r.run(0.0, 1.0)
    dup = [m for t, ms in seen if 0.3 <= t < 0.8 for m in ms]
    assert len(dup) == 2 * 5 * 5  # scans of t = 0.3 .. 0.7, every frame twice
    for a, b in zip(dup[::2], dup[1::2], strict=True):
        assert (a.arbitration_id, bytes(a.data)) == (b.arbitration_id, bytes(b.data))
    assert r.emu.counters["fault_duplicated"] == 25
    # The gateway's codec counts exactly those as "duplicate".
    events = decode([m for _, ms in seen for m in ms], r.epoch_ns)
    assert sum(isinstance(e, Rejected) and e.reason == "duplicate" for e in events) == 25


async def test_silent_heartbeat_keeps_reports(tmp_path: Path) -> None:
    async with rig(tmp_path, fault("silent_heartbeat", 0.5, 2.0)) as r:
        seen = await r.run(0.0, 3.0)
    statuses = [t for t, ms in seen for m in ms if is_status(m)]
    assert statuses == [0.0]  # 1.0 and 2.0 left out; the next one is due at 3.0
    assert r.emu.counters["fault_heartbeats_silenced"] == 2
    assert sum(len(ms) for t, ms in seen if 0.5 <= t < 2.5) == 5 * 20


async def test_delay_holds_frames_in_order(tmp_path: Path) -> None:
    async with rig(tmp_path, fault("delay", 1.0, 0.5, delay_s=0.3)) as r:
        seen = await r.run(0.0, 2.5)
    assert [m for t, ms in seen if 1.0 <= t < 1.3 for m in ms] == []
    late = [(t, m) for t, ms in seen if 1.3 <= t < 1.85 for m in ms]
    assert late, "held frames never came out"
    events = decode([m for _, ms in seen for m in ms], r.epoch_ns)
    assert not [e for e in events if isinstance(e, Rejected)]  # order kept: every report whole
    assert r.emu.counters["fault_frames_delayed"] > 0
    assert sum(len(ms) for _, ms in seen) == r.emu.counters["frames_sent"]


async def test_fd_bus_from_block_encodes_fd_frames(tmp_path: Path) -> None:
    async with rig(tmp_path, can_extra=", fd = true") as r:
        msgs = [m for _, ms in await r.run(0.0, 0.5) for m in ms]
    assert msgs
    assert all(m.is_fd for m in msgs)
    reports = [e for e in decode(msgs, r.epoch_ns, fd=True) if isinstance(e, TrackReportBatch)]
    assert sum(len(e.reports) for e in reports) == 5
    assert any(isinstance(e, Status) for e in decode(msgs, r.epoch_ns, fd=True))


# --- the gateway sees it --------------------------------------------------------------


async def test_gateway_shows_bus_off_and_recovers(tmp_path: Path) -> None:
    """Emulator and gateway in one process on a virtual bus, in real time."""
    chan = f"can-gw-{next(_chan)}"
    path = tmp_path / "scenario.toml"
    path.write_text(scenario_toml(chan, fault("can_bus_off", 1.0, 1.5)))
    scenario = load_scenario(path)
    cfg = parse_config(
        {
            "gateway_id": "t-busoff",
            "health_interval_s": 0.1,
            "mqtt": {"enabled": False},
            "devices": [
                {
                    "id": SENSOR,
                    "protocol": "can_radar",
                    "transport": {"kind": "can", "interface": "virtual", "channel": chan, "poll_s": 0.02},
                    "site": {"lat_deg": 52.0, "lon_deg": 4.0, "alt_m": 10.0},
                    "heartbeat_timeout_s": 0.8,
                    "restart": {"initial_s": 0.2, "max_s": 0.5},
                }
            ],
        }
    )
    seen: list[tuple[float, int, dict[str, int], int, int]] = []
    async with Gateway(cfg) as gw:
        await virtual_bus_open(chan)
        ns = build_parser().parse_args(["--scenario", str(path)])
        epoch = time.time_ns() + 300_000_000
        async with EmulatorCanTransport(
            CanTransportConfig(kind="can", interface="virtual", channel=chan)
        ) as tx:
            emu = CanRadarEmulator(ns, tx, epoch, scenario=scenario)
            stop = asyncio.Event()
            task = asyncio.create_task(emu.run(stop))
            st = gw.stats[SENSOR]
            while (t := (time.time_ns() - epoch) / 1e9) < 4.0:
                seen.append((t, st.state, dict(st.drops), st.restarts, st.reports_out))
                await asyncio.sleep(0.05)
            stop.set()
            await task

    def at(t_s: float) -> tuple[float, int, dict[str, int], int, int]:
        return [s for s in seen if s[0] < t_s][-1]

    assert at(1.0)[1] == UP, at(1.0)
    assert at(1.0)[4] > 0, at(1.0)
    off = {s for t, s, *_ in seen if 1.1 <= t < 2.5}
    assert off <= {DEGRADED, RESTARTING, DOWN}, off
    assert DEGRADED in off, off
    assert DOWN in off, off  # no frame for heartbeat_timeout_s
    _, state, drops, restarts, reports = seen[-1]
    assert drops.get("can_bus_off") == 1, drops
    assert drops.get("can_error_frame") == 1, drops
    assert restarts == 1
    assert state == UP, seen[-3:]
    assert reports > at(2.5)[4]  # reports flow again
    assert emu.counters["fault_error_frames"] == 1


# --- bench mode and hilgw emulate -----------------------------------------------------


def test_bench_mode_device_block(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        scenario_toml(
            "grp", can_extra=", fd = true, bitrate = 500000, id_offset = 32", sensor_extra="wire_id = 9"
        )
    )
    scenario = load_scenario(path)
    dev = DeviceConfig.model_validate(can_radar_device(scenario, SENSOR))
    assert dev.protocol == "can_radar"
    assert dev.id == SENSOR
    tr = dev.transport
    assert isinstance(tr, CanTransportConfig)
    assert (tr.interface, tr.channel, tr.fd, tr.bitrate) == ("virtual", "grp", True, 500000)
    assert dev.can_id_offset == 32
    assert dev.wire_sensor_id == 9
    assert dev.site is not None
    assert (dev.site.lat_deg, dev.site.lon_deg, dev.site.alt_m) == (52.0, 4.0, 10.0)


def test_start_sensor_emulator_runs_the_can_radar(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(scenario_toml("proc-bus", fault("dropout", 0.0, 600.0)))
    scenario = load_scenario(path)
    epoch = time.time_ns()
    with start_sensor_emulator(str(path), scenario, SENSOR, epoch_ns=epoch, speed=2.0) as emu:
        ready = emu.ready
        time.sleep(0.5)  # a few scans (all withheld by the dropout)
        assert emu.popen.poll() is None, emu.stderr_text()
    assert (ready["device"], ready["sensor"]) == ("can_radar", SENSOR)
    assert (ready["interface"], ready["channel"], ready["fd"]) == ("virtual", "proc-bus", False)
    assert (ready["epoch_ns"], ready["speed"]) == (epoch, 2.0)
    assert emu.final is not None
    assert emu.final["event"] == "stopped"
    assert emu.final["frames_sent"] == 0
    assert emu.final["fault_frames_withheld"] > 0
