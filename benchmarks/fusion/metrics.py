"""Multi-target tracking metrics: OSPA, GOSPA and track-identity figures.

All on 3-D position (state columns 0, 2, 4 of the bench order x, vx, y, vy, z, vz),
Euclidean base distance, at every truth time t >= t0, averaged over those times.

* OSPA (Schuhmacher, Vo & Vo, IEEE TSP 56(8), 2008), cut-off c, order p:
  d = ((min_π Σ min(d, c)^p + c^p |m - n|) / max(m, n))^(1/p); the reference
  bench's scorer, with the assignment solved on min(d, c)^p.
* GOSPA with α = 2 (Rahmathullah, García-Fernández & Svensson, FUSION 2017):
  d = (min_γ Σ_{(i,j)∈γ} d_ij^p + c^p/2 (|X| + |Y| - 2|γ|))^(1/p) over partial
  assignments γ of pairs closer than c; it splits into localisation, missed
  objects and false tracks, and is not normalised by the set size.
* Identity: at each time an optimal assignment pairs an object with a track
  closer than ``gate``, preferring (by ``switch_cost`` metres) the pairing it
  had before (:func:`identity_pairs`). Per object: the distinct track ids
  it was paired with (fragmentation: ids per object), id switches (its paired
  id changed from one id to another, CLEAR-MOT style), swaps (a switch to an id
  that was paired with another object before: the track jumped objects), and
  held (paired at >= ``held_frac`` of the times it existed at t >= t0).

Why by hand: scipy has the assignment solver; no maintained library computes
these on the bench's arrays at 10,000 objects. The optimal assignment is solved
per connected component of the "closer than c" graph (k-d tree), which is exact
(pairs at c or farther gain nothing over leaving both unassigned) and keeps
10,000 objects cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
POS = [0, 2, 4]
VEL = [1, 3, 5]


def _pairs(x: F64, y: F64, c: float) -> tuple[I64, I64, F64]:
    """Every (i, j, d_ij) with d_ij < c (k-d tree)."""
    if len(x) == 0 or len(y) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    sp = cKDTree(x).sparse_distance_matrix(cKDTree(y), c, output_type="coo_matrix")
    keep = sp.data < c
    return sp.row[keep].astype(np.int64), sp.col[keep].astype(np.int64), sp.data[keep]


def _assign(r: I64, k: I64, cost: F64, m: int, n: int) -> I64:
    """Indices of the pairs (r, k) of a minimum-total-cost matching (a pair costs
    ``cost``, leaving both unpaired costs 0), solved per connected component."""
    if len(r) == 0:
        return np.empty(0, np.int64)
    graph = coo_matrix((np.ones(len(r)), (r, m + k)), shape=(m + n, m + n))
    _, lab = connected_components(graph, directed=False)
    order = np.argsort(lab[r], kind="stable")
    comp = lab[r][order]
    bounds = np.flatnonzero(np.diff(comp)) + 1
    chosen = []
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(order)], strict=True):
        idx = order[lo:hi]
        if hi - lo == 1:
            if cost[idx[0]] < 0.0:
                chosen.append(idx)
            continue
        ur, rr = np.unique(r[idx], return_inverse=True)
        uk, kk = np.unique(k[idx], return_inverse=True)
        mat = np.zeros((len(ur), len(uk)))
        back = np.full((len(ur), len(uk)), -1, np.int64)
        mat[rr, kk] = cost[idx]
        back[rr, kk] = idx
        a, b = linear_sum_assignment(mat)
        sel = back[a, b]
        chosen.append(sel[(sel >= 0) & (mat[a, b] < 0.0)])
    return np.concatenate(chosen) if chosen else np.empty(0, np.int64)


def match(x: F64, y: F64, c: float, p: float = 1.0) -> tuple[I64, I64, F64]:
    """Optimal pairs (i, j, d_ij) with d_ij < c minimising Σ min(d, c)^p + c^p·unpaired.

    ``x`` (m, 3), ``y`` (n, 3). Equivalent to the full m x n assignment on
    min(d, c)^p used by OSPA: a pair at c or farther gains nothing over leaving
    both unpaired, so the problem splits into the connected components of the
    "closer than c" graph.
    """
    r, k, d = _pairs(x, y, c)
    sel = _assign(r, k, d**p - c**p, len(x), len(y))
    return r[sel], k[sel], d[sel]


def ospa(x: F64, y: F64, c: float = 1000.0, p: float = 1.0) -> tuple[float, float, float]:
    """OSPA of one time: (total, localisation part, cardinality part)."""
    m, n = len(x), len(y)
    if m == 0 and n == 0:
        return 0.0, 0.0, 0.0
    if m == 0 or n == 0:
        return float(c), 0.0, float(c)
    _, _, d = match(x, y, c, p)
    nmax = max(m, n)
    loc = float(np.sum(d**p)) + c**p * (min(m, n) - len(d))  # pairs at >= c cost c^p
    card = c**p * abs(m - n)
    return ((loc + card) / nmax) ** (1 / p), (loc / nmax) ** (1 / p), (card / nmax) ** (1 / p)


def gospa(x: F64, y: F64, c: float = 1000.0, p: float = 1.0) -> tuple[float, float, int, int]:
    """GOSPA (α = 2) of one time: (total, localisation part^p, missed, false)."""
    _, _, d = match(x, y, c, p)
    loc = float(np.sum(d**p))
    missed, false = len(x) - len(d), len(y) - len(d)
    return (loc + c**p / 2.0 * (missed + false)) ** (1 / p), loc, missed, false


def identity_pairs(
    objs: I64, x: F64, tid: I64, y: F64, last_id: I64, gate: float, switch_cost: float
) -> list[tuple[int, int]]:
    """Object-track pairing of one time, with a cost for changing a pairing.

    The optimal assignment of pairs closer than ``gate`` (cost d - gate), where a
    pair that continues the object's previous pairing costs ``switch_cost`` less:
    in the spirit of the trajectory metric's switching cost (García-Fernández,
    Rahmathullah & Svensson, IEEE TSP 68, 2020) and of CLEAR-MOT's keeping of
    valid correspondences (Bernardin & Stiefelhagen 2008). Without it a perfect
    tracker on objects closer together than its error would be charged a switch
    whenever the nearest track flips between neighbours; with it a track that
    moves to another object (by more than about ``switch_cost``) still is.
    """
    r, k, d = _pairs(x, y, gate)
    cost = d - gate
    cost[last_id[objs[r]] == tid[k]] -= switch_cost
    sel = _assign(r, k, cost, len(x), len(y))
    return list(zip(objs[r[sel]].tolist(), tid[k[sel]].tolist(), strict=True))


@dataclass
class Tracks:
    """A tracks file's rows, grouped by time key (µs)."""

    track_id: I64
    key: I64  # round(time · 1e6)
    pos: F64
    vel: F64 | None = None  # (n, 3) when the file's states carry velocity
    _order: I64 = field(init=False)
    _sorted: I64 = field(init=False)

    def __post_init__(self) -> None:
        self._order = np.argsort(self.key, kind="stable")
        self._sorted = self.key[self._order]

    @classmethod
    def from_arrays(cls, track_id: Any, track_time: Any, track_state: Any) -> Tracks:
        st = np.asarray(track_state, np.float64).reshape(
            -1, np.shape(track_state)[-1] if len(track_state) else 6
        )
        return cls(
            np.asarray(track_id, np.int64).ravel(),
            np.round(np.asarray(track_time, np.float64) * 1e6).astype(np.int64).ravel(),
            st[:, POS] if len(st) else np.empty((0, 3)),
            st[:, VEL] if len(st) and st.shape[1] == 6 else None,
        )

    def at(self, t: float) -> tuple[I64, F64]:
        kt = round(t * 1e6)
        lo, hi = np.searchsorted(self._sorted, kt, "left"), np.searchsorted(self._sorted, kt, "right")
        rows = self._order[lo:hi]
        return self.track_id[rows], self.pos[rows]

    def velocities(self, t: float) -> F64 | None:
        """The velocities of the rows :meth:`at` returns for ``t``, in its order."""
        if self.vel is None:
            return None
        kt = round(t * 1e6)
        lo, hi = np.searchsorted(self._sorted, kt, "left"), np.searchsorted(self._sorted, kt, "right")
        return self.vel[self._order[lo:hi]]


def score(
    scen: Any,
    tracks: Tracks,
    c: float = 1000.0,
    p: float = 1.0,
    t0: float = 30.0,
    gate: float | None = None,
    held_frac: float = 0.9,
    switch_cost: float = 250.0,
    id_warmup: bool = False,
) -> dict[str, Any]:
    """Every metric over the truth times t >= t0; ``scen`` is a loaded scenario."""
    gate = c if gate is None else gate
    t_all = np.asarray(scen["truth_time"], np.float64)
    truth = np.asarray(scen["truth_state"], np.float64)
    n_obj = truth.shape[0]
    exists = (
        np.asarray(scen["truth_exists"], bool) if "truth_exists" in scen else np.ones(truth.shape[:2], bool)
    )
    rows = []
    last_id = np.full(n_obj, -1, np.int64)
    pairs_seen: set[tuple[int, int]] = set()
    owner: dict[int, int] = {}  # track id -> object it was last paired with
    switches = np.zeros(n_obj, np.int64)
    swaps = np.zeros(n_obj, np.int64)
    paired_n = np.zeros(n_obj, np.int64)
    exist_n = np.zeros(n_obj, np.int64)
    ids_seen: set[int] = set()
    ids_paired: set[int] = set()
    vel_err: list[float] = []
    for k, t in enumerate(t_all):
        scoring = t >= t0 - 1e-9
        if not scoring and not id_warmup:
            continue
        live = np.flatnonzero(exists[:, k])
        x = truth[live, k][:, POS]
        tid, y = tracks.at(float(t))
        pairs = identity_pairs(live, x, tid, y, last_id, gate, switch_cost)
        if not scoring:  # before t0: only the pairing history
            for obj, trk in pairs:
                last_id[obj] = trk
                owner[trk] = obj
            continue
        ids_seen.update(tid.tolist())
        o, lc, cd = ospa(x, y, c, p)
        g, gl, gm, gf = gospa(x, y, c, p)
        rows.append((t, o, lc, cd, g, gl, gm, gf, len(x), len(y)))
        exist_n[live] += 1
        v = tracks.velocities(float(t))
        if v is not None and pairs:
            at = {int(i): j for j, i in enumerate(tid.tolist())}
            po, pt = zip(*pairs, strict=True)
            dv = truth[list(po), k][:, VEL] - v[[at[i] for i in pt]]
            vel_err.extend(np.linalg.norm(dv, axis=1).tolist())
        for obj, trk in pairs:
            paired_n[obj] += 1
            ids_paired.add(trk)
            pairs_seen.add((obj, trk))
            if last_id[obj] >= 0 and last_id[obj] != trk:
                switches[obj] += 1
                if owner.get(trk, obj) != obj:
                    swaps[obj] += 1
            last_id[obj] = trk
            owner[trk] = obj
    a = np.array(rows, dtype=np.float64).reshape(-1, 10)
    scored = exist_n > 0
    held = scored & (paired_n >= held_frac * np.maximum(exist_n, 1))
    ids_per = np.zeros(n_obj)
    for obj, _ in pairs_seen:
        ids_per[obj] += 1
    ever = ids_per > 0
    return {
        "c": c,
        "p": p,
        "t0": t0,
        "n_times": len(a),
        "ospa": float(a[:, 1].mean()),
        "ospa_loc": float(a[:, 2].mean()),
        "ospa_card": float(a[:, 3].mean()),
        "gospa": float(a[:, 4].mean()),
        "gospa_loc": float(a[:, 5].mean() ** (1 / p)),
        "gospa_missed": float(a[:, 6].mean()),
        "gospa_false": float(a[:, 7].mean()),
        "n_truth_mean": float(a[:, 8].mean()),
        "n_tracks_mean": float(a[:, 9].mean()),
        "objects": int(scored.sum()),
        "held": int(held.sum()),
        "held_frac": float(held.sum() / max(int(scored.sum()), 1)),
        "ids_per_object": float(ids_per[ever].mean()) if ever.any() else float("nan"),
        "id_switches": int(switches.sum()),
        "id_swaps": int(swaps.sum()),
        "track_ids": len(ids_seen),
        "false_track_ids": len(ids_seen - ids_paired),
        # Speed error |v_object - v_track| of the identity pairs: what an
        # intercept prediction inherits (nan without velocities in the file).
        "vel_err_mean": float(np.mean(vel_err)) if vel_err else float("nan"),
        "vel_err_p95": float(np.percentile(vel_err, 95)) if vel_err else float("nan"),
        "id_gate_m": gate,
        "id_switch_cost_m": switch_cost,
        "held_min_frac": held_frac,
    }
