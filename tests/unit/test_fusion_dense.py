"""Association and identity on hand-built scenes: objects inside one gate, a crossing
during a turn, a fragment separating from its parent. Each scene runs the
engine's default configuration (the one `hilgw run` uses) on three radars'
plots in a flat local frame (z up, gravity -z)."""

from __future__ import annotations

import numpy as np

from gateway.fusion.api import STATUS_COASTING, STATUS_CONFIRMED, STATUS_DROPPED, ReportArrays, TrackArrays
from gateway.fusion.config import FusionConfig
from tests.unit.test_fusion_engine import S, engine, plots, sensor_tracks

G = 9.80665
DEFAULT = FusionConfig()


def ballistic(x0: np.ndarray, t: float) -> np.ndarray:
    """States (N, 6) at t of bodies falling freely from x0 (N, 6) at t = 0."""
    x = x0.copy()
    x[:, :3] += t * x0[:, 3:]
    x[:, 2] -= 0.5 * G * t * t
    x[:, 5] -= G * t
    return x


def held(pic: TrackArrays) -> TrackArrays:
    keep = (pic.status == STATUS_CONFIRMED) | (pic.status == STATUS_COASTING)
    return TrackArrays(
        pic.track_id[keep], pic.status[keep], pic.x[keep], pic.P[keep], pic.t_ns[keep],
        pic.first_ns[keep], pic.update_count[keep], pic.quality[keep], pic.model[keep],
    )  # fmt: skip


def nearest_ids(pic: TrackArrays, truth: np.ndarray, within_m: float) -> list[int]:
    """Per truth object, the id of the nearest held track (0: none within ``within_m``)."""
    if len(pic) == 0:
        return [0] * len(truth)
    d = np.linalg.norm(pic.x[None, :, :3] - truth[:, None, :3], axis=2)
    j = d.argmin(axis=1)
    return [int(pic.track_id[jj]) if d[i, jj] < within_m else 0 for i, jj in enumerate(j)]


def test_second_object_inside_a_tracks_gate_gets_its_own_track() -> None:
    # A ballistic object at ~300 km is tracked alone for 10 s; then a second
    # one shows up 150 m from it (well inside one plot's 300 m cross-range
    # sigma), 4 m/s apart. Each must end on its own track, the first keeping
    # its id, and no third id may appear on either.
    rng = np.random.default_rng(11)
    x0 = np.array([[300e3, 20e3, 150e3, -3000.0, -200.0, 300.0]])
    x0 = np.vstack([x0, x0[0] + [0.0, 150.0, 0.0, 0.0, 4.0, 0.0]])
    e = engine(DEFAULT)
    seen: list[set[int]] = [set(), set()]
    first_id = 0
    for k in range(150):
        t = k / 3.0
        objs = ballistic(x0, t)[: 1 if t < 10.0 else 2]
        pic = held(e.step(plots(k % 3, objs, round(t * S), rng), round(t * S)))
        ids = nearest_ids(pic, ballistic(x0, t)[: len(objs)], 400.0)
        if k == 29:
            first_id = ids[0]
            assert first_id != 0
        if t >= 30.0:  # 20 s after the second object appeared
            assert all(ids), (t, ids, pic.track_id)
            assert ids[0] != ids[1], (t, ids, pic.track_id)
            for i, tid in enumerate(ids):
                seen[i].add(tid)
    assert seen[0] == {first_id}
    assert len(seen[1]) == 1


def test_crossing_during_a_turn_keeps_one_id_per_target() -> None:
    # Two aircraft at 80 km cross 100 m apart at t = 20 s while one pulls a
    # 6 g level turn from t = 15 s to 35 s: each keeps one system track id.
    rng = np.random.default_rng(3)
    speed, omega = 300.0, 6.0 * G / 300.0
    c = np.array([80e3, 5e3, 8e3])

    def truth(t: float) -> np.ndarray:
        a = np.array([*(c + np.array([-speed * (t - 20.0), 0.0, 0.0])), -speed, 0.0, 0.0])
        # b: straight north until 15 s, then turns at omega (left) for 20 s
        p15 = c + np.array([0.0, 100.0 - speed * 5.0, 0.0])
        if t < 15.0:
            b = np.array([*(p15 + np.array([0.0, speed * (t - 15.0), 0.0])), 0.0, speed, 0.0])
        else:
            tt = min(t, 35.0) - 15.0
            th = np.pi / 2 + omega * tt
            p = p15 + (speed / omega) * np.array([np.sin(th) - 1.0, -np.cos(th), 0.0])
            v = speed * np.array([np.cos(th), np.sin(th), 0.0])
            p = p + v * (t - 15.0 - tt)
            b = np.array([*p, *v])
        return np.vstack([a, b])

    e = engine(DEFAULT)
    seen: list[set[int]] = [set(), set()]
    for k in range(150):
        t = k / 3.0
        x = truth(t)
        pic = held(e.step(plots(k % 3, x, round(t * S), rng), round(t * S)))
        if t >= 8.0:
            for i, tid in enumerate(nearest_ids(pic, x, 500.0)):
                seen[i].add(tid)
    assert 0 not in seen[0] | seen[1], seen
    assert [len(s) for s in seen] == [1, 1], seen
    assert seen[0] != seen[1]


def test_fragment_separating_mid_flight_starts_a_track_and_parent_keeps_its_id() -> None:
    # A parent object tracked for 15 s sheds a fragment at 10 m/s. The
    # parent's track must live on throughout; once the two are resolved
    # (250 m apart, 25 s later) the parent is on its old id and the
    # fragment on one new id of its own.
    rng = np.random.default_rng(5)
    p0 = np.array([[320e3, -10e3, 180e3, -3500.0, 300.0, 200.0]])
    dv = np.array([0.0, 6.0, 8.0])
    e = engine(DEFAULT)
    parent_id = 0
    frag_ids: set[int] = set()
    for k in range(150):
        t = k / 3.0
        par = ballistic(p0, t)
        objs = par
        if t >= 15.0:
            frag = par.copy()
            frag[0, :3] += dv * (t - 15.0)
            frag[0, 3:] += dv
            objs = np.vstack([par, frag])
        pic = held(e.step(plots(k % 3, objs, round(t * S), rng), round(t * S)))
        ids = nearest_ids(pic, objs, 400.0)
        if k == 44:
            parent_id = ids[0]
            assert parent_id != 0
        if k > 44:
            assert parent_id in pic.track_id, (t, pic.track_id)
        if t >= 40.0:
            assert ids[0] == parent_id, (t, ids)
            assert ids[1] not in (0, parent_id), (t, ids)
            frag_ids.add(ids[1])
    assert len(frag_ids) == 1


def test_hand_over_duplicate_is_merged_into_the_older_track() -> None:
    # Sensor 0 holds a target from t = 0; sensor 1 picks it up at t = 5 s
    # with a young track whose velocity is 600 m/s off (settling over a few
    # seconds), so the pairing gate refuses it and a second system track
    # starts, which its persistent pairing then keeps feeding. Once sensor 1's track has
    # settled, the two system tracks agree and are fed by different sensors:
    # one target, which keeps its first system track id, both sensors on it.
    x0 = np.array([[100e3, 5e3, 20e3, -1000.0, 0.0, 0.0]])
    e = engine(DEFAULT)
    first = 0
    pic = None
    for k in range(60):
        t = k / 2.0
        truth = x0.copy()
        truth[:, :3] += t * x0[:, 3:]
        if k % 2 == 0:
            rep = sensor_tracks(0, [9], truth, round(t * S), 100.0)
        elif t >= 5.0:
            young = truth.copy()
            young[0, 3] += 600.0 * np.exp(-(t - 5.0) / 1.5)  # settles over a few s
            rep = sensor_tracks(1, [5], young, round(t * S), 100.0)
        else:
            rep = ReportArrays.empty()
        pic = e.step(rep, round(t * S))
        if k == 0:
            first = int(pic.track_id[0])
    assert pic is not None
    assert e.counters["tracks_started"] >= 2  # the duplicate did start
    alive = pic.track_id[pic.status != STATUS_DROPPED].tolist()
    assert alive == [first]
    r = int(np.flatnonzero(pic.track_id == first)[0])
    assert sorted(pic.contrib_sensor[pic.contrib_row == r].tolist()) == [0, 1]


def test_sensor_track_that_jumps_keeps_its_system_track_id() -> None:
    # A sensor's only track of a target jumps 40 km (a bad height, say) and
    # back: its system track follows under the same id instead of a new
    # confirmed track per jump with the old one left coasting.
    x0 = np.array([[150e3, 0.0, 30e3, -500.0, 0.0, 0.0]])
    e = engine(DEFAULT)
    ids: set[int] = set()
    for k in range(30):
        t = float(k)
        x = x0.copy()
        x[:, :3] += t * x0[:, 3:]
        if 10 <= k < 15:
            x[0, 2] += 40e3
        pic = e.step(sensor_tracks(0, [4], x, round(t * S), 100.0), round(t * S))
        ids |= set(pic.track_id.tolist())
    assert len(ids) == 1, ids
    assert e.counters["tracks_started"] == 1
