"""Engines and reports for the fusion worker tests (imported by the worker
process too: an engine named in ``fusion_stage.ENGINES`` is built there)."""

from __future__ import annotations

import time
from typing import Any, Self

import numpy as np

from gateway.fusion.api import KIND_SENSOR_TRACK, ReportArrays, TrackArrays
from gateway.fusion.engine import Engine

#: Three stationary targets near a site at 54 N 10 E (ECEF, metres).
TARGETS = np.array(
    [
        [3_660_000.0, 645_000.0, 5_140_000.0],
        [3_665_000.0, 640_000.0, 5_136_000.0],
        [3_650_000.0, 650_000.0, 5_146_000.0],
    ]
)


def sensor_tracks(sensor: int, t_ns: int, rng: np.random.Generator) -> ReportArrays:
    """One sensor-track report per target at ``t_ns`` (50 m noise)."""
    n = len(TARGETS)
    x = np.zeros((n, 6))
    x[:, :3] = TARGETS + rng.normal(0, 50.0, (n, 3))
    return ReportArrays(
        sensor=np.full(n, sensor, np.int32),
        sensor_track_id=np.arange(1, n + 1, dtype=np.uint32),
        kind=np.full(n, KIND_SENSOR_TRACK, np.int8),
        t_ns=np.full(n, t_ns, np.int64),
        x=x,
        P=np.tile(np.diag([50.0**2] * 3 + [10.0**2] * 3), (n, 1, 1)),
        quality=np.ones(n),
        polar=np.full((n, 4), np.nan),
        polar_sigma=np.full((n, 4), np.nan),
    )


class SlowEngine(Engine):
    """The default engine, but every step first sleeps ``sleep_s`` (a loaded
    or hung worker); ``sleep_s`` comes from ``fusion.params``."""

    sleep_s = 0.0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Self:
        p = dict(params)
        sleep_s = float(p.pop("sleep_s", 0.0))
        engine = cls()
        engine.sleep_s = sleep_s
        return engine

    def step(self, reports: ReportArrays, t_ns: int) -> TrackArrays:
        time.sleep(self.sleep_s)
        return super().step(reports, t_ns)


class FailingEngine(Engine):
    """Fails its third step (an engine bug)."""

    steps = 0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Self:
        return cls()

    def step(self, reports: ReportArrays, t_ns: int) -> TrackArrays:
        self.steps += 1
        if self.steps == 3:
            raise ZeroDivisionError("step 3 of a broken engine")
        return super().step(reports, t_ns)
