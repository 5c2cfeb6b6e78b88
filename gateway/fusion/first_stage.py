"""The first fusion stage: one system track per associated group of sensor tracks.

A deliberately small engine behind :class:`gateway.fusion.api.FusionEngine`,
kept as the ``"first"`` engine for comparison and as a fallback. Each
(sensor, sensor track) keeps the system track it was first associated with
(persistent association); a new sensor track joins the nearest system track
within a Mahalanobis gate on position (constant-velocity prediction to the
report time), else it starts a new one. The state is the latest report's (no
fusion of estimates); status follows update count and age.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gateway.fusion.api import (
    STATUS_COASTING,
    STATUS_CONFIRMED,
    STATUS_DROPPED,
    STATUS_TENTATIVE,
    ReportArrays,
    SensorGeometry,
    TrackArrays,
)

# chi-square, 3 degrees of freedom, 99.9 %: the position gate.
_GATE_3DOF = 16.27


@dataclass(frozen=True, slots=True)
class FirstStageParams:
    confirm_updates: int = 3
    coast_after_s: float = 3.0
    drop_after_s: float = 10.0


class FirstStageEngine:
    def __init__(self, params: FirstStageParams | None = None) -> None:
        self.p = params or FirstStageParams()
        self.sensors: list[SensorGeometry] = []
        self._next_id = 1
        self._assoc: dict[tuple[int, int], int] = {}  # (sensor, sensor track) -> system track id
        self._tracks: dict[int, dict[str, object]] = {}

    def add_sensor(self, geometry: SensorGeometry) -> int:
        self.sensors.append(geometry)
        return len(self.sensors) - 1

    def _associate(self, x: np.ndarray, P: np.ndarray, t_ns: int, sensor: int) -> int | None:
        best, best_d2 = None, _GATE_3DOF
        for tid, tr in self._tracks.items():
            if sensor in tr["sensors"]:  # type: ignore[operator]
                continue  # one sensor never reports one target twice
            dt = (t_ns - int(tr["t_ns"])) * 1e-9  # type: ignore[call-overload]
            tx: np.ndarray = tr["x"]  # type: ignore[assignment]
            tP: np.ndarray = tr["P"]  # type: ignore[assignment]
            d = x[:3] - (tx[:3] + tx[3:] * dt)
            S = P[:3, :3] + tP[:3, :3]
            d2 = float(d @ np.linalg.solve(S, d))
            if d2 < best_d2:
                best, best_d2 = tid, d2
        return best

    def step(self, reports: ReportArrays, t_ns: int) -> TrackArrays:
        for i in np.argsort(reports.t_ns, kind="stable"):
            key = (int(reports.sensor[i]), int(reports.sensor_track_id[i]))
            x, P, t = reports.x[i], reports.P[i], int(reports.t_ns[i])
            tid = self._assoc.get(key)
            if tid is None or tid not in self._tracks:
                tid = self._associate(x, P, t, key[0])
                if tid is None:
                    tid = self._next_id
                    self._next_id += 1
                    self._tracks[tid] = {"first": t, "count": 0, "sensors": {}, "t_ns": t, "x": x, "P": P,
                                         "q": 0.0}  # fmt: skip
                self._assoc[key] = tid
            tr = self._tracks[tid]
            tr["sensors"][key[0]] = (key[1], t)  # type: ignore[index]
            tr["count"] = int(tr["count"]) + 1  # type: ignore[call-overload]
            tr["q"] = float(reports.quality[i])
            if t >= int(tr["t_ns"]):  # type: ignore[call-overload]
                tr["x"], tr["P"], tr["t_ns"] = x, P, t
        return self._picture(t_ns)

    def _picture(self, t_ns: int) -> TrackArrays:
        ids: list[int] = []
        status: list[int] = []
        rows: list[dict[str, object]] = []
        c_row: list[int] = []
        c_sensor: list[int] = []
        c_stid: list[int] = []
        c_t: list[int] = []
        for tid in list(self._tracks):
            tr = self._tracks[tid]
            age = (t_ns - int(tr["t_ns"])) * 1e-9  # type: ignore[call-overload]
            if age > self.p.drop_after_s:
                st = STATUS_DROPPED
                del self._tracks[tid]
                self._assoc = {k: v for k, v in self._assoc.items() if v != tid}
            elif age > self.p.coast_after_s:
                st = STATUS_COASTING
            elif int(tr["count"]) >= self.p.confirm_updates:  # type: ignore[call-overload]
                st = STATUS_CONFIRMED
            else:
                st = STATUS_TENTATIVE
            for s, (stid, ts) in tr["sensors"].items():  # type: ignore[attr-defined]
                c_row.append(len(ids))
                c_sensor.append(s)
                c_stid.append(stid)
                c_t.append(ts)
            ids.append(tid)
            status.append(st)
            rows.append(tr)
        m = len(ids)
        return TrackArrays(
            track_id=np.array(ids, np.uint64),
            status=np.array(status, np.int8),
            x=np.array([r["x"] for r in rows]).reshape(m, 6),
            P=np.array([r["P"] for r in rows]).reshape(m, 6, 6),
            t_ns=np.array([r["t_ns"] for r in rows], np.int64),
            first_ns=np.array([r["first"] for r in rows], np.int64),
            update_count=np.array([r["count"] for r in rows], np.uint32),
            quality=np.array([r["q"] for r in rows], np.float64),
            model=np.ones(m, np.int8),
            contrib_row=np.array(c_row, np.int32),
            contrib_sensor=np.array(c_sensor, np.int32),
            contrib_sensor_track_id=np.array(c_stid, np.uint32),
            contrib_t_ns=np.array(c_t, np.int64),
        )
