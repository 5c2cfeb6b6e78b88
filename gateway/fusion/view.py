"""What the engine's helper modules see of it: a structural type.

:mod:`gateway.fusion.jpda`, :mod:`gateway.fusion.twoscan`,
:mod:`gateway.fusion.lifecycle`, :mod:`gateway.fusion.merge`, :mod:`gateway.fusion.stitch` and
:mod:`gateway.fusion.oos` take the engine as an argument; typing it by this Protocol rather than by
:class:`gateway.fusion.engine.Engine` keeps them from importing the engine
back (no import cycle, tests/unit/test_layers.py).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from gateway.fusion.api import F64, SensorGeometry, TrackArrays
from gateway.fusion.config import FusionConfig
from gateway.fusion.motion import AccelFn
from gateway.fusion.store import Graves, TrackStore

__all__ = ["EngineView"]


class EngineView(Protocol):
    """The engine's track table, configuration, sensor geometry and motion models."""

    store: TrackStore
    cfg: FusionConfig
    #: Acceleration of the ballistic model (gravity in the engine's frame).
    accel: AccelFn
    #: Plot gate thresholds (chi-square quantiles) by measurement dimension.
    gate: dict[int, float]
    origins: F64
    to_locals: F64
    bias: F64
    counters: dict[str, int]
    batch_serial: int
    #: Registered sensors, by index.
    sensors: list[SensorGeometry]
    #: Time of the track table (ns), None before the first batch.
    t_store: int | None
    #: The next system track id to hand out.
    next_id: int
    #: Track-merge gate (chi-square, 6 degrees of freedom).
    merge_gate: float
    #: Re-acquisition gate (chi-square, 6 degrees of freedom; stitch.py).
    stitch_gate: float
    #: Initiation-suppression gates (chi-square) by dimension (3, 4 and 6).
    init_gate: dict[int, float]
    #: Initial IMM model probabilities of a new track.
    _mu0: F64
    #: Recently lost tracks a new one may continue (gateway/fusion/stitch.py).
    graves: Graves
    #: Dropped tracks of this step, reported with the next picture.
    _dropped: list[TrackArrays]

    def drop_rows(self, drop: np.ndarray) -> None:
        """Remove rows (bool mask over live rows), remembering them for the output."""
        ...

    def predict_models(self, xm: F64, Pm: F64, dt: F64) -> tuple[F64, F64]:
        """Predict each model's state (N, M, 6) by ``dt`` (N,) seconds."""
        ...
