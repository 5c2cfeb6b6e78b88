"""Track life cycle (start, confirm, coast, drop) and the output picture.

Counting is over *opportunities*: a batch from a sensor counts for a track
when that sensor has contributed to it before (its bit in ``mask``) or
contributes now. A sensor that never saw a track (out of its coverage) so
never counts a miss against it; a sensor that missed it ``drop_misses``
times in a row loses its bit (the track has left its coverage), which is
what keeps a track's identity when it passes from one sensor to another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gateway.fusion.api import (
    F64,
    KIND_PLOT,
    STATUS_COASTING,
    STATUS_CONFIRMED,
    STATUS_DROPPED,
    STATUS_TENTATIVE,
    ReportArrays,
    TrackArrays,
)
from gateway.fusion.config import MODEL_BALLISTIC
from gateway.fusion.exo import exo_rows
from gateway.fusion.gating import IDX
from gateway.fusion.merge import held_unconfirmed
from gateway.fusion.motion import imm_combine, predict_cv, seconds
from gateway.fusion.stitch import adopt, bury, continuations, takeovers

if TYPE_CHECKING:
    from gateway.fusion.view import EngineView

# hilgw.v1.MotionModel values
MOTION_MODEL_CONSTANT_VELOCITY = 1
MOTION_MODEL_BALLISTIC = 2
_NS = 1e-9
_ONE = np.uint64(1)


def apply_misses(engine: EngineView, s: int, hit: np.ndarray) -> None:
    """Record one opportunity of sensor ``s`` for rows ``0 .. len(hit)-1``
    and move tracks along the life cycle (M-of-N confirmation, coasting,
    dropping)."""
    st = engine.store
    cfg = engine.cfg
    n = hit.size
    if n == 0:
        return
    bit = np.uint64(1 << s)
    mask = st.mask[:n]
    opp = ((mask & bit) != 0) | hit
    st.mask[:n] = np.where(hit, mask | bit, mask)
    h = st.hist[:n]
    st.hist[:n] = np.where(opp, (h << _ONE) | hit.astype(np.uint64), h)
    st.n_opp[:n] += opp
    miss = opp & ~hit
    st.miss_track[:n] = np.where(hit, 0, st.miss_track[:n] + miss)
    run = np.where(hit, 0, st.miss_run[:n, s] + miss).astype(np.int16)
    st.miss_run[:n, s] = run
    lost = run >= cfg.drop_misses
    if lost.any():
        # Sensor s no longer expected to see these tracks; its sensor-track
        # pairing ends with it.
        st.mask[:n] = np.where(lost, st.mask[:n] & ~bit, st.mask[:n])
        st.paired[:n, s] &= ~lost

    status = st.status[:n]
    tent = status == STATUS_TENTATIVE
    window = np.uint64((1 << cfg.confirm_n) - 1)
    hits_n = np.bitwise_count(st.hist[:n] & window)
    confirm = tent & (hits_n >= cfg.confirm_m)
    held = np.zeros(n, bool)
    if confirm.any():
        # A track seen only through a range arc, lying on a confirmed track
        # another sensor feeds, waits to be merged into it (merge.py); it is
        # not dropped for running out of its M-of-N window meanwhile.
        due = np.flatnonzero(confirm)
        held[due] = held_unconfirmed(engine, due, engine.t_store or 0)
        confirm &= ~held
    window_out = (st.n_opp[:n] >= cfg.confirm_n) & ~held
    drop_t = tent & ~confirm & ((st.miss_track[:n] >= cfg.tentative_drop_misses) | window_out)
    conf = (status == STATUS_CONFIRMED) | (status == STATUS_COASTING) | confirm
    # Misses count over all sensors: with six on a track, six come in one
    # second; a second's gap of all of them is no reason to drop it.
    age = ((engine.t_store or 0) - st.last_ns[:n]) * _NS
    drop_c = conf & (st.miss_track[:n] >= cfg.drop_misses) & (age >= cfg.coast_after_s)
    if drop_c.any() and cfg.exo_drop_after_s > cfg.coast_after_s:
        # Exo-atmospheric tracks coast on a prediction that holds (exo.py).
        due = np.flatnonzero(drop_c)
        drop_c[due] = ~exo_rows(engine, st.x[due]) | (age[due] >= cfg.exo_drop_after_s)
    coast = conf & (st.miss_track[:n] >= cfg.coast_misses)
    st.status[:n] = np.where(coast, STATUS_COASTING, np.where(conf, STATUS_CONFIRMED, status))
    bury(engine, np.flatnonzero(drop_c))
    drop = drop_t | drop_c
    if confirm.any() and engine.cfg.stitch_window_s > 0.0:
        drop = _stitch(engine, np.flatnonzero(confirm & ~drop_c), drop)
    engine.drop_rows(drop)


def _stitch(engine: EngineView, new: IDX, drop: np.ndarray) -> np.ndarray:
    """Tracks confirming where one lost lately, or one coasting, could have
    gone continue it under its id (stitch.py); their own tentative ids leave
    the picture, a coasting track so continued leaves the table silently
    (its id lives on). Returns ``drop`` for the rows that remain."""
    st = engine.store
    r, k = continuations(engine, new)
    r2, old = takeovers(engine, np.setdiff1d(new, r), np.flatnonzero(~drop))
    both = np.concatenate([r, r2])
    if both.size == 0:
        return drop
    gone = rows_to_arrays(engine, both, st.x[both].copy(), st.P[both].copy(), engine.t_store or 0)
    gone.status[:] = STATUS_DROPPED
    engine._dropped.append(gone)
    adopt(engine, r, k)
    if r2.size == 0:
        return drop
    st.track_id[r2], st.first_ns[r2] = st.track_id[old], st.first_ns[old]
    engine.counters["tracks_reacquired"] += int(r2.size)
    keep = np.ones(drop.size, bool)
    keep[old] = False
    st.keep(np.concatenate([keep, np.ones(st.n - drop.size, bool)]))
    return drop[keep]


def new_rows(
    engine: EngineView, s: int, r: ReportArrays, x: F64, P: F64, t_end: int, confirmed: bool
) -> None:
    """Start one track per report (state ``x``/``P`` at the report's time),
    predicted (NCV) to the table time ``t_end``."""
    st = engine.store
    k = len(r)
    x, P = predict_cv(x, P, seconds(t_end - r.t_ns), engine.cfg.q_ncv)
    sl = st.append(k)
    st.xm[sl] = x[:, None, :]
    st.Pm[sl] = P[:, None, :, :]
    st.mu[sl] = engine._mu0
    st.x[sl] = x
    st.P[sl] = P
    st.track_id[sl] = np.arange(engine.next_id, engine.next_id + k, dtype=np.uint64)
    engine.next_id += k
    confirmed = confirmed or engine.cfg.confirm_m <= 1
    st.status[sl] = STATUS_CONFIRMED if confirmed else STATUS_TENTATIVE
    st.first_ns[sl] = r.t_ns
    st.last_ns[sl] = r.t_ns
    st.n_updates[sl] = 1
    st.hist[sl] = 1
    st.n_opp[sl] = 1
    st.mask[sl] = np.uint64(1 << s)
    st.seen_ns[sl, s] = r.t_ns
    if not np.all(r.kind == KIND_PLOT):
        st.paired[sl, s] = r.kind != KIND_PLOT
        st.stid[sl, s] = r.sensor_track_id
    engine.counters["tracks_started"] += k


def rows_to_arrays(engine: EngineView, rows: IDX, x: F64, P: F64, t_ns: int) -> TrackArrays:
    """Output arrays of table rows ``rows`` with states ``x``/``P`` valid at ``t_ns``."""
    st = engine.store
    n_s = max(len(engine.sensors), 1)
    opp = np.minimum(st.n_opp[rows], 8)
    hits = np.bitwise_count(st.hist[rows] & np.uint64(0xFF))
    quality = np.where(opp > 0, hits / np.maximum(opp, 1), 0.0)
    codes = np.array(
        [
            MOTION_MODEL_BALLISTIC if m == MODEL_BALLISTIC else MOTION_MODEL_CONSTANT_VELOCITY
            for m in engine.cfg.models
        ],
        np.int8,
    )
    model = codes[np.argmax(st.mu[rows], axis=1)]
    bits = ((st.mask[rows][:, None] >> np.arange(n_s, dtype=np.uint64)) & _ONE).astype(bool)
    # Contributors are the sensors feeding the track now: seen within
    # coast_after_s of the picture time (a silent sensor sends no batch, so
    # it never counts misses that would clear its bit).
    bits &= (t_ns - st.seen_ns[rows, :n_s]) * _NS <= engine.cfg.coast_after_s
    cr, cs = np.nonzero(bits)
    src = rows[cr]
    return TrackArrays(
        track_id=st.track_id[rows].copy(),
        status=st.status[rows].copy(),
        x=x,
        P=P,
        t_ns=np.full(rows.size, t_ns, np.int64),
        first_ns=st.first_ns[rows].copy(),
        update_count=st.n_updates[rows].copy(),
        quality=quality,
        model=model,
        contrib_row=cr.astype(np.int32),
        contrib_sensor=cs.astype(np.int32),
        contrib_sensor_track_id=np.where(st.paired[src, cs], st.stid[src, cs], 0).astype(np.uint32),
        contrib_t_ns=st.seen_ns[src, cs].copy(),
    )


def snapshot(engine: EngineView, t_ns: int, dropped: list[TrackArrays]) -> TrackArrays:
    """The picture at ``t_ns``: live tracks predicted to it, then the dropped."""
    st = engine.store
    n = st.n
    dt = (t_ns - (engine.t_store if engine.t_store is not None else t_ns)) * _NS
    if n and dt != 0.0:
        xm, Pm = engine.predict_models(st.xm[:n], st.Pm[:n], np.full(n, dt))
        x, P = imm_combine(xm, Pm, st.mu[:n])
    else:
        x, P = st.x[:n].copy(), st.P[:n].copy()
    parts = [rows_to_arrays(engine, np.arange(n), x, P, t_ns), *dropped]
    return concat_tracks(parts)


def concat_tracks(parts: list[TrackArrays]) -> TrackArrays:
    """Stack several pictures into one (contributor rows re-based)."""
    if len(parts) == 1:
        return parts[0]
    offs = np.cumsum([0, *[len(p) for p in parts[:-1]]])
    return TrackArrays(
        track_id=np.concatenate([p.track_id for p in parts]),
        status=np.concatenate([p.status for p in parts]),
        x=np.concatenate([p.x for p in parts]),
        P=np.concatenate([p.P for p in parts]),
        t_ns=np.concatenate([p.t_ns for p in parts]),
        first_ns=np.concatenate([p.first_ns for p in parts]),
        update_count=np.concatenate([p.update_count for p in parts]),
        quality=np.concatenate([p.quality for p in parts]),
        model=np.concatenate([p.model for p in parts]),
        contrib_row=np.concatenate([p.contrib_row + o for p, o in zip(parts, offs, strict=True)]).astype(
            np.int32
        ),
        contrib_sensor=np.concatenate([p.contrib_sensor for p in parts]),
        contrib_sensor_track_id=np.concatenate([p.contrib_sensor_track_id for p in parts]),
        contrib_t_ns=np.concatenate([p.contrib_t_ns for p in parts]),
    )
