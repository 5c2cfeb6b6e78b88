"""The GNN assignment and gates without scipy (gateway/fusion/assign.py,
gateway/fusion/gating.py, issue 18) against what they replaced: scipy's
LAPJVsp on the sparse gate graph, its connected components, and
``2 gammaincinv(k/2, p)`` for the chi-square gates."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, min_weight_full_bipartite_matching
from scipy.special import gammaincinv

from gateway.fusion.assign import components, min_cost_assignment
from gateway.fusion.gating import chi2_quantile, gnn_assign


def scipy_gnn(ti: np.ndarray, rj: np.ndarray, cost: np.ndarray, miss: float) -> np.ndarray:
    """The engine's assignment as it was before issue 18 (LAPJVsp with a
    private miss column per track), the reference: indices of chosen pairs."""
    pair = np.flatnonzero(cost < miss)
    if pair.size == 0:
        return pair
    ti, rj, c = ti[pair], rj[pair], cost[pair]
    tu, t_loc = np.unique(ti, return_inverse=True)
    ru, r_loc = np.unique(rj, return_inverse=True)
    nt, nr = tu.size, ru.size
    rows = np.concatenate([t_loc, np.arange(nt)])
    cols = np.concatenate([r_loc, nr + np.arange(nt)])
    vals = np.concatenate([c + 1.0, np.full(nt, miss + 1.0)])
    r, col = min_weight_full_bipartite_matching(csr_matrix((vals, (rows, cols)), shape=(nt, nr + nt)))
    real = col < nr
    key = {(int(a), int(b)): k for k, (a, b) in enumerate(zip(t_loc, r_loc, strict=True))}
    return np.sort(pair[[key[(int(a), int(b))] for a, b in zip(r[real], col[real], strict=True)]])


def _problem(seed: int, ties: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    rng = np.random.default_rng(seed)
    nt, nr = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    edge = rng.random((nt, nr)) < rng.uniform(0.02, 0.4)
    ti, rj = np.nonzero(edge)
    cost = rng.uniform(0.0, 12.0, ti.size)
    if ties:
        cost = np.round(cost)  # equal costs, equal totals
    # Some pairs at or above the miss cost (never worth taking), so some
    # tracks have no pair they may take: infeasible rows.
    return ti, rj, cost, float(rng.uniform(4.0, 10.0))


def _total(ti: np.ndarray, cost: np.ndarray, sel: np.ndarray, miss: float) -> float:
    return float(cost[sel].sum() + miss * (np.unique(ti).size - sel.size))


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_gnn_takes_the_pairs_scipy_took(seed: int) -> None:
    """Without exact ties the optimum is unique: the very same pairs."""
    ti, rj, cost, miss = _problem(seed, ties=False)
    got = np.sort(gnn_assign(ti, rj, cost, miss))
    assert np.array_equal(got, scipy_gnn(ti, rj, cost, miss))


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_gnn_with_ties_is_as_cheap_as_scipy_and_a_matching(seed: int) -> None:
    """With ties either optimum may be taken: the same total, each track and
    each report at most once, no pair at or above the miss cost."""
    ti, rj, cost, miss = _problem(seed, ties=True)
    got = gnn_assign(ti, rj, cost, miss)
    want = scipy_gnn(ti, rj, cost, miss)
    assert _total(ti, cost, got, miss) == pytest.approx(_total(ti, cost, want, miss), abs=1e-9)
    assert np.unique(ti[got]).size == got.size
    assert np.unique(rj[got]).size == got.size
    assert np.all(cost[got] < miss)


def test_gnn_keeps_lone_pairs_first_then_track_order() -> None:
    """The order callers see (sums over the chosen pairs add up in it)."""
    ti = np.array([5, 0, 0, 1, 1, 3])
    rj = np.array([9, 0, 1, 0, 1, 7])
    cost = np.array([1.0, 1.0, 2.0, 2.0, 9.0, 3.0])
    sel = gnn_assign(ti, rj, cost, 20.0)
    assert ti[sel].tolist() == [5, 3, 0, 1]
    assert rj[sel].tolist() == [9, 7, 1, 0]


def test_min_cost_assignment_of_nothing_and_of_stars() -> None:
    assert min_cost_assignment(np.empty(0, np.intp), np.empty(0, np.intp), np.empty(0), 5.0).size == 0
    # One track, three reports: its cheapest; three tracks, one report: the cheapest track.
    sel = min_cost_assignment(np.array([0, 0, 0]), np.array([4, 5, 6]), np.array([3.0, 1.0, 2.0]), 5.0)
    assert sel.tolist() == [1]
    sel = min_cost_assignment(np.array([0, 1, 2]), np.array([4, 4, 4]), np.array([3.0, 2.5, 2.0]), 5.0)
    assert sel.tolist() == [2]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_components_are_scipys(seed: int) -> None:
    rng = np.random.default_rng(seed)
    nt, nr = int(rng.integers(1, 60)), int(rng.integers(1, 60))
    ti, rj = np.nonzero(rng.random((nt, nr)) < rng.uniform(0.01, 0.2))
    ti = np.concatenate([ti, np.arange(nt)])  # every node has an edge
    rj = np.concatenate([rj, rng.integers(0, nr, nt)])
    ti = np.concatenate([ti, rng.integers(0, nt, nr)])
    rj = np.concatenate([rj, np.arange(nr)])
    ct, cr, k = components(ti, rj, nt, nr)
    g = coo_matrix((np.ones(ti.size), (ti, nt + rj)), shape=(nt + nr, nt + nr))
    n_ref, ref = connected_components(g, directed=False)
    ours = np.concatenate([ct, cr])
    assert k == n_ref
    # The same partition: labels map one to one.
    assert len(set(zip(ours.tolist(), ref.tolist(), strict=True))) == k


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 5, 6, 7, 8])
def test_chi2_quantile_is_scipys_to_a_few_ulps(dof: int) -> None:
    probs = [1e-6, 0.01, 0.3, 0.5, 0.9, 0.95, 0.99, 0.997, 0.999, 0.9999, 1 - 1e-7, 1 - 1e-10]
    for p in probs:
        want = 2.0 * float(gammaincinv(dof / 2.0, p))
        assert chi2_quantile(p, dof) == pytest.approx(want, rel=1e-13, abs=0.0), (dof, p)


@pytest.mark.parametrize(("p", "dof"), [(0.0, 3), (1.0, 3), (-0.1, 4), (0.99, 0), (float("nan"), 3)])
def test_chi2_quantile_refuses_what_has_no_quantile(p: float, dof: int) -> None:
    with pytest.raises(ValueError, match="chi2_quantile"):
        chi2_quantile(p, dof)
