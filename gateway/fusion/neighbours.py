"""Candidate neighbour pairs between two point sets, on a hashed cubic grid.

What the engine's spatial pre-gate and the merge need of a k-d tree is one
query: the pairs closer than a radius. On a grid of cells as wide as that
radius, a point's neighbours lie in its own cell or the 26 around it
(Bentley, Stanat & Williams 1977, "The complexity of finding fixed-radius
near neighbors"). The occupied cells go into a hash table of P buckets (a
cell's key modulo a prime P), laid out as one sorted array: a query is then
27 bucket look-ups per point, plain gathers, for all points at once in a
handful of numpy calls (at these sizes, a few hundred points, the number of
calls is the cost, and binary searches were the slow part). Two cells may
share a bucket: that only adds candidates, which the caller's exact
distance test removes; P is chosen so that the 27 cells around one point
never share one (no pair twice).

Written here rather than taken from scipy.spatial because importing any
part of scipy costs the fusion worker ~37 MB of resident memory (issue 18:
RSS with 1000 live tracks).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gateway.fusion.api import F64

IDX = npt.NDArray[np.intp]

#: Bits per axis of a cell key (three fields of one int64: x + y 2^21 + z 2^42).
#: Cells are made wide enough that |coordinate| < 2^19 cells, so the key
#: never overflows and the 27 keys around a cell differ by fixed offsets.
_BITS = 21
_MAX_CELLS = float(1 << (_BITS - 2))
_WEIGHTS = np.array([1, 1 << _BITS, 1 << (2 * _BITS)], np.int64)
#: Key offsets of the 27 cells around a cell.
_AROUND = np.array([[dx, dy, dz] for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1)]) @ _WEIGHTS
#: Buckets per point at least: each of the 27 look-ups of a point then finds
#: a stranger's cell in about 1 of 16 buckets (candidates the distance test
#: has to remove; a larger table costs more to lay out than they do).
_LOAD = 16
#: Bucket counts: primes, none of which divides the difference of two keys
#: of _AROUND, so the 27 cells around a point fall in 27 buckets and no
#: pair is found twice (tests/unit/test_fusion_neighbours.py checks it).
PRIMES: tuple[int, ...] = (61, 109, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)
PRIMES += (262139, 524287, 1048573, 2097143, 4194301, 8388593)


def near_pairs(a: F64, b: F64, radius: float) -> tuple[IDX, IDX]:
    """Candidate pairs (i, j): every pair with ``|a_i - b_j| <= radius`` and
    some farther ones, each pair once, in an order fixed by the inputs. The
    caller filters them with its own exact test.

    ``a`` (n, 3), ``b`` (m, 3) in metres (ECEF or any frame).
    """
    n, m = a.shape[0], b.shape[0]
    if n == 0 or m == 0:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    # Cells no narrower than the radius nor than the key allows; 1 mm keeps
    # a zero radius at the origin finite.
    far = max(float(np.abs(a).max()), float(np.abs(b).max()))
    inv = 1.0 / max(float(radius), far / _MAX_CELLS, 1e-3)
    p = next((q for q in PRIMES if q >= _LOAD * max(n, m)), PRIMES[-1])
    hb = (np.floor(b * inv).astype(np.int64) @ _WEIGHTS) % p
    order = np.argsort(hb, kind="stable")
    size = np.bincount(hb, minlength=p)
    start = np.cumsum(size) - size
    # The 27 buckets around each point of ``a``, (27, n).
    hq = ((np.floor(a * inv).astype(np.int64) @ _WEIGHTS)[None, :] + _AROUND[:, None]) % p
    count = size[hq].ravel()
    hit = np.flatnonzero(count)
    first, count = start[hq.ravel()[hit]], count[hit]
    ai = np.repeat(hit % n, count)
    # Positions first[k] .. first[k] + count[k] - 1 of the bucket-sorted points, for every k at once.
    at = np.repeat(first - (np.cumsum(count) - count), count) + np.arange(ai.size)
    return ai, order[at]


def pairs_within_one(p: F64, radius: float) -> npt.NDArray[np.intp]:
    """Pairs (i, j), i < j, of rows of ``p`` at most ``radius`` apart: (k, 2),
    what ``cKDTree.query_pairs`` finds, in an order fixed by the input."""
    if p.shape[0] < 2:
        return np.empty((0, 2), np.intp)
    i, j = near_pairs(p, p, radius)
    keep = i < j
    i, j = i[keep], j[keep]
    keep = np.linalg.norm(p[i] - p[j], axis=1) <= radius
    out: npt.NDArray[np.intp] = np.stack([i[keep], j[keep]], axis=1)
    return out
