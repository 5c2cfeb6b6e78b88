"""The launcher emulator's scenario mode and fault timeline (sim_devices/launcher_emulator.py).

* :func:`resolve` / :func:`main` from a scenario file: what comes from the
  ``[[launchers]]`` entry, what the command line overrides, the config errors;
* :class:`LauncherFaults` on a hand-moved clock: which fault answers what, and
  when (windows are ``[start, end)`` on the scenario clock, scaled by speed);
* :meth:`LauncherFaults.mutate` seen by the gateway's serial codec (bad_crc, garbage);
* :func:`serve` over a real pty (no_ack, nack, silent heartbeat, serial_unplug
  with a stable link) and over python-can's ``virtual`` bus (can_bus_off).

Scenario time is driven by the test (a :class:`ScenarioClock` given to
:class:`LauncherFaults`), so every window opens and closes exactly when the
test says; the emulator's own clock (cue freshness) stays the real UTC clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import itertools
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import can
import pytest

from drivers.base import Rejected, Role
from drivers.launcher import (
    Ack,
    AckResult,
    Cue,
    LauncherCanCodec,
    LauncherEvent,
    LauncherSerialCodec,
    LauncherState,
    LauncherStatus,
    NackReason,
)
from gateway.config import CanTransportConfig
from gateway.transports.can import CAN_ERR_BUSOFF
from hilgw.errors import ConfigError
from sim_devices.can_device import EmulatorCanTransport
from sim_devices.faults import FaultSchedule
from sim_devices.launcher_emulator import (
    CanLink,
    LauncherEmulator,
    LauncherFaults,
    PtyLink,
    build_parser,
    main,
    resolve,
    serve,
)
from sim_devices.scenario_faults import FaultConfig, FaultKind
from tests.waiting import eventually

LID = 3
KEY_ID = 7
KEY = bytes(range(100, 132))
KEYS = {KEY_ID: KEY}
DEV = "lnch"
EPOCH = 1_800_000_000_000_000_000  # scenario time 0 on the fault clock (UTC ns)
HB_HZ = 50.0  # heartbeats every 20 ms: windows of a few ticks stay short
WAIT_S = 20.0  # bound of every stop below (a bound for a slow CI machine, not a figure)

_seq = itertools.count(100)
_chan = itertools.count()


# --- helpers ---------------------------------------------------------------------------


class ScenarioClock:
    """A UTC clock the test moves by hand; ``at(t)`` puts it at scenario time ``t`` (speed 1)."""

    def __init__(self, epoch_ns: int = EPOCH) -> None:
        self.epoch_ns = epoch_ns
        self.ns = epoch_ns

    def __call__(self) -> int:
        return self.ns

    def at(self, t_s: float) -> None:
        self.ns = self.epoch_ns + round(t_s * 1e9)

    def t(self) -> float:
        return (self.ns - self.epoch_ns) / 1e9


def schedule(*windows: tuple[FaultKind, float, float]) -> FaultSchedule:
    """A timeline of ``(kind, start_s, end_s)`` windows for device DEV."""
    return FaultSchedule(
        [FaultConfig(device=DEV, kind=k, start_s=a, duration_s=b - a) for k, a, b in windows], DEV
    )


def faults_on(clock: ScenarioClock, *windows: tuple[FaultKind, float, float]) -> LauncherFaults:
    return LauncherFaults(schedule(*windows), epoch_ns=clock.epoch_ns, clock=clock)


class RecordingEmulator(LauncherEmulator):
    """The emulator, noting the scenario time each heartbeat was made at (by its
    LauncherTime: the counter is the codec's, ICD §7.5)."""

    def __init__(self, clock: ScenarioClock) -> None:
        super().__init__(LID, KEYS)
        self.scenario_clock = clock
        self.made: dict[int, float] = {}

    def heartbeat(self) -> LauncherStatus:
        status = super().heartbeat()
        self.made[status.launcher_time_ns] = self.scenario_clock.t()
        return status


def signed_cue(cue_id: int) -> Cue:
    """A fresh cue for LID (the gateway codec signs it with KEYS[KEY_ID] when sending)."""
    now = time.time_ns()
    return Cue(
        launcher_id=LID,
        key_id=KEY_ID,
        sequence=next(_seq),
        cue_id=cue_id,
        system_track_id=12,
        time_of_validity_ns=now,
        valid_from_ns=now - 1_000_000_000,
        valid_until_ns=now + 10_000_000_000,
        position_m=(4_000_000.0, 300_000.0, 4_900_000.0),
        velocity_mps=(100.0, 50.0, -20.0),
        pos_sigma_max_m=40.0,
        pos_sigma_min_m=10.0,
        vel_sigma_max_mps=5.0,
        vel_sigma_min_mps=1.0,
    )


@contextlib.asynccontextmanager
async def serving(
    emu: LauncherEmulator, link: PtyLink | CanLink, faults: LauncherFaults
) -> AsyncIterator[asyncio.Task[None]]:
    """``serve`` in a task; stopped, awaited (its error raised) and the link closed on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve(emu, link, stop, HB_HZ, faults, events=False))
    try:
        yield task
    finally:
        stop.set()
        try:
            async with asyncio.timeout(WAIT_S):
                await task
        finally:
            await link.close()


class SerialEnd:
    """The gateway's end of the emulator's pty: opens the path as a serial port would,
    decodes what arrives with the gateway codec, writes signed cues."""

    def __init__(self, path: str, clock: ScenarioClock) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.clock = clock
        self.codec = LauncherSerialCodec(Role.GATEWAY, launcher_id=LID, keys=KEYS)
        #: (scenario time of arrival, event), in arrival order.
        self.got: list[tuple[float, LauncherEvent | Rejected]] = []
        self.hung_up = False
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.fd, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO: the master side is gone
        if not data:  # the line hung up (the emulator closed its pty pair)
            self.hung_up = True
            self._loop.remove_reader(self.fd)
            return
        self.codec.receive_data(data)
        self.got.extend((self.clock.t(), e) for e in self.codec.drain())

    def send(self, cue: Cue) -> None:
        os.write(self.fd, self.codec.send(cue))

    def statuses(self) -> list[tuple[float, LauncherStatus]]:
        return [(t, e) for t, e in self.got if isinstance(e, LauncherStatus)]

    def acks(self) -> list[Ack]:
        return [e for _, e in self.got if isinstance(e, Ack)]

    def close(self) -> None:
        if not self.hung_up:
            self._loop.remove_reader(self.fd)
        os.close(self.fd)


class CanEnd:
    """A second end of the virtual bus: decodes the launcher's frames, keeps error frames apart."""

    def __init__(self, channel: str, clock: ScenarioClock) -> None:
        self.bus = can.Bus(interface="virtual", channel=channel)
        self.clock = clock
        self.codec = LauncherCanCodec(Role.GATEWAY, launcher_id=LID, keys=KEYS)
        #: (scenario time of arrival, event or error frame), in arrival order.
        self.got: list[tuple[float, LauncherEvent | Rejected | can.Message]] = []
        self._stop = False
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop:
            msg = await asyncio.to_thread(self.bus.recv, 0.02)
            if msg is None:
                continue
            t = self.clock.t()
            if msg.is_error_frame:
                self.got.append((t, msg))
            else:
                for e in self.codec.receive_frame(msg.arbitration_id, bytes(msg.data), time.time_ns()):
                    self.got.append((t, e))

    def send(self, cue: Cue) -> None:
        for f in self.codec.send(cue):
            self.bus.send(
                can.Message(
                    arbitration_id=f.arbitration_id, data=f.data, is_fd=True, is_extended_id=f.is_extended
                )
            )

    def statuses(self) -> list[tuple[float, LauncherStatus]]:
        return [(t, e) for t, e in self.got if isinstance(e, LauncherStatus)]

    def error_frames(self) -> list[can.Message]:
        return [e for _, e in self.got if isinstance(e, can.Message)]

    def acks(self) -> list[Ack]:
        return [e for _, e in self.got if isinstance(e, Ack)]

    async def close(self) -> None:
        self._stop = True
        async with asyncio.timeout(WAIT_S):
            await self._task
        self.bus.shutdown()


def assert_silent_window(
    emu: RecordingEmulator, got: list[tuple[float, LauncherStatus]], start: float, end: float
) -> None:
    """No heartbeat made in [start, end); what arrived then was made before it; none lost."""
    assert not [(s, t) for s, t in emu.made.items() if start <= t < end]
    late = [st for t, st in got if start <= t < end]
    assert all(emu.made[st.launcher_time_ns] < start for st in late), late
    seqs = [st.sequence for _, st in got]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs  # contiguous: nothing lost
    resumed = [st for t, st in got if t >= end]
    assert resumed, "heartbeats did not resume after the window"
    assert emu.made[resumed[0].launcher_time_ns] >= end


# --- 1. resolve() and main() from a scenario file ----------------------------------------

ENV_VAR = "HILGW_TEST_LAUNCHER_FAULTS_KEY"
ENV_KEY = "3c" * 32
HEX_KEY = "5a" * 16

SCENARIO = f"""
[scenario]
name = "launcher-faults-unit"
seed = 9

[[sites]]
id = "site-a"
lat_deg = 54.0
lon_deg = 10.0
alt_m = 0.0

[[launchers]]
id = "lnch-s"
site = "site-a"
transport = "serial"
launcher_id = 12
keys = {{ 1 = "env:{ENV_VAR}", 2 = "hex:{HEX_KEY}" }}
heartbeat_hz = 7.5
range_max_m = 50000.0

[[launchers]]
id = "lnch-c"
site = "site-a"
transport = "can"
can = {{ interface = "virtual", channel = "bench-bus", fd = true, id_offset = 16 }}
keys = {{ 4 = "hex:{HEX_KEY}" }}
range_max_m = 50000.0

[[launchers]]
id = "lnch-nocan"
site = "site-a"
transport = "can"
range_max_m = 50000.0

[[launchers]]
id = "lnch-classic"
site = "site-a"
transport = "can"
can = {{ interface = "virtual", channel = "classic-bus" }}
range_max_m = 50000.0

[[faults]]
device = "lnch-s"
kind = "silent_heartbeat"
start_s = 1.0
duration_s = 2.0

[[faults]]
device = "lnch-s"
kind = "serial_unplug"
start_s = 4.0
duration_s = 1.0

[[faults]]
device = "lnch-c"
kind = "can_bus_off"
start_s = 2.0
duration_s = 1.0
"""


@pytest.fixture
def scenario_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(ENV_VAR, ENV_KEY)
    path = tmp_path / "launchers.toml"
    path.write_text(SCENARIO)
    return path


def args(scenario_file: Path, *argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["--scenario", str(scenario_file), *argv])


def test_resolve_takes_a_serial_launcher_from_the_scenario(scenario_file: Path) -> None:
    ns, faults = resolve(args(scenario_file, "--launcher", "lnch-s", "--epoch-ns", "123", "--speed", "4"))
    assert (ns.transport, ns.launcher_id, ns.heartbeat_hz) == ("serial", 12, 7.5)
    assert ns.key == [(1, bytes.fromhex(ENV_KEY)), (2, bytes.fromhex(HEX_KEY))]
    assert faults is not None
    assert (faults.epoch_ns, faults.speed) == (123, 4.0)
    # Only this launcher's faults (lnch-c's bus-off is not on its timeline).
    assert faults.schedule.kinds() == {"silent_heartbeat", "serial_unplug"}
    assert [(f.start_s, f.end_s) for f in faults.schedule.faults] == [(1.0, 3.0), (4.0, 5.0)]


def test_resolve_takes_a_can_launcher_and_its_bus_from_the_scenario(scenario_file: Path) -> None:
    ns, faults = resolve(args(scenario_file, "--launcher", "lnch-c"))
    assert (ns.transport, ns.interface, ns.channel, ns.id_offset) == ("can", "virtual", "bench-bus", 16)
    assert ns.launcher_id == 2  # no launcher_id: 1 + its position in the file
    assert ns.heartbeat_hz == 2.0  # LauncherConfig's default
    assert ns.key == [(4, bytes.fromhex(HEX_KEY))]
    assert faults is not None
    assert faults.schedule.kinds() == {"can_bus_off"}
    assert faults.speed == 1.0
    assert abs(faults.epoch_ns - time.time_ns()) < 60_000_000_000  # default epoch: now


def test_command_line_options_override_the_scenario(scenario_file: Path) -> None:
    ns, _ = resolve(
        args(
            scenario_file, "--launcher", "lnch-s",
            "--launcher-id", "40", "--heartbeat-hz", "3", "--key", f"9:{'77' * 16}",
        )
    )  # fmt: skip
    assert (ns.launcher_id, ns.heartbeat_hz) == (40, 3.0)
    assert ns.key == [(9, bytes.fromhex("77" * 16))]  # the scenario's keys are not loaded then

    ns, _ = resolve(
        args(
            scenario_file, "--launcher", "lnch-c",
            "--interface", "socketcan", "--channel", "vcan7", "--id-offset", "5",
        )
    )  # fmt: skip
    assert (ns.interface, ns.channel, ns.id_offset) == ("socketcan", "vcan7", 5)

    # A CAN launcher run on a serial line: its missing can block does not matter
    # then, nor when the bus is given on the command line.
    ns, _ = resolve(args(scenario_file, "--launcher", "lnch-nocan", "--transport", "serial"))
    assert ns.transport == "serial"
    ns, _ = resolve(args(scenario_file, "--launcher", "lnch-nocan", "--interface", "virtual"))
    assert (ns.transport, ns.interface, ns.launcher_id) == ("can", "virtual", 3)


def test_an_explicit_channel_overrides_the_scenario_bus(scenario_file: Path) -> None:
    ns, _ = resolve(args(scenario_file, "--launcher", "lnch-c", "--channel", "my-bus"))
    assert (ns.interface, ns.channel) == ("virtual", "my-bus")


@pytest.mark.parametrize(("option", "value"), [("--speed", "0"), ("--ack-delay", "-1")])
def test_a_bad_option_is_named_by_its_own_key(scenario_file: Path, option: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(args(scenario_file, "--launcher", "lnch-s", option, value))
    assert info.value.key == option


@pytest.mark.parametrize(
    ("argv", "key", "text"),
    [
        (["--launcher", "lnch-nocan"], "launchers[lnch-nocan].can", "can = {interface, channel}"),
        (["--launcher", "lnch-classic"], "launchers[lnch-classic].can.fd", "CAN FD"),
        (["--launcher", "nope"], "--launcher", "no launcher 'nope'"),
        ([], "--launcher", "which [[launchers]] id"),
        (["--launcher", "lnch-s", "--heartbeat-hz", "0"], "--heartbeat-hz", "must be > 0"),
    ],
)
def test_scenario_config_errors_name_the_key(
    scenario_file: Path, capsys: pytest.CaptureFixture[str], argv: list[str], key: str, text: str
) -> None:
    full = ["--scenario", str(scenario_file), *argv]
    with pytest.raises(ConfigError) as info:
        resolve(args(scenario_file, *argv))
    assert info.value.key == key
    assert text in info.value.reason

    assert main(full) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("\n")
    assert err.splitlines() == [f"launcher_emulator: {key}: {info.value.reason}"]


def test_a_missing_key_env_var_names_the_key(
    scenario_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(ENV_VAR)
    argv = ["--scenario", str(scenario_file), "--launcher", "lnch-s"]
    with pytest.raises(ConfigError) as info:
        resolve(build_parser().parse_args(argv))
    assert info.value.key == "launchers[lnch-s].keys[1]"
    assert ENV_VAR in info.value.reason
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("launcher_emulator: launchers[lnch-s].keys[1]: ")


# --- 2. what LauncherFaults answers, on a hand-moved clock --------------------------------

TIMELINE: tuple[tuple[FaultKind, float, float], ...] = (
    ("silent_heartbeat", 1.0, 2.0),
    ("dropout", 3.0, 4.0),
    ("can_bus_off", 5.0, 6.0),
    ("serial_unplug", 7.0, 8.0),
    ("launcher_nack", 9.0, 10.0),
    ("launcher_no_ack", 11.0, 12.0),
)
OK = (False, False, None, False)


@pytest.mark.parametrize(
    ("t", "want"),
    [
        (-1.0, OK),  # before scenario time 0
        (0.0, OK),
        (0.999, OK),
        (1.0, (True, False, None, False)),  # silent_heartbeat: no heartbeat, still hears
        (1.5, (True, False, None, False)),
        (2.0, OK),  # windows are [start, end)
        (3.0, (True, True, None, False)),  # dropout
        (3.999, (True, True, None, False)),
        (4.0, OK),
        (5.5, (True, True, None, False)),  # can_bus_off
        (6.0, OK),
        (7.5, (True, True, None, False)),  # serial_unplug
        (8.0, OK),
        (9.0, (False, False, NackReason.NOT_READY, False)),  # launcher_nack
        (9.999, (False, False, NackReason.NOT_READY, False)),
        (10.0, OK),
        (11.0, (False, False, None, True)),  # launcher_no_ack
        (11.5, (False, False, None, True)),
        (12.0, OK),
        (100.0, OK),
    ],
)
def test_fault_answers_by_window(t: float, want: tuple[bool, bool, NackReason | None, bool]) -> None:
    clock = ScenarioClock()
    faults = faults_on(clock, *TIMELINE)
    clock.at(t)
    assert faults.t() == pytest.approx(t)
    assert (faults.silent(), faults.deaf(), faults.nack(), faults.no_ack()) == want


def test_speed_scales_scenario_time() -> None:
    clock = ScenarioClock()
    faults = LauncherFaults(schedule(*TIMELINE), epoch_ns=EPOCH, speed=4.0, clock=clock)
    clock.ns = EPOCH + 375_000_000  # 0.375 wall s = 1.5 scenario s
    assert faults.t() == pytest.approx(1.5)
    assert faults.silent()
    assert not faults.deaf()
    clock.ns = EPOCH + 2_375_000_000  # 9.5 scenario s
    assert faults.nack() is NackReason.NOT_READY
    assert not faults.silent()
    clock.ns = EPOCH + 1_500_000_000  # 6.0 scenario s: can_bus_off has just ended
    assert not faults.silent()
    assert not faults.deaf()
    slow = LauncherFaults(schedule(*TIMELINE), epoch_ns=EPOCH, speed=0.5, clock=clock)
    clock.ns = EPOCH + 3_000_000_000  # 1.5 scenario s at half speed
    assert slow.t() == pytest.approx(1.5)
    assert slow.silent()


# --- 3. mutate(): the serial output through bad_crc and garbage --------------------------


def heartbeat_frames(n: int) -> tuple[list[LauncherStatus], list[bytes]]:
    emu = LauncherEmulator(LID, KEYS)
    dev = LauncherSerialCodec(Role.DEVICE, launcher_id=LID, keys=KEYS)
    statuses = [dev.seal(emu.heartbeat()) for _ in range(n)]
    return statuses, [dev.send(s) for s in statuses]  # type: ignore[arg-type]


def decode(stream: bytes) -> list[LauncherEvent | Rejected]:
    gw = LauncherSerialCodec(Role.GATEWAY, launcher_id=LID, keys=KEYS)
    gw.receive_data(stream)
    return gw.drain()


def test_bad_crc_fails_every_frame_at_the_gateway() -> None:
    clock = ScenarioClock()
    faults = LauncherFaults(
        FaultSchedule(
            [FaultConfig(device=DEV, kind="bad_crc", start_s=1.0, duration_s=5.0, probability=1.0)]
        ),
        epoch_ns=EPOCH,
        clock=clock,
    )
    statuses, frames = heartbeat_frames(20)
    clock.at(2.0)
    out = [faults.mutate(f) for f in frames]
    out.append(faults.mutate(frames[0] + frames[1]))  # two frames in one write: both hit
    events = decode(b"".join(out))
    assert len(events) == 22
    assert all(isinstance(e, Rejected) and e.reason == "crc" for e in events), events
    assert faults.counts["crc_corrupted"] == 22
    # Outside the window the bytes pass untouched and nothing is counted.
    clock.at(6.0)
    assert [faults.mutate(f) for f in frames] == frames
    assert decode(b"".join(frames)) == statuses
    assert faults.counts["crc_corrupted"] == 22


def test_bad_crc_probability_counts_exactly_what_is_corrupted() -> None:
    clock = ScenarioClock()
    faults = LauncherFaults(
        FaultSchedule(
            [FaultConfig(device=DEV, kind="bad_crc", start_s=0.0, duration_s=5.0, probability=0.5)]
        ),
        epoch_ns=EPOCH,
        clock=clock,
        seed=11,
    )
    statuses, frames = heartbeat_frames(200)
    events = decode(b"".join(faults.mutate(f) for f in frames))
    crc = [e for e in events if isinstance(e, Rejected)]
    assert all(e.reason == "crc" for e in crc)
    assert 0 < len(crc) < 200
    assert faults.counts["crc_corrupted"] == len(crc)
    # The frames not hit arrive intact and in order.
    good = [e for e in events if not isinstance(e, Rejected)]
    assert len(good) == 200 - len(crc)
    assert all(isinstance(g, LauncherStatus) for g in good)
    where = [statuses.index(g) for g in good if isinstance(g, LauncherStatus)]
    assert where == sorted(set(where))  # intact, in order, once each


def test_garbage_puts_one_junk_frame_before_each_write() -> None:
    clock = ScenarioClock()
    faults = LauncherFaults(
        FaultSchedule(
            [FaultConfig(device=DEV, kind="garbage", start_s=0.0, duration_s=5.0, garbage_bytes=40)]
        ),
        epoch_ns=EPOCH,
        clock=clock,
        seed=3,
    )
    statuses, frames = heartbeat_frames(30)
    out = [faults.mutate(f) for f in frames]
    assert all(len(o) > len(f) for o, f in zip(out, frames, strict=True))
    events = decode(b"".join(out))
    assert len(events) == 60
    assert all(isinstance(e, Rejected) for e in events[0::2]), events[0::2]
    assert events[1::2] == statuses  # every real frame still decodes, unchanged
    assert faults.counts["garbage_frames"] == 30
    clock.at(5.0)
    assert faults.mutate(frames[0]) == frames[0]
    assert faults.counts["garbage_frames"] == 30


def test_mutate_draws_are_seeded() -> None:
    fault = FaultConfig(device=DEV, kind="garbage", start_s=0.0, duration_s=5.0, garbage_bytes=16)
    _, frames = heartbeat_frames(5)
    runs = []
    for seed in (1, 1, 2):
        faults = LauncherFaults(FaultSchedule([fault]), epoch_ns=EPOCH, clock=ScenarioClock(), seed=seed)
        runs.append(b"".join(faults.mutate(f) for f in frames))
    assert runs[0] == runs[1] != runs[2]


# --- 4. serve() over a pty: no_ack, nack, silent heartbeat --------------------------------


async def test_serial_cue_windows_and_silent_heartbeat() -> None:
    clock = ScenarioClock()
    faults = faults_on(
        clock,
        ("launcher_no_ack", 10.0, 20.0),
        ("launcher_nack", 30.0, 40.0),
        ("silent_heartbeat", 50.0, 60.0),
    )
    emu = RecordingEmulator(clock)
    link = PtyLink(LauncherSerialCodec(Role.DEVICE, launcher_id=LID, keys=KEYS), mutate=faults.mutate)
    async with serving(emu, link, faults) as task:
        gw = SerialEnd(link.path, clock)
        try:
            await eventually(lambda: len(gw.statuses()) >= 2, what="heartbeat", task=task)

            gw.send(signed_cue(1))  # t = 0: no fault, acked
            await eventually(lambda: len(gw.acks()) == 1, what="ack of cue 1", task=task)

            clock.at(15.0)  # launcher_no_ack: checked, not answered
            gw.send(signed_cue(2))
            await eventually(lambda: emu.verdicts["cue:NONE"] == 2, what="verdict on cue 2", task=task)
            assert faults.counts["acks_withheld"] == 1

            clock.at(25.0)  # after it: answered again
            gw.send(signed_cue(3))
            await eventually(lambda: len(gw.acks()) == 2, what="ack of cue 3", task=task)
            # On one ordered line, an answer to cue 2 would have come before cue 3's.
            assert [(a.cue_id, a.result) for a in gw.acks()] == [(1, AckResult.ACK), (3, AckResult.ACK)]

            clock.at(35.0)  # launcher_nack: an authentic, fresh cue refused NOT_READY
            gw.send(signed_cue(4))
            await eventually(lambda: len(gw.acks()) == 3, what="nack of cue 4", task=task)
            nack = gw.acks()[-1]
            assert (nack.cue_id, nack.result, nack.reason) == (4, AckResult.NACK, NackReason.NOT_READY)
            assert emu.verdicts == {"cue:NONE": 3, "cue:NOT_READY": 1}
            assert faults.counts["acks_withheld"] == 1

            clock.at(55.0)  # silent_heartbeat
            await eventually(
                lambda: faults.counts["heartbeats_silenced"] >= 8, what="silenced heartbeats", task=task
            )
            gw.send(signed_cue(5))  # it still hears and answers
            await eventually(lambda: len(gw.acks()) == 4, what="ack of cue 5", task=task)
            assert gw.acks()[-1].result is AckResult.ACK

            clock.at(65.0)
            await eventually(
                lambda: any(t >= 60.0 for t, _ in gw.statuses()), what="heartbeat after the window", task=task
            )
            assert_silent_window(emu, gw.statuses(), 50.0, 60.0)
            assert not [e for _, e in gw.got if isinstance(e, Rejected)]
        finally:
            gw.close()


def link_target(path: str) -> str | None:
    """The device node the stable link resolves to now; None when there is no link there."""
    if not os.path.islink(path):
        return None
    return os.path.realpath(path)


# --- 5. serial_unplug: the pty pair closed and reopened behind a stable link --------------


async def test_serial_unplug_and_replug_behind_the_stable_link() -> None:
    clock = ScenarioClock()
    faults = faults_on(clock, ("serial_unplug", 10.0, 20.0))
    emu = RecordingEmulator(clock)
    link = PtyLink(
        LauncherSerialCodec(Role.DEVICE, launcher_id=LID, keys=KEYS), stable_link=True, mutate=faults.mutate
    )
    stable = link.path
    first_pty = link.pty.pty_path
    assert stable != first_pty
    assert link_target(stable) == first_pty
    async with serving(emu, link, faults) as task:
        gw = SerialEnd(stable, clock)
        gw2: SerialEnd | None = None
        try:
            await eventually(lambda: len(gw.statuses()) >= 2, what="heartbeat", task=task)
            assert faults.counts["unplugs"] == 0

            clock.at(15.0)
            await eventually(lambda: not link.plugged, what="unplug", task=task)
            assert faults.counts["unplugs"] == 1
            assert link_target(stable) is None  # the link points nowhere while unplugged
            await eventually(lambda: gw.hung_up, what="hang-up of the old line", task=task)
            with pytest.raises(OSError, match="Input/output error") as info:
                os.write(gw.fd, b"\x00")
            assert info.value.errno == errno.EIO
            await eventually(
                lambda: faults.counts["heartbeats_silenced"] >= 5, what="silenced heartbeats", task=task
            )
            assert link.plugged is False  # still out: one unplug per window
            assert faults.counts["unplugs"] == 1

            clock.at(25.0)
            await eventually(lambda: link.plugged, what="replug", task=task)
            assert faults.counts["unplugs"] == 1
            new_pty = link.pty.pty_path
            assert link_target(stable) == new_pty
            assert new_pty != first_pty  # the old slave is still open here: a new pty
            gw2 = SerialEnd(stable, clock)
            await eventually(lambda: len(gw2.statuses()) >= 2, what="heartbeat on the new pty", task=task)
            made = [emu.made[st.launcher_time_ns] for _, st in gw2.statuses()]
            assert all(t >= 20.0 for t in made)
            assert not [t for t in emu.made.values() if 10.0 <= t < 20.0]
            gw2.send(signed_cue(7))
            await eventually(lambda: len(gw2.acks()) == 1, what="ack on the new pty", task=task)
            assert gw2.acks()[0].result is AckResult.ACK
        finally:
            gw.close()
            if gw2 is not None:
                gw2.close()
    assert link_target(stable) is None  # close() removes the stable link


# --- 6. can_bus_off on python-can's virtual bus ------------------------------------------


async def test_can_bus_off_sends_one_error_frame_then_silence_and_deafness() -> None:
    channel = f"hilgw-launcher-faults-{os.getpid()}-{next(_chan)}"
    clock = ScenarioClock()
    faults = faults_on(clock, ("can_bus_off", 10.0, 20.0))
    emu = RecordingEmulator(clock)
    tx = EmulatorCanTransport(
        CanTransportConfig(kind="can", interface="virtual", channel=channel, fd=True, poll_s=0.01)
    )
    await tx.open()
    link = CanLink(tx, LauncherCanCodec(Role.DEVICE, launcher_id=LID, keys=KEYS))
    gw = CanEnd(channel, clock)
    try:
        async with serving(emu, link, faults) as task:
            await eventually(lambda: len(gw.statuses()) >= 2, what="heartbeat", task=task)
            assert not gw.error_frames()

            clock.at(15.0)
            await eventually(lambda: bool(gw.error_frames()), what="bus-off error frame", task=task)
            (err,) = gw.error_frames()
            assert err.is_error_frame
            assert err.arbitration_id == CAN_ERR_BUSOFF
            assert faults.counts["bus_offs"] == 1

            gw.send(signed_cue(1))  # nothing is heard while bus-off
            await eventually(lambda: faults.counts["frames_ignored"] >= 1, what="ignored cue", task=task)
            await eventually(
                lambda: faults.counts["heartbeats_silenced"] >= 8, what="silenced heartbeats", task=task
            )
            assert not emu.verdicts
            assert not gw.acks()
            assert len(gw.error_frames()) == 1  # one error frame per window, not one per tick
            assert faults.counts["bus_offs"] == 1

            clock.at(25.0)
            await eventually(
                lambda: any(t >= 20.0 for t, _ in gw.statuses()), what="heartbeat after bus-off", task=task
            )
            gw.send(signed_cue(2))
            await eventually(lambda: bool(gw.acks()), what="ack after bus-off", task=task)
            (ack,) = gw.acks()
            assert (ack.cue_id, ack.result) == (2, AckResult.ACK)
            assert emu.verdicts == {"cue:NONE": 1}
            assert_silent_window(emu, gw.statuses(), 10.0, 20.0)
            assert len(gw.error_frames()) == 1
            assert not [e for _, e in gw.got if isinstance(e, Rejected)]
            assert faults.counts["bus_offs"] == 1
    finally:
        await gw.close()


# --- 5. answers an attacker would send (ICD v2 §7.5): forged, replayed, stale ----------------


def test_forged_replayed_and_stale_answers_are_refused_by_the_gateway_codec() -> None:
    """Through each window every answer the emulator puts on the link is refused by
    the gateway's codec for the window's reason; outside them every one passes."""
    clock = ScenarioClock()
    faults = faults_on(
        clock, ("launcher_forged", 1.0, 2.0), ("launcher_replayed", 3.0, 4.0), ("launcher_stale", 5.0, 6.0)
    )
    dev = LauncherCanCodec(Role.DEVICE, launcher_id=LID, keys=KEYS)
    gw = LauncherCanCodec(Role.GATEWAY, launcher_id=LID, keys=KEYS)
    assert gw.verifier is not None
    signer = dev.signer
    assert signer is not None

    def seal(e: Ack | LauncherStatus) -> Ack | LauncherStatus:
        out = dev.seal(e)
        assert isinstance(out, Ack | LauncherStatus)
        return out

    def forge(e: Ack | LauncherStatus, key: bytes) -> Ack | LauncherStatus:
        return signer.sign(e, key)

    seen: dict[str, set[str]] = {}
    for step in range(70):  # scenario time 0.0 .. 6.9 s
        clock.at(step / 10)
        window = {1: "forged", 3: "replayed", 5: "stale"}.get(step // 10, "none")
        gw.verifier.expect(step + 1, 500 + step)
        answers: list[Ack | LauncherStatus] = [
            LauncherStatus(launcher_id=LID, state=LauncherState.READY, sequence=0, launcher_time_ns=clock()),
            Ack(
                launcher_id=LID, result=AckResult.ACK, reason=NackReason.NONE, cue_sequence=step + 1,
                cue_id=500 + step, ack_sequence=0, launcher_time_ns=clock(),
            ),
        ]  # fmt: skip
        for answer in answers:
            (out,) = gw.receive_frames(dev.send(faults.reply(answer, seal, forge)), clock())
            seen.setdefault(window, set()).add(out.reason if isinstance(out, Rejected) else "ok")
    assert seen == {
        "none": {"ok"},
        "forged": {"auth_bad_mac"},
        "replayed": {"auth_replayed"},
        "stale": {"auth_stale"},
    }
    assert faults.counts == {"replies_forged": 20, "replies_replayed": 20, "replies_stale": 20}
