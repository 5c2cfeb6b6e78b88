"""Duplicate tracks of one target (gateway/fusion/merge.py) on hand-built scenes:
a track seen only through a range arc (a report of unknown height: its
covariance tens of km along the arc) folds into the established track of its
target, however far its mean, and keeps out of the picture while it waits;
two well-measured aircraft in close formation stay two tracks. Each scene runs
the engine's default configuration in a flat local frame (z up)."""

from __future__ import annotations

import dataclasses

import numpy as np

from gateway.fusion.api import KIND_SENSOR_TRACK, STATUS_COASTING, STATUS_CONFIRMED, ReportArrays, TrackArrays
from gateway.fusion.config import FusionConfig
from gateway.fusion.engine import Engine
from gateway.fusion.merge import merge_duplicates
from gateway.fusion.motion import imm_combine
from hilgw.geo import local_geometry
from tests.unit.test_fusion_engine import SITES, S, engine, sensor_tracks
from tests.unit.test_fusion_quiet import ACCEL, _plots

G = 9.80665
DEFAULT = FusionConfig()
#: A ballistic object 200+ km from sensor 1, climbing.
X0 = np.array([[200e3, 50e3, 100e3, -2000.0, -300.0, 800.0]])


def ballistic(t: float) -> np.ndarray:
    x = X0.copy()
    x[:, :3] += t * X0[:, 3:]
    x[:, 2] -= 0.5 * G * t * t
    x[:, 5] -= G * t
    return x


def arc_report(sensor: int, stid: int, truth: np.ndarray, off_m: float, t_ns: int) -> ReportArrays:
    """A sensor track of unknown height, as gateway/normalise_ship.py builds it
    from a CAT048 plot without I048/110: the mean ``off_m`` from the target
    along the elevation arc of the range sphere about the sensor, 1-σ 30 km
    along that arc and 300 m across it; horizontal velocity known to 5 m/s,
    vertical velocity unknown (0 ± 3 km/s)."""
    p = truth[0, :3]
    los = p - SITES[sensor]
    up = np.array([0.0, 0.0, 1.0])
    e_el = up - los * (los @ up) / (los @ los)  # along the arc: up, across the line of sight
    e_el /= np.linalg.norm(e_el)
    x = truth[0].copy()
    x[:3] += off_m * e_el
    x[5] = 0.0
    P = np.zeros((6, 6))
    P[:3, :3] = 30e3**2 * np.outer(e_el, e_el) + 300.0**2 * (np.eye(3) - np.outer(e_el, e_el))
    P[3:, 3:] = np.diag([5.0**2, 5.0**2, 3000.0**2])
    return ReportArrays(
        sensor=np.array([sensor], np.int32),
        sensor_track_id=np.array([stid], np.uint32),
        kind=np.array([KIND_SENSOR_TRACK], np.int8),
        t_ns=np.array([t_ns], np.int64),
        x=x[None, :],
        P=P[None, :, :],
        quality=np.ones(1),
        polar=np.full((1, 4), np.nan),
        polar_sigma=np.full((1, 4), np.nan),
    )


def held_ids(pic: TrackArrays) -> list[int]:
    keep = (pic.status == STATUS_CONFIRMED) | (pic.status == STATUS_COASTING)
    return sorted(pic.track_id[keep].tolist())


def contributors(pic: TrackArrays, tid: int) -> list[int]:
    r = int(np.flatnonzero(pic.track_id == tid)[0])
    return sorted(pic.contrib_sensor[pic.contrib_row == r].tolist())


def run_arc(
    cfg: FusionConfig, off_m: list[float], land_until_s: float, t_end_s: float
) -> tuple[Engine, list[tuple[float, list[int], float]], int, TrackArrays]:
    """Sensor 0 holds the object with good sensor tracks (its own track 9)
    from t = 0 to ``land_until_s``; from t = 10 s sensor 1 reports it once a
    second through the range arc (its track 7), ``off_m[k]`` off at its k-th
    report (the last value from then on). Returns the engine, per step (t,
    held ids, distance of the first track to the truth), the first id and
    the last picture."""
    e = engine(cfg)
    log: list[tuple[float, list[int], float]] = []
    first = 0
    pic = None
    for k in range(int(t_end_s * 2)):
        t = k / 2.0
        truth = ballistic(t)
        t_ns = round(t * S)
        if k % 2 == 0 and t <= land_until_s:
            rep = sensor_tracks(0, [9], truth, t_ns, 100.0)
        elif k % 2 == 1 and t >= 10.0:
            n = k // 2 - 10
            rep = arc_report(1, 7, truth, off_m[min(n, len(off_m) - 1)], t_ns)
        else:
            rep = ReportArrays.empty()
        pic = e.step(rep, t_ns)
        if k == 6:
            first = int(pic.track_id[pic.status == STATUS_CONFIRMED][0])
        err = np.inf
        if first in pic.track_id:
            err = float(np.linalg.norm(pic.x[pic.track_id == first][0, :3] - truth[0, :3]))
        log.append((t, held_ids(pic), err))
    assert pic is not None
    assert first != 0
    return e, log, first, pic


def test_range_arc_track_merges_into_the_established_track_keeping_its_id() -> None:
    # Sensor 1's first report of the object lies 150 km off along the arc
    # (outside every spatial pre-gate, so it starts a track of its own, as
    # in the demo), then 28 km closing to 8 km: consistent with the object's
    # track all along. It must fold into that track at once (no second
    # confirmed track at any time), the old id must stay, the merged track
    # must keep the good state (not the arc's) and sensor 1 must feed it.
    offs = [150e3, *np.linspace(28e3, 8e3, 10).tolist()]
    e, log, first, pic = run_arc(DEFAULT, offs, land_until_s=40.0, t_end_s=40.0)
    assert e.counters["tracks_started"] >= 2  # the arc track did start
    assert e.counters["tracks_merged"] >= 1
    for t, ids, err in log:
        if t >= 3.0:
            assert ids == [first], (t, ids)
            assert err < 1000.0, (t, err)
    assert contributors(pic, first) == [0, 1]


def test_range_arc_track_is_not_confirmed_on_a_confirmed_track_until_that_one_goes() -> None:
    # The same arc track, 120 km off (Mahalanobis about 16 from the object's
    # track, falling to about 5 as its vertical spread grows), with a merge
    # gate too tight to fold it (p = 1e-6: 0.006):
    # it stays tentative, out of the picture, while it lies on the object's
    # confirmed track fed by sensor 0; once that track is gone (sensor 0
    # stops at 25 s, the track is dropped 10 s later) it is the only track
    # of the object and is confirmed.
    cfg = dataclasses.replace(DEFAULT, merge_gate_prob=1e-6)
    e, log, first, pic = run_arc(cfg, [120e3], land_until_s=25.0, t_end_s=45.0)
    assert e.counters["tracks_merged"] == 0
    for t, ids, _ in log:
        if 3.0 <= t <= 30.0:
            assert ids == [first], (t, ids)
    ids = held_ids(pic)
    assert len(ids) == 1, ids
    assert first not in ids, ids
    assert contributors(pic, ids[0]) == [1]


def test_two_aircraft_in_close_formation_stay_two_tracks() -> None:
    # Two aircraft 3 km apart, same velocity, each held by a different sensor
    # with a good covariance (100 m, 20 m/s): nothing but the statistical test
    # keeps them apart (disjoint sensors, inside merge_radius_m). Two ids,
    # each on its aircraft, for the whole minute.
    x0 = np.array([[80e3, 10e3, 8e3, -250.0, 0.0, 0.0], [80e3, 13e3, 8e3, -250.0, 0.0, 0.0]])
    e = engine(DEFAULT)
    ids0: list[int] = []
    for k in range(120):
        t = k / 2.0
        x = x0.copy()
        x[:, :3] += t * x0[:, 3:]
        s = k % 2
        pic = e.step(sensor_tracks(s, [1 + s], x[s : s + 1], round(t * S), 100.0), round(t * S))
        if t >= 5.0:
            conf = pic.status == STATUS_CONFIRMED
            d = np.linalg.norm(pic.x[conf][None, :, :3] - x[:, None, :3], axis=2)
            assert d.shape[1] == 2, (t, pic.track_id[conf])
            ids = pic.track_id[conf][d.argmin(axis=1)].tolist()
            assert d.min(axis=1).max() < 500.0, (t, d)
            ids0 = ids0 or ids
            assert ids == ids0, (t, ids, ids0)
            assert ids[0] != ids[1], (t, ids)
    assert e.counters["tracks_merged"] == 0


def test_a_short_gap_of_every_sensor_does_not_drop_a_track_many_sensors_hold() -> None:
    # Three sensors hold an aircraft, each at 2 Hz, staggered: six
    # opportunities a second (each batch also carries a second aircraft
    # 50 km away, so every batch is an opportunity). All three miss it for
    # 1.2 s (demo: tgt-air-1, six sensors, 1.3 s): more than drop_misses
    # consecutive misses, but the track is only 1.2 s without an update,
    # less than coast_after_s. It must come back under its id.
    x0 = np.array([[90e3, 20e3, 7e3, -240.0, 0.0, 0.0], [90e3, 70e3, 7e3, -240.0, 0.0, 0.0]])
    e = engine(DEFAULT)
    ids: set[int] = set()
    for k in range(240):
        t = k / 6.0
        x = x0.copy()
        x[:, :3] += t * x0[:, 3:]
        seen = x if not 20.0 <= t < 21.2 else x[1:]
        stid = [1, 2] if seen.shape[0] == 2 else [2]
        pic = e.step(sensor_tracks(k % 3, stid, seen, round(t * S), 100.0), round(t * S))
        if t >= 5.0:
            d = np.linalg.norm(pic.x[:, :3] - x[0, :3], axis=1)
            near = (d < 2000.0) & ((pic.status == STATUS_CONFIRMED) | (pic.status == STATUS_COASTING))
            ids |= set(pic.track_id[near].tolist())
    assert len(ids) == 1, ids


def _two_tracks(height_m: float, sigma_m: float) -> tuple[Engine, int]:
    """Two confirmed plot tracks 200 m apart at ``height_m``, position 1-σ
    ``sigma_m``, one fed lately by radar 0 only, the other by radar 1 only
    (disjoint sensors: merge.py's candidates), Earth's gravity."""
    e = Engine(DEFAULT, accel=ACCEL)
    for i in range(2):
        e.add_sensor(local_geometry(f"r{i}", SITES[i]))
    p = np.array([[300e3, 0.0, height_m], [300e3, 200.0, height_m]])
    e.step(_plots(p, 0), 0)
    st = e.store
    assert st.n == 2
    t = e.t_store or 0
    st.status[:2] = STATUS_CONFIRMED
    st.xm[:2, :, 3:] = [2000.0, 0.0, 0.0]
    st.Pm[:2] = np.diag([sigma_m**2] * 3 + [30.0**2] * 3)
    st.mu[:2] = [0.1, 0.8, 0.1]
    st.x[:2], st.P[:2] = imm_combine(st.xm[:2], st.Pm[:2], st.mu[:2])
    st.seen_ns[:2] = 0
    st.seen_ns[0, 0] = st.seen_ns[1, 1] = t
    st.first_ns[1] = t + 1  # the younger
    return e, t


def test_two_narrow_exo_plot_tracks_are_two_objects_not_one_seen_twice() -> None:
    """Above the atmosphere two narrow tracks fed by plots alone are two objects
    of a complex however close (cso bench: every merge there joined two): the
    pair that an aircraft's two tracks would merge on stays two."""
    e, t = _two_tracks(200e3, 300.0)
    assert merge_duplicates(e, t) == 0
    assert e.store.n == 2
    air, t = _two_tracks(8e3, 300.0)
    assert merge_duplicates(air, t) == 1
    assert air.store.n == 1
    wide, t = _two_tracks(200e3, 60e3)  # a range arc: still folded
    assert merge_duplicates(wide, t) == 1
