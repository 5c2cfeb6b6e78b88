"""Cue rules: which system tracks are candidates for which launcher (pure).

A track is a candidate for a launcher when it is confirmed (if required),
its quality reaches the minimum, its category is allowed, its state is fresh
against its batch time, and its position is inside the launcher's configured
coverage volume. :func:`evaluate` returns, per launcher, the reason each
track is *not* a candidate (``None`` when it is), so a live cue can be
cancelled with the reason that ended it.
"""

from __future__ import annotations

import numpy as np
import pymap3d
from numpy.typing import NDArray

from gateway.sections.cue import CoverageConfig, CueRulesConfig, LauncherCueConfig
from hilgw.v1 import track_pb2

__all__ = ["CATEGORY_OF_MODEL", "evaluate", "in_coverage"]

CATEGORY_OF_MODEL = {
    track_pb2.MOTION_MODEL_UNSPECIFIED: "unspecified",
    track_pb2.MOTION_MODEL_CONSTANT_VELOCITY: "constant_velocity",
    track_pb2.MOTION_MODEL_BALLISTIC: "ballistic",
}


def in_coverage(cov: CoverageConfig, ecef: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Which of N ECEF positions (N×3, metres) lie inside the coverage volume."""
    if len(ecef) == 0:
        return np.zeros(0, dtype=bool)
    x, y, z = ecef[:, 0], ecef[:, 1], ecef[:, 2]
    # Azimuth/elevation/slant range from the launcher site (WGS-84, pymap3d).
    az, el, rng = pymap3d.ecef2aer(x, y, z, cov.lat_deg, cov.lon_deg, cov.alt_m, deg=True)
    _, _, h = pymap3d.ecef2geodetic(x, y, z, deg=True)
    az = np.mod(np.asarray(az, dtype=float), 360.0)
    lo, hi = cov.az_from_deg % 360.0, cov.az_to_deg % 360.0
    if cov.az_to_deg - cov.az_from_deg >= 360.0 or (cov.az_from_deg == 0.0 and cov.az_to_deg == 360.0):
        in_az = np.ones(len(ecef), dtype=bool)
    elif lo <= hi:
        in_az = (az >= lo) & (az <= hi)
    else:  # the sector wraps through north
        in_az = (az >= lo) | (az <= hi)
    rng = np.asarray(rng, dtype=float)
    el = np.asarray(el, dtype=float)
    h = np.asarray(h, dtype=float)
    return (
        in_az
        & (rng >= cov.min_range_m)
        & (rng <= cov.max_range_m)
        & (el >= cov.min_elevation_deg)
        & (el <= cov.max_elevation_deg)
        & (h >= cov.min_height_m)
        & (h <= cov.max_height_m)
    )


def _track_reason(rules: CueRulesConfig, track: track_pb2.SystemTrack, batch_time_ns: int) -> str | None:
    if track.status == track_pb2.TRACK_STATUS_DROPPED:
        return "track_dropped"
    if rules.require_confirmed and track.status != track_pb2.TRACK_STATUS_CONFIRMED:
        return "not_confirmed"
    if track.quality < rules.min_quality:
        return "low_quality"
    if rules.categories and CATEGORY_OF_MODEL.get(track.motion_model, "unspecified") not in rules.categories:
        return "category"
    if batch_time_ns - track.last_update_time_ns > rules.max_track_age_s * 1e9:
        return "track_stale"
    if (
        not rules.allow_low_trust_only
        and track.contributors
        and all(c.markings.low_trust for c in track.contributors)
    ):
        return "low_trust_only"  # only a partner's word for it (docs/partners.md §6)
    if rules.min_sources > 1 and len({c.sensor_id for c in track.contributors}) < rules.min_sources:
        return "single_source"  # e.g. a theatre track only one site holds (docs/federation.md §4)
    return None


def evaluate(
    rules: CueRulesConfig, launchers: list[LauncherCueConfig], batch: track_pb2.TrackBatch
) -> dict[str, dict[int, str | None]]:
    """``{launcher_id: {track_id: None if candidate else why not}}`` for one picture."""
    tracks = list(batch.tracks)
    common = [_track_reason(rules, t, batch.time_ns) for t in tracks]
    ecef = np.array([[t.state.x, t.state.y, t.state.z] for t in tracks], dtype=float).reshape(-1, 3)
    out: dict[str, dict[int, str | None]] = {}
    for launcher in launchers:
        inside = in_coverage(launcher.coverage, ecef).tolist()
        out[launcher.id] = {
            t.track_id: common[i] if common[i] is not None else (None if inside[i] else "outside_volume")
            for i, t in enumerate(tracks)
        }
    return out
