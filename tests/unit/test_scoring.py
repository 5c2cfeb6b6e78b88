"""OSPA / GOSPA / continuity / timeliness of gateway/scoring.py on crafted cases with
answers worked out by hand (in the comments), plus metric properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gateway.scoring import Continuity, LiveScorer, gospa, ospa
from hilgw.v1 import track_pb2, truth_pb2


def pts(*xs: tuple[float, float, float]) -> np.ndarray:
    return np.array(xs, dtype=np.float64).reshape(-1, 3)


def test_one_pair_inside_cutoff() -> None:
    # d = |(3, 4, 0)| = 5 < c = 10: OSPA = (5²/1)^(1/2) = 5; GOSPA = (5²)^(1/2) = 5.
    x, y = pts((0, 0, 0)), pts((3, 4, 0))
    assert ospa(x, y, 10.0, 2.0) == pytest.approx(5.0)
    g = gospa(x, y, 10.0, 2.0)
    assert g.distance == pytest.approx(5.0)
    assert g.localisation == pytest.approx(25.0)
    assert (g.missed, g.false_tracks, g.pairs) == (0, 0, ((0, 0),))


def test_missed_target() -> None:
    # Truth {a, b}, one estimate 3 m from a, c = 10, p = 2.
    # OSPA: n = 2, ((3² + 10²·1) / 2)^(1/2) = sqrt(54.5) = 7.38241...
    # GOSPA: (3² + 10²/2 · 1)^(1/2) = sqrt(59) = 7.68115...; one missed, no false track.
    x = pts((0, 0, 0), (1000, 0, 0))
    y = pts((0, 3, 0))
    assert ospa(x, y, 10.0, 2.0) == pytest.approx(math.sqrt(54.5))
    assert ospa(y, x, 10.0, 2.0) == pytest.approx(math.sqrt(54.5))  # symmetric
    g = gospa(x, y, 10.0, 2.0)
    assert g.distance == pytest.approx(math.sqrt(59.0))
    assert (g.missed, g.false_tracks, g.pairs) == (1, 0, ((0, 0),))


def test_pair_beyond_cutoff_is_a_miss_and_a_false_track() -> None:
    # d = 20 >= c = 10, p = 1. OSPA: min(20, 10) = 10. GOSPA: unassigned, 10/2 + 10/2 = 10.
    x, y = pts((0, 0, 0)), pts((20, 0, 0))
    assert ospa(x, y, 10.0, 1.0) == pytest.approx(10.0)
    g = gospa(x, y, 10.0, 1.0)
    assert g.distance == pytest.approx(10.0)
    assert (g.localisation, g.missed, g.false_tracks, g.pairs) == (0.0, 1, 1, ())


def test_empty_sets() -> None:
    e = pts()
    assert ospa(e, e, 10.0) == 0.0
    assert gospa(e, e, 10.0).distance == 0.0
    # Three false tracks, c = 10, p = 2: OSPA = c; GOSPA = (3 · 100/2)^(1/2) = sqrt(150).
    y = pts((0, 0, 0), (50, 0, 0), (100, 0, 0))
    assert ospa(e, y, 10.0) == 10.0
    g = gospa(e, y, 10.0, 2.0)
    assert g.distance == pytest.approx(math.sqrt(150.0))
    assert (g.missed, g.false_tracks) == (0, 3)


def test_optimal_not_greedy_assignment() -> None:
    # Truth at x = 0 and 10, estimates at 6 and 16 (c = 20, p = 2). Greedy nearest first
    # pairs 10-6 (4) then 0-16 (16): 16 + 256 = 272. Optimal pairs 0-6, 10-16: 36 + 36 = 72.
    # OSPA = sqrt(72 / 2) = 6; GOSPA = sqrt(72).
    x = pts((0, 0, 0), (10, 0, 0))
    y = pts((6, 0, 0), (16, 0, 0))
    assert ospa(x, y, 20.0, 2.0) == pytest.approx(6.0)
    g = gospa(x, y, 20.0, 2.0)
    assert g.distance == pytest.approx(math.sqrt(72.0))
    assert sorted(g.pairs) == [(0, 0), (1, 1)]


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="need c > 0"):
        ospa(pts((0, 0, 0)), pts((0, 0, 0)), 0.0)
    with pytest.raises(ValueError, match="p >= 1"):
        gospa(pts((0, 0, 0)), pts((0, 0, 0)), 10.0, 0.5)


coords = arrays(np.float64, st.tuples(st.integers(0, 5), st.just(3)), elements=st.floats(-50, 50))


@settings(max_examples=60, deadline=None)
@given(coords, coords, st.floats(1.0, 100.0), st.sampled_from([1.0, 2.0, 3.0]))
def test_metric_properties(x: np.ndarray, y: np.ndarray, c: float, p: float) -> None:
    d = ospa(x, y, c, p)
    assert 0.0 <= d <= c + 1e-9
    assert d == pytest.approx(ospa(y, x, c, p))
    assert ospa(x, x, c, p) == pytest.approx(0.0, abs=1e-9)
    g = gospa(x, y, c, p)
    # The decomposition is exact: d^p = localisation + (missed + false) c^p / 2.
    assert g.distance**p == pytest.approx(g.localisation + (g.missed + g.false_tracks) * c**p / 2, abs=1e-6)
    assert g.missed == len(x) - len(g.pairs)
    assert g.false_tracks == len(y) - len(g.pairs)
    assert g.distance == pytest.approx(gospa(y, x, c, p).distance)


def test_continuity_swaps_and_breaks() -> None:
    c = Continuity()
    c.update(["A", "B"], {"A": 1, "B": 2})
    c.update(["A", "B"], {"A": 2, "B": 1})  # both swap
    c.update(["A", "B"], {"A": 2})  # B breaks
    c.update(["A", "B"], {"A": 2, "B": 3})  # B comes back on a new id: a swap (last was 1)
    c.update(["B"], {"B": 3})  # A leaves the truth: not a break
    c.update(["B"], {"B": 3})
    a, b = c.targets["A"], c.targets["B"]
    assert (a.swaps, a.breaks, a.steps_tracked, a.steps_present) == (1, 0, 4, 4)
    assert (b.swaps, b.breaks, b.steps_tracked, b.steps_present) == (2, 1, 5, 6)
    # Track ids per target: A saw 1 and 2, B saw 2, 1 and 3.
    assert (a.track_ids, b.track_ids) == ({1, 2}, {1, 2, 3})


def _truth(t_ns: int, targets: dict[str, tuple[float, ...]]) -> truth_pb2.TruthBatch:
    msg = truth_pb2.TruthBatch(time_ns=t_ns)
    for tid, x in targets.items():
        s = msg.targets.add(target_id=tid).state
        s.x, s.y, s.z, s.vx, s.vy, s.vz = x
    return msg


def _tracks(t_ns: int, tracks: list[tuple[int, int, tuple[float, ...], int]]) -> track_pb2.TrackBatch:
    msg = track_pb2.TrackBatch(time_ns=t_ns)
    for tid, status, x, t_valid in tracks:
        trk = msg.tracks.add(track_id=tid, status=status, last_update_time_ns=t_valid)
        s = trk.state
        s.x, s.y, s.z, s.vx, s.vy, s.vz = x
    return msg


CONF, TENT = track_pb2.TRACK_STATUS_CONFIRMED, track_pb2.TRACK_STATUS_TENTATIVE
COAST = track_pb2.TRACK_STATUS_COASTING
S = 1_000_000_000


def test_live_scorer_aligns_times_and_times_confirmation() -> None:
    sc = LiveScorer(cutoff_m=100.0, order_p=2.0, max_truth_age_s=2.0)
    # No truth yet: nothing scored.
    assert sc.on_track_batch(_tracks(10 * S, [])) is None
    # Truth at t = 10 s: A at the origin moving +100 m/s in x, B far away, still.
    sc.on_truth_batch(_truth(10 * S, {"A": (0, 0, 0, 100, 0, 0), "B": (1e6, 0, 0, 0, 0, 0)}))
    # A sensor report near A at 10.2 s: A's first detection (B has none).
    sc.on_reports(np.array([[25.0, 0, 0]]), np.array([10 * S + S // 5]))
    # Track picture at 10.5 s: a tentative track on A (not scored) -> both missed.
    step = sc.on_track_batch(_tracks(10 * S + S // 2, [(7, TENT, (50, 0, 0, 100, 0, 0), 10 * S)]))
    assert step is not None
    assert (step.gospa.missed, step.gospa.false_tracks, step.track_count) == (2, 0, 0)
    assert step.ospa == pytest.approx(100.0)
    # At 11 s: track 7 confirmed, valid at 10.9 s at x = 86 -> 96 at 11 s; truth A at 100.
    # GOSPA = (4² + 100²/2)^(1/2) (B missed); OSPA = ((4² + 100²)/2)^(1/2).
    step = sc.on_track_batch(_tracks(11 * S, [(7, CONF, (86, 0, 0, 100, 0, 0), 10 * S + 9 * S // 10)]))
    assert step is not None
    assert step.gospa.distance == pytest.approx(math.sqrt(16 + 5000))
    assert step.ospa == pytest.approx(math.sqrt((16 + 10000) / 2))
    # Truth older than 2 s: not scored.
    assert sc.on_track_batch(_tracks(13 * S, [])) is None
    rep = sc.report("gw", final=True)
    assert rep.final
    assert rep.steps == 2
    assert rep.mean_ospa_m == pytest.approx((100.0 + math.sqrt((16 + 10000) / 2)) / 2)
    a = {t.target_id: t for t in rep.targets}["A"]
    assert a.first_truth_time_ns == 10 * S
    assert a.first_detection_time_ns == 10 * S + S // 5
    assert a.first_confirmed_time_ns == 11 * S
    assert a.detection_to_confirmed_s == pytest.approx(0.8)
    assert a.track_id == 7
    assert a.track_ids == 1
    b = {t.target_id: t for t in rep.targets}["B"]
    assert b.track_ids == 0  # never assigned: left out of the mean
    assert rep.track_ids_per_target == pytest.approx(1.0)
    assert b.first_detection_time_ns == 0
    assert math.isnan(b.detection_to_confirmed_s)


def test_reports_before_truth_count_and_late_joiners_get_no_negative_time() -> None:
    sc = LiveScorer(cutoff_m=100.0, max_truth_age_s=2.0)
    # A report of A at 9.5 s, before any truth: kept, and used once truth comes at 10 s.
    sc.on_reports(np.array([[-40.0, 0, 0]]), np.array([9 * S + S // 2]))
    sc.on_truth_batch(_truth(10 * S, {"A": (0, 0, 0, 100, 0, 0), "B": (0, 5000, 0, 0, 0, 0)}))
    # B is already on a confirmed track at 10 s, and first reported at 10.4 s: a scorer
    # that joined late; its detection-to-confirmation time is unknown, not negative.
    sc.on_track_batch(_tracks(10 * S, [(3, CONF, (0, 5000, 0, 0, 0, 0), 10 * S)]))
    sc.on_reports(np.array([[0.0, 5010, 0]]), np.array([10 * S + 2 * S // 5]))
    targets = {t.target_id: t for t in sc.report().targets}
    assert targets["A"].first_detection_time_ns == 9 * S + S // 2
    assert targets["B"].first_detection_time_ns == 10 * S + 2 * S // 5
    assert targets["B"].first_confirmed_time_ns == 10 * S
    assert math.isnan(targets["B"].detection_to_confirmed_s)


def test_first_cue_goes_to_the_target_of_the_cued_track() -> None:
    sc = LiveScorer(cutoff_m=100.0)
    sc.on_truth_batch(_truth(10 * S, {"A": (0, 0, 0, 0, 0, 0), "B": (0, 5000, 0, 0, 0, 0)}))
    sc.on_reports(np.array([[0.0, 10, 0]]), np.array([10 * S]))
    sc.on_track_batch(
        _tracks(11 * S, [(4, CONF, (0, 5, 0, 0, 0, 0), 11 * S), (9, CONF, (0, 5000, 0, 0, 0, 0), 11 * S)])
    )
    assert sc.on_cue(4, 12 * S) == "A"
    assert sc.on_cue(4, 13 * S) == "A"  # a resend: the first cue stays
    assert sc.on_cue(77, 13 * S) is None  # a track no target is assigned to
    t = {x.target_id: x for x in sc.report().targets}
    assert t["A"].first_cue_time_ns == 12 * S
    assert t["A"].detection_to_cue_s == pytest.approx(2.0)
    assert t["B"].first_cue_time_ns == 0
    assert math.isnan(t["B"].detection_to_cue_s)


def test_a_nan_truth_batch_is_rejected_counted_and_scoring_goes_on() -> None:
    """Issue 23 item 6: one NaN in a truth batch used to raise in the assignment
    at every step after it (the scoring task crash-looped)."""
    sc = LiveScorer(cutoff_m=100.0, order_p=2.0, max_truth_age_s=2.0)
    assert sc.on_truth_batch(_truth(10 * S, {"A": (0, 0, 0, 100, 0, 0)}))
    assert not sc.on_truth_batch(_truth(10 * S + S // 2, {"A": (math.nan, 0, 0, 100, 0, 0)}))
    assert not sc.on_truth_batch(_truth(10 * S + S // 2, {"A": (0, 0, 0, math.inf, 0, 0)}))
    assert not sc.on_truth_batch(_truth(10 * S + S // 2, {"A": (1e300, 0, 0, 0, 0, 0)}))
    assert dict(sc.truth_rejected) == {"non_finite": 2, "out_of_range": 1}
    # The truth before the bad batches stays in force: A at 100 m at 11 s.
    step = sc.on_track_batch(_tracks(11 * S, [(7, CONF, (100, 0, 0, 100, 0, 0), 11 * S)]))
    assert step is not None
    assert step.gospa.distance == pytest.approx(0.0)


def test_a_non_finite_track_is_left_out_and_counted() -> None:
    sc = LiveScorer(cutoff_m=100.0, order_p=2.0, max_truth_age_s=2.0)
    sc.on_truth_batch(_truth(10 * S, {"A": (0, 0, 0, 0, 0, 0)}))
    step = sc.on_track_batch(
        _tracks(10 * S, [(7, CONF, (0, 0, 0, 0, 0, 0), 10 * S), (8, CONF, (math.nan, 0, 0, 0, 0, 0), 10 * S)])
    )
    assert step is not None
    assert (step.track_count, step.gospa.false_tracks) == (1, 0)
    assert sc.tracks_rejected == 1


@pytest.mark.parametrize("report_phase_s", [0.05, 0.1, 0.2])
def test_truth_that_starts_late_never_times_confirmation_before_detection(report_phase_s: float) -> None:
    """Bench mode: the radar runs from t = 0, its truth publisher is up at 5 s.

    The gateway's scorer gets the backlog after the first truth, reports first
    and then pictures (GatewayScoring.step). Reports reach back 2 s before the
    truth, and so did the pictures: both marks landed on the edge of that
    span, the confirmation first whenever the scan lagged the picture, and
    detection-to-confirmed was NaN (the flake of test_bench_cue_scored).
    """
    sc = LiveScorer(cutoff_m=500.0, max_truth_age_s=2.0)
    vx = 100.0

    def a_at(t_s: float) -> tuple[float, float, float, float, float, float]:
        return (vx * t_s, 0.0, 0.0, vx, 0.0, 0.0)

    tick = S // 4
    scans = [round(report_phase_s * S) + k * tick for k in range(20)]  # 4 Hz, to 5 s
    pictures = [k * tick for k in range(1, 21)]  # 4 Hz; the track confirmed from 1 s on
    sc.on_truth_batch(_truth(5 * S, {"A": a_at(5.0)}))
    for t in scans:
        sc.on_reports(np.array([a_at(t / S)[:3]]), np.array([t]))
    for t in pictures:
        status = CONF if t >= S else TENT
        sc.on_track_batch(_tracks(t, [(7, status, a_at(t / S), t)]))
    sc.on_cue(7, 4 * S)  # a cue from before the truth: its time is not the first cue's
    sc.on_cue(7, 5 * S + tick)
    a = sc.report().targets[0]
    assert a.first_detection_time_ns <= a.first_truth_time_ns == 5 * S
    assert a.first_confirmed_time_ns >= a.first_truth_time_ns
    assert 0.0 <= a.detection_to_confirmed_s <= 2.0 + 0.25, a
    assert a.first_cue_time_ns == 5 * S + tick
    assert a.detection_to_confirmed_s <= a.detection_to_cue_s


def test_a_second_track_on_a_held_target_is_a_duplicate_a_far_one_is_not() -> None:
    sc = LiveScorer(cutoff_m=1000.0, order_p=2.0)
    sc.on_truth_batch(_truth(10 * S, {"A": (0, 0, 0, 0, 0, 0), "B": (1e6, 0, 0, 0, 0, 0)}))
    # Track 1 holds A; track 2 coasts 300 m from A (a duplicate); track 3 is
    # clutter 50 km from everything; B is held by a tentative track only.
    tracks = [
        (1, CONF, (10, 0, 0, 0, 0, 0), 10 * S),
        (2, COAST, (300, 0, 0, 0, 0, 0), 10 * S),
        (3, CONF, (5e4, 0, 0, 0, 0, 0), 10 * S),
        (4, TENT, (1e6, 10, 0, 0, 0, 0), 10 * S),
    ]
    step = sc.on_track_batch(_tracks(10 * S, tracks))
    assert step is not None
    assert (step.gospa.false_tracks, step.duplicates) == (2, 1)
    # Next step the duplicate is gone: the last step shows 0, the run keeps the count.
    step = sc.on_track_batch(_tracks(10 * S + S // 2, [tracks[0], tracks[2]]))
    assert step is not None
    assert step.duplicates == 0
    rep = sc.report("gw")
    assert (rep.duplicate_tracks, rep.max_duplicate_tracks, rep.steps_with_duplicates) == (0, 1, 1)
    per = {t.target_id: t.duplicate_steps for t in rep.targets}
    assert per == {"A": 1, "B": 0}
