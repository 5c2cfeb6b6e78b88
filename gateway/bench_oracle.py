"""A DIAGNOSTIC THAT CHEATS: the fusion engine with oracle association.

Bench variants ``oracle`` and ``oracle_assoc`` of ``hilgw bench fusion``
(``gateway/bench_fusion.py``) read the scenario's ``meas_truth`` (the object
each plot came from, -1 for clutter), which no tracker may read. They exist
only to split the gap between the engine and the clairvoyant reference of
the fusion bench into "association" and "filter / initiation"
(benchmarks/fusion/RESULTS.md): the engine's own filter (IMM, its models and
parameters), life cycle and output, with the association decided by the
truth.

* ``oracle``: a plot goes to the track started from its object's plots and to
  no other, whatever the gate says; a track is started only for an object
  that has no live track; clutter plots are dropped. What is left of the
  gap to the clairvoyant is the engine's filter and life cycle.
* ``oracle_assoc``: the engine's own gates and its own initiation (a plot no
  track took starts one, clutter included), but a track may only take plots
  of the object its first plot came from (clutter-started tracks take none).

The object is carried to the engine in ``ReportArrays.sensor_track_id``
(object + 1; the engine does not read it for plots) and a track's object is
that of the plot that started it.
"""

from __future__ import annotations

import numpy as np

from gateway.fusion.api import ReportArrays
from gateway.fusion.config import FusionConfig
from gateway.fusion.engine import Engine
from gateway.fusion.gating import IDX
from gateway.fusion.measure import plot_to_state
from gateway.fusion.motion import AccelFn

#: ``oracle_firstT``: oracle association (as ``oracle_assoc``) for the first
#: T seconds of the scenario, the engine's own after: can the engine hold
#: tracks that were converged on the right objects, and how early does the
#: damage happen?
ORACLE_FIRST = {f"oracle_first{t}": float(t) for t in (3, 10, 30)}
ORACLE_MODES = ("oracle", "oracle_assoc", *ORACLE_FIRST)


class OracleEngine(Engine):
    """:class:`Engine` whose plot association is decided by the truth (see the module doc)."""

    def __init__(self, config: FusionConfig, accel: AccelFn, mode: str) -> None:
        if mode not in ORACLE_MODES:
            raise ValueError(f"oracle mode {mode!r}: one of {ORACLE_MODES}")
        super().__init__(config, accel=accel)
        self.mode = mode
        #: Object + 1 of each live track's first plot, by track id (0: clutter).
        self.label: dict[int, int] = {}
        self._t_first: int | None = None

    def _track_labels(self, rows: IDX) -> np.ndarray:
        ids = self.store.track_id[rows]
        return np.array([self.label.get(int(i), 0) for i in ids], np.int64)

    def _pairs(self, r: ReportArrays, rep_pos: np.ndarray, rep_var: np.ndarray) -> tuple[IDX, IDX]:
        if self.mode != "oracle":
            return super()._pairs(r, rep_pos, rep_var)
        # Every (track, plot) of the same object, whatever the distance.
        lab_t = self._track_labels(np.arange(self.store.n))
        lab_r = r.sensor_track_id.astype(np.int64)
        ti, rj = np.nonzero((lab_t[:, None] == lab_r[None, :]) & (lab_t[:, None] > 0))
        return ti.astype(np.intp), rj.astype(np.intp)

    def _plot_pairs(
        self, r: ReportArrays, s: int, ti: IDX, rj: IDX, t0: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        xm_p, Pm_p, d2, ok, near, cost, comb = super()._plot_pairs(r, s, ti, rj, t0)
        if self.mode in ORACLE_FIRST:
            if self._t_first is None:
                self._t_first = t0
            if (t0 - self._t_first) * 1e-9 >= ORACLE_FIRST[self.mode]:
                return xm_p, Pm_p, d2, ok, near, cost, comb
        same = (self._track_labels(ti) == r.sensor_track_id[rj].astype(np.int64)) & (
            r.sensor_track_id[rj] > 0
        )
        if self.mode == "oracle":
            ok = same & np.isfinite(d2)
            near = ok.copy()
            cost = np.where(ok, 0.0, cost)
        else:
            ok = ok & same
            near = near & same
        return xm_p, Pm_p, d2, ok, near, cost, comb

    def _batch(self, r: ReportArrays) -> None:
        if self.mode == "oracle":
            keep = np.flatnonzero(r.sensor_track_id > 0)
            if keep.size == 0:
                return
            r = ReportArrays(*(getattr(r, f)[keep] for f in ReportArrays.__slots__))
        first_new = self.next_id
        super()._batch(r)
        rows = np.flatnonzero(self.store.track_id[: self.store.n] >= first_new)
        if rows.size == 0:
            return
        # A new track sits exactly at the plot that started it (dt = 0 within
        # one bench scan): find that plot by position.
        s = int(r.sensor[0])
        rx, _ = plot_to_state(
            self.origins[s], self.to_locals[s], r.polar, r.polar_sigma, self.cfg.init_speed_sigma_mps
        )
        d = np.linalg.norm(self.store.x[rows, None, :3] - rx[None, :, :3], axis=2)
        j = np.argmin(d, axis=1)
        for row, jj in zip(rows, j, strict=True):
            self.label[int(self.store.track_id[row])] = int(r.sensor_track_id[jj])


__all__ = ["ORACLE_MODES", "OracleEngine"]
