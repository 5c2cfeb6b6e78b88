"""Recording and replay without processes: MCAP parts (rotation, embedded
schemas, metadata), the recorder's bounded queues and worker thread, and a
replay of an in-memory run that must give the live run's TrackBatches."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory

from drivers.base import Role
from drivers.radar import TRACK_BATCH_DTYPE, SensorState, Status
from drivers.serial_radar import SerialRadarCodec
from gateway import recording
from gateway.bus import Topic
from gateway.config import RecordingConfig, parse_config
from gateway.devices.base import RawFrame
from gateway.recording import META_END, META_RUN, McapParts, Recorder
from gateway.replay import Replay, read_info, replay_files, timeline
from gateway.supervisor import Gateway
from gateway.transports import memory_registry
from hilgw.errors import ConfigError
from hilgw.v1 import health_pb2, recording_pb2, track_pb2
from tests.waiting import eventually

META = {"format": recording.FORMAT, "gateway_id": "t", "run": json.dumps({"gateway_id": "t"})}


def raw(i: int) -> recording_pb2.RawFrame:
    return recording_pb2.RawFrame(
        device_id="dev",
        transport="serial",
        receive_time_ns=1_000 + i,
        data=bytes([i % 256]) * 100,
        sequence=i,
    )


def read_all(path: Path) -> tuple[dict[str, dict[str, str]], list[tuple[str, object]]]:
    """Metadata and decoded messages, decoding with the schemas in the file
    (as Foxglove does: nothing from hilgw.v1 is used to decode)."""
    with path.open("rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        metas = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
        msgs = [(ch.topic, dec) for _, ch, _, dec in reader.iter_decoded_messages()]
    return metas, msgs


def test_parts_rotate_by_size_and_each_part_is_complete(tmp_path: Path) -> None:
    parts = McapParts(tmp_path / "rec.mcap", META, rotate_bytes=4000, rotate_s=None, chunk_size=1024)
    for i in range(0, 300, 10):
        parts.write([("/raw/dev", raw(j), 1_000 + j, j) for j in range(i, i + 10)])
    parts.close({"dropped": "{}"})
    assert len(parts.files) >= 3
    assert [p.name.rsplit("-", 1)[1] for p in parts.files] == [
        f"{k:04d}.mcap" for k in range(1, len(parts.files) + 1)
    ]
    got = []
    for k, path in enumerate(parts.files, 1):
        metas, msgs = read_all(path)
        assert metas[META_RUN]["part"] == str(k)
        assert metas[META_RUN]["format"] == recording.FORMAT
        got += [(topic, m.sequence, m.data) for topic, m in msgs]  # type: ignore[attr-defined]
    assert META_END in read_all(parts.files[-1])[0]
    assert got == [("/raw/dev", j, bytes([j % 256]) * 100) for j in range(300)]
    assert parts.messages == 300


def test_parts_rotate_by_age(tmp_path: Path) -> None:
    now = [0.0]
    parts = McapParts(tmp_path / "rec.mcap", META, rotate_bytes=1 << 30, rotate_s=10.0, mono=lambda: now[0])
    for i in range(5):
        parts.write([("/raw/dev", raw(i), 1_000 + i, i)])
        now[0] += 4.0  # writes at 0, 4, 8, 12 s; the one at 12 s finds the part old and closes it
    parts.close()
    assert [len(read_all(p)[1]) for p in parts.files] == [4, 1]


def test_a_second_recorder_in_the_same_second_never_overwrites(tmp_path: Path) -> None:
    a = McapParts(tmp_path / "rec.mcap", META, rotate_bytes=1 << 30, rotate_s=None)
    b = McapParts(tmp_path / "rec.mcap", META, rotate_bytes=1 << 30, rotate_s=None)
    b.stamp = a.stamp
    a.write([("/raw/dev", raw(1), 1, 1)])
    b.write([("/raw/dev", raw(2), 2, 2)])
    a.close()
    b.close()
    assert a.files[0] != b.files[0]
    assert len(read_all(a.files[0])[1]) == len(read_all(b.files[0])[1]) == 1


async def test_a_full_recorder_queue_drops_newest_and_counts_it(tmp_path: Path) -> None:
    raw_t: Topic[RawFrame] = Topic("raw")
    tracks_t: Topic[track_pb2.TrackBatch] = Topic("tracks")
    health_t: Topic[health_pb2.DeviceHealth] = Topic("health")
    cfg = RecordingConfig(path=tmp_path / "rec.mcap", queue=16)
    rec = Recorder(cfg, META, raw=raw_t, tracks=tracks_t, health=health_t)
    for i in range(40):  # before the task runs: 16 fit, 24 are dropped
        raw_t.publish(RawFrame("dev", "serial", 1_000 + i, bytes([i])))
    task = asyncio.create_task(rec.run())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rec.dropped()["raw"] == 24
    metas, msgs = read_all(rec.files[0])
    # DROP_NEWEST: the journal keeps the first 16, in order, numbered 1..16.
    assert [(m.data, m.sequence) for _, m in msgs] == [(bytes([i]), i + 1) for i in range(16)]  # type: ignore[attr-defined]
    assert json.loads(metas[META_END]["dropped"])["raw"] == 24


async def test_a_batch_handed_to_a_busy_writer_is_written_when_shutdown_cancels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's one worker is busy (a slow disk) when the gateway's shutdown
    cancels the task: the batch already taken off the queues still reaches the
    file (it was lost, counted nowhere, while its write waited for the worker)."""
    release = threading.Event()

    class BusyPool(ThreadPoolExecutor):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.submit(release.wait, 10.0)  # the disk is still on an earlier write

    monkeypatch.setattr(recording, "ThreadPoolExecutor", BusyPool)
    raw_t: Topic[RawFrame] = Topic("raw")
    rec = Recorder(
        RecordingConfig(path=tmp_path / "rec.mcap"),
        META,
        raw=raw_t,
        tracks=Topic("tracks"),
        health=Topic("health"),
    )
    task = asyncio.create_task(rec.run())
    for i in range(5):
        raw_t.publish(RawFrame("dev", "serial", 1_000 + i, bytes([i])))
    await eventually(
        lambda: rec.parts is not None and len(rec.raw) == 0, what="the batch taken off the queue"
    )
    task.cancel()
    await asyncio.sleep(0)  # the cancel lands while the write waits behind the busy worker
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rec.finished.is_set()
    _, msgs = read_all(rec.files[0])
    assert [m.data for _, m in msgs] == [bytes([i]) for i in range(5)]  # type: ignore[attr-defined]


async def test_a_slow_disk_does_not_stall_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = McapParts.write

    def slow_write(self: McapParts, records: list[recording.Record]) -> None:
        time.sleep(0.3)  # a disk that takes 300 ms per write (in the worker thread)
        real_write(self, records)

    monkeypatch.setattr(McapParts, "write", slow_write)
    raw_t: Topic[RawFrame] = Topic("raw")
    rec = Recorder(
        RecordingConfig(path=tmp_path / "rec.mcap"),
        META,
        raw=raw_t,
        tracks=Topic("tracks"),
        health=Topic("health"),
    )
    task = asyncio.create_task(rec.run())
    gaps = []
    last = time.monotonic()
    for i in range(60):  # 0.6 s of 10 ms ticks while frames keep coming
        raw_t.publish(RawFrame("dev", "serial", i, b"x"))
        await asyncio.sleep(0.01)
        now = time.monotonic()
        gaps.append(now - last)
        last = now
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert max(gaps) < 0.1, max(gaps)  # the loop never waited for the disk
    assert sum(len(read_all(p)[1]) for p in rec.files) == 60  # and nothing was lost


def test_replay_refuses_a_file_that_is_not_a_recording(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not an mcap file at all")
    with pytest.raises(ConfigError, match=r"junk\.mcap"):
        read_info([junk])
    other = McapParts(tmp_path / "other.mcap", {"format": "something-else"}, 1 << 20, None)
    other.write([("/raw/dev", raw(1), 1, 1)])
    other.close()
    with pytest.raises(ConfigError, match="not a hilgw-recording/1 file"):
        read_info(other.files)


# --- replay of an in-memory run ------------------------------------------------


@pytest.fixture
def link(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"rec-{request.node.name}"
    yield name
    memory_registry.forget(name)


def scan(n_targets: int, t_ns: int, k: int) -> np.ndarray:
    """One scan of n targets flying straight; polar in the site frame."""
    arr = np.zeros(n_targets, TRACK_BATCH_DTYPE)
    i = np.arange(n_targets)
    arr["sensor_track_id"] = 10 + i
    arr["sensor_time_ns"] = t_ns
    arr["range_m"] = 40_000.0 + 3_000.0 * i - 150.0 * k
    arr["azimuth_rad"] = 0.3 + 0.2 * i
    arr["elevation_rad"] = 0.05 + 0.01 * i
    arr["range_rate_mps"] = -300.0
    arr["sigma_range_m"] = 10.0
    arr["sigma_azimuth_rad"] = 1e-3
    arr["sigma_elevation_rad"] = 1e-3
    arr["sigma_range_rate_mps"] = 1.0
    arr["sigma_azimuth_rate_radps"] = 1e-4
    arr["sigma_elevation_rate_radps"] = 1e-4
    arr["quality"] = 0.9
    arr["rates_valid"] = True
    return arr


async def test_replay_gives_the_live_tracks_and_the_same_every_time(tmp_path: Path, link: str) -> None:
    cfg = parse_config(
        {
            "gateway_id": "rec-gw",
            "mqtt": {"enabled": False},
            "fusion": {"publish_hz": 20.0},
            "devices": [
                {
                    "id": "radar-1",
                    "protocol": "serial_radar",
                    "wire_sensor_id": 7,
                    "transport": {"kind": "memory", "name": link},
                    "site": {"lat_deg": 54.0, "lon_deg": 10.0, "alt_m": 20.0, "yaw_deg": 30.0},
                }
            ],
            "recording": {"path": str(tmp_path / "run.mcap"), "rotate_mb": 0.004},
        }
    )
    device = SerialRadarCodec(Role.DEVICE, sensor_id=7)
    rng = random.Random(7)
    async with Gateway(cfg) as gw:
        assert gw.recorder is not None
        _, dev_end = memory_registry.link(link)
        await dev_end.open()
        status = Status(
            sensor_time_ns=time.time_ns(), state=SensorState.OK, time_sync_locked=True,
            radiating=True, track_count=3, uptime_s=1,
        )  # fmt: skip
        await dev_end.write(device.send(status))
        for k in range(25):
            wire = device.encode_track_batch(scan(3, time.time_ns(), k))
            if k % 7 == 3:
                wire += b"\x01\x02\x03\x00"  # a corrupt frame: counted, and replayed as such
            # Frames split at random points: the codec's reassembly is on the replay path too.
            cuts = sorted(rng.sample(range(1, len(wire)), 3))
            for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
                await dev_end.write(wire[a:b])
                await asyncio.sleep(0.004)
            await asyncio.sleep(0.03)
    # Read once the gateway stopped: every frame it read is counted and recorded by then.
    live_drops = dict(gw.stats["radar-1"].drops)
    await eventually(gw.recorder.finished.is_set, what="the recording's last part closed")
    files = gw.recorder.files
    assert len(files) >= 2, "rotate_mb should have split this run"
    info = read_info(files)
    assert info.dropped == {"raw": 0, "tracks": 0, "health": 0, "reports": 0}
    assert [d.id for d in info.devices] == ["radar-1"]

    replay = Replay(info)
    first = replay.run(timeline(info.paths))
    second = replay_files(files)
    assert first.frames == info.raw_frames >= 100
    assert len(first.replayed) == info.track_batches >= 20
    confirmed = [t for b in first.replayed for t in b.tracks if t.status == track_pb2.TRACK_STATUS_CONFIRMED]
    assert confirmed
    # The corrupt frames were dropped live and in replay alike, for the same reason.
    assert sum(live_drops.values()) > 0
    assert dict(replay.stats["radar-1"].drops) == live_drops
    # Two replays: byte-identical TrackBatch streams.
    assert [b.SerializeToString() for b in first.replayed] == [b.SerializeToString() for b in second.replayed]
    # And the same as the live run published (no tolerance: same inputs, same order, same code).
    assert first.identical == len(first.replayed)


def test_run_metadata_keeps_no_inline_key() -> None:
    """A launcher's ``hex:`` key never reaches a recording; env/file references do."""
    secret = "c3" * 32
    cfg = parse_config(
        {
            "devices": [
                {
                    "id": "L1",
                    "protocol": "launcher",
                    "cue_key_id": 1,
                    "cue_keys": {1: f"hex:{secret}", 2: "env:HILGW_L1_KEY"},
                    "transport": {"kind": "serial", "url": "/dev/null"},
                }
            ]
        }
    )
    meta = recording.run_metadata(cfg, cfg.devices)
    assert secret not in json.dumps(meta)
    (dev,) = json.loads(meta["run"])["devices"]
    assert dev["cue_keys"] == {"1": "hex:<redacted>", "2": "env:HILGW_L1_KEY"}
    assert cfg.devices[0].cue_keys[1] == f"hex:{secret}"  # the live config is untouched
