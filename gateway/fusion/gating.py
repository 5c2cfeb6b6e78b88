"""Spatial pre-gate and global-nearest-neighbour assignment.

The pre-gate keeps the number of (track, report) pairs near-linear in the
number of targets; the Mahalanobis gate and the assignment then only see
those pairs. The assignment is solved once per batch on the sparse gate
graph (:mod:`gateway.fusion.assign`, per connected component), after the
pairs that are alone in their gate on both sides are taken directly.

No scipy here nor anywhere on the default engine's path: any scipy import
costs the fusion worker ~37 MB of resident memory (issue 18). The pre-gate
uses a hashed grid (:mod:`gateway.fusion.neighbours`) where it used a k-d
tree, the assignment LAPJV per component (``lap``) where it used scipy's
LAPJVsp on the whole graph, and the chi-square quantile a closed form where
it used ``scipy.special``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from gateway.fusion.api import F64
from gateway.fusion.assign import min_cost_assignment
from gateway.fusion.neighbours import near_pairs

IDX = npt.NDArray[np.intp]


def pregate(track_pos: F64, track_rad: F64, rep_pos: F64, rep_rad: F64, cap_m: float) -> tuple[IDX, IDX]:
    """Candidate pairs (track i, report j) with |p_i - p_j| <= rad_i + rad_j.

    ``*_rad`` are search radii in metres (already a multiple of each side's
    position spread). Tracks are binned by search radius in powers of two
    and each bin gets its own grid query with that bin's largest radius, so
    a few young tracks with kilometre-wide spreads do not widen the search of
    all the settled ones. Radii are capped at ``cap_m``. Order: fixed by the inputs.
    """
    nt, nr = track_pos.shape[0], rep_pos.shape[0]
    if nt == 0 or nr == 0:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    rad_t = np.minimum(track_rad, cap_m)
    rad_r = np.minimum(rep_rad, cap_m)
    r_max = float(rad_r.max())
    # Binned by the search radius itself (a track's own plus the largest
    # report's): tracks much narrower than the reports share one bin.
    reach = rad_t + r_max
    bins = np.ceil(np.log2(np.maximum(reach, 1.0))).astype(np.int64)
    ti_parts: list[IDX] = []
    rj_parts: list[IDX] = []
    for b in np.unique(bins):
        rows = np.flatnonzero(bins == b)
        radius = min(float(reach[rows].max()), 2.0 * cap_m)
        i, j = near_pairs(track_pos[rows], rep_pos, radius)
        ti_parts.append(rows[i])
        rj_parts.append(j)
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
    lone = (np.bincount(ti)[ti] == 1) & (np.bincount(rj)[rj] == 1)
    out = [pair[lone]]
    rest = np.flatnonzero(~lone)
    if rest.size:
        got = rest[min_cost_assignment(ti[rest], rj[rest], cost[rest], miss_cost)]
        # In track order after the lone pairs (the order callers have always
        # seen: sums over the chosen pairs add up in the same order).
        out.append(pair[got[np.argsort(ti[got], kind="stable")]])
    return np.concatenate(out)


def _gamma_p(a: float, x: float) -> float:
    """Regularised lower incomplete gamma function P(a, x) by its power series
    (Abramowitz & Stegun 6.5.29 with 6.5.4); used where P <= 1/2 (x below
    about a), where the terms fall from the first."""
    if x <= 0.0:
        return 0.0
    term = total = 1.0 / a
    n = 1
    while term > total * 1e-17:
        term *= x / (a + n)
        total += term
        n += 1
    return math.exp(a * math.log(x) - x - math.lgamma(a)) * total


def _gamma_q(dof: int, x: float) -> float:
    """Q(k/2, x) = 1 - P(k/2, x) for an integer k, in closed form: a finite
    sum (A&S 6.5.13 for even k; 6.5.19 with Q(1/2, x) = erfc √x for odd k),
    so no cancellation where Q is small (gate probabilities near 1)."""
    if dof % 2 == 0:
        term = total = 1.0
        for i in range(1, dof // 2):
            term *= x / i
            total += term
        return math.exp(-x) * total
    root = math.sqrt(x)
    term = 2.0 * root / math.sqrt(math.pi)  # x^(1/2) / Γ(3/2)
    total = 0.0
    for i in range(1, (dof - 1) // 2 + 1):
        total += term
        term *= x / (i + 0.5)
    return math.erfc(root) + math.exp(-x) * total


def chi2_quantile(p: float, dof: int) -> float:
    """Chi-square quantile: F⁻¹(p; k) = 2 P⁻¹(k/2, p), P the regularised lower
    incomplete gamma function, for an integer number of degrees of freedom.

    Solved by bisection to adjacent doubles on the closed forms above (the
    gates are computed once per engine, so a few hundred evaluations cost
    nothing); agrees with ``2 * scipy.special.gammaincinv(k/2, p)`` to a few
    ulps (tests/unit/test_fusion_gating.py), without scipy's ~37 MB.
    """
    if not 0.0 < p < 1.0 or dof < 1:
        raise ValueError(f"chi2_quantile: p = {p!r} must lie in (0, 1) and dof = {dof!r} be >= 1")
    a = dof / 2.0
    q = 1.0 - p

    def below(x: float) -> bool:
        return _gamma_p(a, x) < p if p <= 0.5 else _gamma_q(dof, x) > q

    lo, hi = 0.0, 1.0
    while below(hi):
        lo, hi = hi, 2.0 * hi
    while True:
        mid = 0.5 * (lo + hi)
        if not lo < mid < hi:
            return 2.0 * hi
        if below(mid):
            lo = mid
        else:
            hi = mid
