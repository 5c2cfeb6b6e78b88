"""The window refit's cheap pieces against what they replace
(gateway/fusion/refit.py).

* ``sym3_inv_logdet`` (Cholesky written out) against numpy's ``inv`` and
  ``slogdet`` on random symmetric positive definite 3x3 matrices of
  plot-like scales and conditions, with the identity term added, on
  near-singular ones (1e11, where cofactors would lose every digit), and a
  singular or indefinite one gives NaN, not a number that looks right;
* ``_well_conditioned`` (eigenvalues) against ``np.linalg.cond(...) < 1e12``
  (the SVD) on normal-equation matrices like the fit's: well posed, one
  batch only (rank 3), no weight at all, and conditions either side of the
  threshold.
"""

from __future__ import annotations

import numpy as np
import pytest

from gateway.fusion.refit import _well_conditioned, sym3_inv_logdet
from tests.unit.test_fusion_refit import T_END, fed_with_a_bad_third_plot


def _spd(rng: np.random.Generator, n: int, cond: float) -> np.ndarray:
    """n random SPD 3x3 matrices of condition ``cond``, scales 1 m² to 1 km²."""
    q, _ = np.linalg.qr(rng.standard_normal((n, 3, 3)))
    ev = np.stack([np.ones(n), np.sqrt(cond) * np.ones(n), cond * np.ones(n)], axis=1)
    ev *= 10.0 ** rng.uniform(0.0, 6.0 - np.log10(cond) / 2.0, (n, 1))
    out: np.ndarray = (q * ev[:, None, :]) @ q.transpose(0, 2, 1)
    return out


def _full(six: np.ndarray) -> np.ndarray:
    i = np.array([[0, 1, 2], [1, 3, 4], [2, 4, 5]])
    out: np.ndarray = six[i].transpose(2, 0, 1)
    return out


@pytest.mark.parametrize("cond", [1.0, 1e3, 1e6])
def test_closed_form_inverse_and_logdet_match_numpy(cond: float) -> None:
    rng = np.random.default_rng(3)
    cov = _spd(rng, 2000, cond)
    add = rng.uniform(0.0, 50.0, 2000)
    info, logdet = sym3_inv_logdet(cov, add)
    ref = cov + add[:, None, None] * np.eye(3)
    inv = np.linalg.inv(ref)
    scale = np.abs(inv).max(axis=(1, 2))[:, None, None]
    np.testing.assert_allclose(_full(info) / scale, inv / scale, rtol=0, atol=1e-12 * max(cond, 1.0))
    np.testing.assert_allclose(logdet, np.linalg.slogdet(ref)[1], rtol=0, atol=1e-9)
    # Without the added term, and the upper triangle off by rounding: the
    # lower one is read.
    skew = cov.copy()
    skew[:, 0, 1] *= 1.0 + 1e-13
    info0, logdet0 = sym3_inv_logdet(skew)
    sym = cov
    inv0 = np.linalg.inv(sym)
    scale0 = np.abs(inv0).max(axis=(1, 2))[:, None, None]
    np.testing.assert_allclose(_full(info0) / scale0, inv0 / scale0, rtol=0, atol=1e-12 * max(cond, 1.0))
    np.testing.assert_allclose(logdet0, np.linalg.slogdet(sym)[1], rtol=0, atol=1e-9)


def test_closed_form_inverse_of_near_singular_matrices_is_still_an_inverse() -> None:
    rng = np.random.default_rng(4)
    cov = _spd(rng, 500, 1e11)
    info, logdet = sym3_inv_logdet(cov)
    # Any inverse's error grows as the condition times the rounding (1e-5
    # here, numpy's too): compare relative to the inverse's size.
    inv = np.linalg.inv(cov)
    scale = np.abs(inv).max(axis=(1, 2))[:, None, None]
    np.testing.assert_allclose(_full(info) / scale, inv / scale, rtol=0, atol=1e-3)
    np.testing.assert_allclose(logdet, np.linalg.slogdet(cov)[1], rtol=0, atol=1e-4)
    # Not positive definite: NaN or infinite, never a finite answer.
    swap = [[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]]  # eigenvalues 3, -1, 1
    bad = np.array([np.diag([1.0, -1.0, 1.0]), np.zeros((3, 3)), swap])
    info_bad, ld_bad = sym3_inv_logdet(bad)
    assert not np.isfinite(info_bad).all(axis=0).any()
    assert not np.isfinite(ld_bad).any()


def _normal_eq(rng: np.random.Generator, times: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Σ w [[I, tI], [tI, t²I]] over plots at ``times`` with random
    informations: the fit's matrix for one track."""
    out = np.zeros((6, 6))
    for t, w in zip(times, weights, strict=True):
        a = rng.standard_normal((3, 3))
        info = a @ a.T / 100.0 + np.eye(3) * 1e-4
        h = np.block([[np.eye(3), t * np.eye(3)]])
        out += w * h.T @ info @ h
    return out


def test_eigenvalue_condition_test_agrees_with_np_linalg_cond() -> None:
    rng = np.random.default_rng(5)
    mats = [
        _normal_eq(rng, -np.arange(60.0), np.ones(60)),  # a full window
        _normal_eq(rng, np.array([-3.0, -3.0, -3.0]), np.ones(3)),  # one batch: rank 3
        np.zeros((6, 6)),  # no weight left
        _normal_eq(rng, -np.arange(60.0), np.full(60, 1e-300)),  # underflowing weights
        _normal_eq(rng, np.array([0.0, -1e-3]), np.ones(2)),  # two instants 1 ms apart
    ]
    # Conditions either side of the threshold, by construction (none within
    # rounding of 1e12 itself, where either answer is right).
    conds = [1e10, 1e11, 5e11, 9e11, 1.1e12, 2e12, 1e13, 1e14]
    q, _ = np.linalg.qr(rng.standard_normal((len(conds), 6, 6)))
    for c, qi in zip(conds, q, strict=True):
        mats.append((qi * np.geomspace(1.0, c, 6)) @ qi.T)
    big = np.array(mats)
    with np.errstate(all="ignore"):
        ref = np.linalg.cond(big) < 1e12
    np.testing.assert_array_equal(_well_conditioned(big), ref)
    assert ref[0]
    assert not ref[1]
    assert not ref[2]
    assert ref.sum() >= 5
    assert (~ref).sum() >= 5


def test_a_plot_of_indefinite_covariance_is_kept_out_of_the_fit() -> None:
    """A finite covariance that is not positive definite (a broken sensor
    model) would give NaN under the Cholesky: the window refuses the plot,
    and the tracks are still refitted from the others."""
    e, w, traj = fed_with_a_bad_third_plot(cov=np.diag([1e4, -1e4, 1e4]))
    assert all(b[2].shape[0] == 2 for b in w.batches)
    assert w.run(e, T_END) == 2
    err = np.linalg.norm(e.store.x[:2, :3] - traj[-1, :, :3], axis=1)
    assert err.max() < 40.0, err
