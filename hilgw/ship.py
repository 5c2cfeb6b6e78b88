"""Own-ship states and the frames of a radar on a moving platform, over stacked arrays.

Shared by the gateway's ship-relative normalisation (gateway/normalise_ship.py)
and the frigate emulator (sim_devices/frigate_emulator.py), so the emulator
measures in exactly the frame the gateway inverts (docs/icd/frigate-feed.md).
Conventions as in :mod:`hilgw.geo`: a radar frame is (forward, right, up).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hilgw.geo import F64, euler_zyx

__all__ = ["ShipStates", "enu_bases", "level_and_radar_frames", "radar_frames"]

B = npt.NDArray[np.bool_]
# (forward, right, down) is the right-handed aerospace body frame; (forward,
# right, up) is it with the last axis negated (as in hilgw.geo).
_FLIP_UP = np.diag([1.0, 1.0, -1.0])


@dataclass(frozen=True, slots=True)
class ShipStates:
    """Own-ship states at N report times (one row per report).

    ``pos`` (N, 3) ECEF of the radar antenna (lever arm applied), ``lat``/
    ``lon`` (N,) rad and ``h`` (N,) m its geodetic position, ``vel`` (N, 3)
    ECEF m/s, ``att`` (N, 3) heading, pitch, roll in rad (heading clockwise
    from true north, pitch bow up, roll starboard down), ``pos_cov`` (N, 3, 3)
    ECEF m², ``att_var`` (N, 3) rad², ``valid`` (N,) false where no usable
    navigation covers the time.
    """

    pos: F64
    lat: F64
    lon: F64
    h: F64
    vel: F64
    att: F64
    pos_cov: F64
    att_var: F64
    valid: B

    def __len__(self) -> int:
        return int(self.pos.shape[0])


def enu_bases(lat: F64, lon: F64) -> F64:
    """Rows east, north, up (N, 3, 3) of the local tangent planes (geodetic lat/lon in rad)."""
    sl, cl = np.sin(lat), np.cos(lat)
    so, co = np.sin(lon), np.cos(lon)
    # Filled element by element: np.stack costs more than the arithmetic at N ~ 40.
    out = np.empty((*np.shape(lat), 3, 3))
    out[..., 0, 0], out[..., 0, 1], out[..., 0, 2] = -so, co, 0.0
    out[..., 1, 0], out[..., 1, 1], out[..., 1, 2] = -sl * co, -sl * so, cl
    out[..., 2, 0], out[..., 2, 1], out[..., 2, 2] = cl * co, cl * so, sl
    return out


def level_and_radar_frames(enu: F64, att: F64, reference: str) -> tuple[F64, F64]:
    """(level north frame, ``reference`` frame) from ENU bases (N, 3, 3); see :func:`radar_frames`."""
    fru = enu[:, [1, 0, 2], :]  # (north, east, up)
    if reference == "north":
        return fru, fru
    ang = np.array(att, dtype=np.float64, copy=True)
    if reference == "bow":
        ang[:, 1:] = 0.0
    elif reference != "deck":
        raise ValueError(f"unknown azimuth reference {reference!r}")
    c = np.swapaxes(euler_zyx(ang), 1, 2)
    out: F64 = _FLIP_UP @ c @ _FLIP_UP @ fru
    return fru, out


def radar_frames(ship: ShipStates, reference: str) -> F64:
    """Per-row ``to_local`` (N, 3, 3): ECEF -> the radar's (forward, right, up).

    ``reference``: "north" (forward = true north, level), "bow" (forward = the
    ship's heading, level) or "deck" (the ship body: heading, pitch, roll, as
    :func:`hilgw.geo.site_geometry` turns a site).
    """
    return level_and_radar_frames(enu_bases(ship.lat, ship.lon), ship.att, reference)[1]
