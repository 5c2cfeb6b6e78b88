"""The association diagnostic (benchmarks/fusion/assoc_diag.py) classes the
wrong plot takes of tracks handed over on the right objects: none between two
objects 50 km apart, many between two objects 20 m apart on one line of
sight (inside one plot's 30 m range noise and its 250 m cross-range noise),
and those are classed "unresolved", not blamed on the track."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.fusion.assoc_diag import run
from gateway.fusion.config import FusionConfig
from tests.unit.test_fusion_engine import at, write_bench_scenario

K = 45  # 15 s of three staggered radars


def _scenario(path: Path, x0: np.ndarray) -> None:
    """Two labelled objects (Pd 1, no clutter) plus the truth the diagnostic reads."""
    t = write_bench_scenario(path, x0, K, seed=11, labels=lambda k: [0, 1])
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    states = np.stack([at(x0, float(tk)) for tk in t], axis=1)  # (N, K, 6) x y z vx vy vz
    arrays["truth_state"] = states[:, :, [0, 3, 1, 4, 2, 5]]
    arrays["truth_time"] = t
    arrays["truth_exists"] = np.ones(states.shape[:2], bool)
    np.savez_compressed(path, **arrays)


def _wrong_classes(tmp_path: Path, offset_m: np.ndarray) -> tuple[int, Counter[str]]:
    a = np.array([250e3, -50e3, 60e3, -2000.0, 300.0, 0.0])
    b = a.copy()
    b[:3] += offset_m
    _scenario(tmp_path / "s.npz", np.stack([a, b]))
    eng = run(tmp_path / "s.npz", FusionConfig(), oracle_s=3.0)
    after = [r for r in eng.rows if r["t"] >= 3.0]
    return len(after), Counter(r["cls"] for r in after if r["kind"] == "wrong")


def test_separated_objects_give_no_wrong_takes(tmp_path: Path) -> None:
    n, wrong = _wrong_classes(tmp_path, np.array([0.0, 50e3, 0.0]))
    assert n > 50
    assert sum(wrong.values()) == 0


def test_unresolved_objects_are_classed_unresolved(tmp_path: Path) -> None:
    los = np.array([250e3, -50e3, 60e3]) / np.linalg.norm([250e3, -50e3, 60e3])
    n, wrong = _wrong_classes(tmp_path, 20.0 * los)
    assert n > 50
    assert sum(wrong.values()) > 0.2 * n
    # Pd 1 and no clutter: no misses, no clutter; the objects are 20 m apart
    # against a 30 m plot sigma, so most wrong takes are unresolvable.
    assert wrong["own_missed"] == 0
    assert wrong["clutter"] == 0
    assert wrong["unresolved"] > 0.5 * sum(wrong.values())
