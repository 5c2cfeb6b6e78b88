"""Track re-acquisition (gateway/fusion/stitch.py) on a hand-built scene: an
aircraft turns hard at 7 g while no plot of it arrives for 3.5 s (a fade; the
radars' batches go on, with far clutter), so its track coasts straight on and
is dropped; once plots come back on the new heading, the new track continues
the lost one under its id. A new aircraft appearing 20 km away at the same
time keeps an id of its own. The engine's default configuration, flat frame."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gateway.fusion.api import STATUS_COASTING, STATUS_CONFIRMED, STATUS_DROPPED, TrackArrays
from gateway.fusion.config import FusionConfig
from gateway.fusion.stitch import takeovers
from hilgw.errors import ConfigError
from tests.unit.test_fusion_engine import S, engine, plots

DEFAULT = FusionConfig()
V = 250.0  # m/s
A_TURN = 7 * 9.80665  # m/s²
T_TURN, T_BACK, T_STRAIGHT = 10.0, 13.5, 13.0  # turn starts; plots back; turn ends


def aircraft(t: float) -> np.ndarray:
    """Level flight east at 250 m/s, 8 km high, 50 km north; a 7 g left turn from
    T_TURN to T_STRAIGHT, then straight on the new heading."""
    p0 = np.array([-2_000.0, 50_000.0, 8_000.0])
    w = A_TURN / V  # rad/s
    if t <= T_TURN:
        return np.concatenate([p0 + np.array([V * t, 0.0, 0.0]), [V, 0.0, 0.0]])
    p1 = p0 + np.array([V * T_TURN, 0.0, 0.0])
    r = V / w
    tt = min(t, T_STRAIGHT) - T_TURN
    # Circle to the left (north) of the eastward track.
    p = p1 + np.array([r * np.sin(w * tt), r * (1.0 - np.cos(w * tt)), 0.0])
    v = np.array([V * np.cos(w * tt), V * np.sin(w * tt), 0.0])
    if t > T_STRAIGHT:
        p = p + v * (t - T_STRAIGHT)
    return np.concatenate([p, v])


def newcomer(t: float) -> np.ndarray:
    """A second aircraft, first seen at T_BACK 20 km north of the first one."""
    x0 = aircraft(T_BACK) + np.array([0.0, 20e3, 0.0, 0.0, 0.0, 0.0])
    return x0 + np.concatenate([x0[3:] * (t - T_BACK), np.zeros(3)])


def run(cfg: FusionConfig) -> tuple[list[TrackArrays], list[float]]:
    rng = np.random.default_rng(3)
    e = engine(cfg)
    pics: list[TrackArrays] = []
    times: list[float] = []
    for k in range(22 * 3):
        t = k / 3.0
        xs = [] if T_TURN < t < T_BACK else [aircraft(t)]
        if t >= T_BACK:
            xs.append(newcomer(t))
        # One far clutter plot every batch: the radars' batches go on, so the
        # faded aircraft's track counts its misses and is dropped.
        clutter = aircraft(t) + np.array([rng.uniform(-40e3, 40e3), -30e3, 0.0, 0.0, 0.0, 0.0])
        rep = plots(k % 3, np.array([*xs, clutter]), round(t * S), rng)
        pics.append(e.step(rep, round(t * S)))
        times.append(t)
    return pics, times


def confirmed_near(pic: TrackArrays, x: np.ndarray, within_m: float = 1_500.0) -> list[int]:
    conf = pic.status == STATUS_CONFIRMED
    d = np.linalg.norm(pic.x[conf, :3] - x[:3], axis=1)
    return pic.track_id[conf][d < within_m].tolist()


def test_a_track_lost_in_a_hard_turn_is_continued_under_its_id() -> None:
    pics, times = run(DEFAULT)
    before = confirmed_near(pics[times.index(9.0)], aircraft(9.0))
    assert len(before) == 1
    tid = before[0]
    dropped = [i for i, p in enumerate(pics) if tid in p.track_id[p.status == STATUS_DROPPED].tolist()]
    assert dropped
    assert T_TURN < times[dropped[0]] < T_BACK
    end = pics[-1]
    assert confirmed_near(end, aircraft(times[-1])) == [tid]  # the same id again
    other = confirmed_near(end, newcomer(times[-1]))
    assert len(other) == 1
    assert other[0] != tid


def test_without_stitching_the_turn_costs_a_new_id() -> None:
    """The scene is hard enough: with re-acquisition off the target comes back
    under another id (so the test above tests the re-acquisition)."""
    pics, times = run(dataclasses.replace(DEFAULT, stitch_window_s=0.0))
    before = confirmed_near(pics[times.index(9.0)], aircraft(9.0))
    after = confirmed_near(pics[-1], aircraft(times[-1]))
    assert len(before) == 1
    assert len(after) == 1
    assert before != after


def test_the_stitch_keys_are_checked() -> None:
    with pytest.raises(ConfigError, match="stitch_gate_prob"):
        dataclasses.replace(DEFAULT, stitch_gate_prob=1.0).check()
    with pytest.raises(ConfigError, match="stitch_window_s"):
        dataclasses.replace(DEFAULT, stitch_window_s=-1.0).check()


def test_a_track_confirming_next_to_a_coasting_one_takes_it_over() -> None:
    """The overlap case: the target's new track confirms while its old track
    still coasts along the old heading. Only a track begun after the coasting
    one's last update continues it (two tracks updated side by side are two
    targets), and only inside the manoeuvre gate."""
    e = engine(DEFAULT)
    x = np.array([aircraft(0.0), aircraft(0.0) + np.array([150.0, 60.0, 0.0, 0.0, 40.0, 0.0])])
    for k in range(3):  # two tracks, one a little off the other
        e.step(plots(k, x, k * S // 3, None), k * S // 3)
    st = e.store
    assert st.n == 2
    old, new = 0, 1
    t_now = e.t_store or 0
    st.status[old] = STATUS_COASTING
    st.last_ns[old] = t_now - S  # no update for a second
    st.first_ns[new] = t_now - S // 2  # begun after that
    r, k = takeovers(e, np.array([new]), np.array([old, new]))
    assert r.tolist() == [new]
    assert k.tolist() == [old]
    st.first_ns[new] = t_now - 2 * S  # begun before the old one's last update
    r, _ = takeovers(e, np.array([new]), np.array([old, new]))
    assert r.size == 0
    st.first_ns[new] = t_now - S // 2
    st.x[new, :3] += 20_000.0  # far outside what a turn could reach in a second
    r, _ = takeovers(e, np.array([new]), np.array([old, new]))
    assert r.size == 0
