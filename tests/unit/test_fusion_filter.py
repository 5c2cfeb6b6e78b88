"""Filter maths of the fusion engine against closed forms and Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from gateway.fusion.config import FusionConfig
from gateway.fusion.kalman import covariance_intersection, ekf_update, nees
from gateway.fusion.measure import plot_residual, plot_to_state
from gateway.fusion.motion import (
    G0,
    ecef_gravity,
    flat_gravity,
    imm_combine,
    imm_mix,
    markov_matrix,
    predict_ballistic,
    predict_cv,
)
from hilgw.errors import ConfigError
from hilgw.geo import ecef_to_polar


def _spd(rng: np.random.Generator, n: int) -> np.ndarray:
    a = rng.standard_normal((n, 6, 6))
    return a @ np.swapaxes(a, 1, 2) + 0.5 * np.eye(6)


@pytest.mark.parametrize("dt", [0.0, 0.3, 2.0, -1.5])
def test_predict_cv_equals_F_P_Ft_plus_Q(dt: float) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6))
    P = _spd(rng, 4)
    q = 3.0
    F = np.eye(6)
    F[:3, 3:] = dt * np.eye(3)
    a = abs(dt)
    # Q of the continuous white-noise acceleration model (BLK eq. 6.2.2-12);
    # for a backward step F(-Δ) Q(Δ) F(-Δ)ᵀ flips the sign of the cross term.
    Q = q * np.block(
        [
            [a**3 / 3 * np.eye(3), np.sign(dt) * dt * dt / 2 * np.eye(3)],
            [np.sign(dt) * dt * dt / 2 * np.eye(3), a * np.eye(3)],
        ]
    )
    xo, po = predict_cv(x, P, np.full(4, dt), q)
    np.testing.assert_allclose(xo, x @ F.T)
    np.testing.assert_allclose(po, F @ P @ F.T + Q, atol=1e-12)


def test_ballistic_flat_gravity_is_exact_parabola() -> None:
    x = np.array([[0.0, 0.0, 1000.0, 100.0, 0.0, 50.0]])
    xo, _ = predict_ballistic(x, np.eye(6)[None], np.array([2.0]), 0.0, flat_gravity())
    np.testing.assert_allclose(
        xo[0], [200.0, 0.0, 1000.0 + 100.0 - 0.5 * G0 * 4.0, 100.0, 0.0, 50.0 - 2 * G0]
    )


def test_ecef_gravity_magnitudes() -> None:
    # Effective gravity on the WGS-84 ellipsoid (Somigliana): 9.7803 m/s² at
    # the equator, 9.8322 m/s² at the poles, for a body at rest in ECEF.
    x = np.array([[6_378_137.0, 0, 0, 0, 0, 0], [0, 0, 6_356_752.3, 0, 0, 0]])
    g = np.linalg.norm(ecef_gravity()(x), axis=1)
    np.testing.assert_allclose(g, [9.7803, 9.8322], atol=2e-3)
    # The Coriolis term of a body moving east at the equator points up (out).
    moving = np.array([[6_378_137.0, 0, 0, 0, 1000.0, 0]])
    assert ecef_gravity()(moving)[0, 0] > ecef_gravity()(x[:1])[0, 0]


def test_ekf_static_target_matches_information_form() -> None:
    # Linear position measurements of a static target: after n updates the
    # information is P0⁻¹ + n Hᵀ R⁻¹ H and the mean is its weighted average.
    rng = np.random.default_rng(2)
    truth = np.array([100.0, -50.0, 20.0, 0.0, 0.0, 0.0])
    P0 = np.diag([1e6, 1e6, 1e6, 1e2, 1e2, 1e2])
    H = np.hstack([np.eye(3), np.zeros((3, 3))])[None]
    R = np.diag([4.0, 9.0, 16.0])[None]
    x, P = np.zeros((1, 6)), P0[None].copy()
    zs = truth[:3] + rng.standard_normal((20, 3)) * np.sqrt(np.diag(R[0]))
    for z in zs:
        nu = (z - x[0, :3])[None]
        x, P, _, _ = ekf_update(x, P, nu, H, R)
    info = np.linalg.inv(P0) + 20 * H[0].T @ np.linalg.inv(R[0]) @ H[0]
    np.testing.assert_allclose(P[0], np.linalg.inv(info), rtol=1e-6, atol=1e-9)
    expect = np.linalg.inv(info) @ (H[0].T @ np.linalg.inv(R[0]) @ zs.sum(0))
    np.testing.assert_allclose(x[0], expect, rtol=1e-6, atol=1e-6)


def test_plot_update_static_target_noise_free_converges_to_truth() -> None:
    origin = np.zeros(3)
    tl = np.eye(3)
    truth = np.array([[80e3, 30e3, 10e3, 0.0, 0.0, 0.0]])
    z = ecef_to_polar(origin, tl, truth)
    z[:, 3] = np.nan
    sig = np.array([[30.0, 1e-3, 1e-3, np.nan]])
    x, P = plot_to_state(origin, tl, z + np.array([[200.0, 0.003, -0.002, 0.0]]), sig, 100.0)
    for _ in range(200):
        nu, H, R = plot_residual(origin, tl, x, z, sig, np.zeros((1, 4)))
        x, P, _, _ = ekf_update(x, P, nu, H, R)
    np.testing.assert_allclose(x[0, :3], truth[0, :3], atol=5.0)


@pytest.mark.parametrize("runs", [60])
def test_ncv_nees_within_chi2_bounds(runs: int) -> None:
    """Monte Carlo NEES of the plot EKF on NCV truth with the filter's own q.

    The runs are the rows of one stacked filter. The average NEES over runs
    must lie in the two-sided 99 % chi-square interval of 6·runs dof / runs
    (BLK §5.4.2) at (nearly) every step, and its time average too.
    """
    rng = np.random.default_rng(3)
    q, dt, steps = 5.0, 0.5, 40
    origin, tl = np.zeros(3), np.eye(3)
    sig = np.array([20.0, 1e-3, 1e-3, np.nan])
    xt = np.tile([60e3, 20e3, 8e3, -300.0, 100.0, 10.0], (runs, 1))
    _, Q = predict_cv(np.zeros((1, 6)), np.zeros((1, 6, 6)), np.array([dt]), q)
    L = np.linalg.cholesky(Q[0])
    z = ecef_to_polar(origin, tl, xt) + rng.standard_normal((runs, 4)) * np.nan_to_num(sig)
    z[:, 3] = np.nan
    x, P = plot_to_state(origin, tl, z, np.tile(sig, (runs, 1)), 400.0)
    x[:, 3:] = xt[:, 3:] + rng.standard_normal((runs, 3)) * 400.0  # consistent velocity prior
    lo, hi = chi2.ppf([0.005, 0.995], 6 * runs) / runs
    means = []
    for _ in range(steps):
        xt = xt.copy()
        xt[:, :3] += dt * xt[:, 3:]
        xt += rng.standard_normal((runs, 6)) @ L.T
        x, P = predict_cv(x, P, np.full(runs, dt), q)
        z = ecef_to_polar(origin, tl, xt) + rng.standard_normal((runs, 4)) * np.nan_to_num(sig)
        z[:, 3] = np.nan
        nu, H, R = plot_residual(origin, tl, x, z, np.tile(sig, (runs, 1)), np.zeros((runs, 4)))
        x, P, _, _ = ekf_update(x, P, nu, H, R)
        means.append(float(nees(xt, x, P).mean()))
    m = np.array(means)
    assert np.mean((m > lo) & (m < hi)) >= 0.9, m
    assert 5.0 < m.mean() < 7.0


def test_covariance_intersection_properties() -> None:
    rng = np.random.default_rng(4)
    P1, P2 = _spd(rng, 5), _spd(rng, 5)
    x1, x2 = rng.standard_normal((5, 6)), rng.standard_normal((5, 6))
    x, P, w = covariance_intersection(x1, P1, x2, P2)
    for i in range(5):
        info = w[i] * np.linalg.inv(P1[i]) + (1 - w[i]) * np.linalg.inv(P2[i])
        np.testing.assert_allclose(np.linalg.inv(P[i]), info, rtol=1e-8)
        # CI never claims more than the better of the two inputs... up to ω.
        assert np.trace(P[i]) <= max(np.trace(P1[i]), np.trace(P2[i])) + 1e-9
    # Same estimate twice: CI returns it unchanged (no false confidence gain,
    # unlike a Kalman fusion that would halve P).
    x, P, _ = covariance_intersection(x1, P1, x1, P1)
    np.testing.assert_allclose(x, x1, atol=1e-9)
    np.testing.assert_allclose(P, P1, rtol=1e-9)


def test_imm_mix_and_combine_identity_cases() -> None:
    rng = np.random.default_rng(5)
    P = _spd(rng, 3)
    x = rng.standard_normal((3, 6))
    xm = np.stack([x, x], axis=1)
    Pm = np.stack([P, P], axis=1)
    mu = np.array([[0.3, 0.7]] * 3)
    x0, p0, cbar = imm_mix(xm, Pm, mu, markov_matrix(2, np.full(3, 1.0), 0.1))
    np.testing.assert_allclose(x0, xm)
    np.testing.assert_allclose(p0, Pm)
    np.testing.assert_allclose(cbar.sum(1), 1.0)
    xc, pc = imm_combine(np.stack([x, x + 1.0], 1), Pm, np.array([[0.5, 0.5]] * 3))
    np.testing.assert_allclose(xc, x + 0.5)
    np.testing.assert_allclose(pc, P + 0.25, rtol=1e-12)  # spread of the means adds 0.25 everywhere


def test_config_check_names_field() -> None:
    with pytest.raises(ConfigError, match=r"fusion\.models"):
        FusionConfig(models=("kalman",), imm_initial=(1.0,)).check()
    with pytest.raises(ConfigError, match="confirm_m"):
        FusionConfig(confirm_m=6, confirm_n=5).check()
    FusionConfig().check()


def test_engine_from_params() -> None:
    from gateway.fusion.engine import Engine

    e = Engine.from_params({"models": ["ncv"], "imm_initial": [1.0], "q_ncv": 2.0, "gravity": "flat"})
    assert e.cfg.models == ("ncv",)
    assert e.cfg.q_ncv == 2.0
    with pytest.raises(ConfigError, match="unknown keys"):
        Engine.from_params({"q": 1.0})
