"""Spatial pre-gate and GNN assignment of the fusion engine."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from gateway.fusion.gating import gnn_assign, pregate


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), nt=st.integers(0, 40), nr=st.integers(0, 40))
def test_pregate_equals_brute_force(seed: int, nt: int, nr: int) -> None:
    rng = np.random.default_rng(seed)
    tp = rng.uniform(-5e3, 5e3, (nt, 3))
    rp = rng.uniform(-5e3, 5e3, (nr, 3))
    # Radii spread over orders of magnitude so several bins are used.
    trad = np.exp(rng.uniform(np.log(10.0), np.log(4000.0), nt))
    rrad = rng.uniform(50.0, 500.0, nr)
    ti, rj = pregate(tp, trad, rp, rrad, cap_m=1e9)
    got = set(zip(ti.tolist(), rj.tolist(), strict=True))
    d = np.linalg.norm(tp[:, None] - rp[None], axis=2) if nt and nr else np.zeros((nt, nr))
    want = {(int(i), int(j)) for i, j in zip(*np.nonzero(d <= trad[:, None] + rrad[None, :]), strict=True)}
    assert got == want


def test_gnn_beats_greedy_on_crafted_case() -> None:
    # Track 0 is nearest to report 0, but giving it report 0 leaves track 1
    # only a poor choice: the global optimum is 0->1, 1->0.
    ti = np.array([0, 0, 1, 1])
    rj = np.array([0, 1, 0, 1])
    cost = np.array([1.0, 2.0, 2.0, 9.0])
    sel = gnn_assign(ti, rj, cost, miss_cost=20.0)
    assert sorted(zip(ti[sel].tolist(), rj[sel].tolist(), strict=True)) == [(0, 1), (1, 0)]


def test_gnn_miss_cheaper_than_bad_pair() -> None:
    ti = np.array([0, 1])
    rj = np.array([0, 0])
    cost = np.array([3.0, 4.0])
    sel = gnn_assign(ti, rj, cost, miss_cost=5.0)
    assert ti[sel].tolist() == [0]
    assert rj[sel].tolist() == [0]
    assert gnn_assign(ti, rj, np.array([6.0, 7.0]), miss_cost=5.0).size == 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_gnn_matches_dense_optimum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    nt, nr = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    dense = rng.uniform(0.0, 10.0, (nt, nr))
    edge = rng.random((nt, nr)) < 0.5
    miss = 8.0
    ti, rj = np.nonzero(edge)
    sel = gnn_assign(ti, rj, dense[ti, rj], miss)
    # Reference: dense LSA with a private miss column per track.
    big = np.full((nt, nr + nt), 1e9)
    big[:, :nr] = np.where(edge, dense, 1e9)
    big[np.arange(nt), nr + np.arange(nt)] = miss
    r, c = linear_sum_assignment(big)
    want = big[r, c].sum()
    got = dense[ti[sel], rj[sel]].sum() + miss * (nt - sel.size)
    assert abs(got - want) < 1e-9
    assert len(set(rj[sel].tolist())) == sel.size
    assert len(set(ti[sel].tolist())) == sel.size
