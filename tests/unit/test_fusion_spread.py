"""GNN's mean with the PDA mixture's covariance (gateway/fusion/spread.py).

The function is checked against the mixture moments written out here in
plain loops, on hand-built gates: a lone plot, two tracks that both gate two
equally likely plots, a plot another track explains far better, a tentative
track. The engine-level scene: two ballistic objects at one range, 300 m
apart across a 1 mrad beam at 800 km, which one radar cannot tell apart.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import numpy as np

from gateway.fusion.api import STATUS_CONFIRMED, STATUS_TENTATIVE, ReportArrays
from gateway.fusion.config import FusionConfig
from gateway.fusion.spread import spread_covariance, spread_pairs, spread_update
from gateway.fusion.view import EngineView
from tests.unit.test_fusion_dense import ballistic, held
from tests.unit.test_fusion_engine import S, engine, plots

CFG = FusionConfig()


def reports(n: int, t_ns: list[int] | None = None) -> ReportArrays:
    polar = np.tile([800e3, 0.1, 0.3, np.nan], (n, 1))
    sigma = np.tile([30.0, 1e-3, 1e-3, np.nan], (n, 1))
    r = ReportArrays.empty()
    return ReportArrays(
        sensor=np.zeros(n, np.int32), sensor_track_id=np.zeros(n, np.uint32), kind=np.full(n, 2, np.int8),
        t_ns=np.asarray(t_ns if t_ns is not None else [0] * n, np.int64), x=np.zeros((n, 6)),
        P=np.zeros((n, 6, 6)), quality=np.ones(n), polar=polar, polar_sigma=sigma,
    ) if n else r  # fmt: skip


def view(status: list[int], n_models: int = 1) -> EngineView:
    n = len(status)
    store = SimpleNamespace(status=np.asarray(status, np.int8), mu=np.full((n, n_models), 1.0 / n_models))
    return cast(EngineView, SimpleNamespace(store=store, cfg=CFG))


def spd(rng: np.random.Generator, scale: float) -> np.ndarray:
    a = rng.standard_normal((6, 6))
    return scale * (a @ a.T + 6.0 * np.eye(6))


def mixture_cov(xs: list[np.ndarray], Ps: list[np.ndarray], w: list[float]) -> np.ndarray:
    w_arr = np.asarray(w) / sum(w)
    mean = sum(wi * x for wi, x in zip(w_arr, xs, strict=True))
    out = np.zeros((6, 6))
    for wi, x, P in zip(w_arr, xs, Ps, strict=True):
        e = x - mean
        out += wi * (P + np.outer(e, e))
    return out


def test_lone_plot_keeps_the_plain_update() -> None:
    rng = np.random.default_rng(1)
    xa = rng.standard_normal((1, 1, 6)) * 100.0
    Pa = spd(rng, 10.0)[None, None]
    out = spread_covariance(
        view([STATUS_CONFIRMED]), reports(1), np.array([0]), np.array([0]), xa, Pa, np.zeros((1, 1)),
        np.array([0]), 1,
    )  # fmt: skip
    np.testing.assert_array_equal(out, Pa)


def test_two_equally_likely_plots_give_the_mixture_covariance_about_gnns_mean() -> None:
    # Tracks 0 and 1 both gate plots 0 and 1 with the same likelihood; GNN
    # gave plot 0 to track 0 and plot 1 to track 1. Each track's covariance
    # is the moment-matched mixture of its two updates with weights 1/2.
    rng = np.random.default_rng(2)
    ti, rj = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    xa = rng.standard_normal((4, 1, 6)) * 200.0
    Pa = np.stack([spd(rng, 50.0) for _ in range(4)])[:, None]
    chosen = np.array([0, 3])
    means, P, _, pos = spread_update(
        view([STATUS_CONFIRMED] * 2), reports(2), ti, rj, xa, Pa, np.zeros((4, 1)), chosen, 2
    )
    np.testing.assert_array_equal(means, xa[chosen])  # the mean stays GNN's
    np.testing.assert_array_equal(pos, [0, 1])
    for row, pairs in ((0, (0, 1)), (1, (3, 2))):
        want = mixture_cov([xa[p, 0] for p in pairs], [Pa[p, 0] for p in pairs], [1.0, 1.0])
        np.testing.assert_allclose(P[row, 0], want, rtol=1e-9, atol=1e-6)
    # It is larger than the plain update along the difference of the two updates.
    d = xa[1, 0] - xa[0, 0]
    assert d @ P[0, 0] @ d > d @ Pa[0, 0] @ d + 0.2 * (d @ d) ** 2


def test_plot_another_track_explains_far_better_hardly_counts() -> None:
    # Plot 1 sits in track 0's gate, but it is 40 sigma-units less likely for
    # track 0 than for track 1, whose plot it is: track 0 keeps (almost) its
    # plain update.
    rng = np.random.default_rng(3)
    ti, rj = np.array([0, 0, 1]), np.array([0, 1, 1])
    xa = rng.standard_normal((3, 1, 6)) * 200.0
    Pa = np.stack([spd(rng, 50.0) for _ in range(3)])[:, None]
    loglik = np.array([[0.0], [-40.0], [0.0]])
    two = view([STATUS_CONFIRMED] * 2)
    out = spread_covariance(two, reports(2), ti, rj, xa, Pa, loglik, np.array([0, 2]), 2)
    np.testing.assert_allclose(out[0, 0], Pa[0, 0], rtol=1e-9)
    np.testing.assert_array_equal(out[1], Pa[2])


def test_tentative_track_keeps_its_plain_update() -> None:
    rng = np.random.default_rng(4)
    ti, rj = np.array([0, 0]), np.array([0, 1])
    xa = rng.standard_normal((2, 1, 6)) * 200.0
    Pa = np.stack([spd(rng, 50.0) for _ in range(2)])[:, None]
    out = spread_covariance(
        view([STATUS_TENTATIVE]), reports(2), ti, rj, xa, Pa, np.zeros((2, 1)), np.array([0]), 1
    )
    np.testing.assert_array_equal(out, Pa[[0]])


def test_alternative_plot_is_taken_at_the_chosen_plots_time() -> None:
    # One object at 3 km/s updated from a plot at 10 ms (GNN's) and from one
    # at 0 ms, 30 m behind: brought to one time the two updates coincide
    # and nothing is added.
    x = np.array([1000.0, 0.0, 0.0, 3000.0, 0.0, 0.0])
    earlier = x.copy()
    earlier[0] -= 30.0
    xa = np.stack([x, earlier])[:, None]
    P = np.eye(6)[None, None].repeat(2, axis=0)
    out = spread_covariance(
        view([STATUS_CONFIRMED]), reports(2, [10_000_000, 0]), np.array([0, 0]), np.array([0, 1]), xa, P,
        np.zeros((2, 1)), np.array([0]), 1,
    )  # fmt: skip
    np.testing.assert_allclose(out[0, 0], np.eye(6), atol=1e-9)


def _unresolved_pair(cfg: FusionConfig, seed: int) -> float:
    """Share of (track, time) at t >= 20 s whose error to the nearest object
    lies outside the track's own 99 % position ellipsoid (χ²₃ 11.34)."""
    rng = np.random.default_rng(seed)
    # 700 km out, 250 km up, inbound; the second object 300 m across the
    # line of sight, drifting 2 m/s further: inside one plot's 700 m
    # cross-range sigma for the whole minute, and at the same range.
    p = np.array([700e3, 50e3, 250e3])
    v = np.array([-2900.0, -100.0, -200.0])
    across = np.cross(p, [0.0, 0.0, 1.0])
    across /= np.linalg.norm(across)
    x0 = np.array([np.r_[p, v], np.r_[p + 300.0 * across, v + 2.0 * across]])
    e = engine(cfg)
    outside = []
    for k in range(180):
        t = k / 3.0
        objs = ballistic(x0, t)
        pic = held(e.step(plots(k % 3, objs, round(t * S), rng), round(t * S)))
        if t < 20.0 or len(pic) == 0:
            continue
        err = pic.x[:, None, :3] - objs[None, :, :3]
        ev = err[np.arange(len(pic)), np.linalg.norm(err, axis=2).argmin(axis=1)]
        nees = np.einsum("ni,ni->n", ev, np.linalg.solve(pic.P[:, :3, :3], ev[..., None])[..., 0])
        outside += (nees > 11.34).tolist()
    return float(np.mean(outside))


def test_unresolved_pair_tracks_keep_covariances_that_cover_their_errors() -> None:
    # Two tracks trading plots of two objects they cannot tell apart: with
    # plain GNN covariances 10-74 % of the errors (seeds 1-4) fall outside
    # the tracks' own 99 % ellipsoids; with the mixture spread 0-51 %.
    spread = [_unresolved_pair(FusionConfig(), s) for s in range(1, 5)]
    plain = [_unresolved_pair(FusionConfig(gnn_spread=False), s) for s in range(1, 5)]
    assert np.mean(spread) < 0.8 * np.mean(plain), (spread, plain)
    assert all(a <= b for a, b in zip(spread, plain, strict=True)), (spread, plain)


def test_only_pairs_that_share_a_track_or_plot_need_the_second_update() -> None:
    # Tracks 0-4, plots 0-5: track 0 gates plots 0 and 1; plot 2 is gated by
    # tracks 1 and 2; (3, 3) and (4, 4) are lone pairs, and track 4 also
    # gates plot 5 (not lone). GNN chose (0,0), (1,2), (3,3).
    ti = np.array([0, 0, 1, 2, 3, 4, 4])
    rj = np.array([0, 1, 2, 2, 3, 4, 5])
    chosen = np.array([0, 2, 4])
    sub = spread_pairs(ti, rj, np.arange(7), chosen)
    np.testing.assert_array_equal(sub, [0, 1, 2, 3, 4, 5, 6])
    lone = spread_pairs(ti[:5], rj[:5], np.arange(5), np.array([0, 2]))
    np.testing.assert_array_equal(lone, [0, 1, 2, 3])  # (3,3): lone, not chosen
    # The covariances from that subset equal those from every gated pair.
    rng = np.random.default_rng(5)
    xa = rng.standard_normal((5, 1, 6)) * 200.0
    Pa = np.stack([spd(rng, 50.0) for _ in range(5)])[:, None]
    loglik = rng.uniform(-3.0, 0.0, (5, 1))
    four = view([STATUS_CONFIRMED] * 4)
    ch = np.array([0, 2])
    full = spread_covariance(four, reports(4), ti[:5], rj[:5], xa, Pa, loglik, ch, 4)
    part = spread_covariance(
        four, reports(4), ti[lone], rj[lone], xa[lone], Pa[lone], loglik[lone], np.searchsorted(lone, ch), 4
    )
    np.testing.assert_allclose(part, full, rtol=1e-12)
    assert not np.allclose(full[0], Pa[0])  # track 0 had an alternative
