"""The asyncio side of fusion: gather report batches, step the engine at a fixed
rate, publish the picture as ``hilgw.v1.TrackBatch``.

The engine itself is pure (gateway/fusion/); this task only feeds it.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from gateway.bus import FullPolicy, Topic
from gateway.config import FusionConfig
from gateway.devices.base import ReportsIn
from gateway.fusion.api import FusionEngine, ReportArrays, TrackArrays
from gateway.partners.release import Picture, SourceMarkings
from hilgw.errors import ConfigError
from hilgw.v1 import common_pb2, track_pb2

log = logging.getLogger(__name__)

ENGINES: dict[str, str] = {
    # The numpy IMM engine (nearly-constant velocity + ballistic under WGS-84
    # gravity with J2, in the rotating ECEF frame): docs/fusion.md.
    "default": "gateway.fusion.engine:Engine",
}


#: Engine counters (gateway/fusion/engine.py) of the terminal fates of a report.
_TERMINAL = {
    "plot": "plots_used",
    "sensor_track": "sensor_tracks_used",
    "started_track": "tracks_started",
    "dropped_late": "late_dropped",
}


def report_fates(counters: Mapping[str, int]) -> tuple[dict[str, int], int]:
    """({fate: reports}, held) from an engine's counters; ``received`` is one of the keys.

    Every report the engine took in (``received``) is either still held for a
    later step (``held``) or has exactly one terminal fate: used to update a
    track as a ``plot`` or a ``sensor_track`` (in or out of sequence), used to
    start a track (``started_track``), ``dropped_late`` (older than the
    out-of-sequence lag), or ``not_used`` (inside the gate of a track that
    another report updated, so neither used nor a new track). The engine
    counts all but ``not_used``, which is what remains; ``oos_used`` is a path
    (a report can be used out of sequence as a plot), not a fate, so it is not
    here: counting it as one counted those reports twice (issue 14).
    """
    received = int(counters.get("reports_in", 0))
    held = int(counters.get("held_for_later", 0))
    fates = {fate: int(counters.get(key, 0)) for fate, key in _TERMINAL.items()}
    fates["not_used"] = received - held - sum(fates.values())
    return {"received": received, **fates}, held


def make_engine(config: FusionConfig) -> FusionEngine:
    target = ENGINES.get(config.engine)
    if target is None:
        raise ConfigError("fusion.engine", f"unknown engine {config.engine!r}; known: {sorted(ENGINES)}")
    module, _, attr = target.partition(":")
    cls: Any = getattr(importlib.import_module(module), attr)
    engine: FusionEngine = cls.from_params(config.params)
    return engine


def tracks_to_proto(
    tracks: TrackArrays,
    sensor_ids: list[str],
    gateway_id: str,
    seq: int,
    t_ns: int,
    markings: list[common_pb2.Markings | None] | None = None,
) -> track_pb2.TrackBatch:
    """Render the stacked picture as one TrackBatch (protobuf is per-object by nature).

    ``markings``, by sensor index, are copied onto each contributor: the
    releasability of the data travels with it (docs/partners.md).

    Every numpy column becomes a Python list once, up front, and each track's
    scalars go in one ``add(**fields)`` call: no numpy scalar boxing or
    ``int()`` per element (issue 18). Building nested messages first and
    extending is slower: upb copies them into the batch.
    """
    m = len(tracks)
    x = tracks.x.tolist()
    P = tracks.P.reshape(m, 36).tolist()
    track_id = tracks.track_id.tolist()
    status = tracks.status.tolist()
    last_ns = tracks.t_ns.tolist()
    first_ns = tracks.first_ns.tolist()
    quality = tracks.quality.tolist()
    model = tracks.model.tolist()
    count = tracks.update_count.tolist()
    c_row = tracks.contrib_row.tolist()
    c_sensor = tracks.contrib_sensor.tolist()
    c_track = tracks.contrib_sensor_track_id.tolist()
    c_ns = tracks.contrib_t_ns.tolist()
    by_row: dict[int, list[int]] = {}
    for k, row in enumerate(c_row):
        by_row.setdefault(row, []).append(k)
    batch = track_pb2.TrackBatch(gateway_id=gateway_id, batch_sequence=seq, time_ns=t_ns)
    add = batch.tracks.add
    for i in range(m):
        st = add(
            track_id=track_id[i],
            status=status[i],  # wire value of TrackStatus
            last_update_time_ns=last_ns[i],
            first_seen_time_ns=first_ns[i],
            quality=quality[i],
            motion_model=model[i],  # wire value of MotionModel
            update_count=count[i],
        )
        s = st.state
        s.x, s.y, s.z, s.vx, s.vy, s.vz = x[i]
        s.covariance.extend(P[i])
        for k in by_row.get(i, ()):
            sensor = c_sensor[k]
            c = st.contributors.add(
                sensor_id=sensor_ids[sensor], sensor_track_id=c_track[k], last_update_time_ns=c_ns[k]
            )
            if markings is not None and (mk := markings[sensor]) is not None:
                c.markings.CopyFrom(mk)
    return batch


@runtime_checkable
class CountingEngine(Protocol):
    """A fusion engine that counts what became of the reports it took in (the built-in one does)."""

    counters: dict[str, int]


class FusionStage:
    """Steps the engine at ``publish_hz`` with whatever reports arrived."""

    def __init__(
        self,
        config: FusionConfig,
        gateway_id: str,
        reports: Topic[ReportsIn],
        tracks: Topic[track_pb2.TrackBatch],
        engine: FusionEngine | None = None,
    ) -> None:
        self.config = config
        self.gateway_id = gateway_id
        self.engine = engine or make_engine(config)
        self.sub = reports.subscribe("fusion", maxsize=config.report_queue, policy=FullPolicy.DROP_NEWEST)
        self.tracks = tracks
        self.seq = 0
        #: The gateway's start time (UTC ns), stamped on every TrackBatch (lineage).
        self.epoch_ns = time.time_ns()
        self.last_picture: TrackArrays | None = None
        self.step_seconds: list[float] = []  # recent step durations (monotonic), bounded
        #: Markings by device id (a sensor "dev/..." takes its device's), from the config.
        self.markings: dict[str, SourceMarkings] = {}
        #: The picture as arrays with per-sensor markings, for partner feeds.
        self.pictures: Topic[Picture] = Topic("pictures")
        self._sensor_markings: tuple[SourceMarkings | None, ...] = ()
        self._sensor_markings_pb: list[common_pb2.Markings | None] = []

    @property
    def sensor_ids(self) -> list[str]:
        return [s.sensor_id for s in self.engine.sensors]

    def step_once(self, t_ns: int) -> track_pb2.TrackBatch:
        batches = self.sub.get_all()
        reports = ReportArrays.concat([b.reports for b in batches])
        t0 = time.monotonic()
        picture = self.engine.step(reports, t_ns)
        self.step_seconds = [*self.step_seconds[-255:], time.monotonic() - t0]
        self.last_picture = picture
        self.seq += 1
        sensor_ids = self.sensor_ids
        marks = self._markings_by_sensor(sensor_ids)
        if self.pictures.subscriptions:
            self.pictures.publish(Picture(self.seq, t_ns, picture, marks))
        pb = self._sensor_markings_pb if self.markings else None
        batch = tracks_to_proto(picture, sensor_ids, self.gateway_id, self.seq, t_ns, pb)
        batch.epoch_ns = self.epoch_ns
        return batch

    def _markings_by_sensor(self, sensor_ids: list[str]) -> tuple[SourceMarkings | None, ...]:
        """Markings per sensor index; rebuilt only when the sensor table grows."""
        if len(self._sensor_markings) != len(sensor_ids):
            marks = tuple(self.markings.get(s, self.markings.get(s.partition("/")[0])) for s in sensor_ids)
            self._sensor_markings = marks
            self._sensor_markings_pb = [m.to_proto() if m is not None else None for m in marks]
        return self._sensor_markings

    async def run(self) -> None:
        period = 1.0 / self.config.publish_hz
        next_t = time.monotonic()
        while True:
            next_t += period
            delay = next_t - time.monotonic()
            if delay < 0:  # fell behind: skip ahead rather than burst
                next_t = time.monotonic()
            else:
                await asyncio.sleep(delay)
            self.tracks.publish(self.step_once(time.time_ns()))

    def engine_counters(self) -> dict[str, int]:
        """The engine's own counters (``reports_in`` and the fates, see :func:`report_fates`),
        or ``{}`` for an engine that keeps none (they are not part of :class:`FusionEngine`)."""
        engine = self.engine
        return engine.counters if isinstance(engine, CountingEngine) else {}

    def counts(self) -> dict[int, int]:
        """Tracks by status in the last picture."""
        if self.last_picture is None:
            return {}
        vals, n = np.unique(self.last_picture.status, return_counts=True)
        return {int(v): int(c) for v, c in zip(vals, n, strict=True)}
