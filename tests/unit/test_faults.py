"""The fault timeline (scenario validation, FaultSchedule) and the byte mutators of
sim_devices/faults.py, checked against the gateway's own deframer."""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import Rejected, Role
from drivers.framing import Deframer, encode_frame
from drivers.radar import Status
from drivers.serial_radar import SerialRadarCodec
from hilgw.errors import ConfigError
from sim_devices.emulate import Counters, Emulator
from sim_devices.faults import (
    DatagramFaults,
    DelayLine,
    FaultSchedule,
    corrupt_crc,
    duplicate_datagrams,
    duplicate_frames,
    garbage,
    split_frames,
)
from sim_devices.scenario import FaultConfig, parse_scenario


def demo_raw() -> dict[str, Any]:
    text = resources.files("sim_devices").joinpath("scenarios", "demo.toml").read_text()
    return tomllib.loads(text)


def with_faults(*faults: dict[str, Any]) -> dict[str, Any]:
    raw = copy.deepcopy(demo_raw())
    raw["faults"] = list(faults)
    return raw


def F(**kw: Any) -> FaultConfig:
    kw.setdefault("device", "r")
    return FaultConfig.model_validate(kw)


# --- validation at load --------------------------------------------------------------


def test_demo_faults_validate() -> None:
    scn = parse_scenario(
        with_faults(
            {"device": "radar-fwd", "kind": "garbage", "start_s": 5, "duration_s": 2, "garbage_bytes": 10},
            {"device": "radar-fwd", "kind": "clock_step", "start_s": 5, "duration_s": 2, "step_s": -30},
        )
    )
    assert [f.kind for f in scn.faults_of("radar-fwd")] == ["garbage", "clock_step"]


@pytest.mark.parametrize(
    ("fault", "key", "text"),
    [
        ({"device": "nope", "kind": "dropout"}, "faults[0].device", "no sensor"),
        ({"kind": "can_bus_off"}, "faults[0].kind", "does not apply"),
        ({"kind": "delay"}, "faults[0]", "needs delay_s"),
        ({"kind": "dropout", "step_s": 3}, "faults[0]", "step_s does not apply"),
        ({"kind": "dropout", "duration_s": 0}, "faults[0].duration_s", "greater than 0"),
        ({"kind": "melt"}, "faults[0].kind", "Input should be"),
        ({"kind": "bad_crc", "probability": 1.5}, "faults[0].probability", "less than or equal"),
    ],
)
def test_bad_faults_are_one_line_config_errors(fault: dict[str, Any], key: str, text: str) -> None:
    fault = {"device": "radar-fwd", "start_s": 0, "duration_s": 1} | fault
    with pytest.raises(ConfigError) as exc:
        parse_scenario(with_faults(fault), source="demo.toml")
    msg = str(exc.value)
    assert "\n" not in msg
    assert f"demo.toml: {key}" in msg, msg
    assert text in msg, msg


def test_launchers_validate() -> None:
    raw = with_faults({"device": "lnch-1", "kind": "launcher_no_ack", "start_s": 1, "duration_s": 1})
    raw["launchers"] = [{"id": "lnch-1", "site": "site-a", "transport": "can", "range_max_m": 1e5}]
    with pytest.raises(ConfigError, match=r"launchers\[lnch-1\].site: no site"):
        parse_scenario(raw)
    raw["launchers"][0]["site"] = raw["sites"][0]["id"]
    scn = parse_scenario(raw)
    assert scn.device_kind("lnch-1") == "launcher:can"
    raw["faults"][0]["kind"] = "serial_unplug"  # a CAN launcher has no serial line
    with pytest.raises(ConfigError, match=r"faults\[0\].kind: a serial_unplug fault does not apply"):
        parse_scenario(raw)
    raw["launchers"][0]["ship"] = "x"
    with pytest.raises(ConfigError, match="exactly one of site or ship"):
        parse_scenario(raw)


# --- the schedule ----------------------------------------------------------------------


def test_schedule_windows_and_edges() -> None:
    sch = FaultSchedule(
        [
            F(kind="dropout", start_s=10, duration_s=5),
            F(kind="clock_step", start_s=12, duration_s=10, step_s=2.5),
            F(kind="clock_step", start_s=14, duration_s=1, step_s=-1.0),
            F(device="other", kind="dropout", start_s=0, duration_s=100),
        ],
        device="r",
    )
    assert sch.active_kind("dropout", 9.999) is None
    assert sch.active_kind("dropout", 10.0) is not None  # start inclusive
    assert sch.active_kind("dropout", 15.0) is None  # end exclusive
    assert sch.clock_step_s(13.0) == 2.5
    assert sch.clock_step_s(14.5) == 1.5  # steps add up
    assert sch.clock_step_s(22.0) == 0.0
    assert [sch.next_change(t) for t in (0.0, 10.0, 12.0, 14.0, 15.0, 22.0)] == [
        10.0,
        12.0,
        14.0,
        15.0,
        22.0,
        None,
    ]
    assert sch.kinds() == {"dropout", "clock_step"}
    assert not FaultSchedule([], "r")


def test_schedule_parameters() -> None:
    sch = FaultSchedule(
        [
            F(kind="delay", start_s=0, duration_s=10, delay_s=0.5),
            F(kind="delay", start_s=5, duration_s=10, delay_s=2.0),
            F(kind="bad_crc", start_s=0, duration_s=10, probability=0.5),
            F(kind="bad_crc", start_s=0, duration_s=10, probability=0.5),
            F(kind="duplicate", start_s=0, duration_s=10),
            F(kind="garbage", start_s=0, duration_s=10),
        ]
    )
    assert sch.delay_s(1.0) == 0.5
    assert sch.delay_s(6.0) == 2.0
    assert sch.delay_s(20.0) == 0.0
    assert sch.probability("bad_crc", 1.0) == pytest.approx(0.75)  # 1 - 0.5 * 0.5
    assert sch.probability("duplicate", 1.0) == 1.0  # default: every frame
    assert sch.probability("duplicate", 11.0) == 0.0
    assert sch.garbage_bytes(1.0) == 64
    assert sch.garbage_bytes(11.0) == 0


# --- mutators against the real deframer -------------------------------------------------


def frames(n: int, rng: np.random.Generator) -> list[bytes]:
    return [rng.integers(0, 256, size=int(rng.integers(1, 80)), dtype=np.uint8).tobytes() for _ in range(n)]


def deframe(data: bytes) -> tuple[list[bytes], list[str]]:
    out = Deframer().feed(data)
    ok = [p for p in out if isinstance(p, bytes)]
    bad = [p.error.reason for p in out if isinstance(p, Rejected)]
    return ok, bad


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 1.0))
def test_corrupt_crc_gives_exactly_crc_drops(seed: int, p: float) -> None:
    rng = np.random.default_rng(seed)
    payloads = frames(12, rng)
    stream = b"".join(encode_frame(x) for x in payloads)
    bad_stream, n = corrupt_crc(stream, rng, p)
    ok, bad = deframe(bad_stream)
    assert bad == ["crc"] * n
    assert len(ok) == len(payloads) - n
    assert all(x in payloads for x in ok)  # untouched frames come through intact


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 300))
def test_garbage_is_one_rejected_frame_between_intact_ones(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = frames(2, rng)
    ok, bad = deframe(encode_frame(a) + garbage(n, rng) + encode_frame(b))
    assert ok == [a, b]
    assert len(bad) == 1
    assert bad[0] in {"framing", "crc", "truncated", "too_long"}


def test_duplicates_and_split() -> None:
    rng = np.random.default_rng(3)
    a, b = frames(2, rng)
    stream = encode_frame(a) + encode_frame(b) + b"\x05\x01"  # a partial third frame
    assert split_frames(stream) == [encode_frame(a), encode_frame(b), b"\x05\x01"]
    dup, n = duplicate_frames(stream, rng, 1.0)
    assert n == 2
    ok, bad = deframe(dup)
    assert ok == [a, a, b, b]
    assert bad == []
    assert dup.endswith(b"\x05\x01")  # the partial frame is neither doubled nor lost
    assert duplicate_frames(stream, rng, 0.0) == (stream, 0)
    assert duplicate_datagrams([b"x", b"y"], rng, 1.0) == [b"x", b"x", b"y", b"y"]


def test_delay_line_order_and_clear() -> None:
    d = DelayLine()
    d.push(200, b"b")
    d.push(100, b"a")
    d.push(200, b"c")
    assert d.next_release_ns() == 100
    assert d.pop_due(99) == []
    assert d.pop_due(150) == [b"a"]
    assert d.pop_due(200) == [b"b", b"c"]  # push order among equal times
    d.push(300, b"xyz")
    assert d.clear() == 3
    assert len(d) == 0
    assert d.next_release_ns() is None


# --- the serial radar emulator applies the timeline (fake link, fake clock) -------------


class FakeLink:
    """The surface of emulate.PtyLink/TcpLink, in memory."""

    kind = "fake"

    def __init__(self) -> None:
        self.counters = Counters()
        self.data = bytearray()
        self.plugged = True

    def write(self, data: bytes) -> None:
        if not self.plugged:
            self.counters.fault_bytes_withheld += len(data)
            return
        self.data += data

    async def unplug(self, loop: object) -> None:
        self.plugged = False

    async def replug(self, loop: object) -> None:
        self.plugged = True

    def take(self) -> list[object]:
        codec = SerialRadarCodec(Role.GATEWAY)
        codec.receive_data(bytes(self.data))
        self.data.clear()
        return list(codec.drain())


async def test_emulator_applies_the_timeline() -> None:
    s = 1_000_000_000
    scn = parse_scenario(
        with_faults(
            {"device": "radar-fwd", "kind": "clock_step", "start_s": 10, "duration_s": 10, "step_s": 30},
            {"device": "radar-fwd", "kind": "silent_heartbeat", "start_s": 30, "duration_s": 10},
            {"device": "radar-fwd", "kind": "dropout", "start_s": 50, "duration_s": 10},
            {"device": "radar-fwd", "kind": "delay", "start_s": 70, "duration_s": 10, "delay_s": 0.5},
            {"device": "radar-fwd", "kind": "serial_unplug", "start_s": 90, "duration_s": 5},
            # Another device's fault: not this emulator's business.
            {"device": "radar-rear", "kind": "dropout", "start_s": 0, "duration_s": 1e3},
        )
    )
    link = FakeLink()
    emu = Emulator(scn, "radar-fwd", link, epoch_ns=0, clock=lambda: 0)  # type: ignore[arg-type]  # a fake link
    # Before any fault: the STATUS carries the true time.
    emu._send_status(5 * s)
    (st,) = link.take()
    assert isinstance(st, Status)
    assert st.sensor_time_ns == 5 * s
    # Clock step: the device clock is 30 s ahead.
    emu._send_status(15 * s)
    (st,) = link.take()
    assert isinstance(st, Status)
    assert st.sensor_time_ns == 45 * s
    # Silent heartbeat: no STATUS at all; dropout: nothing leaves, counted.
    emu._send_status(35 * s)
    assert link.take() == []
    emu._send_status(55 * s)
    assert link.take() == []
    assert link.counters.fault_bytes_withheld > 0
    # Delay: held until 0.5 s later, then written by the fault step.
    emu._send_status(75 * s)
    assert link.take() == []
    assert await emu._apply_faults(75 * s + s // 4) == 75 * s + s // 2  # next: the release
    assert link.take() == []
    await emu._apply_faults(75 * s + s // 2)
    assert [type(e) for e in link.take()] == [Status]
    # Unplug and replug at the edges of the window.
    await emu._apply_faults(91 * s)
    assert not link.plugged
    assert link.counters.fault_unplugs == 1
    await emu._apply_faults(96 * s)
    assert link.plugged


def test_datagram_faults() -> None:
    sent: list[tuple[bytes, tuple[str, int]]] = []
    sch = FaultSchedule(
        [
            F(kind="dropout", start_s=0, duration_s=1),
            F(kind="garbage", start_s=1, duration_s=1, garbage_bytes=8),
            F(kind="duplicate", start_s=2, duration_s=1),
            F(kind="delay", start_s=3, duration_s=1, delay_s=0.5),
        ]
    )
    df = DatagramFaults(lambda d, a: sent.append((d, a)), sch, np.random.default_rng(0))
    a, b = ("127.0.0.1", 1), ("127.0.0.1", 2)
    df.send(b"x", a, 0.5, 0, junk=True)
    assert sent == []
    df.send(b"x", a, 1.5, 0, junk=True)
    df.send(b"n", b, 1.5, 0, junk=False)  # NMEA: no junk
    assert [(len(d), d == b"x", dest) for d, dest in sent] == [(8, False, a), (1, True, a), (1, False, b)]
    assert 0 not in sent[0][0]  # junk without delimiters
    sent.clear()
    df.send(b"y", a, 2.5, 0, junk=True)
    assert sent == [(b"y", a), (b"y", a)]
    sent.clear()
    df.send(b"z", a, 3.5, 10, junk=True)
    assert sent == []
    assert df.flush(10 + 499_999_999) == 10 + 500_000_000
    assert df.flush(10 + 500_000_000) is None
    assert sent == [(b"z", a)]
    assert df.counts() == {"fault_datagrams_withheld": 1, "fault_garbage_datagrams": 1, "fault_duplicated": 1}
