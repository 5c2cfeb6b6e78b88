"""Ship-relative and geo-referenced ASTERIX rows -> ECEF reports, vectorised (docs/icd/frigate-feed.md).

Two entry points, one per category, each one call per datagram batch:

* :func:`plots_to_ecef` (CAT048): (ρ, θ, height) measured by a radar on a
  moving ship. The measurement frame is the radar at the report's time, built
  per row from the own-ship state interpolated at that time
  (:class:`ShipStates`). Position and covariance come from
  :func:`hilgw.geo.polar_to_ecef` with per-row origin and rotation; own-ship
  position and attitude uncertainty are added on top (first order, below).
  Velocity comes from I048/200 (ground speed and heading, ground-referenced,
  so the ship's own velocity does not enter) or is unknown (0 with a loose
  variance).
* :func:`system_tracks_to_ecef` (CAT062): WGS-84 (I062/105) or Cartesian x/y
  (I062/100) about a configured point or the own ship, plus altitude and
  velocity in the local east-north-up frame; covariance from I062/500 or the
  configured defaults, rotated to ECEF.

Own-ship uncertainty (first-order propagation). The target is
x = p_s + Rᵀ l(ρ, az, el): p_s the radar position, R the radar frame. An error
δp_s in the ship position moves x by δp_s, so P += P_ship. A small attitude
error, a rotation vector δφ (ECEF axes), turns the line of sight d = x - p_s
into d + δφ × d = d - [d]× δφ, so P += [d]× Σ_φ [d]×ᵀ, where Σ_φ is the sum of
σ²·a aᵀ over the attitude axes a that the azimuth reference depends on: none
for "north", the local vertical (heading) for "bow", and also the ship's
right (pitch) and forward (roll) axes for "deck". When the plot has a 3-D
height, range and height together pin the target to a circle about the
vertical through the radar, so an attitude error only moves it along
e⊥ = up × d: only that component of [d]× Σ_φ [d]×ᵀ is kept (checked against
a Monte-Carlo sample in tests/unit/test_normalise_ship.py).

Unknown height (issue 13). The height items end low for a ballistic target:
I048/110 at ±62 km (s14 of 25 ft), I062/130 at 150,000 ft, I062/340 HEIGHT at
±250 km. A report whose height item is absent, outside the standard's range
or at the end of its field is a report of unknown height, not one at the
horizon or at a default altitude with a tight sigma (that made one target
several system tracks). Its height is taken as uniform between a lower bound
(0, or the field's end when the item saturated) and
``unknown_height_max_m``, and the position is the Gaussian with the same
first two moments: for CAT062 (the horizontal position known) a wide
variance along the local vertical; for CAT048 (range and azimuth known) the
mean and scatter of the arc of the range sphere that those heights span, so
the report stays consistent with the target wherever on that arc it is and
fusion weights it by what it does measure. Such a report, and any report
above ``air_ceiling_m`` or faster over ground than ``air_speed_max_mps``, also
gets ``high_vertical_speed_mps`` as its vertical-speed sigma: the "nearly
level" prior of an air target does not hold for a ballistic object (climb or
fall at up to several km/s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pymap3d

from drivers.asterix.items import FL_M, FT_M, I048_110_MAX_M, I062_130_FT, I062_136_FL, I062_340_MAX_M
from gateway.fusion.api import F64, I64
from hilgw.geo import MEAN_EARTH_RADIUS_M, polar_to_ecef
from hilgw.ship import ShipStates, enu_bases, level_and_radar_frames

__all__ = [
    "elevation_from_height",
    "plots_to_ecef",
    "polar_height_floor",
    "system_tracks_to_ecef",
    "unknown_height_floor",
]

B = npt.NDArray[np.bool_]
#: Points on the arc of an unknown-height plot (its moments are sums over them).
_ARC_POINTS = 16
#: A value this close to a height field's end is taken as saturated (half an LSB of 25 ft).
_SAT_TOL_M = 12.5 * FT_M


def _ship_frames(ship: ShipStates, reference: str) -> tuple[F64, F64, F64]:
    """ENU bases, level north frames and ``reference`` frames (each (N, 3, 3)) of ``ship``.

    Computed once per call, and for one row only when every row has the same
    position and attitude (the usual datagram: all plots of one report time),
    then repeated: the same numbers as computing every row.
    """
    n = len(ship)
    lat, lon, att = ship.lat, ship.lon, ship.att
    if n > 1 and (lat == lat[0]).all() and (lon == lon[0]).all() and (att == att[0]).all():
        enu = enu_bases(lat[:1], lon[:1])
        fru, t_ref = level_and_radar_frames(enu, att[:1], reference)
        enu = np.repeat(enu, n, axis=0)
        fru_n = np.repeat(fru, n, axis=0)
        return enu, fru_n, fru_n if t_ref is fru else np.repeat(t_ref, n, axis=0)
    enu = enu_bases(lat, lon)
    fru, t_ref = level_and_radar_frames(enu, att, reference)
    return enu, fru, t_ref


def elevation_from_height(rng: F64, h_target: F64, h_radar: F64) -> F64:
    """Geometric elevation of a target at slant range ``rng`` and height ``h_target``.

    Law of cosines on a sphere of radius R (no refraction; the 3-D height of
    I048/110 is the radar's own estimate): with a = R + h_radar, b = R + h_target,
    sin el = (b² - a² - ρ²) / (2 a ρ).
    """
    a = MEAN_EARTH_RADIUS_M + h_radar
    b = MEAN_EARTH_RADIUS_M + h_target
    s = (b * b - a * a - rng * rng) / (2.0 * a * rng)
    out: F64 = np.arcsin(np.clip(s, -1.0, 1.0))
    return out


def _skew(v: F64) -> F64:
    out = np.zeros((*v.shape[:-1], 3, 3))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out


def _deck_elevation(to_level: F64, to_deck: F64, az: F64, el_level: F64) -> F64:
    """Deck-frame elevation e whose line of sight has the level elevation ``el_level``.

    With M = T_level T_deckᵀ (deck -> level), the level up-component of
    u(e) = (cos e cos az, cos e sin az, sin e) is a cos e + b sin e with
    a = M₂₀ cos az + M₂₁ sin az, b = M₂₂, i.e. r sin(e + φ) with r = √(a²+b²),
    φ = atan2(a, b); so e = asin(sin el_level / r) - φ.
    """
    m = np.matmul(to_level, np.swapaxes(to_deck, 1, 2))
    a = m[:, 2, 0] * np.cos(az) + m[:, 2, 1] * np.sin(az)
    b = m[:, 2, 2]
    r = np.hypot(a, b)
    out: F64 = np.arcsin(np.clip(np.sin(el_level) / r, -1.0, 1.0)) - np.arctan2(a, b)
    return out


def _enu_velocity(
    bases: F64, ve: F64, vn: F64, var_e: F64, var_n: F64, cov_en: F64, var_u: F64
) -> tuple[F64, F64]:
    """ECEF velocity (N, 3) and covariance (N, 3, 3) from ENU components and their covariance."""
    v_enu = np.empty((ve.shape[0], 3))
    v_enu[:, 0], v_enu[:, 1], v_enu[:, 2] = ve, vn, 0.0
    c = np.zeros((ve.shape[0], 3, 3))
    c[:, 0, 0], c[:, 1, 1], c[:, 2, 2] = var_e, var_n, var_u
    c[:, 0, 1] = c[:, 1, 0] = cov_en
    bt = np.swapaxes(bases, 1, 2)
    v = np.matmul(bt, v_enu[:, :, None])[:, :, 0]
    return v, np.matmul(np.matmul(bt, c), bases)


@dataclass(frozen=True, slots=True)
class PlotSigmas:
    """1-sigma noise of CAT048 values (CAT048 carries no accuracies; configuration)."""

    range_m: float = 50.0
    azimuth_rad: float = 2e-3
    height_m: float = 300.0
    ground_speed_mps: float = 5.0
    track_heading_rad: float = np.radians(3.0)
    vertical_speed_mps: float = 50.0
    unknown_speed_mps: float = 300.0
    #: Highest target a report of unknown height may be (module docstring).
    unknown_height_max_m: float = 1.0e6
    #: Above this height, or faster than this over ground, a target is not taken to fly level.
    air_ceiling_m: float = 30000.0
    air_speed_max_mps: float = 1000.0
    #: Vertical-speed sigma of a report that is not taken to fly level.
    high_vertical_speed_mps: float = 3000.0


def plots_to_ecef(
    rows: npt.NDArray[np.void], ship: ShipStates, reference: str, sig: PlotSigmas
) -> tuple[F64, F64, F64, F64, F64, F64]:
    """CAT048 rows (``TARGET_REPORT_DTYPE``) seen from ``ship`` -> ECEF.

    Returns ``x`` (N, 6), ``P`` (N, 6, 6), ``polar`` (N, 4) and
    ``polar_sigma`` (N, 4) (range, azimuth, elevation in the radar frame,
    range rate NaN), and the per-row measurement frame ``origin`` (N, 3) and
    ``to_local`` (N, 3, 3) for a fusion engine that takes per-row geometry.
    """
    n = rows.shape[0]
    rng = np.asarray(rows["range_m"], np.float64)
    az = np.asarray(rows["azimuth_rad"], np.float64)
    height = np.asarray(rows["height_m"], np.float64)
    lo = polar_height_floor(rows)
    has_h = np.isnan(lo)
    enu_ship, t_north, t_deck = _ship_frames(ship, reference)
    el_level = elevation_from_height(rng, np.where(has_h, height, ship.h), ship.h)
    el_level = np.where(has_h, el_level, 0.0)
    el = el_level if reference != "deck" else _deck_elevation(t_north, t_deck, az, el_level)
    # d(el)/d(height) = (R + h_t) / ((R + h_r) ρ cos el) from the relation above.
    k = (MEAN_EARTH_RADIUS_M + np.where(has_h, height, 0.0)) / (
        (MEAN_EARTH_RADIUS_M + ship.h) * rng * np.maximum(np.cos(el_level), 1e-6)
    )
    sig_el = np.where(has_h, k * sig.height_m, 1.0)

    polar6 = np.full((n, 6), np.nan)
    polar6[:, 0], polar6[:, 1], polar6[:, 2] = rng, az, el
    sigma6 = np.full((n, 6), np.nan)
    sigma6[:, 0], sigma6[:, 1], sigma6[:, 2] = sig.range_m, sig.azimuth_rad, sig_el
    x, P = polar_to_ecef(ship.pos, t_deck, polar6, sigma6, np.zeros(n, bool))
    if not has_h.all():
        u = np.flatnonzero(~has_h)
        x[u, :3], P[u, :3, :3], polar6[u, 2], sigma6[u, 2] = _arc_moments(
            rng[u], az[u], lo[u], sig, ship.pos[u], ship.h[u], t_north[u], t_deck[u], reference
        )

    # Velocity: I048/200 (ground-referenced, true heading) in the target's local
    # frame (geocentric lat/lon of the target: within 0.2° of geodetic, ample here).
    p = x[:, :3]
    lat_t = np.arctan2(p[:, 2], np.hypot(p[:, 0], p[:, 1]))
    lon_t = np.arctan2(p[:, 1], p[:, 0])
    gs = np.asarray(rows["ground_speed_mps"], np.float64)
    hdg = np.asarray(rows["heading_rad"], np.float64)
    has_v = np.isfinite(gs) & np.isfinite(hdg)
    gs0, h0 = np.where(has_v, gs, 0.0), np.where(has_v, hdg, 0.0)
    sh, ch = np.sin(h0), np.cos(h0)
    vg, vh = sig.ground_speed_mps**2, sig.track_heading_rad**2
    # (e, n) = gs (sin h, cos h): J = [[sin h, gs cos h], [cos h, -gs sin h]].
    var_e = sh * sh * vg + (gs0 * ch) ** 2 * vh
    var_n = ch * ch * vg + (gs0 * sh) ** 2 * vh
    cov_en = sh * ch * vg - gs0 * gs0 * sh * ch * vh
    unk = sig.unknown_speed_mps**2
    vsig2 = _vertical_sigma(has_h, height, np.where(has_v, gs, np.nan), sig) ** 2
    v, pv = _enu_velocity(
        enu_bases(lat_t, lon_t),
        gs0 * sh,
        gs0 * ch,
        np.where(has_v, var_e, unk),
        np.where(has_v, var_n, unk),
        np.where(has_v, cov_en, 0.0),
        np.where(has_v, vsig2, np.maximum(unk, vsig2)),
    )
    x[:, 3:] = v
    P[:, 3:, 3:] = pv
    P[:, :3, 3:] = 0.0
    P[:, 3:, :3] = 0.0

    # Own-ship position and attitude (module docstring).
    P[:, :3, :3] += ship.pos_cov
    if reference != "north":
        up = enu_ship[:, 2, :]
        sphi = ship.att_var[:, 0, None, None] * (up[:, :, None] * up[:, None, :])
        if reference == "deck":
            fwd, right = t_deck[:, 0, :], t_deck[:, 1, :]
            sphi = sphi + ship.att_var[:, 1, None, None] * (right[:, :, None] * right[:, None, :])
            sphi = sphi + ship.att_var[:, 2, None, None] * (fwd[:, :, None] * fwd[:, None, :])
        d = p - ship.pos
        dx = _skew(d)
        a = np.matmul(np.matmul(dx, sphi), np.swapaxes(dx, 1, 2))
        # With range and height both measured, an attitude error can only swing
        # the solution about the vertical through the radar: keep the part of
        # the displacement along e⊥ = up × d / |up × d| (module docstring).
        e = np.empty_like(d)  # up × d, written out (np.cross's axis handling dominates at N ~ 40)
        e[:, 0] = up[:, 1] * d[:, 2] - up[:, 2] * d[:, 1]
        e[:, 1] = up[:, 2] * d[:, 0] - up[:, 0] * d[:, 2]
        e[:, 2] = up[:, 0] * d[:, 1] - up[:, 1] * d[:, 0]
        e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-9)
        along = np.einsum("ni,nij,nj->n", e, a, e)
        a_h = along[:, None, None] * (e[:, :, None] * e[:, None, :])
        P[:, :3, :3] += np.where(has_h[:, None, None], a_h, a)
    P = 0.5 * (P + np.swapaxes(P, 1, 2))
    polar = np.ascontiguousarray(polar6[:, :4])
    polar_sigma = np.ascontiguousarray(sigma6[:, :4])
    return x, P, polar, polar_sigma, ship.pos, t_deck


def polar_height_floor(rows: npt.NDArray[np.void]) -> F64:
    """:func:`unknown_height_floor` of CAT048 rows' I048/110 heights (NaN: height usable)."""
    return unknown_height_floor(np.asarray(rows["height_m"], np.float64), I048_110_MAX_M)


def unknown_height_floor(height: F64, field_max_m: float) -> F64:
    """Per row: NaN where ``height`` is usable, else the least height the target
    may have (module docstring): the field's end where the value sits at it
    (clipped, "this high or higher"), 0 where it is absent or clipped low."""
    sat = np.abs(height) >= field_max_m - _SAT_TOL_M
    out: F64 = np.where(np.isfinite(height) & ~sat, np.nan, np.where(sat & (height > 0), field_max_m, 0.0))
    return out


def _vertical_sigma(known: B, height: F64, ground_speed: F64, sig: PlotSigmas | TrackDefaults) -> F64:
    """Vertical-speed sigma: level flight only below the air ceiling with a known
    height, and not faster over ground than an aircraft (a ballistic object low
    on its way up or down is neither level nor slow: several km/s both ways)."""
    level = known & (height < sig.air_ceiling_m) & ~(ground_speed > sig.air_speed_max_mps)
    out: F64 = np.where(level, sig.vertical_speed_mps, sig.high_vertical_speed_mps)
    return out


def _arc_moments(
    rng: F64,
    az: F64,
    lo: F64,
    sig: PlotSigmas,
    origin: F64,
    h_radar: F64,
    t_north: F64,
    t_deck: F64,
    reference: str,
) -> tuple[F64, F64, F64, F64]:
    """Mean (N, 3) and covariance (N, 3, 3) ECEF of plots of unknown height,
    and the mean and spread (N,) of the arc's elevations in the radar frame
    (what the report's polar elevation and its sigma then say).

    The target is on the arc of the range sphere at azimuth ``az`` between the
    elevations of heights ``lo`` and ``sig.unknown_height_max_m`` (no
    refraction, as :func:`elevation_from_height`). ``_ARC_POINTS`` points at
    the centres of equal elevation steps stand for it; the result is their
    mean and scatter plus the mean of each point's own range/azimuth noise
    (and the step's own spread), i.e. the moments of the arc convolved with
    the measurement noise.
    """
    n, k = rng.shape[0], _ARC_POINTS
    hi = np.maximum(lo, sig.unknown_height_max_m)
    el_lo = elevation_from_height(rng, lo, h_radar)
    el_hi = elevation_from_height(rng, hi, h_radar)
    frac = (np.arange(k) + 0.5) / k
    el_level = (el_lo[:, None] + (el_hi - el_lo)[:, None] * frac[None, :]).reshape(-1)
    rep = np.repeat(np.arange(n), k)
    azr = az[rep]
    el = el_level if reference != "deck" else _deck_elevation(t_north[rep], t_deck[rep], azr, el_level)
    polar6 = np.full((n * k, 6), np.nan)
    polar6[:, 0], polar6[:, 1], polar6[:, 2] = rng[rep], azr, el
    sigma6 = np.full((n * k, 6), np.nan)
    step = np.maximum((el_hi - el_lo) / k, 1e-6) / np.sqrt(12.0)
    sigma6[:, 0], sigma6[:, 1], sigma6[:, 2] = sig.range_m, sig.azimuth_rad, step[rep]
    xs, ps = polar_to_ecef(origin[rep], t_deck[rep], polar6, sigma6, np.zeros(n * k, bool))
    pts = xs[:, :3].reshape(n, k, 3)
    mean = pts.mean(axis=1)
    d = pts - mean[:, None, :]
    cov = np.einsum("nki,nkj->nij", d, d) / k + ps[:, :3, :3].reshape(n, k, 3, 3).mean(axis=1)
    els = el.reshape(n, k)
    return mean, cov, els.mean(axis=1), np.maximum(els.std(axis=1), step)


@dataclass(frozen=True, slots=True)
class TrackDefaults:
    """CAT062 values used where the record leaves them out (configuration)."""

    sigma_xy_m: float = 100.0
    sigma_v_mps: float = 10.0
    vertical_speed_mps: float = 50.0
    #: Altitude and its sigma without a usable height item; ``None``: unknown
    #: (uniform over 0 .. ``unknown_height_max_m``, module docstring).
    altitude_m: float | None = None
    altitude_sigma_m: float = 3000.0
    geo_alt_sigma_m: float = 50.0
    flight_level_sigma_m: float = 150.0
    unknown_speed_mps: float = 300.0
    unknown_height_max_m: float = 1.0e6
    air_ceiling_m: float = 30000.0
    air_speed_max_mps: float = 1000.0
    high_vertical_speed_mps: float = 3000.0


def system_tracks_to_ecef(
    rows: npt.NDArray[np.void],
    d: TrackDefaults,
    origin_lat: F64 | None = None,
    origin_lon: F64 | None = None,
    origin_h: F64 | None = None,
    origin_cov: F64 | None = None,
) -> tuple[F64, F64, B, B]:
    """CAT062 rows (``SYSTEM_TRACK_DTYPE``) -> ECEF ``x`` (N, 6), ``P`` (N, 6, 6),
    ``ok`` (N,) and ``unknown_height`` (N,).

    Position: I062/105 when present; else I062/100 x/y (east, north) about the
    origin (per row (N,) arrays in rad/m: a configured point or the own ship;
    ``origin_cov`` (N, 3, 3) ECEF is added to P), mapped through the origin's
    tangent plane with :func:`pymap3d.enu2geodetic` (the SDPS stereographic
    plane differs by ~(d/2R)², 6 m at 100 km). ``ok`` is false for rows with
    neither (no origin configured). Height: I062/130 (WGS-84), else I062/340
    HEIGHT (a 3-D radar's height, e.g. above I062/130's range), else I062/136
    (pressure altitude taken as height, with its larger sigma), each only
    within its range; else the configured default altitude, or with none
    configured an unknown height (module docstring; ``unknown_height`` marks
    those rows). Velocity: I062/185 east/north; vertical unknown to CAT062
    here (level-flight sigma below the air ceiling, wide above).
    """
    n = rows.shape[0]
    lat = np.asarray(rows["lat_rad"], np.float64).copy()
    lon = np.asarray(rows["lon_rad"], np.float64).copy()
    xs = np.asarray(rows["x_m"], np.float64)
    ys = np.asarray(rows["y_m"], np.float64)
    use_xy = ~np.isfinite(lat) & np.isfinite(xs)
    if use_xy.any() and origin_lat is not None and origin_lon is not None and origin_h is not None:
        i = np.flatnonzero(use_xy)
        la, lo, _ = pymap3d.enu2geodetic(
            xs[i], ys[i], np.zeros(i.size), origin_lat[i], origin_lon[i], origin_h[i], deg=False
        )
        lat[i], lon[i] = la, lo
    ok = np.isfinite(lat) & np.isfinite(lon)
    geo, geo_lo = _in_range(rows["geo_alt_m"], I062_130_FT[0] * FT_M, I062_130_FT[1] * FT_M)
    fl, fl_lo = _in_range(rows["flight_level_m"], I062_136_FL[0] * FL_M, I062_136_FL[1] * FL_M)
    hei = np.asarray(rows["measured_height_m"], np.float64)
    hei_lo = unknown_height_floor(hei, I062_340_MAX_M)
    # I062/340 HEIGHT stands in for I062/130 above its 150,000 ft (ballistic targets).
    geo = np.where(np.isfinite(geo), geo, np.where(np.isnan(hei_lo), hei, np.nan))
    known = np.isfinite(geo) | np.isfinite(fl)
    # Unknown: at least as high as every item that ran off its top says (module docstring).
    lo = np.nan_to_num(np.fmax(np.fmax(geo_lo, fl_lo), np.nan_to_num(hei_lo)))
    top = np.maximum(lo, d.unknown_height_max_m)
    if d.altitude_m is None:
        h_unk, var_unk = 0.5 * (lo + top), (top - lo) ** 2 / 12.0
    else:
        h_unk, var_unk = np.full(n, d.altitude_m), np.full(n, d.altitude_sigma_m**2)
    h = np.where(np.isfinite(geo), geo, np.where(np.isfinite(fl), fl, h_unk))
    var_u = np.where(
        np.isfinite(geo),
        d.geo_alt_sigma_m**2,
        np.where(np.isfinite(fl), d.flight_level_sigma_m**2, var_unk),
    )
    lat0, lon0 = np.where(ok, lat, 0.0), np.where(ok, lon, 0.0)
    bases = enu_bases(lat0, lon0)
    pos = np.stack(pymap3d.geodetic2ecef(lat0, lon0, h, deg=False), axis=1)
    sx = np.asarray(rows["sigma_x_m"], np.float64)
    sy = np.asarray(rows["sigma_y_m"], np.float64)
    c = np.zeros((n, 3, 3))
    c[:, 0, 0] = np.where(np.isfinite(sx), sx, d.sigma_xy_m) ** 2
    c[:, 1, 1] = np.where(np.isfinite(sy), sy, d.sigma_xy_m) ** 2
    c[:, 2, 2] = var_u
    bt = np.swapaxes(bases, 1, 2)
    pc = np.matmul(np.matmul(bt, c), bases)
    if origin_cov is not None:
        pc = pc + np.where(use_xy[:, None, None], origin_cov, 0.0)
    vx = np.asarray(rows["vx_mps"], np.float64)
    vy = np.asarray(rows["vy_mps"], np.float64)
    has_v = np.isfinite(vx) & np.isfinite(vy)
    svx = np.asarray(rows["sigma_vx_mps"], np.float64)
    svy = np.asarray(rows["sigma_vy_mps"], np.float64)
    unk = d.unknown_speed_mps**2
    vsig2 = _vertical_sigma(known, h, np.where(has_v, np.hypot(vx, vy), np.nan), d) ** 2
    v, pv = _enu_velocity(
        bases,
        np.where(has_v, vx, 0.0),
        np.where(has_v, vy, 0.0),
        np.where(has_v, np.where(np.isfinite(svx), svx, d.sigma_v_mps) ** 2, unk),
        np.where(has_v, np.where(np.isfinite(svy), svy, d.sigma_v_mps) ** 2, unk),
        np.zeros(n),
        np.where(has_v, vsig2, np.maximum(unk, vsig2)),
    )
    x = np.concatenate([pos, v], axis=1)
    P = np.zeros((n, 6, 6))
    P[:, :3, :3] = pc
    P[:, 3:, 3:] = pv
    P = 0.5 * (P + np.swapaxes(P, 1, 2))
    return x, P, ok, ~known


def _in_range(values: npt.ArrayLike, low: float, high: float) -> tuple[F64, F64]:
    """(values with NaN outside [low, high], the least height a value above ``high`` implies).

    The second array is ``high`` where the value ran off the top, NaN elsewhere.
    """
    v = np.asarray(values, np.float64)
    tol = _SAT_TOL_M
    inside = (v >= low - tol) & (v <= high + tol)
    return np.where(inside, v, np.nan), np.where(v > high + tol, high, np.nan)


def times(rows: npt.NDArray[np.void]) -> I64:
    """The rows' ``t_ns`` as int64."""
    return np.asarray(rows["t_ns"], np.int64)
