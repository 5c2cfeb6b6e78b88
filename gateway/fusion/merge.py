"""Duplicate system tracks: merge two tracks that are one target seen by
different sensors.

A sensor's new track is paired with a system track only inside the
track-to-track gate; a young sensor track's velocity is poor, so a target
handed over from one sensor to another (a land radar to a frigate) can start
a second system track and both then live on, each fed by its own sensor, one
of them coasting whenever its sensor loses the target. Once the two agree
statistically (6-D Mahalanobis distance of the difference under P_i + P_j,
inside ``merge_gate_prob``) and no sensor feeds both (two tracks of one
sensor, or two plots of one batch, are two objects to that sensor: closely
spaced objects are never merged this way), the younger is folded into the
older: the system track id of the target is the first one it got
(Blackman & Popoli, *Design and Analysis of Modern Tracking Systems*, 1999,
§11.4 "track merging"). The survivor takes the fresher state and every
sensor pairing of the other, so the next report of the other sensor's track
lands on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial import cKDTree

from gateway.fusion.api import STATUS_COASTING, STATUS_CONFIRMED, STATUS_TENTATIVE
from gateway.fusion.kalman import mahalanobis2

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
    pairs = cKDTree(st.x[live, :3]).query_pairs(cfg.merge_radius_m, output_type="ndarray")
    if pairs.size == 0:
        return 0
    a, b = live[pairs[:, 0]], live[pairs[:, 1]]
    n_s = max(len(engine.sensors), 1)
    recent = (st.seen_ns[:n, :n_s] > 0) & ((t_ns - st.seen_ns[:n, :n_s]) * _NS <= cfg.coast_after_s)
    disjoint = ~np.any(recent[a] & recent[b], axis=1)
    a, b = a[disjoint], b[disjoint]
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
        _fold(engine, i, j)
        drop[j] = True
    if drop.any():
        engine.counters["tracks_merged"] += int(drop.sum())
        engine.drop_rows(drop[: st.n])
    return int(drop.sum())


def _fold(engine: EngineView, i: int, j: int) -> None:
    """Row ``j``'s target is row ``i``'s: ``i`` keeps its id and takes the
    fresher state and ``j``'s sensor pairings."""
    st = engine.store
    if st.last_ns[j] > st.last_ns[i]:
        st.xm[i], st.Pm[i], st.mu[i] = st.xm[j], st.Pm[j], st.mu[j]
        st.x[i], st.P[i] = st.x[j], st.P[j]
        st.last_ns[i] = st.last_ns[j]
        st.miss_track[i] = st.miss_track[j]
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
