"""The situation display's track trails (gateway/web/server.py): what the page
gets, and what holding them costs with 1000 tracks (issue 18, memory).

The reference below is the trail as the display defined it before trails
were stored as flat arrays: every distinct update time of a track, oldest
first, none older than ``history_s`` before the latest picture, a track
forgotten once its trail is empty.
"""

from __future__ import annotations

import json
import tracemalloc
from collections import deque
from types import SimpleNamespace
from typing import Any

import numpy as np

from gateway.bus import Topic
from gateway.config import WebConfig
from gateway.web import server
from hilgw.v1 import track_pb2

S = 1_000_000_000
BASE = np.array([3_660_000.0, 645_000.0, 5_140_000.0])


def _display(**web: Any) -> server.SituationDisplay:
    gw: Any = SimpleNamespace(
        tracks=Topic("tracks"),
        config=SimpleNamespace(gateway_id="gw", devices=[]),
        stats={},
        emulation=None,
        devices=[],
    )
    return server.SituationDisplay(gw, WebConfig(**web))


def _picture(t_ns: int, tracks: dict[int, int], step: int) -> track_pb2.TrackBatch:
    """``tracks``: track id -> its last update time."""
    b = track_pb2.TrackBatch(time_ns=t_ns)
    for tid, upd in tracks.items():
        tr = b.tracks.add(track_id=tid, status=2, last_update_time_ns=upd)
        tr.state.x, tr.state.y, tr.state.z = BASE + np.array([tid * 1000.0, step * 50.0, 0.0])
        tr.state.vx = 250.0
    return b


def test_trails_hold_each_update_within_the_history_and_forget_gone_tracks() -> None:
    d = _display(history_s=1.0)
    ref: dict[int, deque[tuple[int, list[float]]]] = {}
    t0 = 1_700_000_000 * S
    for k in range(40):
        t = t0 + k * S // 5
        tracks = {1: t, 2: t - (k % 3) * S // 5}  # track 2 repeats update times (coasting)
        if k < 20:
            tracks[3] = t  # then gone
        d.take_picture(_picture(t, tracks, k))
        snap = json.loads(server._dumps(d.snapshot()))
        latest = {tr["id"]: [tr["lat"], tr["lon"]] for tr in snap["tracks"]}
        for tid, upd in tracks.items():
            trail = ref.setdefault(tid, deque())
            if not trail or trail[-1][0] != upd:
                trail.append((upd, latest[tid]))
        for tid in list(ref):
            while ref[tid] and ref[tid][0][0] < t - S:
                ref[tid].popleft()
            if not ref[tid]:
                del ref[tid]
        got = {tr["id"]: tr["trail"] for tr in snap["tracks"]}
        assert got == {tid: [p for _, p in ref[tid]] for tid in tracks}
        assert set(d._trails) == set(ref)
    assert 3 not in d._trails  # gone for more than history_s
    assert len(got[1]) == 6  # 1 s at 5 Hz, both ends within
    assert len(got[2]) < len(got[1])  # its repeated update times count once


def test_trails_of_1000_tracks_stay_small() -> None:
    """1000 tracks, 30 updates each: under 2 MB (a deque of tuples held ~5)."""
    d = _display(history_s=60.0)
    t0 = 1_700_000_000 * S
    n = 1000
    pictures = [
        _picture(t0 + k * S // 5, dict.fromkeys(range(1, n + 1), t0 + k * S // 5), k) for k in range(30)
    ]
    tracemalloc.start()
    try:
        for b in pictures:
            d.take_picture(b)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert sum(len(t) for t in d._trails.values()) == n * 30
    assert held < 2_000_000, f"{held / 1e6:.1f} MB for {n * 30} trail points"
