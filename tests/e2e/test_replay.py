"""End to end: the bench (two radar emulator processes on ptys) -> the gateway
recording to MCAP with rotation -> ``hilgw replay`` in a separate process and
in-process: the replay gives byte-identical TrackBatches twice, and the ones
the live gateway published."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from gateway.config import parse_config
from gateway.replay import read_info, replay_files
from gateway.supervisor import Gateway
from hilgw.v1 import track_pb2
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


async def test_replay_of_a_live_bench_run_gives_the_published_tracks(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "gateway_id": "replay-e2e",
            "mqtt": {"enabled": False},
            "fusion": {"publish_hz": 5.0},
            # The whole layered demo: serial radars on ptys, frigates' ASTERIX
            # and own-ship NMEA on UDP.
            "emulation": {"scenario": "builtin:demo", "transport": "pty"},
            "recording": {"path": str(tmp_path / "bench.mcap"), "rotate_mb": 0.02},
        }
    )
    async with Gateway(cfg) as gw:
        published = gw.tracks.subscribe("test", maxsize=10_000)
        await asyncio.sleep(7.0)  # the length of the bench run
        live = published.get_all()
        assert gw.recorder is not None
    live += published.get_all()  # what was published between the read and the stop
    # A loaded machine may take longer than shutdown_timeout_s: the writer thread finishes the file.
    await eventually(gw.recorder.finished.is_set, what="the recording's last part closed")
    files = gw.recorder.files
    assert len(files) >= 2, "the size rotation should have split 7 s of bench"
    info = read_info(files)
    assert info.dropped == {"raw": 0, "tracks": 0, "health": 0, "reports": 0}
    assert sorted(d.id for d in info.devices) == [
        "ew-ship-a", "ew-ship-a-nav", "ew-ship-b", "ew-ship-b-nav", "radar-fwd", "radar-rear",
    ]  # fmt: skip

    first = replay_files(files)
    second = replay_files(files)
    stream = [b.SerializeToString() for b in first.replayed]
    assert stream == [b.SerializeToString() for b in second.replayed]
    assert (
        sum(1 for b in first.replayed for t in b.tracks if t.status == track_pb2.TRACK_STATUS_CONFIRMED) > 10
    )

    # What the live gateway published on its tracks topic (the recording holds
    # the same batches), step for step and byte for byte. No tolerance is
    # needed: same bytes, same receive times, same step times, same code.
    assert len(first.recorded) == len(live) >= 25
    assert [b.SerializeToString() for b in live] == [b.SerializeToString() for b in first.recorded]
    assert first.identical == len(live)

    # The command line, as a user runs it: exit 0 with --check.
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "gateway.cli", "replay", *map(str, files), "--max-speed", "--check"],
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert f"{len(live)}/{len(live)} steps identical" in err.decode()
