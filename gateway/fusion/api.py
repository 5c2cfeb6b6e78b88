"""The seam between the gateway and any fusion engine.

Everything crossing it is stacked numpy arrays, never one Python object per
report or track (docs/architecture.md, rule 4). State order is ECEF
``(x, y, z, vx, vy, vz)`` in metres and m/s; covariances are full 6x6; times
are UTC nanoseconds (int64).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from hilgw.geo import SensorGeometry as SensorGeometry  # re-exported: the seam lives on the shared floor

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]
I8 = npt.NDArray[np.int8]

# ReportArrays.kind values; equal to hilgw.v1.ReportKind.
KIND_SENSOR_TRACK = 1
KIND_PLOT = 2

# TrackArrays.status values; equal to hilgw.v1.TrackStatus.
STATUS_TENTATIVE = 1
STATUS_CONFIRMED = 2
STATUS_COASTING = 3
STATUS_DROPPED = 4


@dataclass(frozen=True, slots=True)
class ReportArrays:
    """N normalised reports, all fields stacked.

    ``sensor`` indexes the engine's sensor table (``FusionEngine.sensors``).
    ``polar`` (N, 4) holds (range, azimuth, elevation, range rate) as measured
    and ``polar_sigma`` (N, 4) their 1-sigma noise; plot updates use them, with
    NaN range rate when the sensor gives none.
    """

    sensor: I32
    sensor_track_id: U32
    kind: I8
    t_ns: I64
    x: F64  # (N, 6)
    P: F64  # (N, 6, 6)
    quality: F64
    polar: F64  # (N, 4)
    polar_sigma: F64  # (N, 4)

    def __len__(self) -> int:
        return int(self.t_ns.shape[0])

    @staticmethod
    def empty() -> ReportArrays:
        return ReportArrays(
            sensor=np.empty(0, np.int32),
            sensor_track_id=np.empty(0, np.uint32),
            kind=np.empty(0, np.int8),
            t_ns=np.empty(0, np.int64),
            x=np.empty((0, 6)),
            P=np.empty((0, 6, 6)),
            quality=np.empty(0),
            polar=np.empty((0, 4)),
            polar_sigma=np.empty((0, 4)),
        )

    @staticmethod
    def concat(parts: list[ReportArrays]) -> ReportArrays:
        if not parts:
            return ReportArrays.empty()
        if len(parts) == 1:
            return parts[0]
        return ReportArrays(*(np.concatenate([getattr(p, f) for p in parts]) for f in ReportArrays.__slots__))


@dataclass(frozen=True, slots=True)
class TrackArrays:
    """The system track picture: M tracks, stacked.

    Contributors are a sparse table of K rows: row k says sensor
    ``contrib_sensor[k]`` (its track ``contrib_sensor_track_id[k]``, last seen
    at ``contrib_t_ns[k]``) feeds track row ``contrib_row[k]``.
    """

    track_id: U64
    status: I8
    x: F64  # (M, 6)
    P: F64  # (M, 6, 6)
    t_ns: I64  # time of validity of x
    first_ns: I64
    update_count: U32
    quality: F64
    model: I8  # hilgw.v1.MotionModel
    contrib_row: I32 = field(default_factory=lambda: np.empty(0, np.int32))
    contrib_sensor: I32 = field(default_factory=lambda: np.empty(0, np.int32))
    contrib_sensor_track_id: U32 = field(default_factory=lambda: np.empty(0, np.uint32))
    contrib_t_ns: I64 = field(default_factory=lambda: np.empty(0, np.int64))

    def __len__(self) -> int:
        return int(self.track_id.shape[0])


def split_repeats(r: ReportArrays, part: npt.NDArray[np.intp]) -> list[npt.NDArray[np.intp]]:
    """Split a batch where one sensor track reports twice (e.g. a 10 Hz sensor
    read by a slower step): its n-th reports go to the n-th sub-batch, so each
    sub-batch holds one report per sensor track and they are used in order.
    Plots carry no track id and are never split here. ``part`` is time-ordered
    (the engine's batching).
    """
    if len(part) < 2 or r.kind[part[0]] != KIND_SENSOR_TRACK:
        return [part]
    ids = r.sensor_track_id[part]
    order = np.argsort(ids, kind="stable")
    sid = ids[order]
    first = np.r_[0, np.flatnonzero(sid[1:] != sid[:-1]) + 1]
    if len(first) == len(ids):
        return [part]
    sizes = np.diff(np.r_[first, len(ids)])
    rank = np.empty(len(ids), np.int64)
    rank[order] = np.arange(len(ids)) - np.repeat(first, sizes)
    return [part[rank == k] for k in range(int(rank.max()) + 1)]


class FusionEngine(Protocol):
    """What the gateway needs of a fusion engine.

    ``step`` is push-style: the gateway hands over whatever reports arrived
    since the last call (possibly out of order, possibly late) and the time of
    the picture it wants; the engine returns the whole current picture,
    tracks dropped in this step included once with ``STATUS_DROPPED``.
    """

    sensors: list[SensorGeometry]

    def add_sensor(self, geometry: SensorGeometry) -> int:
        """Register a sensor; returns its index for ``ReportArrays.sensor``."""
        ...

    def step(self, reports: ReportArrays, t_ns: int) -> TrackArrays: ...
