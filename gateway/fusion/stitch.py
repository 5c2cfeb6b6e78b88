"""Track re-acquisition: a track that confirms where a recently lost air
track could have gone takes that track's id back.

A manoeuvring aircraft can outrun its track: a hard turn at a low detection
probability leaves the plots outside the gate for a few scans, the track
coasts on along its old heading and is dropped (``drop_misses`` after
``coast_after_s``), and the target's plots start a new track that confirms
a few seconds later. One target, two ids, though nothing about the target
changed (hidden bench run, Pd 0.7 and 80 clutter plots a scan: every extra id
of the manoeuvre family was such a hand-over, old track dropped 1-3 s before
the new one confirmed; benchmarks/fusion/RESULTS.md). The remedy of the
field is track-segment association (Blackman & Popoli 1999, §11.4; Yeom,
Kirubarajan & Bar-Shalom, IEEE T-AES 40(1), 2004): keep the lost track's
last estimate for a while and let a new track that fits it continue it.

Here: a confirmed (or coasting) track dropped by the life cycle is kept for
``stitch_window_s`` with its state. When a tentative track confirms, each
kept track is predicted to now with the manoeuvre model's process noise
(``q_manoeuvre``: the target may have turned hard meanwhile) and compared
with the new track's state (6-D Mahalanobis distance under the sum of the
two covariances, inside ``stitch_gate_prob``); pairs are chosen by a 2-D
assignment, so each lost track continues at most one new track and the
reverse. The new track then carries the lost track's id (and its first
time), and its own tentative id is reported dropped. Tracks merged away
(merge.py) are not kept: their target lives on under the survivor's id.

Exo-atmospheric tracks (above ``assoc_quiet_above_m``) take no part: an
unpowered object does not turn away from its track, and inside a threat
complex a new track next to a lost one is as likely another object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gateway.fusion.api import F64, I64, STATUS_COASTING, STATUS_CONFIRMED
from gateway.fusion.exo import exo_rows
from gateway.fusion.gating import IDX, gnn_assign
from gateway.fusion.kalman import mahalanobis2
from gateway.fusion.motion import predict_cv, seconds

if TYPE_CHECKING:
    from gateway.fusion.view import EngineView

__all__ = ["adopt", "bury", "continuations", "takeovers"]

_NS = 1e-9


def bury(engine: EngineView, rows: IDX) -> None:
    """Keep the confirmed or coasting air tracks among ``rows``, which the life
    cycle is about to drop (call before :meth:`EngineView.drop_rows`)."""
    cfg = engine.cfg
    if cfg.stitch_window_s <= 0.0 or rows.size == 0:
        return
    st = engine.store
    status = st.status[rows]
    rows = rows[(status == STATUS_CONFIRMED) | (status == STATUS_COASTING)]
    if rows.size:
        rows = rows[~exo_rows(engine, st.x[rows])]
    g = engine.graves
    if rows.size:
        g.track_id = np.concatenate([g.track_id, st.track_id[rows]])
        g.first_ns = np.concatenate([g.first_ns, st.first_ns[rows]])
        g.t_ns = np.concatenate([g.t_ns, np.full(rows.size, engine.t_store or 0, np.int64)])
        g.last_ns = np.concatenate([g.last_ns, st.last_ns[rows]])
        g.x = np.concatenate([g.x, st.x[rows]])
        g.P = np.concatenate([g.P, st.P[rows]])


def continuations(engine: EngineView, rows: IDX) -> tuple[IDX, IDX]:
    """Which of rows ``rows`` (confirming now) continue a lost track: pairs of
    (row, index into ``engine.graves``). Forgets lost tracks older than
    ``stitch_window_s``."""
    g = engine.graves
    now = engine.t_store or 0
    if len(g):
        g.keep((now - g.t_ns) * _NS <= engine.cfg.stitch_window_s)
    if not len(g):
        return _NONE
    return _match(engine, rows, g.x, g.P, g.t_ns, g.last_ns)


def takeovers(engine: EngineView, rows: IDX, candidates: IDX) -> tuple[IDX, IDX]:
    """Which of rows ``rows`` (confirming now) continue a live air track that
    coasts (among rows ``candidates``) and has not been updated since the new
    one began: its target turned away and came back as the new track while
    it coasted on. Pairs of (row, coasting row)."""
    st = engine.store
    cand = np.setdiff1d(candidates[st.status[candidates] == STATUS_COASTING], rows)
    if cand.size == 0 or rows.size == 0:
        return _NONE
    cand = cand[~exo_rows(engine, st.x[cand])]
    now = np.full(cand.size, engine.t_store or 0, np.int64)
    r, k = _match(engine, rows, st.x[cand], st.P[cand], now, st.last_ns[cand])
    return r, cand[k]


_NONE = (np.empty(0, np.intp), np.empty(0, np.intp))


def _match(engine: EngineView, rows: IDX, x: F64, P: F64, t_ns: I64, last_ns: I64) -> tuple[IDX, IDX]:
    """2-D assignment of ``rows`` to lost tracks (state ``x``/``P`` at ``t_ns``,
    last updated at ``last_ns``): pairs of (row, lost track index)."""
    cfg = engine.cfg
    st = engine.store
    now = engine.t_store or 0
    if rows.size == 0 or x.shape[0] == 0:
        return _NONE
    rows = rows[~exo_rows(engine, st.x[rows])]
    if rows.size == 0:
        return _NONE
    xg, Pg = predict_cv(x, P, seconds(now - t_ns), 0.0)
    # Process noise of a hard turn over all the time since the last update
    # (the state was coasted along the old heading meanwhile): predict_cv's
    # noise term alone, from a zero state.
    _, turn = predict_cv(np.zeros_like(x), np.zeros_like(P), seconds(now - last_ns), cfg.q_manoeuvre)
    Pg += turn
    ti = np.repeat(np.arange(rows.size), x.shape[0])
    gj = np.tile(np.arange(x.shape[0]), rows.size)
    d2 = mahalanobis2(st.x[rows][ti] - xg[gj], st.P[rows][ti] + Pg[gj])
    gate = engine.stitch_gate
    # Only a track begun after the lost one's last update can continue it:
    # two tracks updated side by side are two targets.
    after = st.first_ns[rows][ti] >= last_ns[gj]
    ok = np.flatnonzero(after & np.isfinite(d2) & (d2 < gate))
    if ok.size == 0:
        return _NONE
    sel = ok[gnn_assign(ti[ok], gj[ok], d2[ok], gate)]
    return rows[ti[sel]], gj[sel]


def adopt(engine: EngineView, rows: IDX, graves: IDX) -> None:
    """Rows ``rows`` take the ids (and first times) of lost tracks ``graves``,
    which are forgotten. The caller reports the rows' own ids dropped first."""
    st = engine.store
    g = engine.graves
    st.track_id[rows] = g.track_id[graves]
    st.first_ns[rows] = g.first_ns[graves]
    left = np.ones(len(g), bool)
    left[graves] = False
    g.keep(left)
    engine.counters["tracks_reacquired"] += int(rows.size)
