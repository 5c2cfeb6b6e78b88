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
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, runtime_checkable

import numpy as np

from gateway.bus import FullPolicy, Topic
from gateway.config import FusionConfig
from gateway.devices.base import ReportsIn
from gateway.fusion.api import FusionEngine, ReportArrays, SensorGeometry, TrackArrays
from gateway.fusion.backlog import ReportBacklog
from gateway.fusion.store import MAX_SENSORS
from gateway.fusion_worker import ProcessWorker, StepReply, StepRequest
from gateway.partners.release import Picture, SourceMarkings
from gateway.track_proto import tracks_to_proto
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


def engine_target(config: FusionConfig) -> str:
    """``"module:Class"`` of the configured engine."""
    target = ENGINES.get(config.engine)
    if target is None:
        raise ConfigError("fusion.engine", f"unknown engine {config.engine!r}; known: {sorted(ENGINES)}")
    return target


def make_engine(config: FusionConfig) -> FusionEngine:
    module, _, attr = engine_target(config).partition(":")
    cls: Any = getattr(importlib.import_module(module), attr)
    engine: FusionEngine = cls.from_params(config.params)
    return engine


class SensorTable:
    """The sensor table of an engine that steps in another process.

    With ``worker = "process"`` the engine lives in the worker only; this
    process keeps the table drivers register into (indices for
    ``ReportArrays.sensor``) and sends new rows with the next step. Not
    building an engine here keeps the engine's imports (issue 18) out of the
    gateway process. The built-in engine's limit is checked
    here, where a driver registers, not later as a failed step in the worker.
    """

    def __init__(self) -> None:
        self.sensors: list[SensorGeometry] = []

    def add_sensor(self, geometry: SensorGeometry) -> int:
        """Register a sensor; returns its index for ``ReportArrays.sensor``."""
        if len(self.sensors) >= MAX_SENSORS:
            raise ConfigError("fusion.sensors", f"at most {MAX_SENSORS} sensors, got one more")
        self.sensors.append(geometry)
        return len(self.sensors) - 1


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
        # --- the worker (gateway/fusion_worker.py). An engine handed in is
        # stepped here or in a thread: a process builds its own from the config.
        self.worker_kind = config.worker if engine is None or config.worker != "process" else "thread"
        #: The engine that steps here (inline, thread), or the sensor table of
        #: the one in the worker process (``process``).
        self.engine: FusionEngine | SensorTable
        self._here: FusionEngine | None = None  # see _local_engine
        if engine is not None:
            self.engine = engine
        elif self.worker_kind == "process":
            engine_target(config)  # an unknown engine is a ConfigError now, not in the worker
            self.engine = SensorTable()
        else:
            self.engine = make_engine(config)
        # Bounded in batches and in reports (a batch of a fast link holds
        # hundreds): the backlog while a step runs is a memory bound (issue 18).
        # The batches the bounds admit are stacked as they come (no burst of
        # joining them when the step is due: gateway/fusion/backlog.py).
        self._backlog = ReportBacklog()
        self.sub = reports.subscribe(
            "fusion",
            maxsize=config.report_queue,
            policy=FullPolicy.DROP_NEWEST,
            weigh=_reports_in,
            max_weight=config.max_backlog_reports,
            sink=self._stack,
        )
        self._backlog_drops_seen = 0  # sub.dropped_weight as of the last warning check
        self._backlog_warnings = 0
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
        #: "inline", or the worker's state: "starting", "up", "failed".
        self.worker_state = "inline" if self.worker_kind == "inline" else "starting"
        self.worker_pid: int | None = None
        #: Why the worker last failed ("" while it never has).
        self.worker_problem = ""
        self.worker_failures = 0
        #: Pictures not published: back from the worker too late (max_picture_lag_s).
        self.pictures_stale = 0
        #: Periods in which no step started because the one before was still running.
        self.ticks_skipped = 0
        self._counters: dict[str, int] | None = None  # the worker engine's, by its last reply
        self._worker: ProcessWorker | None = None  # started by start(), taken over by run()
        #: The worker process of the latest start (diagnostics and tests).
        self.process_worker: ProcessWorker | None = None
        self._sensors_sent = 0
        self._markings_sent: int | None = None
        #: The highest track id of any picture back from a worker: a restarted
        #: process worker numbers its tracks above it, so no id is reused
        #: within a gateway run (the cue path names targets by id; issue 20).
        self.max_track_id = 0
        #: The last picture published and the worker's own bytes of it (process worker).
        self._last_wire: tuple[track_pb2.TrackBatch, bytes] | None = None

    def wire(self, batch: track_pb2.TrackBatch) -> bytes:
        """``batch`` serialised. The picture the process worker sent last comes as
        the bytes it was sent in: serialising 1,000 tracks again took ~0.6 ms of
        the event loop five times a second, and the reports queued behind it
        waited as long (issue 18). Nothing on the bus modifies a published batch."""
        last = self._last_wire
        if last is not None and last[0] is batch:
            return last[1]
        return batch.SerializeToString()

    def _local_engine(self) -> FusionEngine:
        """The engine that steps in this process.

        With ``worker = "process"`` only a caller that steps by hand
        (:meth:`step_once`: tests, tools) gets here: an engine is built for it
        on first use and kept in step with the sensor table.
        """
        table = self.engine
        if not isinstance(table, SensorTable):
            return table
        if self._here is None:
            self._here = make_engine(self.config)
        for g in table.sensors[len(self._here.sensors) :]:
            self._here.add_sensor(g)
        return self._here

    @property
    def sensor_ids(self) -> list[str]:
        return [s.sensor_id for s in self.engine.sensors]

    def engine_counters(self) -> dict[str, int]:
        """The stepping engine's own counters (``reports_in`` and the fates, see
        :func:`report_fates`): the worker process's as of its last picture, or
        ``{}`` for an engine that keeps none (they are not part of :class:`FusionEngine`)."""
        if self._counters is not None:
            return self._counters
        engine = self.engine
        return engine.counters if isinstance(engine, CountingEngine) else {}

    def _stack(self, batch: ReportsIn) -> None:
        self._backlog.add(batch.reports)

    def _take_backlog(self) -> ReportArrays:
        """The reports queued since the last step, in order; says so once in a
        while if the backlog bound dropped some meanwhile."""
        dropped = self.sub.dropped_weight
        if dropped != self._backlog_drops_seen:
            self._backlog_warnings += 1
            n = self._backlog_warnings
            if n & (n - 1) == 0:  # the 1st, 2nd, 4th, ... time: a slow engine does not flood the log
                log.warning(
                    "fusion: backlog over max_backlog_reports (%d): %d reports dropped since the "
                    "last step, %d in all (hilgw_fusion_backlog_dropped_reports_total)",
                    self.config.max_backlog_reports,
                    dropped - self._backlog_drops_seen,
                    dropped,
                )
            self._backlog_drops_seen = dropped
        self.sub.get_all()  # counts them delivered (the sink has them)
        return self._backlog.take()

    @property
    def backlog_reports(self) -> int:
        """Reports waiting for the next step."""
        return self.sub.weight

    @property
    def backlog_dropped_reports(self) -> int:
        """Reports the backlog bound (``max_backlog_reports``) discarded."""
        return self.sub.dropped_weight

    def step_once(self, t_ns: int) -> track_pb2.TrackBatch:
        reports = self._take_backlog()
        t0 = time.monotonic()
        picture = self._local_engine().step(reports, t_ns)
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
        """Step at ``publish_hz`` until cancelled; where, ``fusion.worker`` says."""
        if self.worker_kind != "inline":
            await self._run_worker()
            return
        period = 1.0 / self.config.publish_hz
        next_t = time.monotonic()
        while True:
            next_t += period
            delay = next_t - time.monotonic()
            if delay < 0:  # fell behind: skip ahead rather than burst
                self.ticks_skipped += int(-delay // period)
                next_t = time.monotonic()
            else:
                await asyncio.sleep(delay)
            self.tracks.publish(self.step_once(time.time_ns()))

    # --- the worker (gateway/fusion_worker.py) ------------------------------------

    def _request(self, t_ns: int) -> StepRequest:
        """The reports queued since the last step, the sensors and markings the
        worker has not had yet."""
        reports = self._take_backlog()
        sensors = self.engine.sensors
        new = tuple(sensors[self._sensors_sent :])
        self._sensors_sent = len(sensors)
        markings: tuple[bytes | None, ...] | None = None
        self._markings_by_sensor(self.sensor_ids)
        table = self._sensor_markings_pb if self.markings else []
        if self._markings_sent != len(table):
            markings = tuple(m.SerializeToString() if m is not None else None for m in table)
            self._markings_sent = len(table)
        self.seq += 1
        return StepRequest(self.seq, t_ns, reports, new, markings)

    def _step_here(self, req: StepRequest) -> tuple[StepReply, track_pb2.TrackBatch]:
        """The thread worker's step: this process's engine, in the stage's thread."""
        t0 = time.monotonic()
        picture = self._local_engine().step(req.reports, req.t_ns)
        step_s = time.monotonic() - t0
        pb = self._sensor_markings_pb if self.markings else None
        batch = tracks_to_proto(picture, self.sensor_ids, self.gateway_id, req.seq, req.t_ns, pb)
        batch.epoch_ns = self.epoch_ns
        return StepReply(req.seq, req.t_ns, picture, b"", {}, step_s), batch

    @staticmethod
    def _step_remote(worker: ProcessWorker, req: StepRequest) -> tuple[StepReply, track_pb2.TrackBatch]:
        """The process worker's step, and the picture parsed (in the stage's thread)."""
        reply = worker.step(req)
        return reply, track_pb2.TrackBatch.FromString(reply.batch)

    def _publish_reply(self, reply: StepReply, batch: track_pb2.TrackBatch) -> None:
        """Publish one picture, unless it came back too late to be acted on."""
        assert reply.picture is not None
        if len(reply.picture):  # stale or not: ids once seen anywhere are never handed out again
            self.max_track_id = max(self.max_track_id, int(reply.picture.track_id.max()))
        self.step_seconds = [*self.step_seconds[-255:], reply.step_s]
        self.last_picture = reply.picture
        if reply.counters:
            self._counters = reply.counters
        lag_s = (time.time_ns() - reply.t_ns) * 1e-9
        if lag_s > self.config.max_picture_lag_s:
            # Stale: not on the bus, so not cued from, not displayed, not sent.
            self.pictures_stale += 1
            n = self.pictures_stale
            if n & (n - 1) == 0:  # the 1st, 2nd, 4th, ...: a slow machine does not flood the log
                log.warning(
                    "fusion: picture %d back %.2f s after its time (max_picture_lag_s %.2f): "
                    "not published (%d so far)",
                    reply.seq,
                    lag_s,
                    self.config.max_picture_lag_s,
                    n,
                )
            return
        if self.pictures.subscriptions:
            marks = self._markings_by_sensor(self.sensor_ids)
            self.pictures.publish(Picture(reply.seq, reply.t_ns, reply.picture, marks))
        self._last_wire = (batch, reply.batch) if reply.batch else None
        self.tracks.publish(batch)

    def spawn(self) -> None:
        """Start the worker process (no waiting): its imports then overlap the
        rest of the gateway's start-up. :meth:`start` waits for it."""
        if self.worker_kind != "process" or self._worker is not None:
            return
        cfg = self.config
        worker = self._worker = self.process_worker = ProcessWorker(
            engine_target(cfg),
            cfg.params,
            self.gateway_id,
            self.epoch_ns,
            cfg.worker_timeout_s,
            self.max_track_id + 1,
        )
        self.worker_pid = worker.pid

    async def start(self) -> None:
        """Start the worker process (if :meth:`spawn` has not) and wait until its
        engine is built, so a gateway that says it has started steps from its
        first period."""
        self.spawn()
        worker = self._worker
        if worker is None or worker.ready:
            return
        await asyncio.to_thread(worker.wait_ready, max(self.config.worker_timeout_s, 30.0))
        self.worker_state = "up"

    async def close(self) -> None:
        """Stop a worker that :meth:`run` never took over (a start that failed later)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            await _close(worker)

    async def _run_worker(self) -> None:
        """Step in a thread or a process at ``publish_hz``; one step in flight.

        A period whose tick finds the step before it still running is skipped
        (counted in ``ticks_skipped``): the reports wait in the subscription
        for the next step, the event loop never waits for the engine.
        """
        cfg = self.config
        loop = asyncio.get_running_loop()
        # One thread of its own: it mostly sleeps in a pipe poll (process) or
        # in numpy (thread); the default executor is other tasks' to use.
        pool = ThreadPoolExecutor(1, thread_name_prefix="hilgw-fusion")
        worker, self._worker = self._worker, None  # the one start() made ready, if any
        self._sensors_sent, self._markings_sent = 0, None  # a new worker knows nothing
        try:
            if self.worker_kind == "process" and worker is None:  # a restart: a new worker
                self.worker_state = "starting"
                worker = self.process_worker = ProcessWorker(
                    engine_target(cfg),
                    cfg.params,
                    self.gateway_id,
                    self.epoch_ns,
                    cfg.worker_timeout_s,
                    self.max_track_id + 1,
                )
                self.worker_pid = worker.pid
                await loop.run_in_executor(pool, worker.wait_ready, max(cfg.worker_timeout_s, 30.0))
            self.worker_state = "up"
            period = 1.0 / cfg.publish_hz
            next_t = time.monotonic()
            while True:
                next_t += period
                delay = next_t - time.monotonic()
                if delay < 0:
                    self.ticks_skipped += int(-delay // period)
                    next_t = time.monotonic()
                else:
                    await asyncio.sleep(delay)
                req = self._request(time.time_ns())
                if worker is not None:
                    reply, batch = await loop.run_in_executor(pool, self._step_remote, worker, req)
                else:
                    reply, batch = await loop.run_in_executor(pool, self._step_here, req)
                self._publish_reply(reply, batch)
        except Exception as exc:
            self.worker_state = "failed"
            self.worker_failures += 1
            self.worker_problem = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if self.worker_state != "failed":
                self.worker_state = "starting"  # stopped: the next run() starts a new one
            if worker is not None:
                worker.interrupt()
                # A failed worker is not asked twice: it may be hung in a step.
                await _close(worker, 0.1 if self.worker_state == "failed" else 2.0)
            pool.shutdown(wait=False)

    def counts(self) -> dict[int, int]:
        """Tracks by status in the last picture."""
        if self.last_picture is None:
            return {}
        vals, n = np.unique(self.last_picture.status, return_counts=True)
        return {int(v): int(c) for v, c in zip(vals, n, strict=True)}


def _reports_in(batch: ReportsIn) -> int:
    """A batch's weight in the fusion backlog: its reports."""
    return len(batch.reports)


async def _close(worker: ProcessWorker, grace_s: float = 2.0) -> None:
    """Stop the worker process without blocking the loop; synchronously if cancelled again."""
    try:
        await asyncio.to_thread(worker.close, grace_s)
    except asyncio.CancelledError:
        worker.close(grace_s)
        raise
