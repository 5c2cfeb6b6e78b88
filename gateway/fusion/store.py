"""The stacked track table: one row per live track, arrays grown by doubling.

Rows ``0 .. n-1`` are live; nothing per track is a Python object. Removing
tracks compacts every array with one boolean mask (order kept), so row
indices are only valid within one batch; the stable identity is
``track_id``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gateway.fusion.api import F64, I8, I32, I64, U32, U64

I16 = npt.NDArray[np.int16]
B = npt.NDArray[np.bool_]

MAX_SENSORS = 64  # sensor_mask is one uint64 bit per sensor


class TrackStore:
    """Column arrays of the live tracks, ``n`` rows used of ``cap``.

    Per track and model m: ``xm[:, m]``, ``Pm[:, m]``, ``mu[:, m]`` (IMM);
    ``x``, ``P`` hold the moment-matched combination. Life cycle: ``hist``
    is the hit/miss bit history over opportunities (newest in bit 0),
    ``miss_track`` the consecutive misses over all sensors, ``miss_run[:, s]``
    those of sensor s. ``mask`` has bit s set while sensor s counts as able to
    see the track. Track-to-track association: ``paired[:, s]`` and
    ``stid[:, s]`` hold the sensor track of sensor s fused into the row.
    """

    _FIELDS = (
        "xm", "Pm", "mu", "x", "P", "track_id", "status", "first_ns", "last_ns", "n_updates",
        "hist", "n_opp", "miss_track", "mask", "miss_run", "seen_ns", "paired", "stid",
        "u_xm", "u_Pm", "u_mu", "u_polar", "u_sigma", "u_sensor", "u_t_ns", "u_batch", "u_cost",
    )  # fmt: skip

    def __init__(self, n_models: int, cap: int = 64) -> None:
        self.n_models = n_models
        self.n = 0
        self.cap = 0
        self.xm: F64 = np.empty((0, n_models, 6))
        self.Pm: F64 = np.empty((0, n_models, 6, 6))
        self.mu: F64 = np.empty((0, n_models))
        self.x: F64 = np.empty((0, 6))
        self.P: F64 = np.empty((0, 6, 6))
        self.track_id: U64 = np.empty(0, np.uint64)
        self.status: I8 = np.empty(0, np.int8)
        self.first_ns: I64 = np.empty(0, np.int64)
        self.last_ns: I64 = np.empty(0, np.int64)
        self.n_updates: U32 = np.empty(0, np.uint32)
        self.hist: U64 = np.empty(0, np.uint64)
        self.n_opp: I32 = np.empty(0, np.int32)
        self.miss_track: I32 = np.empty(0, np.int32)
        self.mask: U64 = np.empty(0, np.uint64)
        self.miss_run: I16 = np.empty((0, MAX_SENSORS), np.int16)
        self.seen_ns: I64 = np.empty((0, MAX_SENSORS), np.int64)
        self.paired: B = np.empty((0, MAX_SENSORS), np.bool_)
        self.stid: U32 = np.empty((0, MAX_SENSORS), np.uint32)
        # The last plot update (gateway/fusion/twoscan.py): the state before
        # it (at the plot's time), the plot, its sensor, time and batch serial
        # (0: none, or not to be revisited) and its cost.
        self.u_xm: F64 = np.empty((0, n_models, 6))
        self.u_Pm: F64 = np.empty((0, n_models, 6, 6))
        self.u_mu: F64 = np.empty((0, n_models))
        self.u_polar: F64 = np.empty((0, 4))
        self.u_sigma: F64 = np.empty((0, 4))
        self.u_sensor: I32 = np.empty(0, np.int32)
        self.u_t_ns: I64 = np.empty(0, np.int64)
        self.u_batch: I64 = np.empty(0, np.int64)
        self.u_cost: F64 = np.empty(0)
        self._grow(cap)

    def _grow(self, need: int) -> None:
        new_cap = max(self.cap, 16)
        while new_cap < need:
            new_cap *= 2
        if new_cap == self.cap:
            return
        for name in self._FIELDS:
            old = getattr(self, name)
            arr = np.zeros((new_cap, *old.shape[1:]), old.dtype)
            arr[: self.n] = old[: self.n]
            setattr(self, name, arr)
        self.cap = new_cap

    def append(self, count: int) -> slice:
        """Reserve ``count`` new rows (zeroed), returning their slice."""
        if self.n + count > self.cap:
            self._grow(self.n + count)
        sl = slice(self.n, self.n + count)
        for name in self._FIELDS:
            getattr(self, name)[sl] = 0
        self.n += count
        return sl

    def keep(self, keep: B) -> None:
        """Compact the live rows to those where ``keep`` (n,) is True."""
        m = int(keep.sum())
        if m == self.n:
            return
        for name in self._FIELDS:
            arr = getattr(self, name)
            arr[:m] = arr[: self.n][keep]
        self.n = m


@dataclass(slots=True)
class Graves:
    """Recently lost tracks (gateway/fusion/stitch.py): id, first time, last
    update, and state and covariance at ``t_ns``."""

    track_id: U64 = field(default_factory=lambda: np.empty(0, np.uint64))
    first_ns: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    t_ns: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    last_ns: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    x: F64 = field(default_factory=lambda: np.empty((0, 6)))
    P: F64 = field(default_factory=lambda: np.empty((0, 6, 6)))

    def __len__(self) -> int:
        return int(self.track_id.size)

    def keep(self, mask: np.ndarray) -> None:
        self.track_id, self.first_ns, self.t_ns = self.track_id[mask], self.first_ns[mask], self.t_ns[mask]
        self.last_ns = self.last_ns[mask]
        self.x, self.P = self.x[mask], self.P[mask]


__all__ = ["I16", "MAX_SENSORS", "B", "Graves", "TrackStore"]
