"""The oracle diagnostics of the fusion bench (gateway/bench_oracle.py) take
the association from the scenario's ``meas_truth``, not from geometry: with
the two objects' labels swapped half-way, each oracle track follows its label
across the sky, while the engine's own association keeps each track on the
object it started on."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from gateway.bench_fusion import run_bench
from gateway.bench_oracle import OracleEngine
from gateway.fusion.config import FusionConfig
from gateway.fusion.motion import flat_gravity
from tests.unit.test_fusion_engine import at, write_bench_scenario

K = 60
X0 = np.array([[250e3, -50e3, 60e3, -2000.0, 300.0, 0.0], [300e3, 40e3, 90e3, -1500.0, -500.0, 50.0]])


def _scenario(path: Path, swap_at: int) -> np.ndarray:
    """Two objects, three radars, no clutter; plots labelled with their object,
    labels swapped from scan ``swap_at``. Returns the scan times."""
    return write_bench_scenario(path, X0, K, seed=5, labels=lambda k: [1, 0] if k >= swap_at else [0, 1])


def _ends(tracks: Path, t_end: float) -> dict[int, int]:
    """Object nearest each track at the end, by the id of its first estimate's object."""
    with np.load(tracks) as tr:
        ids, tt, xs = tr["track_id"], tr["track_time"], tr["track_state"][:, [0, 2, 4]]
    truth0 = at(X0, float(tt.min()))[:, :3]
    truth1 = at(X0, t_end)[:, :3]
    out = {}
    for tid in np.unique(ids):
        first = xs[ids == tid][np.argmin(tt[ids == tid])]
        last = xs[(ids == tid) & np.isclose(tt, t_end)]
        assert len(last) == 1
        start = int(np.argmin(np.linalg.norm(truth0 - first, axis=1)))
        out[start] = int(np.argmin(np.linalg.norm(truth1 - last[0], axis=1)))
    return out


def test_the_engine_keeps_each_track_on_its_object(tmp_path: Path) -> None:
    t = _scenario(tmp_path / "s.npz", swap_at=30)
    run_bench(tmp_path / "s.npz", tmp_path / "t.npz")
    assert _ends(tmp_path / "t.npz", float(t[-1])) == {0: 0, 1: 1}


def test_oracle_tracks_follow_the_truth_labels_across_the_gate(tmp_path: Path) -> None:
    t = _scenario(tmp_path / "s.npz", swap_at=30)
    run_bench(tmp_path / "s.npz", tmp_path / "t.npz", oracle="oracle")
    # Gates ignored: each track jumps to the other object with its label.
    assert _ends(tmp_path / "t.npz", float(t[-1])) == {0: 1, 1: 0}


def test_oracle_assoc_starves_tracks_whose_label_moved_away(tmp_path: Path) -> None:
    """Within the engine's gates the other object's plots are out of reach: the
    first two tracks get no plot after the swap and are dropped; the plots
    start new tracks (re-acquisition off: it would rightly hand the new tracks
    the old ids, gateway/fusion/stitch.py)."""
    t = _scenario(tmp_path / "s.npz", swap_at=30)
    cfg = dataclasses.replace(FusionConfig(), stitch_window_s=0.0)
    run_bench(tmp_path / "s.npz", tmp_path / "t.npz", config=cfg, oracle="oracle_assoc")
    with np.load(tmp_path / "t.npz") as tr:
        ids, tt = tr["track_id"], tr["track_time"]
    first = set(np.unique(ids[tt < t[30]]).tolist())
    last = set(np.unique(ids[np.isclose(tt, t[-1])]).tolist())
    assert len(first) == 2
    assert len(last) == 2
    assert not first & last


def test_unknown_oracle_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="oracle mode"):
        OracleEngine(FusionConfig(), flat_gravity(), "psychic")
