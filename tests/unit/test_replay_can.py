"""Replay of a bench with CAN devices (docs/recording.md, docs/icd/can-radar.md §7).

A gateway runs in-process with a CAN radar on python-can's ``virtual`` bus
(fed by the CAN radar emulator's class, in-process) and records to MCAP; the
recording is then replayed through the CAN radar driver's ``feed_raw``:

* the replayed SensorReportBatches equal the recorded ones row for row, the
  replayed TrackBatches the ones the live gateway published, byte for byte,
  and the device's counters (error frames, duplicates, bus-off) the live ones;
* a launcher's raw frames (heartbeats) are counted as skipped, not fed;
* the raw record format round-trips (``pack_raw_frames`` / ``unpack_raw_frames``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcap.reader import make_reader

from drivers.base import Role
from drivers.launcher import LauncherCanCodec, LauncherState, LauncherStatus
from gateway.config import CanTransportConfig, GatewayConfig, parse_config
from gateway.devices.base import ReportsIn
from gateway.devices.can_radar import LINK_EVENTS, RawCanRecord, pack_raw_frames, unpack_raw_frames
from gateway.normalise import reports_to_proto
from gateway.recording import topic_raw, topic_reports
from gateway.replay import Replay, ReplayResult, read_info, replay_command, timeline
from gateway.supervisor import Gateway
from gateway.transports.can import CanTransport
from hilgw.can import CanFrame
from hilgw.errors import RemoteProtocolError
from hilgw.v1 import recording_pb2, report_pb2, track_pb2
from sim_devices.can_device import EmulatorCanTransport
from sim_devices.can_radar_emulator import CanRadarEmulator, build_parser
from sim_devices.scenario import load_scenario
from tests.can_support import fault, scenario_toml, virtual_bus_open
from tests.waiting import eventually

RADAR = "can-radar"
LAUNCHER = "launcher-1"
SITE = {"lat_deg": 52.0, "lon_deg": 4.0, "alt_m": 10.0}
#: SocketCAN error class of a controller problem (linux/can/error.h CAN_ERR_CRTL): not bus-off.
CAN_ERR_CRTL = 0x04


def channel(what: str) -> str:
    """A virtual bus channel no other test (or run) shares."""
    return f"replay-{what}-{uuid.uuid4().hex[:10]}"


def radar_device(chan: str, **extra: Any) -> dict[str, Any]:
    transport = {"kind": "can", "interface": "virtual", "channel": chan, "poll_s": 0.01}
    return {"id": RADAR, "protocol": "can_radar", "transport": transport, "site": SITE, **extra}


def config(tmp_path: Path, devices: list[dict[str, Any]], **extra: Any) -> GatewayConfig:
    return parse_config(
        {
            "gateway_id": "replay-can",
            "mqtt": {"enabled": False},
            "fusion": {"publish_hz": 5.0},
            "devices": devices,
            "recording": {"path": str(tmp_path / "can.mcap")},
            **extra,
        }
    )


def messages(files: list[Path], topic: str) -> Iterator[bytes]:
    for path in files:
        with path.open("rb") as f:
            for _schema, chan, msg in make_reader(f).iter_messages(topics=[topic], log_time_order=True):
                assert chan.topic == topic
                yield msg.data


def replay_with_reports(files: list[Path]) -> tuple[Replay, ReplayResult, list[bytes]]:
    """Replay ``files``; also the radar's replayed reports as the recorder writes them."""
    info = read_info(files)
    assert info.dropped == {"raw": 0, "tracks": 0, "health": 0, "reports": 0}
    replay = Replay(info)  # refuses the recording if the CAN radar has no feed_raw
    sub = replay.reports.subscribe("test", maxsize=1_000_000)
    result = replay.run(timeline(info.paths))
    ours: list[ReportsIn] = [r for r in sub.get_all() if r.device_id == RADAR]
    sensor_ids = replay.fusion.sensor_ids
    protos = [
        reports_to_proto(
            r.reports, sensor_ids, r.receive_time_ns, info.gateway_id, batch_sequence=i, source=r.source
        ).SerializeToString()
        for i, r in enumerate(ours, 1)
    ]
    return replay, result, protos


def recorded_reports(files: list[Path]) -> list[bytes]:
    # Re-serialised through the message, as replay_with_reports serialises its own.
    return [
        report_pb2.SensorReportBatch.FromString(data).SerializeToString()
        for data in messages(files, topic_reports(RADAR))
    ]


def confirmed(batches: list[track_pb2.TrackBatch]) -> int:
    return sum(1 for b in batches for t in b.tracks if t.status == track_pb2.TRACK_STATUS_CONFIRMED)


# --- the record format ------------------------------------------------------------------

FRAMES = [
    CanFrame(0x100, bytes(range(8))),
    CanFrame(0x7FF, b""),
    CanFrame(0x123, bytes(range(64)), is_fd=True),
    CanFrame(0x1ABCDEF5, b"\xff\x00\x11", is_extended=True),
    CanFrame(0x1FFFFFFF, bytes(12), is_fd=True, is_extended=True),
]


def test_frames_only_record_is_the_icd_format() -> None:
    data = pack_raw_frames(FRAMES)
    # ICD §7: per frame u32 id (bit 31 extended, bit 30 FD), u8 length, the data.
    assert data[:13] == (0x100).to_bytes(4, "little") + b"\x08" + bytes(range(8))
    assert data[13:18] == (0x7FF).to_bytes(4, "little") + b"\x00"
    assert data[18:23] == (0x123 | 1 << 30).to_bytes(4, "little") + b"\x40"
    assert len(data) == sum(5 + len(f.data) for f in FRAMES)
    assert unpack_raw_frames(data, 42) == RawCanRecord(
        [f._replace(timestamp_ns=42) for f in FRAMES], {}, False
    )


def test_link_events_and_session_end_round_trip() -> None:
    link = {"error_frame": 3, "bus_off": 1, "queue_full": 0}
    data = pack_raw_frames(FRAMES[:2], link, session_end=True)
    rec = unpack_raw_frames(data, 7)
    assert rec.frames == [f._replace(timestamp_ns=7) for f in FRAMES[:2]]
    assert rec.link == {"error_frame": 3, "bus_off": 1}  # zero counts are not written
    assert rec.session_end
    # A link-only record (the end of a session that ended in bus-off).
    assert unpack_raw_frames(pack_raw_frames([], {"bus_off": 1}, session_end=True)) == RawCanRecord(
        [], {"bus_off": 1}, True
    )
    assert unpack_raw_frames(b"") == RawCanRecord([], {}, False)
    # Entries whose id has bit 29 set are link events with a u32 count.
    tail = data[-9:]
    assert int.from_bytes(tail[:4], "little") == 1 << 29 | LINK_EVENTS["session_end"]
    assert tail[4:] == b"\x04" + (1).to_bytes(4, "little")


def test_every_cut_record_is_refused_or_whole_entries() -> None:
    data = pack_raw_frames(FRAMES, {"error_frame": 2}, session_end=True)
    ends, pos = [0], 0  # where each entry ends: 5 frames, then 2 link entries
    while pos < len(data):
        pos += 5 + data[pos + 4]
        ends.append(pos)
    assert len(ends) == 1 + len(FRAMES) + 2
    for cut in range(len(data)):
        if cut in ends:  # cut between entries: the entries before the cut, nothing invented
            assert unpack_raw_frames(data[:cut]).frames == FRAMES[: ends.index(cut)]
            continue
        with pytest.raises(RemoteProtocolError, match=r"raw CAN record: entry .*at byte \d+") as err:
            unpack_raw_frames(data[:cut])
        assert err.value.reason == "framing"


def test_unknown_link_entry_is_refused() -> None:
    bad = (1 << 29 | 99).to_bytes(4, "little") + b"\x04" + bytes(4)
    with pytest.raises(RemoteProtocolError, match=r"unknown link entry 0x20000063 \(length 4\) at byte 0"):
        unpack_raw_frames(bad)


# --- a live run, recorded, replayed -------------------------------------------------------


async def test_can_radar_and_launcher_run_replays_to_the_live_reports_and_tracks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    radar_ch, launcher_ch = channel("radar"), channel("launcher")
    launcher = {
        "id": LAUNCHER,
        "protocol": "launcher",
        "launcher_id": 3,
        "transport": {
            "kind": "can",
            "interface": "virtual",
            "channel": launcher_ch,
            "fd": True,
            "poll_s": 0.01,
        },
    }
    cfg = config(tmp_path, [radar_device(radar_ch), launcher])
    heartbeat = LauncherCanCodec(Role.DEVICE, launcher_id=3, keys={1: bytes(16)})
    async with Gateway(cfg) as gw:
        published = gw.tracks.subscribe("test", maxsize=10_000)
        await virtual_bus_open(radar_ch, launcher_ch)
        args = [
            "--channel",
            radar_ch,
            "--synthetic",
            "4",
            "--rate-hz",
            "10",
            "--duplicate",
            "0.1",
            "--shuffle",
        ]
        ns = build_parser().parse_args(args)
        radar_cfg = CanTransportConfig(kind="can", interface="virtual", channel=radar_ch)
        launcher_cfg = CanTransportConfig(kind="can", interface="virtual", channel=launcher_ch, fd=True)
        async with EmulatorCanTransport(radar_cfg) as tx, CanTransport(launcher_cfg) as ltx:
            emu = CanRadarEmulator(ns, tx, time.time_ns())
            stop = asyncio.Event()
            task = asyncio.create_task(emu.run(stop))
            for k in range(6):
                status = LauncherStatus(
                    launcher_id=3, state=LauncherState.READY, sequence=k, launcher_time_ns=time.time_ns()
                )
                await ltx.send_many(heartbeat.send(status))
                if k == 2:
                    await tx.send_error_frame(CAN_ERR_CRTL)  # counted, but no bus-off
                await asyncio.sleep(0.33)
            stop.set()
            await task
        await eventually(lambda: gw.stats[LAUNCHER].frames_in == 6, what="the 6 heartbeats read")
    # Read once the gateway stopped: what it took in and published until then, all
    # of it recorded (a snapshot while it runs races the last frames on a busy machine).
    live = published.get_all()
    st = gw.stats[RADAR]
    live_counts = (dict(st.drops), st.frames_in, st.bytes_in, st.reports_out)
    launcher_in = gw.stats[LAUNCHER].frames_in
    assert gw.recorder is not None
    await eventually(gw.recorder.finished.is_set, what="the recording's last part closed")
    files = gw.recorder.files

    # The live run saw what the test sent.
    drops = live_counts[0]
    assert drops.get("can_error_frame") == 1, drops
    assert "can_bus_off" not in drops, drops
    # Every repeated report part is a "duplicate" (a repeated status frame is decoded twice instead).
    assert 0 < drops.get("duplicate", 0) <= emu.counters["frames_duplicated"], drops
    assert live_counts[3] >= 4 * 15
    assert launcher_in == 6  # one heartbeat frame each

    replay, result, replayed = replay_with_reports(files)
    recorded = recorded_reports(files)
    # Row for row: every SensorReportBatch the live driver published, rebuilt from raw frames.
    assert len(recorded) >= 15
    assert replayed == recorded
    # The device's counters: frames, bytes, reports, and every drop (the error frame included).
    rs = replay.stats[RADAR]
    assert (dict(rs.drops), rs.frames_in, rs.bytes_in, rs.reports_out) == live_counts
    # The tracks: what the live gateway published, byte for byte.
    assert [b.SerializeToString() for b in live] == [b.SerializeToString() for b in result.recorded]
    assert result.identical == len(result.replayed) == len(live) >= 8
    assert confirmed(result.replayed) > 0

    # The launcher: no driver built, its raw chunks counted as skipped.
    n_launcher = sum(1 for _ in messages(files, topic_raw(LAUNCHER)))
    assert n_launcher >= 6
    assert LAUNCHER not in replay.drivers
    assert replay.skipped_devices == {LAUNCHER: "launcher"}
    assert result.skipped == {LAUNCHER: n_launcher}
    assert result.frames + n_launcher == read_info(files).raw_frames

    # The command line's summary says so, and --check passes.
    capsys.readouterr()
    assert replay_command(files, speed=None, check=True, show_progress=False) == 0
    err = capsys.readouterr().err
    assert f"{n_launcher} launcher chunks skipped ({LAUNCHER}: {n_launcher})" in err, err
    assert f"{len(live)}/{len(live)} steps identical" in err, err


async def test_bus_off_in_the_recording_counts_and_reopens_as_live(tmp_path: Path) -> None:
    chan = channel("busoff")
    path = tmp_path / "scenario.toml"
    path.write_text(scenario_toml(chan, fault("can_bus_off", 1.0, 1.0, sensor=RADAR), sensor=RADAR))
    scenario = load_scenario(path)
    cfg = config(
        tmp_path,
        [radar_device(chan, heartbeat_timeout_s=0.8, restart={"initial_s": 0.2, "max_s": 0.5})],
    )
    async with Gateway(cfg) as gw:
        published = gw.tracks.subscribe("test", maxsize=10_000)
        await virtual_bus_open(chan)
        ns = build_parser().parse_args(["--scenario", str(path)])
        epoch = time.time_ns() + 200_000_000
        async with EmulatorCanTransport(
            CanTransportConfig(kind="can", interface="virtual", channel=chan)
        ) as tx:
            emu = CanRadarEmulator(ns, tx, epoch, scenario=scenario)
            stop = asyncio.Event()
            task = asyncio.create_task(emu.run(stop))
            # Bus-off from scenario time 1.0 s to 2.0 s, then 1.2 s of reports again.
            await asyncio.sleep((epoch + 3_200_000_000 - time.time_ns()) / 1e9)
            stop.set()
            await task
    live = published.get_all()  # once stopped, as above
    st = gw.stats[RADAR]
    live_counts = (dict(st.drops), st.frames_in, st.bytes_in, st.reports_out)
    restarts = st.restarts
    assert gw.recorder is not None
    await eventually(gw.recorder.finished.is_set, what="the recording's last part closed")
    files = gw.recorder.files

    drops = live_counts[0]
    assert (drops.get("can_bus_off"), drops.get("can_error_frame")) == (1, 1), drops
    assert restarts == 1
    assert emu.counters["fault_bus_offs"] == 1

    # The recording holds the bus-off and the end of the session it closed.
    records = [
        unpack_raw_frames(recording_pb2.RawFrame.FromString(d).data)
        for d in messages(files, topic_raw(RADAR))
    ]
    assert sum(r.link.get("bus_off", 0) for r in records) == 1
    assert sum(r.link.get("error_frame", 0) for r in records) == 1
    ends = [i for i, r in enumerate(records) if r.session_end]
    assert ends, "no session_end record: the end of the bus-off session was not recorded"
    assert ends[0] < len(records) - 1, "the bus-off session's end, then the next session"
    assert any(r.frames for r in records[ends[0] + 1 :])

    replay, result, replayed = replay_with_reports(files)
    recorded = recorded_reports(files)
    assert len(recorded) >= 15
    assert replayed == recorded
    rs = replay.stats[RADAR]
    assert (dict(rs.drops), rs.frames_in, rs.bytes_in, rs.reports_out) == live_counts
    assert [b.SerializeToString() for b in live] == [b.SerializeToString() for b in result.recorded]
    assert result.identical == len(result.replayed) == len(live) >= 10
    assert confirmed(result.replayed) > 0
    assert result.skipped == {}
