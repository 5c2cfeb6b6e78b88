"""The refit diagnostic (benchmarks/fusion/refit_diag.py) on lone objects
(six complexes without fragments, far apart, no clutter): each track's
history is its own object's plots, so the truth's first weights equal the
assignment's and the EM from either ends in the same place; which also says
the window's plot labels stay in step with its batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.fusion import refit_diag, scenarios


@pytest.fixture(scope="module")
def lone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("diag") / "lone.npz"
    sc = scenarios.cso(seed=5, complexes=6, fragments=0, spawns=0, duration=40.0, clutter=0.0)
    np.savez_compressed(path, **sc)
    return path


def test_truth_start_equals_history_start_for_lone_objects(lone: Path) -> None:
    (row,) = refit_diag.run(lone, [30.0])
    assert row["t_s"] == pytest.approx(30.0, abs=0.5)
    hist, ls, em = (row[f] for f in refit_diag.FITS)
    assert hist[2] == em[2] == 6  # every object's track refitted
    assert em[0] == pytest.approx(hist[0], rel=1e-6)
    assert em[1] == pytest.approx(hist[1], rel=1e-6)
    # Alone, a track's refit lands on its object (position error of one
    # radar's 30 m range sigma and ~1 mrad at 300+ km, averaged over 30 s).
    assert hist[0] < 150.0
    # The truth's weights read off the window's labels: one least squares on
    # them lands where the EM does (a label out of step with its batch would
    # weigh other plots, or none, and leave tracks unmoved).
    assert ls[2] == 6
    assert ls[0] == pytest.approx(hist[0], rel=1e-3)
