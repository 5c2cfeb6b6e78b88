"""The hashed-grid neighbour search that replaced scipy's k-d tree in the
fusion engine (gateway/fusion/neighbours.py, issue 18): it finds every pair
the k-d tree found, each once, at any scale (ECEF metres, a zero radius,
coincident points)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree

from gateway.fusion import neighbours
from gateway.fusion.gating import pregate
from gateway.fusion.neighbours import PRIMES, near_pairs, pairs_within_one

#: Near Hamburg in ECEF: where the engine's coordinates live.
ECEF = np.array([3_660_000.0, 645_000.0, 5_140_000.0])


def _points(rng: np.random.Generator, n: int, spread: float, clustered: bool) -> np.ndarray:
    if clustered and n:  # a few tight groups, as closely spaced objects are
        centres = rng.uniform(-spread, spread, (max(1, n // 8), 3))
        pts = centres[rng.integers(0, centres.shape[0], n)] + rng.normal(0.0, spread / 200.0, (n, 3))
    else:
        pts = rng.uniform(-spread, spread, (n, 3))
    return np.asarray(ECEF + pts)


def test_every_bucket_count_keeps_the_27_cells_around_a_point_apart() -> None:
    """No prime divides the key difference of two of the 27 cells around a
    point: otherwise two of them share a bucket and a pair comes back twice."""
    diff = neighbours._AROUND[:, None] - neighbours._AROUND[None, :]
    off = ~np.eye(27, dtype=bool)
    for p in PRIMES:
        assert all(p % q for q in range(2, int(p**0.5) + 1)), p
        assert np.all(diff[off] % p != 0), p


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 300),
    m=st.integers(0, 300),
    spread=st.sampled_from([1.0, 2e3, 5e4, 2e6]),
    clustered=st.booleans(),
)
def test_candidates_hold_every_pair_within_the_radius_once(
    seed: int, n: int, m: int, spread: float, clustered: bool
) -> None:
    rng = np.random.default_rng(seed)
    a = _points(rng, n, spread, clustered)
    b = _points(rng, m, spread, clustered)
    radius = float(rng.choice([0.0, spread / 100.0, spread / 10.0, spread]))
    ai, bj = near_pairs(a, b, radius)
    got = set(zip(ai.tolist(), bj.tolist(), strict=True))
    assert len(got) == ai.size  # each pair once
    if n and m:
        d = np.linalg.norm(a[:, None] - b[None], axis=2)
        want = set(zip(*(x.tolist() for x in np.nonzero(d <= radius)), strict=True))
        assert want <= got


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 400), clustered=st.booleans())
def test_pairs_within_one_equals_the_k_d_tree(seed: int, n: int, clustered: bool) -> None:
    rng = np.random.default_rng(seed)
    p = _points(rng, n, 5e4, clustered)
    if n > 3:
        p[1] = p[0]  # coincident points are a pair at any radius
    radius = float(rng.choice([0.0, 500.0, 5000.0]))
    got = pairs_within_one(p, radius)
    got = got[np.lexsort((got[:, 1], got[:, 0]))]
    want = cKDTree(p).query_pairs(radius, output_type="ndarray") if n else np.empty((0, 2), np.intp)
    want = want[np.lexsort((want[:, 1], want[:, 0]))] if want.size else want.reshape(0, 2)
    assert got.shape == want.shape
    assert np.array_equal(got, want)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), nt=st.integers(0, 300), nr=st.integers(0, 300))
def test_pregate_finds_the_pairs_the_k_d_tree_pregate_found(seed: int, nt: int, nr: int) -> None:
    """The engine's pre-gate (radius bins, cap) at ECEF scale, against the
    same query by cKDTree as main ran it before issue 18."""
    rng = np.random.default_rng(seed)
    tp, rp = _points(rng, nt, 2e5, True), _points(rng, nr, 2e5, True)
    trad = np.exp(rng.uniform(np.log(50.0), np.log(60_000.0), nt))
    rrad = rng.uniform(500.0, 7000.0, nr)
    cap = 50_000.0
    ti, rj = pregate(tp, trad, rp, rrad, cap)
    got = set(zip(ti.tolist(), rj.tolist(), strict=True))
    assert len(got) == ti.size
    want: set[tuple[int, int]] = set()
    if nt and nr:
        rt, rr = np.minimum(trad, cap), np.minimum(rrad, cap)
        hits = cKDTree(tp).sparse_distance_matrix(cKDTree(rp), 2.0 * cap, output_type="ndarray")
        i, j = hits["i"], hits["j"]
        ok = np.linalg.norm(tp[i] - rp[j], axis=1) <= rt[i] + rr[j]
        want = set(zip(i[ok].tolist(), j[ok].tolist(), strict=True))
    assert got == want


def test_edge_cases_empty_single_and_coincident() -> None:
    one = ECEF[None, :]
    assert near_pairs(one[:0], one, 10.0)[0].size == 0
    assert near_pairs(one, one[:0], 10.0)[0].size == 0
    assert pairs_within_one(one, 10.0).shape == (0, 2)
    same = np.repeat(one, 5, axis=0)
    assert pairs_within_one(same, 0.0).shape == (10, 2)  # every pair at distance 0
