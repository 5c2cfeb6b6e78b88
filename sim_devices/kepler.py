"""Generic two-body free flight for the ballistic targets of a scenario.

The model, stated once (it is a *generic* test-bench trajectory, not a model
of any real missile): point-mass gravity of a round Earth (WGS-84 GM), no
drag, no thrust phase. The body coasts on a Keplerian ellipse from the launch
point to the impact point. The Earth rotates (WGS-84 rate) under that ellipse,
so the trajectory is solved in an inertial frame (ECI) and seen in ECEF.

The ECI frame used here is the ECEF frame frozen at scenario time t = 0: it
shares the z axis with ECEF and ECEF turns away from it by θ(t) = ω t. Only
relative angles matter for the truth, so no sidereal time is needed.

* Lambert's problem (two positions, a time of flight -> the ellipse) is solved
  with the universal-variable formulation (Bate, Mueller & White,
  *Fundamentals of Astrodynamics*, §5.3; Curtis, *Orbital Mechanics for
  Engineering Students*, Algorithm 5.2), root-bracketed with
  :func:`scipy.optimize.brentq` (F(z) is monotonic in z).
* Propagation on the ellipse is Kepler's equation M = E - e sin E, solved by
  vectorised Newton iteration, and the perifocal position/velocity formulas
  (Curtis eqs. 3.x / Vallado, *Fundamentals of Astrodynamics and
  Applications*, §2.2), so states are exact up to float rounding.
* ECI -> ECEF: r_f = R3(θ) r_i, v_f = R3(θ) v_i - ω × r_f (the transport
  theorem).

Hand-written because no installed library solves Lambert's problem or
propagates a vectorised stack of ellipses (poliastro/lamberthub are not
dependencies and pull in astropy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq

__all__ = [
    "MU_EARTH",
    "OMEGA_EARTH",
    "Ellipse",
    "ecef_to_eci",
    "eci_to_ecef",
    "jacobi_energy",
    "propagate",
    "solve_lambert",
]

F64 = npt.NDArray[np.float64]

#: WGS-84 geocentric gravitational constant GM, m³/s² (NIMA TR8350.2 §3.2.3).
MU_EARTH = 3.986004418e14
#: WGS-84 nominal mean angular velocity of the Earth, rad/s (TR8350.2 §3.2.4).
OMEGA_EARTH = 7.292115e-5

_TWO_PI = 2.0 * np.pi


def _rot3(theta: F64) -> F64:
    """R3(θ) stacked (..., 3, 3): coordinates in a frame turned by θ about z."""
    c, s = np.cos(theta), np.sin(theta)
    z, o = np.zeros_like(theta), np.ones_like(theta)
    return np.stack(
        [np.stack([c, s, z], -1), np.stack([-s, c, z], -1), np.stack([z, z, o], -1)],
        -2,
    )


def eci_to_ecef(t_s: npt.ArrayLike, x_eci: npt.ArrayLike, omega: float = OMEGA_EARTH) -> F64:
    """ECI state(s) (..., 6) at scenario time(s) ``t_s`` -> ECEF (..., 6)."""
    x = np.asarray(x_eci, dtype=np.float64)
    rot = _rot3(omega * np.asarray(t_s, dtype=np.float64))
    r = np.einsum("...ij,...j->...i", rot, x[..., :3])
    v = np.einsum("...ij,...j->...i", rot, x[..., 3:])
    w = np.array([0.0, 0.0, omega])
    out = np.empty(np.broadcast_shapes(x.shape, (*r.shape[:-1], 6)))
    out[..., :3] = r
    out[..., 3:] = v - np.cross(w, r)
    return out


def ecef_to_eci(t_s: npt.ArrayLike, x_ecef: npt.ArrayLike, omega: float = OMEGA_EARTH) -> F64:
    """ECEF state(s) (..., 6) at scenario time(s) ``t_s`` -> ECI (..., 6)."""
    x = np.asarray(x_ecef, dtype=np.float64)
    rot_t = np.swapaxes(_rot3(omega * np.asarray(t_s, dtype=np.float64)), -1, -2)
    w = np.array([0.0, 0.0, omega])
    v_inertial_f = x[..., 3:] + np.cross(w, x[..., :3])
    out = np.empty(np.broadcast_shapes(x.shape, (*rot_t.shape[:-2], 6)))
    out[..., :3] = np.einsum("...ij,...j->...i", rot_t, x[..., :3])
    out[..., 3:] = np.einsum("...ij,...j->...i", rot_t, v_inertial_f)
    return out


def jacobi_energy(x_ecef: npt.ArrayLike, mu: float = MU_EARTH, omega: float = OMEGA_EARTH) -> F64:
    """The Jacobi integral per unit mass in the rotating frame (..., 6) -> (...).

    C = |v|²/2 - μ/|r| - |ω × r|²/2 is conserved for free flight in a
    uniformly rotating frame (no drag); with ω = 0 it is the orbital energy.
    """
    x = np.asarray(x_ecef, dtype=np.float64)
    r = x[..., :3]
    v = x[..., 3:]
    wxr = np.cross(np.array([0.0, 0.0, omega]), r)
    out: F64 = (
        0.5 * np.einsum("...i,...i->...", v, v)
        - mu / np.linalg.norm(r, axis=-1)
        - 0.5 * np.einsum("...i,...i->...", wxr, wxr)
    )
    return out


def _stumpff_c(z: float) -> float:
    if z > 1e-6:
        # 1 - cos x = 2 sin²(x/2): no cancellation near z = 4π², where C -> 0.
        return float(2.0 * np.sin(0.5 * np.sqrt(z)) ** 2 / z)
    if z < -1e-6:
        return float((np.cosh(np.sqrt(-z)) - 1.0) / -z)
    return 0.5 - z / 24.0 + z * z / 720.0


def _stumpff_s(z: float) -> float:
    if z > 1e-6:
        sz = np.sqrt(z)
        return float((sz - np.sin(sz)) / sz**3)
    if z < -1e-6:
        sz = np.sqrt(-z)
        return float((np.sinh(sz) - sz) / sz**3)
    return 1.0 / 6.0 - z / 120.0 + z * z / 5040.0


def solve_lambert(r1: F64, r2: F64, tof_s: float, mu: float = MU_EARTH) -> F64:
    """Velocity at ``r1`` (ECI, (3,)) of the short-way ellipse reaching ``r2`` after ``tof_s``.

    Universal variables (Curtis Alg. 5.2): with A = sin Δθ √(r1 r2 / (1 - cos Δθ)),
    y(z) = r1 + r2 + A (z S(z) - 1) / √C(z) and
    F(z) = (y/C)^{3/2} S + A √y - √μ Δt, the root z* gives
    f = 1 - y/r1, g = A √(y/μ), v1 = (r2 - f r1) / g.

    Only elliptic (z > 0), single-revolution, short-way (Δθ < π) transfers are
    accepted: a ballistic flight between two surface points is exactly that.
    Raises ValueError (its message is a reason for a config error) otherwise.
    """
    n1, n2 = float(np.linalg.norm(r1)), float(np.linalg.norm(r2))
    cos_dth = float(np.clip(np.dot(r1, r2) / (n1 * n2), -1.0, 1.0))
    dth = float(np.arccos(cos_dth))
    if dth < 1e-7:
        raise ValueError("launch and impact points coincide")
    if dth > np.pi - 1e-6:
        raise ValueError("launch and impact points are antipodal (transfer plane undefined)")
    a_coef = np.sin(dth) * np.sqrt(n1 * n2 / (1.0 - cos_dth))
    sqrt_mu = np.sqrt(mu)

    def y(z: float) -> float:
        return float(n1 + n2 + a_coef * (z * _stumpff_s(z) - 1.0) / np.sqrt(_stumpff_c(z)))

    def f(z: float) -> float:
        yz = y(z)
        c, s = _stumpff_c(z), _stumpff_s(z)
        return float((yz / c) ** 1.5 * s + a_coef * np.sqrt(yz) - sqrt_mu * tof_s)

    z_lo, z_hi = 1e-9, _TWO_PI**2 * (1.0 - 1e-6)
    if y(z_lo) <= 0.0 or f(z_lo) >= 0.0:
        raise ValueError(
            f"{tof_s:g} s is too short for an elliptic free flight between these points "
            "(the trajectory would be hyperbolic)"
        )
    if f(z_hi) <= 0.0:
        raise ValueError(f"{tof_s:g} s is too long for a single-revolution free flight")
    z = float(brentq(f, z_lo, z_hi, xtol=1e-14, rtol=1e-15, maxiter=500))
    yz = y(z)
    f_lag = 1.0 - yz / n1
    g_lag = a_coef * np.sqrt(yz / mu)
    out: F64 = (r2 - f_lag * r1) / g_lag
    return out


@dataclass(frozen=True, slots=True)
class Ellipse:
    """A Keplerian ellipse in ECI with its epoch: enough to propagate exactly.

    ``p_hat``/``q_hat`` are the perifocal unit vectors (towards periapsis, and
    90° ahead in the direction of motion); ``m0`` is the mean anomaly at
    scenario time ``t0_s``.
    """

    a: float
    e: float
    n: float  # mean motion √(μ/a³), rad/s
    m0: float
    t0_s: float
    p_hat: F64
    q_hat: F64
    mu: float

    @staticmethod
    def from_state(r: F64, v: F64, t0_s: float, mu: float = MU_EARTH) -> Ellipse:
        """Orbital elements of an ECI state (Vallado Alg. 9, restricted to ellipses)."""
        rn = float(np.linalg.norm(r))
        h = np.cross(r, v)
        e_vec = np.cross(v, h) / mu - r / rn
        e = float(np.linalg.norm(e_vec))
        energy = 0.5 * float(np.dot(v, v)) - mu / rn
        if energy >= 0.0:
            raise ValueError("the state is not on an ellipse (energy >= 0)")
        if e >= 1.0 - 1e-12:
            raise ValueError("degenerate (rectilinear) ellipse")
        a = -mu / (2.0 * energy)
        h_hat = h / np.linalg.norm(h)
        # Circular: any in-plane axis will do as "periapsis"; take the state's direction.
        p_hat = e_vec / e if e > 1e-10 else r / rn
        q_hat = np.cross(h_hat, p_hat)
        # Eccentric anomaly from the perifocal coordinates of r (Vallado eq. 2-x).
        xp, yp = float(np.dot(r, p_hat)), float(np.dot(r, q_hat))
        cos_e = xp / a + e
        sin_e = yp / (a * np.sqrt(1.0 - e * e))
        ecc = float(np.arctan2(sin_e, cos_e))
        m0 = ecc - e * np.sin(ecc)
        return Ellipse(
            a=a, e=e, n=float(np.sqrt(mu / a**3)), m0=float(m0), t0_s=t0_s,
            p_hat=p_hat, q_hat=q_hat, mu=mu,
        )  # fmt: skip

    def apoapsis_time(self) -> float:
        """The first scenario time after ``t0_s`` at which the body is at apoapsis (E = π)."""
        dm = np.mod(np.pi - self.m0, _TWO_PI)
        return self.t0_s + float(dm) / self.n


def propagate(a: F64, e: F64, n: F64, m0: F64, t0: F64, p_hat: F64, q_hat: F64, mu: float, t_s: F64) -> F64:
    """ECI states (..., 6) of stacked ellipses at times ``t_s`` (broadcast with the elements).

    Kepler's equation E - e sin E = M solved by Newton's method from E = M
    (e < 1; converges monotonically from that start for e ≤ 0.99, Vallado §2.2).
    """
    m = m0 + n * (t_s - t0)
    ecc = m + e * np.sin(m)
    for _ in range(50):
        d = (ecc - e * np.sin(ecc) - m) / (1.0 - e * np.cos(ecc))
        ecc = ecc - d
        if np.all(np.abs(d) < 1e-14):
            break
    ce, se = np.cos(ecc), np.sin(ecc)
    b = np.sqrt(1.0 - e * e)
    r = a * (1.0 - e * ce)
    xp = a * (ce - e)
    yp = a * b * se
    k = np.sqrt(mu * a) / r
    vxp = -k * se
    vyp = k * b * ce
    out = np.empty((*np.broadcast_shapes(np.shape(m), np.shape(a)), 6))
    out[..., :3] = xp[..., None] * p_hat + yp[..., None] * q_hat
    out[..., 3:] = vxp[..., None] * p_hat + vyp[..., None] * q_hat
    return out
