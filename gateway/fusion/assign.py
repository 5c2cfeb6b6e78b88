"""Minimum-cost assignment with a miss option on a sparse gate graph.

The global-nearest-neighbour step (BLK §8.4) is a 2-D assignment with a
private "missed" column per track. Its gate graph falls apart into connected
components, nearly all of a few tracks (cso bench: most of 2-8, the largest
~25), solved one by one:

* a component of one track or of one report takes its cheapest pair (every
  pair in the graph is cheaper than a miss, and only one can be taken);
* every other component is one small square problem (its tracks and one
  dummy row per report; its reports and one miss column per track) for
  LAPJV (Jonker & Volgenant 1987, the ``lap`` package: C++, imports numpy
  only), a few microseconds each. The square matrices of all components are
  laid out in one padded array first, so the Python loop only slices and
  calls.

Not scipy's ``min_weight_full_bipartite_matching`` (LAPJVsp) on the whole
graph any more, because any scipy import costs the fusion worker ~37 MB of
resident memory (issue 18). The optimum is the same; where two assignments
cost exactly the same, which one is taken is LAPJV's choice (a star's: the
first pair), and the tests hold the total equal to scipy's on tied problems.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from lap import lapjv

from gateway.fusion.api import F64

IDX = npt.NDArray[np.intp]


def components(ti: IDX, rj: IDX, nt: int, nr: int) -> tuple[IDX, IDX, int]:
    """Connected components of the bipartite graph of edges (ti, rj).

    Returns a label per track (nt), per report (nr) and the number of
    components, labels 0..k-1 in order of their lowest track. Every node has
    an edge. Union by hooking roots to the smaller label and pointer
    jumping (Shiloach & Vishkin 1982), vectorised over the edges.
    """
    u = ti.astype(np.intp)
    v = rj.astype(np.intp) + nt
    parent = np.arange(nt + nr)
    while True:
        pu, pv = parent[u], parent[v]
        lo, hi = np.minimum(pu, pv), np.maximum(pu, pv)
        diff = lo != hi
        if not diff.any():
            break
        np.minimum.at(parent, hi[diff], lo[diff])
        while True:  # pointer jumping: every node to its root
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up
    roots, lab = np.unique(parent, return_inverse=True)
    return lab[:nt], lab[nt:], int(roots.size)


def _rank_within(labels: IDX, k: int) -> IDX:
    """Position of each element among those of its label, in index order."""
    order = np.argsort(labels, kind="stable")
    start = np.cumsum(np.bincount(labels, minlength=k)) - np.bincount(labels, minlength=k)
    rank = np.empty(labels.size, np.intp)
    rank[order] = np.arange(labels.size) - start[labels[order]]
    return rank


def min_cost_assignment(ti: IDX, rj: IDX, cost: F64, miss_cost: float) -> IDX:
    """Indices of the pairs of a minimum-cost assignment: each track takes at
    most one report and each report at most one track, minimising Σ cost of
    the pairs taken + ``miss_cost`` per track left without one.

    ``(ti, rj)`` are distinct pairs, ``cost`` < ``miss_cost`` for all of them.
    Sorted by pair index.
    """
    if ti.size == 0:
        return np.empty(0, np.intp)
    tu, t_loc = np.unique(ti, return_inverse=True)
    ru, r_loc = np.unique(rj, return_inverse=True)
    ct, cr, k = components(t_loc, r_loc, tu.size, ru.size)
    comp = ct[t_loc]  # component of each pair
    n_t = np.bincount(ct, minlength=k)
    n_r = np.bincount(cr, minlength=k)
    out: list[IDX] = []
    # A component with one track or one report takes its cheapest pair
    # (every pair beats a miss; only one can be taken). Ties: the first pair.
    star = (n_t == 1) | (n_r == 1)
    sp = np.flatnonzero(star[comp])
    if sp.size:
        order = sp[np.lexsort((cost[sp], comp[sp]))]
        first = np.flatnonzero(np.r_[True, comp[order][1:] != comp[order][:-1]])
        out.append(order[first])
    rest = np.flatnonzero(~star)
    if rest.size:
        # Every other component as one small square problem, all padded into
        # one array: rows its tracks, then one dummy row per report (cost 0
        # anywhere: they take the columns no track takes); columns its
        # reports, then one private "missed" column per track.
        slot = np.full(k, -1, np.intp)
        slot[rest] = np.arange(rest.size)
        pairs = np.flatnonzero(slot[comp] >= 0)
        s = slot[comp[pairs]]
        row = _rank_within(ct, k)[t_loc[pairs]]
        col = _rank_within(cr, k)[r_loc[pairs]]
        nt_s, nr_s = n_t[rest], n_r[rest]
        size = nt_s + nr_s
        m = int(size.max())
        # Where a track may not go: a finite cost that no optimum affords
        # (above all tracks missing), as LAPJV wants finite costs.
        never = (m + 1) * (abs(miss_cost) + abs(min(float(cost.min()), 0.0)) + 1.0)
        dense = np.full((rest.size, m, m), never)
        dense[np.arange(m)[None, :] >= nt_s[:, None]] = 0.0
        dense[s, row, col] = cost[pairs]
        which = np.full((rest.size, m, m), -1, np.intp)
        which[s, row, col] = pairs
        real_s, real_r = np.nonzero(np.arange(m)[None, :] < nt_s[:, None])
        dense[real_s, real_r, nr_s[real_s] + real_r] = miss_cost
        # One LAPJV call per component (Jonker & Volgenant 1987, the lap
        # package): exact, a few microseconds for these small squares.
        for kk, (a, b) in enumerate(zip(nt_s.tolist(), size.tolist(), strict=True)):
            col_of_row = lapjv(dense[kk, :b, :b], return_cost=False)[0][:a]
            out.append(which[kk, np.arange(a), col_of_row])
    got = np.concatenate(out)
    return np.sort(got[got >= 0])
