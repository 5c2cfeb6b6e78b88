"""The sliding-window multi-scan assignment (gateway/fusion/mht.py) on the
hand-built crossing of tests/unit/test_fusion_twoscan.py: radar A resolves two
objects in range only and its plots fit the two tracks crossed better than
straight; radar B, 45° off, separates them in a direction A cannot. GNN
commits A's crossed assignment for good; with a window of the two batches the
straight hypothesis, kept alive by the beam, wins once B's plots are in."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.fusion.config import FusionConfig
from hilgw.errors import ConfigError
from tests.unit.test_fusion_twoscan import CFG, _run

MHT = dataclasses.replace(CFG, two_scan=False, mht_window=2, mht_hypotheses=4)


def test_gnn_alone_keeps_the_crossed_assignment() -> None:
    e, err = _run(dataclasses.replace(MHT, mht_window=0))
    assert e.counters["mht_clusters"] == 0
    assert (err > 8.0).all(), err


def test_window_mht_undoes_the_crossing_with_the_next_batch() -> None:
    e, err = _run(MHT)
    assert e.counters["mht_clusters"] >= 1
    assert (err < 5.0).all(), err


def test_one_hypothesis_is_gnn_again() -> None:
    """The beam is what finds it: with one hypothesis per cluster the re-solve
    makes GNN's choice again."""
    _, err = _run(dataclasses.replace(MHT, mht_hypotheses=1))
    assert (err > 8.0).all(), err


def test_bad_mht_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="mht_window"):
        FusionConfig(mht_window=-1).check()
    with pytest.raises(ConfigError, match="mht_window"):
        FusionConfig(mht_hypotheses=0).check()
