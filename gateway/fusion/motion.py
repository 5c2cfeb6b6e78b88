"""Motion models and the IMM mixing step, batched over stacked tracks.

State order is (x, y, z, vx, vy, vz). Every function takes per-row time steps
``dt`` (N,), so tracks at different times are predicted in one call.

Models (Bar-Shalom, Li & Kirubarajan, *Estimation with Applications to
Tracking and Navigation*, 2001 — "BLK" below):

* nearly-constant velocity (NCV, BLK §6.2.2, continuous white-noise
  acceleration): F = [[I, dt I], [0, I]],
  Q = q [[dt³/3 I, dt²/2 I], [dt²/2 I, dt I]];
* ballistic: the same F and Q (with its own, smaller q) plus a known
  acceleration a(x) held constant over the step: p += a dt²/2, v += a dt.
  The acceleration's own Jacobian (gravity gradient, ~3e-6 s⁻² near the
  Earth) is left out of F: over a radar step of seconds it moves the
  covariance by far less than the process noise does.

The acceleration is a parameter (an :data:`AccelFn`): :func:`flat_gravity` for
a local flat frame with z up (the bench), :func:`ecef_gravity` for the
gateway's ECEF frame (central term + J2 + the rotating frame's centrifugal
and Coriolis terms, since ECEF turns with the Earth).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from gateway.fusion.api import F64

AccelFn = Callable[[F64], F64]
"""Acceleration of an unpowered body: states (N, 6) -> (N, 3) in m/s²."""

# WGS-84 (NIMA TR8350.2, table 3.1 and 3.4): GM, semi-major axis, rotation
# rate and the second zonal harmonic J2 = -√5 C̄20.
GM_WGS84 = 3.986004418e14
A_WGS84 = 6_378_137.0
OMEGA_EARTH = 7.292115e-5
J2_WGS84 = 1.08262982e-3
G0 = 9.80665


def flat_gravity(g: float = G0) -> AccelFn:
    """Uniform gravity -g along z (a local flat frame with z up)."""

    def accel(x: F64) -> F64:
        a = np.zeros((x.shape[0], 3))
        a[:, 2] = -g
        return a

    return accel


def ecef_gravity(j2: bool = True, rotating: bool = True) -> AccelFn:
    """Gravitation (+ J2) of WGS-84 in ECEF, plus the rotating-frame terms.

    Central term -GM r / |r|³; J2 term per Vallado, *Fundamentals of
    Astrodynamics*, 4th ed., eq. 8-30. With ``rotating`` the apparent
    accelerations of the Earth-fixed frame are added: centrifugal
    -ω×(ω×r) and Coriolis -2 ω×v, ω = (0, 0, Ω).
    """

    def accel(x: F64) -> F64:
        r = x[:, :3]
        r2 = np.einsum("ni,ni->n", r, r)
        rn = np.sqrt(r2)
        a: F64 = -(GM_WGS84 / (r2 * rn))[:, None] * r
        if j2:
            z2 = np.square(r[:, 2]) / r2
            k = 1.5 * J2_WGS84 * GM_WGS84 * A_WGS84**2 / (r2 * r2 * rn)
            a[:, 0] -= k * r[:, 0] * (1.0 - 5.0 * z2)
            a[:, 1] -= k * r[:, 1] * (1.0 - 5.0 * z2)
            a[:, 2] -= k * r[:, 2] * (3.0 - 5.0 * z2)
        if rotating:
            w2 = OMEGA_EARTH**2
            a[:, 0] += w2 * r[:, 0] + 2.0 * OMEGA_EARTH * x[:, 4]
            a[:, 1] += w2 * r[:, 1] - 2.0 * OMEGA_EARTH * x[:, 3]
        return a

    return accel


def altitude_from_gravity(accel: AccelFn, x: F64) -> F64:
    """Height [m] above a sphere of the WGS-84 equatorial radius, read from
    the strength of the gravity model at each state (N, 6): r = sqrt(GM/|g|).

    The engine's frame is whatever its ``accel`` says (ECEF, or a local frame
    with the Earth's centre elsewhere), so the field is the one thing that
    knows where the Earth is. A uniform field (``flat_gravity``) reads as
    about 0 m everywhere. The field is taken at rest (velocity zeroed: the
    Coriolis term of the rotating frame, 2Ωv, is 4 % of g at 3 km/s); J2 and
    the centrifugal term move |g| by < 0.4 %, i.e. the height by < 15 km:
    enough to tell exo-atmospheric from air.
    """
    rest = np.zeros_like(x)
    rest[:, :3] = x[:, :3]
    g = np.linalg.norm(accel(rest), axis=1)
    out: F64 = np.sqrt(GM_WGS84 / np.maximum(g, 1e-12)) - A_WGS84
    return out


def seconds(ns: npt.NDArray[np.int64]) -> F64:
    """Durations in int64 nanoseconds to float64 seconds."""
    return np.asarray(ns, dtype=np.float64) * 1e-9


def predict_cv(x: F64, P: F64, dt: F64, q: float) -> tuple[F64, F64]:
    """NCV prediction of (N, 6) states and (N, 6, 6) covariances by ``dt`` (N,).

    Written blockwise (P = [[A, B], [Bᵀ, C]] in 3x3 blocks) instead of F P Fᵀ
    with full 6x6 products: the same numbers at a third of the flops, which
    matters at thousands of tracks per scan. A negative dt retrodicts (the
    process noise is still added, with |dt|: uncertainty grows both ways).
    """
    d = dt[:, None, None]
    xo = x.copy()
    xo[:, :3] += dt[:, None] * x[:, 3:]
    a = P[:, :3, :3]
    b = P[:, :3, 3:]
    bt = P[:, 3:, :3]
    c = P[:, 3:, 3:]
    po = np.empty_like(P)
    po[:, :3, :3] = a + d * (b + bt) + (d * d) * c
    po[:, :3, 3:] = b + d * c
    po[:, 3:, :3] = bt + d * c
    po[:, 3:, 3:] = c
    ad = np.abs(dt)
    q3 = q * ad**3 / 3.0
    q2 = q * np.sign(dt) * dt * dt / 2.0
    q1 = q * ad
    i3 = np.arange(3)
    po[:, i3, i3] += q3[:, None]
    po[:, i3, i3 + 3] += q2[:, None]
    po[:, i3 + 3, i3] += q2[:, None]
    po[:, i3 + 3, i3 + 3] += q1[:, None]
    return xo, po


def predict_ballistic(x: F64, P: F64, dt: F64, q: float, accel: AccelFn) -> tuple[F64, F64]:
    """Ballistic prediction: NCV plus the acceleration ``accel(x)`` over ``dt``.

    The acceleration is taken at the start of the step (explicit Euler on a,
    exact for uniform gravity). For steps of a few seconds in the Earth's
    field the error is below a metre; longer coasts are split by the caller's
    scan rate anyway.
    """
    xo, po = predict_cv(x, P, dt, q)
    a = accel(x)
    xo[:, :3] += (0.5 * dt * dt)[:, None] * a
    xo[:, 3:] += dt[:, None] * a
    return xo, po


def markov_matrix(n_models: int, dt: F64, rate_hz: float | tuple[float, ...] | F64) -> F64:
    """IMM transition probabilities π_ij(dt) (N, M, M): model i stays with
    exp(-rate_i·dt) and leaves evenly to the others. ``rate_hz`` is one rate
    for all models, one per model (a manoeuvre ends sooner than a straight
    leg, so the manoeuvre model's exit rate is the larger), or an (N, M)
    array, one per row and model (gateway/fusion/exo.py)."""
    if n_models == 1:
        return np.ones((dt.shape[0], 1, 1))
    rate = np.broadcast_to(np.asarray(rate_hz, np.float64), (dt.shape[0], n_models))
    stay = np.exp(-np.abs(dt)[:, None] * rate)  # (N, M)
    off = (1.0 - stay) / (n_models - 1)
    pi = np.repeat(off[:, :, None], n_models, axis=2)
    idx = np.arange(n_models)
    pi[:, idx, idx] = stay
    return pi


def imm_mix(xm: F64, Pm: F64, mu: F64, pi: F64) -> tuple[F64, F64, F64]:
    """IMM interaction (BLK §11.6.6, step 1): mixed initial conditions.

    ``xm`` (N, M, 6), ``Pm`` (N, M, 6, 6), ``mu`` (N, M), ``pi`` (N, M, M) with
    π_ij = P(model j at k | model i at k-1). Returns the mixed states, their
    covariances and the predicted model probabilities c̄_j = Σ_i π_ij μ_i.
    """
    cbar = np.einsum("nij,ni->nj", pi, mu)
    w = pi * mu[:, :, None] / np.maximum(cbar, 1e-300)[:, None, :]  # μ_{i|j}
    x0 = np.einsum("nij,nid->njd", w, xm)
    dx = xm[:, :, None, :] - x0[:, None, :, :]  # (N, i, j, 6)
    spread = Pm[:, :, None, :, :] + dx[..., :, None] * dx[..., None, :]
    p0 = np.einsum("nij,nijab->njab", w, spread)
    return x0, p0, cbar


def imm_combine(xm: F64, Pm: F64, mu: F64) -> tuple[F64, F64]:
    """Moment-matched combination of the model estimates (BLK eq. 11.6.6-20/21)."""
    x = np.einsum("nm,nmd->nd", mu, xm)
    dx = xm - x[:, None, :]
    p = np.einsum("nm,nmab->nab", mu, Pm + dx[..., :, None] * dx[..., None, :])
    return x, p
