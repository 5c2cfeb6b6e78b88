"""Site geometry and the polar <-> ECEF measurement model, over stacked arrays.

Conventions (the seam is :class:`SensorGeometry`, which fusion takes as it is):

* A sensor's local frame is (forward, right, up). Azimuth is
  ``atan2(right, forward)``, clockwise from forward, wrapped to [0, 2π);
  elevation is ``asin(up / range)``. For an unrotated site forward is local
  north, right is local east and up is the WGS-84 ellipsoid normal at the site
  (geodetic, not geocentric, vertical), so azimuth is a compass bearing, the
  same convention as :func:`pymap3d.aer2ecef`.
* ``to_local`` (3, 3) is orthogonal and maps an ECEF *difference* vector to
  (forward, right, up). Forward-right-up is left-handed, so its determinant is
  -1 for a real site; nothing here relies on the sign.
* ECEF state order is (x, y, z, vx, vy, vz) in m and m/s. A site is static in
  ECEF, so the range rate is the projection of the ECEF velocity (already
  relative to the rotating Earth) on the line of sight; no Earth-rate term.

Every function takes stacks: ``origin`` is (3,) or (N, 3) and ``to_local`` is
(3, 3) or (N, 3, 3), so one call can mix sensors once the caller has gathered
per-row geometry by sensor index (see :func:`stack_geometries`). No Python loop
runs over rows. Singular points (a target at the site, or straight overhead
where azimuth is undefined) give inf/NaN in the Jacobians; a radar does not
report there, and fusion gates such rows out by their non-finite values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pymap3d

from hilgw.errors import ConfigError

__all__ = [
    "F64",
    "MEAN_EARTH_RADIUS_M",
    "TWO_PI",
    "SensorGeometry",
    "angle_diff",
    "ecef_to_polar",
    "enu_basis",
    "euler_zyx",
    "local_geometry",
    "polar_jacobian",
    "polar_to_ecef",
    "site_geometry",
    "stack_geometries",
    "wrap_2pi",
]

F64 = npt.NDArray[np.float64]
TWO_PI = 2.0 * np.pi
#: IUGG mean Earth radius R1 (m): the sphere of height <-> elevation relations,
#: radar horizons and great-circle distances, where the ellipsoid is not needed.
MEAN_EARTH_RADIUS_M = 6_371_008.8


@dataclass(frozen=True, slots=True)
class SensorGeometry:
    """Where a sensor sits and how its polar frame is turned.

    ``origin`` is the site in ECEF (3,). ``to_local`` (3, 3) maps an ECEF
    difference vector into the sensor's local frame (forward, right, up), where
    azimuth = atan2(right, forward) (clockwise from forward; forward is north
    for an unrotated site) and elevation = asin(up / range). The matrix is
    orthogonal (its determinant may be -1: forward-right-up is left-handed).
    """

    sensor_id: str
    origin: F64
    to_local: F64


# (forward, right, down) is the right-handed aerospace body frame (ISO 1151 /
# ISO 8855 axis naming); (forward, right, up) is it with the last axis negated.
_FLIP_UP = np.diag([1.0, 1.0, -1.0])


def euler_zyx(angles: npt.ArrayLike) -> F64:
    """Rotation matrices of intrinsic z-y'-x'' (yaw, pitch, roll) angles in radians.

    ``angles`` (..., 3) as (yaw ψ, pitch θ, roll φ); returns (..., 3, 3)
    R = Rz(ψ)·Ry(θ)·Rx(φ), the same matrix as scipy's
    ``Rotation.from_euler("ZYX", angles).as_matrix()`` (tests/unit/test_geo.py
    holds them equal). Written out rather than taken from scipy: importing
    ``scipy.spatial`` costs every gateway process ~28 MB of memory for three
    elementary rotations (issue 18, "RSS with 1000 live tracks").
    """
    a = np.asarray(angles, dtype=np.float64)
    cz, sz = np.cos(a[..., 0]), np.sin(a[..., 0])
    cy, sy = np.cos(a[..., 1]), np.sin(a[..., 1])
    cx, sx = np.cos(a[..., 2]), np.sin(a[..., 2])
    r: F64 = np.empty((*a.shape[:-1], 3, 3))
    r[..., 0, 0], r[..., 0, 1], r[..., 0, 2] = cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx
    r[..., 1, 0], r[..., 1, 1], r[..., 1, 2] = sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx
    r[..., 2, 0], r[..., 2, 1], r[..., 2, 2] = -sy, cy * sx, cy * cx
    return r


def wrap_2pi(a: npt.ArrayLike) -> F64:
    """Wrap angles to [0, 2π)."""
    w = np.mod(np.asarray(a, dtype=np.float64), TWO_PI)
    # np.mod can return exactly 2π for tiny negative inputs (-1e-17 % 2π
    # rounds up); fold it back so the half-open interval holds.
    return np.where(w >= TWO_PI, 0.0, w)


def angle_diff(a: npt.ArrayLike, b: npt.ArrayLike) -> F64:
    """``a - b`` wrapped to (-π, π]: the innovation of an angle measurement.

    Use it for azimuth residuals (a target at bearing 359.9° seen at 0.1° is a
    0.2° miss, not 359.8°). Elevation never wraps but the helper is harmless.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    # π - mod(π - d, 2π) lies in (-π, π] because mod lies in [0, 2π).
    return np.pi - np.mod(np.pi - d, TWO_PI)


def enu_basis(lat_deg: float, lon_deg: float) -> F64:
    """Rows east, north, up (3, 3) of the WGS-84 local tangent plane in ECEF.

    Up is the ellipsoid normal at geodetic latitude ``lat_deg``, so the basis
    is the one :func:`pymap3d.ecef2enu` uses.
    """
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    sl, cl = np.sin(lat), np.cos(lat)
    so, co = np.sin(lon), np.cos(lon)
    return np.array(
        [
            [-so, co, 0.0],
            [-sl * co, -sl * so, cl],
            [cl * co, cl * so, sl],
        ]
    )


def site_geometry(
    sensor_id: str,
    lat_deg: float,
    lon_deg: float,
    alt_m: float,
    yaw_deg: float = 0.0,
    pitch_deg: float = 0.0,
    roll_deg: float = 0.0,
) -> SensorGeometry:
    """Geometry of a sensor at a geodetic site, its boresight frame turned.

    The origin is :func:`pymap3d.geodetic2ecef` of (lat, lon, alt) on WGS-84
    (``alt_m`` is height above the ellipsoid, not above mean sea level).

    Orientation is the aerospace yaw-pitch-roll sequence (intrinsic z-y'-x'',
    as for an aircraft body frame relative to north-east-down), applied in
    this order starting from (forward, right, up) = (north, east, up):

    1. **yaw** ψ about the local vertical: forward turns from north toward
       east (yaw 90° makes forward = east, right = south);
    2. **pitch** θ about the new right axis: forward tilts up (pitch 10° makes
       a target on the horizon straight ahead appear at elevation -10°);
    3. **roll** φ about the new forward axis: the right axis tilts down
       (roll 10° makes a target due right on the horizon appear at elevation
       +10°).

    In matrix form, with C = R1(φ)·R2(θ)·R3(ψ) the frame rotation from
    north-east-down to forward-right-down (``euler_zyx([ψ, θ, φ]).T``,
    scipy's ``Rotation.from_euler("ZYX", ...)``) and F = diag(1, 1, -1)::

        to_local = F · C · F · [north; east; up]

    Raises :class:`ConfigError` for a latitude outside [-90, 90] or any
    non-finite value.
    """
    values = {
        "lat_deg": lat_deg,
        "lon_deg": lon_deg,
        "alt_m": alt_m,
        "yaw_deg": yaw_deg,
        "pitch_deg": pitch_deg,
        "roll_deg": roll_deg,
    }
    for key, v in values.items():
        if not np.isfinite(v):
            raise ConfigError(f"{sensor_id}.{key}", f"must be finite, got {v!r}")
    if not -90.0 <= lat_deg <= 90.0:
        raise ConfigError(f"{sensor_id}.lat_deg", f"must be in [-90, 90], got {lat_deg!r}")
    origin = np.array(pymap3d.geodetic2ecef(lat_deg, lon_deg, alt_m), dtype=np.float64)
    enu = enu_basis(lat_deg, lon_deg)
    fru = enu[[1, 0, 2]]  # (north, east, up): the unrotated (forward, right, up)
    c_body_from_ned = euler_zyx(np.radians([yaw_deg, pitch_deg, roll_deg])).T
    to_local = _FLIP_UP @ c_body_from_ned @ _FLIP_UP @ fru
    return SensorGeometry(sensor_id=sensor_id, origin=origin, to_local=np.ascontiguousarray(to_local))


def local_geometry(
    sensor_id: str,
    origin_xyz: npt.ArrayLike,
    to_local: npt.ArrayLike | None = None,
) -> SensorGeometry:
    """Geometry in a plain Cartesian frame (benches, simulations).

    With the default identity ``to_local``, forward = x, right = y, up = z:
    azimuth = atan2(dy, dx) and elevation = asin(dz / range). The "ECEF" state
    of the other functions is then simply that Cartesian frame's state.
    """
    origin = np.asarray(origin_xyz, dtype=np.float64).reshape(3)
    t = np.eye(3) if to_local is None else np.asarray(to_local, dtype=np.float64).reshape(3, 3)
    if not np.allclose(t @ t.T, np.eye(3), atol=1e-9):
        raise ConfigError(f"{sensor_id}.to_local", "must be an orthogonal 3x3 matrix")
    return SensorGeometry(sensor_id=sensor_id, origin=origin.copy(), to_local=np.array(t))


def stack_geometries(geometries: Sequence[SensorGeometry]) -> tuple[F64, F64]:
    """Stack a sensor table into ``(origins (S, 3), to_locals (S, 3, 3))``.

    Gather rows by sensor index (``origins[reports.sensor]``) to feed the
    per-row form of the functions below.
    """
    if not geometries:
        return np.empty((0, 3)), np.empty((0, 3, 3))
    return (
        np.stack([g.origin for g in geometries]).astype(np.float64),
        np.stack([g.to_local for g in geometries]).astype(np.float64),
    )


def _to_local(t: F64, d: F64) -> F64:
    # l = T d, broadcasting T (3,3) or (N,3,3) over d (N,3).
    out: F64 = np.matmul(t, d[:, :, None])[:, :, 0]
    return out


def _from_local(t: F64, lv: F64) -> F64:
    # d = Tᵀ l (T orthogonal, so its inverse is its transpose).
    out: F64 = np.matmul(np.swapaxes(t, -1, -2), lv[:, :, None])[:, :, 0]
    return out


def ecef_to_polar(origin: npt.ArrayLike, to_local: npt.ArrayLike, x: npt.ArrayLike) -> F64:
    """The measurement function h(x) of a static site: (N, 6) -> (N, 4).

    Returns (range, azimuth in [0, 2π), elevation, range rate), with
    range rate = (d · v) / |d| for d the line of sight and v the velocity.
    Elevation is computed as atan2(up, horizontal), equal to asin(up / range)
    but well conditioned near the zenith.
    """
    xs = np.asarray(x, dtype=np.float64).reshape(-1, 6)
    o = np.asarray(origin, dtype=np.float64)
    t = np.asarray(to_local, dtype=np.float64)
    d = xs[:, :3] - o
    v = xs[:, 3:]
    lv = _to_local(t, d)
    f, r, u = lv[:, 0], lv[:, 1], lv[:, 2]
    rng = np.sqrt(np.einsum("ni,ni->n", d, d))
    out = np.empty((xs.shape[0], 4))
    out[:, 0] = rng
    out[:, 1] = wrap_2pi(np.arctan2(r, f))
    out[:, 2] = np.arctan2(u, np.hypot(f, r))
    out[:, 3] = np.einsum("ni,ni->n", d, v) / rng
    return out


def polar_jacobian(origin: npt.ArrayLike, to_local: npt.ArrayLike, x: npt.ArrayLike) -> F64:
    """Analytic Jacobian ∂h/∂x (N, 4, 6) of :func:`ecef_to_polar`.

    With l = T d = (f, r, u), h² = f² + r², ρ² = h² + u² (local frame):

    * ∂ρ/∂l = l / ρ
    * ∂az/∂l = (-r, f, 0) / h²
    * ∂el/∂l = (-u f / h, -u r / h, h) / ρ²

    and ∂/∂d = (∂/∂l) T. The range rate ρ̇ = d·v/ρ gives
    ∂ρ̇/∂d = (v - ρ̇ d/ρ) / ρ and ∂ρ̇/∂v = d / ρ. Range, azimuth and elevation
    do not depend on velocity.
    """
    xs = np.asarray(x, dtype=np.float64).reshape(-1, 6)
    o = np.asarray(origin, dtype=np.float64)
    t = np.asarray(to_local, dtype=np.float64)
    n = xs.shape[0]
    d = xs[:, :3] - o
    v = xs[:, 3:]
    lv = _to_local(t, d)
    f, r, u = lv[:, 0], lv[:, 1], lv[:, 2]
    h2 = f * f + r * r
    h = np.sqrt(h2)
    rho2 = h2 + u * u
    rho = np.sqrt(rho2)

    g = np.zeros((n, 3, 3))  # rows ρ, az, el w.r.t. local (f, r, u)
    g[:, 0, :] = lv / rho[:, None]
    g[:, 1, 0] = -r / h2
    g[:, 1, 1] = f / h2
    g[:, 2, 0] = -u * f / (h * rho2)
    g[:, 2, 1] = -u * r / (h * rho2)
    g[:, 2, 2] = h / rho2

    jac = np.zeros((n, 4, 6))
    jac[:, :3, :3] = np.matmul(g, t)  # broadcasts T (3,3) or (N,3,3)
    rdot = np.einsum("ni,ni->n", d, v) / rho
    jac[:, 3, :3] = (v - (rdot / rho)[:, None] * d) / rho[:, None]
    jac[:, 3, 3:] = d / rho[:, None]
    return jac


def polar_to_ecef(
    origin: npt.ArrayLike,
    to_local: npt.ArrayLike,
    polar: npt.ArrayLike,
    sigma: npt.ArrayLike,
    rates_valid: npt.ArrayLike,
    tangential_sigma_mps: float = 1000.0,
) -> tuple[F64, F64]:
    """Polar measurements with rates to ECEF states and covariances.

    ``polar`` (N, 6) is (ρ, az, el, ρ̇, az rate, el rate) and ``sigma`` (N, 6)
    their 1-sigma noise, taken as independent (R = diag(σ²)). Returns
    ``x`` (N, 6) and ``P`` (N, 6, 6) with P = J R Jᵀ, J the analytic Jacobian
    of the polar -> Cartesian map (a first-order, i.e. linearised,
    propagation: good while ρ·σ_angle is small against ρ).

    In the local frame, with unit vectors
    û = (cos el cos az, cos el sin az, sin el) (line of sight),
    ê_az = (-sin az, cos az, 0) and ê_el = (-sin el cos az, -sin el sin az, cos el)::

        p = ρ û
        v = ρ̇ û + ρ cos(el) az_rate ê_az + ρ el_rate ê_el

    **Rows with** ``rates_valid`` **False.** A radar that gives no angle rates
    observes only the radial component ρ̇ of the velocity; the two tangential
    components are unobserved, not zero. The state then carries
    v = ρ̇ û (the angle rates treated as 0) and the velocity covariance gets
    ``tangential_sigma_mps``² along ê_az and ê_el, a deliberately loose prior
    (default 1000 m/s, above any air or ballistic target's speed) so fusion
    weights that velocity by its range rate alone and lets other sensors or
    the track's history supply the rest. One second-order term is kept on
    purpose: the unknown tangential speed (σ_t) projects onto the *measured*
    line of sight through its angle error, adding
    σ_t² (cos²(el) σ_az² + σ_el²) to the radial variance. First-order
    propagation drops it (it is a product of two zero-mean errors), yet with
    σ_t = 1000 m/s and 1 mrad angles it is 1 (m/s)² per axis, as large as a
    typical σ_ρ̇², and leaving it out makes the velocity overconfident
    (tests/unit/test_geo.py checks P against a Monte-Carlo sample). The angle
    rates and their sigmas of such rows are ignored (they may be NaN). A
    non-finite ρ̇ or σ_ρ̇ likewise leaves the radial component unobserved:
    it is set to 0 with the same loose variance.
    """
    p6 = np.asarray(polar, dtype=np.float64).reshape(-1, 6)
    s6 = np.asarray(sigma, dtype=np.float64).reshape(-1, 6)
    valid = np.asarray(rates_valid, dtype=bool).reshape(-1)
    o = np.asarray(origin, dtype=np.float64)
    t = np.asarray(to_local, dtype=np.float64)
    n = p6.shape[0]
    tan_var = float(tangential_sigma_mps) ** 2

    # How it is computed: a batch is often one pty read of ~14 reports, where
    # numpy's fixed cost per call is the whole cost (issue 18), so the work is
    # done in few calls on whole blocks, mostly of 1-D columns.
    sin_ae, cos_ae = np.sin(p6[:, 1:3]), np.cos(p6[:, 1:3])
    sa, se = sin_ae.T
    ca, ce = cos_ae.T
    rho = p6[:, 0]
    rc = rho * ce

    # The rates as used, (ρ̇, az rate, el rate), and R's diagonal. Rows
    # without an observed range rate or angle rates are fixed up by row
    # selection, skipped when there are none.
    rates = p6[:, 3:].copy()
    var = np.square(s6)
    radial_ok = np.isfinite(rates[:, 0]) & np.isfinite(s6[:, 3])
    if not radial_ok.all():
        rows = _selection(~radial_ok)
        rates[rows, 0] = 0.0
        var[rows, 3] = tan_var
    if not valid.all():
        rows = _selection(~valid)
        rates[rows, 1:] = 0.0
        # Tangential leak into the radial direction (see the docstring).
        var[rows, 3] += tan_var * (ce[rows] * ce[rows] * var[rows, 1] + var[rows, 2])
        var[rows, 4:] = tan_var
    rdot, azr, elr = rates.T

    # The line-of-sight basis B (N, 3, 3), columns û, ê_az, ê_el (local frame).
    los = np.zeros((n, 3, 3))
    los[:, 0, 0] = ce * ca
    los[:, 1, 0] = ce * sa
    los[:, 2, 0] = se
    los[:, 0, 1] = -sa
    los[:, 1, 1] = ca
    los[:, 0, 2] = -se * ca
    los[:, 1, 2] = -se * sa
    los[:, 2, 2] = ce

    # The Jacobian ∂(p, v)/∂(ρ, az, el, ρ̇, az rate, el rate) in that basis:
    # C (N, 6, 6), rows (p, v) along (û, ê_az, ê_el), so that J_local =
    # blockdiag(B, B) C. Derivatives used: ∂û/∂az = cos(el) ê_az,
    # ∂û/∂el = ê_el, ∂ê_az/∂az = -(cos(el) û - sin(el) ê_el),
    # ∂ê_el/∂az = -sin(el) ê_az, ∂ê_el/∂el = -û.
    coef = np.zeros((n, 6, 6))
    # ∂p/∂(ρ, az, el) = (û, ρ cos(el) ê_az, ρ ê_el)
    coef[:, 0, 0] = 1.0
    coef[:, 1, 1] = rc
    coef[:, 2, 2] = rho
    # ∂v/∂ρ = cos(el) az_rate ê_az + el_rate ê_el
    coef[:, 4, 0] = ce * azr
    coef[:, 5, 0] = elr
    # ∂v/∂az = -ρ cos²(el) az_rate û + (ρ̇ cos(el) - ρ el_rate sin(el)) ê_az
    #          + ρ cos(el) sin(el) az_rate ê_el
    rc_azr = rc * azr
    coef[:, 3, 1] = -rc_azr * ce
    coef[:, 4, 1] = rdot * ce - rho * elr * se
    coef[:, 5, 1] = rc_azr * se
    # ∂v/∂el = -ρ el_rate û - ρ sin(el) az_rate ê_az + ρ̇ ê_el
    coef[:, 3, 2] = -rho * elr
    coef[:, 4, 2] = -rho * se * azr
    coef[:, 5, 2] = rdot
    # ∂v/∂(ρ̇, az rate, el rate) = (û, ρ cos(el) ê_az, ρ ê_el). For rows
    # without valid rates the unit tangential directions instead, so that
    # R's last two entries (tangential_sigma²) are variances of tangential
    # speed in m/s.
    coef[:, 3, 3] = 1.0
    coef[:, 4, 4] = np.where(valid, rc, 1.0)
    coef[:, 5, 5] = np.where(valid, rho, 1.0)

    # To ECEF: with M = Tᵀ B, J = blockdiag(M, M) C.
    # (Operators and methods, not np.matmul / np.swapaxes: ~1 µs less a call.)
    m = t.swapaxes(-1, -2) @ los
    jac = (m[:, None] @ coef.reshape(n, 2, 3, 6)).reshape(n, 6, 6)

    # p = ρ û is ρ times J's first column; v is linear in the rates, so it is
    # J's rate block times them (for rows without rates those are (ρ̇, 0, 0)).
    x = np.empty((n, 6))
    x[:, :3] = o + rho[:, None] * jac[:, :3, 0]
    x[:, 3:] = (jac[:, 3:, 3:] @ rates[:, :, None])[:, :, 0]
    cov = (jac * var[:, None, :]) @ jac.transpose(0, 2, 1)
    # Symmetrise: the product is symmetric in exact arithmetic only, and
    # Cholesky-based consumers downstream want it exactly so.
    cov += cov.transpose(0, 2, 1)
    cov *= 0.5
    return x, cov


def _selection(mask: npt.NDArray[np.bool_]) -> slice | npt.NDArray[np.bool_]:
    """``mask`` as an index; a slice when it selects every row (a slice costs
    less than a mask: a batch is often all rows with or all without rates)."""
    return slice(None) if mask.all() else mask
