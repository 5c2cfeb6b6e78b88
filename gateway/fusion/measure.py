"""Plot measurement model on stacked rows, over :mod:`hilgw.geo`.

A plot is (range, azimuth, elevation, range rate) with 1-sigma noise; a NaN
range rate (or sigma) means the sensor gave none. To keep one fixed
dimension for the whole batch, an absent range rate becomes a zero row of H,
a zero innovation and a unit variance: S is then block-diagonal with a 1 the
update ignores (that row's gain column is P·0ᵀ·S⁻¹ = 0), which is exactly the
3-D update. The gate uses the chi-square quantile of the true dimension.
"""

from __future__ import annotations

import numpy as np

from gateway.fusion.api import F64
from hilgw.geo import angle_diff, ecef_to_polar, polar_jacobian, polar_to_ecef


def plot_residual(
    origin: F64, to_local: F64, x: F64, polar: F64, sigma: F64, bias: F64
) -> tuple[F64, F64, F64]:
    """Innovation ν (N, 4), Jacobian H (N, 4, 6) and noise R (N, 4, 4).

    ``bias`` (N, 4) is the sensor's estimated registration bias, subtracted
    from the measurement (z - b - h(x)); zeros when none is estimated.
    Azimuth residuals wrap to (-π, π] (geo.angle_diff).
    """
    h = ecef_to_polar(origin, to_local, x)
    H = polar_jacobian(origin, to_local, x)
    z = polar - bias
    nu = z - h
    nu[:, 1] = angle_diff(z[:, 1], h[:, 1])
    rr = np.isfinite(polar[:, 3]) & np.isfinite(sigma[:, 3])
    nu[:, 3] = np.where(rr, nu[:, 3], 0.0)
    H[:, 3, :] *= rr[:, None]
    var = np.square(sigma)
    var[:, 3] = np.where(rr, var[:, 3], 1.0)
    R = np.zeros((x.shape[0], 4, 4))
    i4 = np.arange(4)
    R[:, i4, i4] = var
    return nu, H, R


def plot_dims(polar: F64, sigma: F64) -> F64:
    """Measurement dimension per row: 4 with a range rate, else 3."""
    out: F64 = np.where(np.isfinite(polar[:, 3]) & np.isfinite(sigma[:, 3]), 4.0, 3.0)
    return out


def plot_to_state(origin: F64, to_local: F64, polar: F64, sigma: F64, speed_sigma: float) -> tuple[F64, F64]:
    """One-plot track start: position from the plot, velocity 0 ± speed_sigma.

    Delegates to :func:`hilgw.geo.polar_to_ecef` with angle rates absent
    (so the two tangential velocity components get ``speed_sigma``); the
    radial one comes from the range rate when there is one, else it also
    gets ``speed_sigma``.
    """
    n = polar.shape[0]
    p6 = np.full((n, 6), np.nan)
    s6 = np.full((n, 6), np.nan)
    p6[:, :4] = polar
    s6[:, :4] = sigma
    return polar_to_ecef(origin, to_local, p6, s6, np.zeros(n, bool), tangential_sigma_mps=speed_sigma)
