"""Spatial pre-gate (k-d tree) and global-nearest-neighbour assignment.

The pre-gate keeps the number of (track, report) pairs near-linear in the
number of targets; the Mahalanobis gate and the assignment then only see
those pairs. The assignment is solved once per batch on the sparse gate
graph (scipy's LAPJVsp, ``min_weight_full_bipartite_matching``), after the
pairs that are alone in their gate on both sides are taken directly.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching
from scipy.spatial import cKDTree
from scipy.special import gammaincinv

from gateway.fusion.api import F64

IDX = npt.NDArray[np.intp]


def pregate(track_pos: F64, track_rad: F64, rep_pos: F64, rep_rad: F64, cap_m: float) -> tuple[IDX, IDX]:
    """Candidate pairs (track i, report j) with |p_i - p_j| <= rad_i + rad_j.

    ``*_rad`` are search radii in metres (already a multiple of each side's
    position spread). Tracks are binned by radius in powers of two and each
    bin gets its own tree queried with that bin's largest radius, so a few
    young tracks with kilometre-wide spreads do not widen the search of all
    the settled ones. Radii are capped at ``cap_m``.
    """
    nt, nr = track_pos.shape[0], rep_pos.shape[0]
    if nt == 0 or nr == 0:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    rad_t = np.minimum(track_rad, cap_m)
    rad_r = np.minimum(rep_rad, cap_m)
    rep_tree = cKDTree(rep_pos)
    r_max = float(rad_r.max())
    bins = np.ceil(np.log2(np.maximum(rad_t, 1.0))).astype(np.int64)
    ti_parts: list[IDX] = []
    rj_parts: list[IDX] = []
    for b in np.unique(bins):
        rows = np.flatnonzero(bins == b)
        tree = cKDTree(track_pos[rows])
        # ndarray output: no Python object per pair (lists of lists would
        # churn the garbage collector at thousands of tracks).
        hits = tree.sparse_distance_matrix(
            rep_tree, min(r_max + float(rad_t[rows].max()), 2.0 * cap_m), output_type="ndarray"
        )
        ti_parts.append(rows[hits["i"]])
        rj_parts.append(hits["j"].astype(np.intp))
    ti = np.concatenate(ti_parts)
    rj = np.concatenate(rj_parts)
    d = np.linalg.norm(track_pos[ti] - rep_pos[rj], axis=1)
    ok = d <= rad_t[ti] + rad_r[rj]
    return ti[ok], rj[ok]


def gnn_assign(ti: IDX, rj: IDX, cost: F64, miss_cost: float) -> IDX:
    """Global nearest neighbour on a sparse gate graph: indices of chosen pairs.

    Minimises Σ cost over assigned pairs + ``miss_cost`` per unassigned track
    (BLK §8.4: GNN = 2-D assignment with a dummy per track). Each track and
    each report is used at most once. ``cost`` must be < ``miss_cost`` for a
    pair to be worth taking.
    """
    pair = np.flatnonzero(cost < miss_cost)
    if pair.size == 0:
        return pair
    ti, rj, cost = ti[pair], rj[pair], cost[pair]
    # Pairs alone in both their row and column need no solver.
    _, t_inv, t_cnt = np.unique(ti, return_inverse=True, return_counts=True)
    _, r_inv, r_cnt = np.unique(rj, return_inverse=True, return_counts=True)
    lone = (t_cnt[t_inv] == 1) & (r_cnt[r_inv] == 1)
    out = [pair[lone]]
    rest = np.flatnonzero(~lone)
    if rest.size:
        ti2, rj2, c2 = ti[rest], rj[rest], cost[rest]
        tu, t_loc = np.unique(ti2, return_inverse=True)
        ru, r_loc = np.unique(rj2, return_inverse=True)
        nt, nr = tu.size, ru.size
        # Columns: the reports, then one private "missed" column per track.
        # Costs shifted by +1 so none is an implicit zero of the sparse matrix;
        # every row is matched exactly once, so the shift cannot change the
        # optimum.
        rows = np.concatenate([t_loc, np.arange(nt)])
        cols = np.concatenate([r_loc, nr + np.arange(nt)])
        vals = np.concatenate([c2 + 1.0, np.full(nt, miss_cost + 1.0)])
        g = csr_matrix((vals, (rows, cols)), shape=(nt, nr + nt))
        row_ind, col_ind = min_weight_full_bipartite_matching(g)
        real = col_ind < nr
        # Back from (local row, local column) to the index of the pair.
        key = t_loc.astype(np.int64) * (nr + nt) + r_loc
        want = row_ind[real].astype(np.int64) * (nr + nt) + col_ind[real]
        srt = np.argsort(key)
        out.append(pair[rest[srt[np.searchsorted(key, want, sorter=srt)]]])
    return np.concatenate(out)


def chi2_quantile(p: float, dof: int) -> float:
    """Chi-square quantile: F⁻¹(p; k) = 2 P⁻¹(k/2, p), P the regularised lower
    incomplete gamma function (scipy.special; scipy.stats costs ~45 MB of RSS)."""
    return float(2.0 * gammaincinv(dof / 2.0, p))
