"""The fusion bench's scenario generator, floor and metrics (benchmarks/fusion/)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from benchmarks.fusion import floor, scenarios
from benchmarks.fusion.dynamics import POS, VEL, gravity
from benchmarks.fusion.metrics import Tracks, gospa, match, ospa, score
from gateway.bench_fusion import scenario_gravity


@pytest.fixture(scope="module")
def small_cso() -> dict[str, Any]:
    return scenarios.cso(seed=3, complexes=4, fragments=7, spawns=2, duration=90.0, clutter=5.0)


def test_same_seed_same_scenario_other_seed_differs() -> None:
    a = scenarios.generate("mixed", 5, complexes=1, spawns=1, n_manoeuvre=3, n_straight=3, duration=20.0)
    b = scenarios.generate("mixed", 5, complexes=1, spawns=1, n_manoeuvre=3, n_straight=3, duration=20.0)
    c = scenarios.generate("mixed", 6, complexes=1, spawns=1, n_manoeuvre=3, n_straight=3, duration=20.0)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert not np.array_equal(a["meas_z"], c["meas_z"])


def test_fragments_start_60_to_450_m_from_their_parent(small_cso: dict[str, Any]) -> None:
    x0 = small_cso["truth_state"][:32, 0][:, POS].reshape(4, 8, 3)
    d = np.linalg.norm(x0[:, 1:] - x0[:, :1], axis=2)
    # 2-15 m/s for 30 s; the gravity gradient over 450 m moves them by < 1 m.
    assert d.min() > 59.0
    assert d.max() < 451.0
    assert (small_cso["truth_parent"][:32].reshape(4, 8)[:, 0] == -1).all()


def test_a_mid_flight_fragment_leaves_its_parent(small_cso: dict[str, Any]) -> None:
    x, ex, par = small_cso["truth_state"], small_cso["truth_exists"], small_cso["truth_parent"]
    for i in (32, 33):
        k0 = int(np.argmax(ex[i]))
        assert k0 > 0
        assert ex[i, k0:].all()
        assert not ex[i, :k0].any()
        np.testing.assert_allclose(x[i, :k0], x[par[i], :k0])  # one object until it separates
        assert np.linalg.norm(x[i, -1, POS] - x[par[i], -1, POS]) > 10.0
    # A tracker sees no plot of an object before it exists.
    k_of = small_cso["meas_scan"][small_cso["meas_truth"] >= 32]
    who = small_cso["meas_truth"][small_cso["meas_truth"] >= 32]
    assert ex[who, k_of].all()


def test_ballistic_truth_falls_with_the_gravity_the_engine_is_given() -> None:
    sc = scenarios.cso(seed=2, complexes=2, fragments=1, spawns=0, duration=10.0, clutter=0.0, q=0.0)
    x, t = sc["truth_state"], sc["scan_time"]
    # Central difference of the velocity vs the model, mid-way.
    acc = (x[:, 2:, VEL] - x[:, :-2, VEL]) / (t[2:] - t[:-2])[None, :, None]
    g = gravity(x[:, 1:-1].reshape(-1, 6)).reshape(acc.shape)
    np.testing.assert_allclose(acc, g, atol=1e-4)
    alt = x[:, :, 4]
    assert (alt > 100e3).all()
    assert np.all((np.linalg.norm(g, axis=2) > 8.5) & (np.linalg.norm(g, axis=2) < 9.6))
    # hilgw bench fusion's engine frame is (x, y, z, vx, vy, vz): the same field.
    eng = x[:, 0][:, [0, 2, 4, 1, 3, 5]]
    np.testing.assert_allclose(scenario_gravity(str(sc["params_json"]))(eng), gravity(x[:, 0]), rtol=1e-12)
    assert json.loads(str(sc["params_json"]))["gravity"]["j2"] is True


def test_manoeuvre_turns_are_3_to_7_g() -> None:
    sc = scenarios.manoeuvre(n=6, seed=4, duration=60.0, q=0.0, clutter=0.0)
    v = sc["truth_state"][:, :, [1, 3]]
    a = np.linalg.norm(np.diff(v, axis=1), axis=2) / np.diff(sc["scan_time"])[None]
    turning = a > 1.0
    assert turning.any()
    assert a[turning].max() < 7.05 * 9.80665
    # A step that starts or ends a turn mid-way shows part of it: most are whole.
    assert (a[turning] > 2.9 * 9.80665).mean() > 0.9


def test_clairvoyant_filter_reaches_the_floor_on_straight_flight() -> None:
    # A filter with the truth's model and known association: its mean error is
    # the bound's expected error (a wrong Jacobian, R or Q breaks this).
    sc = scenarios.straight(n=150, seed=7, duration=40.0, clutter=0.0)
    bound = floor.pcrlb(sc, t0=20.0)["floor"]
    tr = floor.clairvoyant(sc)
    res = score(sc, Tracks.from_arrays(tr["track_id"], tr["track_time"], tr["track_state"]), t0=20.0)
    assert 20.0 < bound < 200.0
    assert res["ospa"] == pytest.approx(bound, rel=0.1)
    assert res["ids_per_object"] == 1.0
    assert res["held"] == 150


def test_ospa_and_gospa_on_hand_computed_sets() -> None:
    x = np.array([[0.0, 0, 0], [10.0, 0, 0]])
    y = np.array([[3.0, 4, 0]])
    # one pair at 5 m, one truth missed: ((5 + 100) / 2, 5 / 2, 100 / 2)
    assert ospa(x, y, c=100.0) == pytest.approx((52.5, 2.5, 50.0))
    assert gospa(x, y, c=100.0) == pytest.approx((55.0, 5.0, 1, 0))
    # Optimal, not greedy: (0-1, 2-3.5) = 2.5 beats (2-1, 0-3.5) = 4.5.
    x = np.array([[0.0, 0, 0], [2.0, 0, 0]])
    y = np.array([[1.0, 0, 0], [3.5, 0, 0]])
    assert ospa(x, y, c=100.0)[0] == pytest.approx(1.25)
    # Beyond the cut-off: one missed and one false, both at c (OSPA) or c/2 (GOSPA).
    far = ospa(np.zeros((1, 3)), np.array([[500.0, 0, 0]]), c=100.0)
    assert far == pytest.approx((100.0, 100.0, 0.0))
    assert gospa(np.zeros((1, 3)), np.array([[500.0, 0, 0]]), c=100.0) == pytest.approx((100.0, 0.0, 1, 1))
    assert ospa(np.empty((0, 3)), np.empty((0, 3)))[0] == 0.0


def test_sparse_matching_equals_the_full_assignment() -> None:
    rng = np.random.default_rng(11)
    for _ in range(20):
        x = rng.uniform(0, 3000, (rng.integers(1, 30), 3))
        y = rng.uniform(0, 3000, (rng.integers(1, 30), 3))
        d = np.minimum(cdist(x, y), 1000.0)
        r, c = linear_sum_assignment(d)
        full = (d[r, c].sum() + 1000.0 * abs(len(x) - len(y))) / max(len(x), len(y))
        assert ospa(x, y, c=1000.0)[0] == pytest.approx(full)
        _, _, dd = match(x, y, 1000.0)
        assert (dd < 1000.0).all()


def _line(n: int, y: float) -> np.ndarray:
    s = np.zeros((n, 6))
    s[:, 0] = 100.0 * np.arange(n)
    s[:, 2] = y
    return s


def _scored(truth: np.ndarray, rows: list[tuple[int, float, np.ndarray]], **kw: Any) -> dict[str, Any]:
    t = np.arange(truth.shape[1], dtype=float)
    scen = {"truth_time": t, "truth_state": truth}
    ids, times, states = zip(*rows, strict=True)
    return score(scen, Tracks.from_arrays(np.array(ids), np.array(times), np.array(states)), t0=0.0, **kw)


def test_a_track_replaced_mid_way_is_two_ids_for_one_object() -> None:
    truth = _line(20, 0.0)[None]
    rows = [(7 if k < 10 else 8, float(k), truth[0, k] + [20.0, 0, 0, 0, 0, 0]) for k in range(20)]
    res = _scored(truth, rows)
    assert res["ids_per_object"] == 2.0
    assert (res["id_switches"], res["id_swaps"], res["held"]) == (1, 0, 1)


def test_two_tracks_that_trade_objects_are_swaps() -> None:
    truth = np.stack([_line(20, 0.0), _line(20, 800.0)])
    rows = []
    for k in range(20):
        a, b = (1, 2) if k < 10 else (2, 1)
        rows += [(a, float(k), truth[0, k]), (b, float(k), truth[1, k])]
    res = _scored(truth, rows)
    assert (res["id_switches"], res["id_swaps"]) == (2, 2)
    assert res["ids_per_object"] == 2.0


def test_close_objects_keep_their_tracks_when_the_nearest_flips() -> None:
    # Two objects 50 m apart; every other time both tracks stray 45 m towards
    # the other object, so the nearest-assignment flips. No switch: the pairing
    # is kept unless changing it gains more than the switch cost.
    truth = np.stack([_line(20, 0.0), _line(20, 50.0)])
    rows = []
    for k in range(20):
        off = 45.0 if k % 2 else 0.0
        rows += [
            (1, float(k), truth[0, k] + [0, 0, off, 0, 0, 0]),
            (2, float(k), truth[1, k] - [0, 0, off, 0, 0, 0]),
        ]
    res = _scored(truth, rows)
    assert (res["id_switches"], res["ids_per_object"], res["held"]) == (0, 1.0, 2)
    assert _scored(truth, rows, switch_cost=0.0)["id_switches"] > 0


def test_an_object_seen_half_the_time_is_not_held() -> None:
    truth = np.stack([_line(20, 0.0), _line(20, 5000.0)])
    rows = [(1, float(k), truth[0, k]) for k in range(20)] + [(2, float(k), truth[1, k]) for k in range(10)]
    res = _scored(truth, rows)
    assert (res["held"], res["objects"]) == (1, 2)
    assert res["gospa_missed"] == pytest.approx(0.5)


def test_velocity_error_is_of_the_paired_track() -> None:
    # Two objects 5 km apart, the tracks listed in the reverse order of the
    # objects; track 1 (on object 0) is 3 m/s off in x, then 4 m/s in y as
    # well; track 2 is exact. The error is taken per identity pair, not per row.
    truth = np.stack([_line(20, 0.0), _line(20, 5000.0)])
    rows = []
    for k in range(20):
        dv = [0, 3.0, 0, 4.0 if k >= 10 else 0.0, 0, 0]
        rows += [(2, float(k), truth[1, k]), (1, float(k), truth[0, k] + dv)]
    res = _scored(truth, rows)
    assert res["vel_err_mean"] == pytest.approx((10 * 3.0 + 10 * 5.0) / 40)
    assert res["vel_err_p95"] == pytest.approx(5.0)
