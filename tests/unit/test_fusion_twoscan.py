"""The one-batch look-ahead (gateway/fusion/twoscan.py) on a hand-built crossing:
radar A resolves two objects in range only and its plots fit the two tracks
crossed better than straight; radar B, looking from 45° off, separates them in
a direction A cannot, and shows the crossing was wrong. With ``two_scan`` the
tracks swap their A updates back; plain GNN keeps the crossing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gateway.fusion.api import KIND_PLOT, ReportArrays
from gateway.fusion.config import FusionConfig
from gateway.fusion.engine import Engine
from gateway.fusion.motion import flat_gravity
from hilgw.geo import ecef_to_polar, local_geometry

S = 1_000_000_000
# A at the origin looks along x; B looks at the objects along (1, 1, 0)/√2.
SITES = np.array([[0.0, 0.0, 0.0], [100e3 - 70710.678, -70710.678, 0.0]])
#: Range 5 m, azimuth and elevation 10 mrad (1 km across at 100 km): each
#: radar separates objects only along its line of sight.
SIG = np.array([5.0, 1e-2, 1e-2, np.nan])
OBJ = np.array([[100_000.0, 0.0, 0.0, 0.0, 0.0, 0.0], [100_020.0, 300.0, 0.0, 0.0, 0.0, 0.0]])
CFG = FusionConfig(
    models=("ncv",),
    imm_initial=(1.0,),
    q_ncv=1e-4,
    confirm_m=1,
    merge_radius_m=0.0,
    two_scan=True,
    two_scan_margin=0.0,  # the scene is built to be decided by the look-ahead alone
)


def _plots(sensor: int, t_ns: int) -> ReportArrays:
    z = ecef_to_polar(SITES[sensor], np.eye(3), OBJ)
    z[:, 3] = np.nan
    n = len(OBJ)
    return ReportArrays(
        sensor=np.full(n, sensor, np.int32),
        sensor_track_id=np.zeros(n, np.uint32),
        kind=np.full(n, KIND_PLOT, np.int8),
        t_ns=np.full(n, t_ns, np.int64),
        x=np.full((n, 6), np.nan),
        P=np.full((n, 6, 6), np.nan),
        quality=np.ones(n),
        polar=z,
        polar_sigma=np.tile(SIG, (n, 1)),
    )


def _run(cfg: FusionConfig) -> tuple[Engine, np.ndarray]:
    """Two settled tracks, each 15 m off its object along x towards the other
    (so A's exact plots fit them crossed: 5 m each against 15 m straight), then
    one batch of A and one of B. Returns the engine and each track's distance
    to its own object (track i started on object i)."""
    e = Engine(cfg, accel=flat_gravity())
    for i, p in enumerate(SITES):
        e.add_sensor(local_geometry(f"r{i}", p))
    e.step(_plots(0, 0), 0)
    st = e.store
    assert st.n == 2
    ids = st.track_id[:2].copy()
    st.xm[:2, 0] = OBJ + np.array([[15.0, 0, 0, 0, 0, 0], [-15.0, 0, 0, 0, 0, 0]])
    st.Pm[:2, 0] = np.diag([10.0**2] * 3 + [0.1**2] * 3)
    st.x[:2], st.P[:2] = st.xm[:2, 0], st.Pm[:2, 0]
    e.step(_plots(0, S), S)
    pic = e.step(_plots(1, 2 * S), 2 * S)
    err = np.array(
        [np.linalg.norm(pic.x[pic.track_id == tid][0, :3] - OBJ[i, :3]) for i, tid in enumerate(ids)]
    )
    return e, err


def test_plain_gnn_keeps_the_crossed_assignment() -> None:
    e, err = _run(dataclasses.replace(CFG, two_scan=False))
    assert e.counters["two_scan_swaps"] == 0
    assert (err > 8.0).all(), err  # each track carries its neighbour's range


def test_look_ahead_swaps_the_crossed_plots_back() -> None:
    e, err = _run(CFG)
    assert e.counters["two_scan_swaps"] == 1
    assert (err < 5.0).all(), err


def test_mixture_cost_is_the_imm_likelihood_not_the_moment_matched_one() -> None:
    """Two models at one state, a tight (μ = 0.9) and a wide one (μ = 0.1): a plot
    10 m off costs -2 ln Σ μ_m N_m (against scipy), far less than under the
    moment-matched Gaussian, whose wide share flattens every pair alike."""
    from scipy.stats import multivariate_normal

    from gateway.fusion.measure import plot_residual
    from gateway.fusion.twoscan import mixture_cost

    cfg = FusionConfig(models=("ncv", "manoeuvre"), imm_initial=(0.9, 0.1))
    e = Engine(cfg, accel=flat_gravity())
    e.add_sensor(local_geometry("a", SITES[0]))
    e.step(_plots(0, 0), 0)
    st = e.store
    st.mu[:2] = [0.9, 0.1]
    st.xm[:2] = OBJ[:, None, :]
    st.Pm[:2, 0] = np.diag([3.0**2] * 3 + [1.0] * 3)
    st.Pm[:2, 1] = np.diag([300.0**2] * 3 + [100.0] * 3)
    r = _plots(0, 0)
    r.polar[:, 0] += 10.0  # 10 m long in range
    ti, rj = np.array([0, 1], np.intp), np.array([0, 1], np.intp)
    o, tl = e.origins[0], e.to_locals[0]
    got = mixture_cost(e, o, tl, 0, r, ti, rj, st.xm[ti], st.Pm[ti], np.zeros(2))
    want = []
    for i in range(2):
        like = 0.0
        for m in range(2):
            nu, H, R = plot_residual(
                o, tl, st.xm[i, m][None], r.polar[[i]], r.polar_sigma[[i]], np.zeros((1, 4))
            )
            S = (H[0] @ st.Pm[i, m] @ H[0].T + R[0])[:3, :3]
            like += st.mu[i, m] * multivariate_normal(np.zeros(3), S).pdf(nu[0, :3])
        want.append(-2.0 * np.log(like) - 3.0 * np.log(2.0 * np.pi))  # the cost leaves 2π out
    assert got == pytest.approx(want, rel=1e-6)
    # The single Gaussian of the combined state puts the wide model's spread on both models.
    xc, Pc = OBJ.copy(), np.einsum("m,nmij->nij", [0.9, 0.1], st.Pm[:2])
    nu, H, R = plot_residual(o, tl, xc, r.polar, r.polar_sigma, np.zeros((2, 4)))
    S = np.einsum("nij,njk,nlk->nil", H, Pc, H) + R
    comb = np.einsum("ni,nij,nj->n", nu, np.linalg.inv(S), nu) + np.linalg.slogdet(S)[1]
    assert (got < comb - 2.0).all()
