"""Duplicate system tracks: merge two tracks that are one target seen by
different sensors, and keep an unresolved one out of the picture meanwhile.

A sensor's new track is paired with a system track only inside the
track-to-track gate; a young sensor track's velocity is poor, so a target
handed over from one sensor to another (a land radar to a frigate) can start
a second system track and both then live on, each fed by its own sensor, one
of them coasting whenever its sensor loses the target. Once the two agree
statistically (6-D Mahalanobis distance of the difference under P_i + P_j,
inside ``merge_gate_prob``; the cross-covariance of the two estimates is
ignored: the errors of two tracks of one target are positively correlated
through the common process noise, so P_i + P_j overstates the spread of
the difference and the test errs towards merging; Bar-Shalom, "On the
track-to-track correlation problem", IEEE T-AC 26(2), 1981) and no sensor feeds
both (two tracks of one sensor, or two plots of one batch, are two objects
to that sensor: closely spaced objects are never merged this way; nor,
above ``assoc_quiet_above_m``, are two narrow tracks fed by plots alone:
there they are two objects of a threat complex), the
younger is folded into the older: the system track id of the target is the
first one it got (Blackman & Popoli, *Design and Analysis of Modern Tracking
Systems*, 1999, §11.4 "track merging"). The survivor takes every sensor
pairing of the other, so the next report of the other sensor's track lands
on it.

Which pairs are tested: those closer than ``merge_radius_m``, and, where a
track's position is uncertain, every pair the test could accept at all. The
statistical test accepts a pair only if |p_i - p_j|² ≤ g·λ_max(P_i + P_j)
≤ g·(s_i + s_j)², with g the gate and s = √tr P_pos ≥ the largest 1-σ, so
each track is searched within √g·s of itself (up to ``merge_max_radius_m``).
That matters for a track started from reports of unknown height (a
frigate's CAT048 plot of a ballistic target: the Gaussian of the range arc
the height span allows, gateway/normalise_ship.py, tens of km along the
arc): its mean lies 10-170 km from the target, far beyond any fixed radius,
while the target's established track lies well inside its covariance (demo:
6-D Mahalanobis 6-18 at 13-165 km, benchmarks/fusion/RESULTS.md).

A *wide* track is one whose position 1-σ along its widest axis exceeds
``merge_radius_m`` (in practice: never updated by a report that measured
its height). When one of the two merged tracks is wide the survivor keeps
the other's state, whatever its age (the wide one says almost nothing the
other does not); otherwise it takes the fresher one. And a wide tentative
track inside the initiation-suppression gate (``init_suppress_prob``, 6-D)
of a confirmed track fed by none of its sensors is not confirmed
(:func:`held_unconfirmed`): it is most likely that target, and stays out of
the picture until it is merged or leaves that gate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gateway.fusion.api import F64, STATUS_COASTING, STATUS_CONFIRMED, STATUS_TENTATIVE
from gateway.fusion.exo import exo_rows
from gateway.fusion.gating import IDX, pregate
from gateway.fusion.kalman import mahalanobis2
from gateway.fusion.neighbours import pairs_within_one

if TYPE_CHECKING:
    from gateway.fusion.view import EngineView

_NS = 1e-9


def merge_duplicates(engine: EngineView, t_ns: int) -> int:
    """Fold duplicate tracks into their older twin; returns how many were folded."""
    st = engine.store
    cfg = engine.cfg
    n = st.n
    if n < 2 or cfg.merge_radius_m <= 0.0:
        return 0
    # Tentative tracks started from a sensor's track take part (a hand-over
    # duplicate starts tentative); tentative plot tracks do not (a fragment
    # separating from its parent must not be folded back into it).
    live = np.flatnonzero((st.status[:n] != STATUS_TENTATIVE) | st.paired[:n].any(axis=1))
    if live.size < 2:
        return 0
    a, b = _candidate_pairs(engine, live)
    if a.size == 0:
        return 0
    recent = _recent_sensors(engine, t_ns)
    disjoint = ~np.any(recent[a] & recent[b], axis=1)
    a, b = a[disjoint], b[disjoint]
    if a.size == 0:
        return 0
    # Above the atmosphere objects fly in complexes of closely spaced objects
    # (a warhead, its stages, debris, decoys), each seen by plots: two narrow
    # tracks fed by plots alone are two of them there, however close, and
    # are not merged (cso bench: the merges were of two objects). A wide
    # track (a range arc) or one fed by a sensor's own track still is.
    both = np.union1d(a, b)
    wide = np.zeros(n, bool)
    wide[both] = sigma_max(st.P[both]) > cfg.merge_radius_m
    objects = np.zeros(n, bool)
    objects[both] = ~st.paired[both].any(axis=1) & ~wide[both] & exo_rows(engine, st.x[both])
    keep_pair = ~(objects[a] & objects[b])
    a, b = a[keep_pair], b[keep_pair]
    if a.size == 0:
        return 0
    d2 = mahalanobis2(st.x[a] - st.x[b], st.P[a] + st.P[b])
    ok = d2 < engine.merge_gate
    a, b, d2 = a[ok], b[ok], d2[ok]
    if a.size == 0:
        return 0
    # Older = earlier first report (then lower id) survives; each row folds at
    # most once per step, closest pairs first.
    older_a = (st.first_ns[a] < st.first_ns[b]) | (
        (st.first_ns[a] == st.first_ns[b]) & (st.track_id[a] < st.track_id[b])
    )
    keep = np.where(older_a, a, b)
    gone = np.where(older_a, b, a)
    used = np.zeros(n, bool)
    drop = np.zeros(n, bool)
    for k in np.argsort(d2):
        i, j = int(keep[k]), int(gone[k])
        if used[i] or used[j]:
            continue
        used[i] = used[j] = True
        _fold(engine, i, j, wide[i], wide[j])
        drop[j] = True
    if drop.any():
        engine.counters["tracks_merged"] += int(drop.sum())
        engine.drop_rows(drop[: st.n])
    return int(drop.sum())


def held_unconfirmed(engine: EngineView, rows: IDX, t_ns: int) -> np.ndarray:
    """Of tentative ``rows`` due for confirmation, those that must wait (bool per row).

    A wide row (module docstring) waits while it lies inside the 6-D
    initiation-suppression gate of a confirmed or coasting track that none
    of its recent sensors feeds: the same target seen through the range arc
    by one more sensor, to be merged (or to update that track through its
    sensor-track pairing) rather than shown twice.
    """
    st = engine.store
    cfg = engine.cfg
    out = np.zeros(rows.size, bool)
    if rows.size == 0 or cfg.merge_radius_m <= 0.0:
        return out
    wide = sigma_max(st.P[rows]) > cfg.merge_radius_m
    held_rows = np.flatnonzero(
        (st.status[: st.n] == STATUS_CONFIRMED) | (st.status[: st.n] == STATUS_COASTING)
    )
    if not wide.any() or held_rows.size == 0:
        return out
    recent = _recent_sensors(engine, t_ns)
    # Wide tentative tracks are few (one per target a height-less sensor
    # picks up), so each is tested against every held track directly.
    for k in np.flatnonzero(wide):
        r = int(rows[k])
        others = held_rows[~np.any(recent[held_rows] & recent[r], axis=1)]
        if others.size == 0:
            continue
        d2 = mahalanobis2(st.x[others] - st.x[r], st.P[others] + st.P[r])
        out[k] = bool(np.any(d2 < engine.init_gate[6]))
    if out.any():
        engine.counters["confirmations_held"] = engine.counters.get("confirmations_held", 0) + int(out.sum())
    return out


def sigma_max(P: F64) -> F64:
    """Largest position 1-σ (m) of each covariance (N, 6, 6)."""
    out: F64 = np.sqrt(np.maximum(np.linalg.eigvalsh(P[:, :3, :3])[:, -1], 0.0))
    return out


def _candidate_pairs(engine: EngineView, live: IDX) -> tuple[IDX, IDX]:
    """Pairs (a < b) of rows of ``live`` that the merge test could accept:
    within ``merge_radius_m``, or within √g·(s_a + s_b) (module docstring)."""
    st = engine.store
    cfg = engine.cfg
    pos = st.x[live, :3]
    # Most tracks are settled: one query at the fixed radius covers them (the
    # statistical radius of a settled track is far smaller).
    half = 0.5 * cfg.merge_radius_m
    pairs = pairs_within_one(pos, cfg.merge_radius_m)
    spread = np.sqrt(np.maximum(np.trace(st.P[live, :3, :3], axis1=1, axis2=2), 0.0))
    rad = np.maximum(half, np.sqrt(engine.merge_gate) * spread)
    big = np.flatnonzero(rad > half)
    if big.size:
        # Tracks whose covariance reaches beyond it search their own radius.
        ti, tj = pregate(pos[big], rad[big], pos, rad, 0.5 * max(cfg.merge_max_radius_m, cfg.merge_radius_m))
        ti = big[ti]
        other = ti != tj
        extra = np.stack([np.minimum(ti, tj), np.maximum(ti, tj)], axis=1)[other]
        pairs = np.unique(np.concatenate([pairs.reshape(-1, 2), extra]), axis=0)
    if pairs.size == 0:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    return live[pairs[:, 0]], live[pairs[:, 1]]


def _recent_sensors(engine: EngineView, t_ns: int) -> np.ndarray:
    """(n, sensors) bool: sensor s fed row i within ``coast_after_s`` of ``t_ns``."""
    st = engine.store
    n_s = max(len(engine.sensors), 1)
    seen = st.seen_ns[: st.n, :n_s]
    out: np.ndarray = (seen > 0) & ((t_ns - seen) * _NS <= engine.cfg.coast_after_s)
    return out


def _fold(engine: EngineView, i: int, j: int, wide_i: bool, wide_j: bool) -> None:
    """Row ``j``'s target is row ``i``'s: ``i`` keeps its id and takes ``j``'s
    sensor pairings, and ``j``'s state when that is the better one: the
    fresher, unless exactly one of the two is wide (then the other's)."""
    st = engine.store
    take_j = (wide_i and not wide_j) or (wide_i == wide_j and st.last_ns[j] > st.last_ns[i])
    if take_j:
        st.xm[i], st.Pm[i], st.mu[i] = st.xm[j], st.Pm[j], st.mu[j]
        st.x[i], st.P[i] = st.x[j], st.P[j]
        st.miss_track[i] = st.miss_track[j]
    st.last_ns[i] = max(st.last_ns[i], st.last_ns[j])
    newer = st.seen_ns[j] > st.seen_ns[i]
    st.seen_ns[i] = np.where(newer, st.seen_ns[j], st.seen_ns[i])
    st.paired[i] = np.where(newer, st.paired[j], st.paired[i])
    st.stid[i] = np.where(newer, st.stid[j], st.stid[i])
    st.miss_run[i] = np.where(newer, st.miss_run[j], st.miss_run[i])
    st.mask[i] |= st.mask[j]
    st.hist[i] |= st.hist[j]
    st.n_updates[i] += st.n_updates[j]
    pair = (int(st.status[i]), int(st.status[j]))
    if STATUS_CONFIRMED in pair:
        st.status[i] = STATUS_CONFIRMED
    elif STATUS_COASTING in pair:
        st.status[i] = STATUS_COASTING
