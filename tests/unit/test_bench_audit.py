"""The association audit (gateway/bench_audit.py) counts the plots the
engine's own one-scan assignment would give an oracle-fed track from
another object: none between two objects 50 km apart, a large share between
two objects 20 m apart on one line of sight (inside one plot's noise: 30 m in
range, 1 mrad ≈ 250 m across), where no one-scan rule can tell them apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gateway.bench_audit import audit
from gateway.fusion.config import FusionConfig
from tests.unit.test_fusion_engine import write_bench_scenario

K = 45  # 15 s of three staggered radars


def _scenario(path: Path, x0: np.ndarray) -> None:
    """Two objects, three radars, Pd 1, no clutter, plots labelled with their object."""
    write_bench_scenario(path, x0, K, seed=11, labels=lambda k: [0, 1])


def _wrong(tmp_path: Path, offset_m: np.ndarray) -> tuple[float, float]:
    a = np.array([250e3, -50e3, 60e3, -2000.0, 300.0, 0.0])
    b = a.copy()
    b[:3] += offset_m
    _scenario(tmp_path / "s.npz", np.stack([a, b]))
    rows = audit(tmp_path / "s.npz", FusionConfig(), min_updates=3, bins=(0.0, 1e9))
    return rows[0]["takes"], rows[0]["wrong_rate"]


def test_separated_objects_are_never_confused(tmp_path: Path) -> None:
    takes, wrong = _wrong(tmp_path, np.array([0.0, 50e3, 0.0]))
    assert takes > 60
    assert wrong == 0.0


def test_unresolved_objects_are_often_confused(tmp_path: Path) -> None:
    los = np.array([250e3, -50e3, 60e3]) / np.linalg.norm([250e3, -50e3, 60e3])
    takes, wrong = _wrong(tmp_path, 20.0 * los)
    assert takes > 60
    assert wrong > 0.2
