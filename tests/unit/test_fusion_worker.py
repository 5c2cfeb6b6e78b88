"""Fusion in its own process (issue 18, gateway/fusion_worker.py): the same
pictures as the engine in-line, published in order; a late picture is never
published, a worker that dies, hangs or fails is seen (health, metrics) and
nothing is published for it; the worker ends with the gateway.

No timed assertions: sleeps in the test engines are many times the lag they
must exceed, and every wait is bounded only against a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import numpy as np
import pytest

from gateway import fusion_stage
from gateway.bus import Topic
from gateway.config import FusionConfig, parse_config
from gateway.devices.base import ReportsIn
from gateway.fusion.engine import Engine
from gateway.fusion_stage import FusionStage, SensorTable, tracks_to_proto
from gateway.fusion_worker import FusionWorkerError, ProcessWorker, StepRequest
from gateway.metrics import _fusion_worker_metrics, health_check
from gateway.supervisor import Gateway
from hilgw.geo import local_geometry
from hilgw.v1 import track_pb2
from tests.unit.fusion_worker_support import TARGETS, sensor_tracks
from tests.waiting import eventually

SITE = local_geometry("radar", TARGETS.mean(axis=0) * 0.999)
S = 1_000_000_000


@pytest.fixture
def test_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test engines by name (the parent resolves the name, the worker imports it)."""
    monkeypatch.setitem(fusion_stage.ENGINES, "slow", "tests.unit.fusion_worker_support:SlowEngine")
    monkeypatch.setitem(fusion_stage.ENGINES, "failing", "tests.unit.fusion_worker_support:FailingEngine")


#: Every wait's bound: it only stops a hang (a slow CI may take long).
BOUND_S = 60.0


def test_worker_pictures_equal_the_engine_in_line() -> None:
    """Step by step, the worker's TrackBatch bytes are those of the same engine here."""
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    here = Engine.from_params({})
    here.add_sensor(SITE)
    worker = ProcessWorker(fusion_stage.ENGINES["default"], {}, "gw", 123, timeout_s=60.0)
    try:
        t0 = time.time_ns()
        for k in range(6):
            t = t0 + k * S // 5
            reply = worker.step(StepRequest(k + 1, t, sensor_tracks(0, t, rng_a), (SITE,) if k == 0 else ()))
            want = tracks_to_proto(here.step(sensor_tracks(0, t, rng_b), t), ["radar"], "gw", k + 1, t)
            want.epoch_ns = 123
            assert reply.seq == k + 1
            assert reply.batch == want.SerializeToString()
            assert reply.counters == here.counters
        got = track_pb2.TrackBatch.FromString(reply.batch)
        assert len(got.tracks) == len(TARGETS)  # a real picture, not an empty one twice
    finally:
        worker.close()
    assert worker.process.poll() is not None


@pytest.mark.parametrize("kind", ["process", "thread"])
async def test_stage_publishes_pictures_in_order_from_the_worker(kind: str) -> None:
    reports: Topic[ReportsIn] = Topic("reports")
    tracks: Topic[track_pb2.TrackBatch] = Topic("tracks")
    stage = FusionStage(FusionConfig(publish_hz=20.0, worker=kind), "gw", reports, tracks)  # type: ignore[arg-type]
    assert stage.worker_kind == kind
    stage.engine.add_sensor(SITE)
    got = tracks.subscribe("test", maxsize=10_000)
    await stage.start()
    task = asyncio.create_task(stage.run())
    rng = np.random.default_rng(1)
    try:
        seen: list[track_pb2.TrackBatch] = []

        def confirmed_all() -> bool:
            seen.extend(got.get_all())
            last = seen[-1] if seen else None
            return last is not None and sum(t.status == 2 for t in last.tracks) == len(TARGETS)

        for _ in range(2000):  # reports while the worker steps, until every target is confirmed
            now = time.time_ns()
            reports.publish(ReportsIn("radar", now, sensor_tracks(0, now, rng)))
            await asyncio.sleep(0.01)
            if confirmed_all():
                break
        assert confirmed_all()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    seqs = [b.batch_sequence for b in seen]
    assert seqs == sorted(set(seqs))  # in order, none twice
    # Every step is accounted for: published, or (on a very slow machine) late and counted.
    assert len(seqs) + stage.pictures_stale == stage.seq or len(seqs) + stage.pictures_stale == stage.seq - 1
    times = [b.time_ns for b in seen]
    assert times == sorted(times)
    assert stage.engine_counters()["reports_in"] > 0
    if kind == "process":  # the worker's counters: this process holds no engine, only its sensor table
        assert isinstance(stage.engine, SensorTable)
        assert [s.sensor_id for s in stage.engine.sensors] == stage.sensor_ids != []
    # What goes on MQTT: the same bytes as serialising the batch; for the worker's
    # last picture, the very bytes it sent (no second serialisation on the loop).
    seen.extend(got.get_all())  # the last one published, before the stop
    last = seen[-1]
    assert stage.wire(last) == last.SerializeToString()
    assert (stage.wire(last) is stage.wire(last)) == (kind == "process")
    assert stage.wire(seen[0]) == seen[0].SerializeToString()


async def test_late_pictures_are_never_published(test_engines: None) -> None:
    """A worker slower than max_picture_lag_s: every picture is counted stale, none reaches the bus."""
    cfg = FusionConfig(engine="slow", params={"sleep_s": 0.5}, publish_hz=20.0, max_picture_lag_s=0.05)
    reports: Topic[ReportsIn] = Topic("reports")
    tracks: Topic[track_pb2.TrackBatch] = Topic("tracks")
    stage = FusionStage(cfg, "gw", reports, tracks)
    stage.engine.add_sensor(SITE)
    got = tracks.subscribe("cue", maxsize=64)
    pictures = stage.pictures.subscribe("partner")
    await stage.start()
    task = asyncio.create_task(stage.run())
    try:
        now = time.time_ns()
        reports.publish(ReportsIn("radar", now, sensor_tracks(0, now, np.random.default_rng(2))))
        await eventually(lambda: stage.pictures_stale >= 2, BOUND_S, "two stale pictures")
        assert stage.ticks_skipped > 0  # periods passed while the step ran: skipped, not queued
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(got) == 0
    assert got.dropped == 0
    assert len(pictures) == 0
    assert stage.last_picture is not None  # the engine did step: the pictures were held back


async def test_engine_failure_in_the_worker_fails_the_task_loudly(test_engines: None) -> None:
    cfg = FusionConfig(engine="failing", publish_hz=20.0)
    tracks: Topic[track_pb2.TrackBatch] = Topic("tracks")
    stage = FusionStage(cfg, "gw", Topic("reports"), tracks)
    got = tracks.subscribe("test")
    await stage.start()
    with pytest.raises(FusionWorkerError, match="step 3 of a broken engine"):
        await asyncio.wait_for(stage.run(), 60.0)
    assert [b.batch_sequence for b in got.get_all()] == [1, 2]  # nothing for the failed step
    assert stage.worker_state == "failed"
    assert stage.worker_failures == 1


async def test_hung_worker_is_killed_and_reported(test_engines: None) -> None:
    cfg = FusionConfig(engine="slow", params={"sleep_s": 3600.0}, publish_hz=20.0, worker_timeout_s=0.3)
    stage = FusionStage(cfg, "gw", Topic("reports"), Topic("tracks"))
    await stage.start()
    pid = stage.worker_pid
    assert pid is not None
    with pytest.raises(FusionWorkerError, match="hung"):
        await asyncio.wait_for(stage.run(), 60.0)
    with pytest.raises(ProcessLookupError):  # killed (and reaped), not left sleeping
        os.kill(pid, 0)


def _config(**fusion: object) -> dict[str, object]:
    return {
        "gateway_id": "fw",
        "mqtt": {"enabled": False},
        "fusion": {"publish_hz": 20.0, **fusion},
        # A long back-off: the failed state stays in view while the test looks.
        "supervisor": {"restart_initial_s": 60.0, "restart_max_s": 60.0},
    }


async def test_a_dead_worker_shows_in_health_and_metrics_and_publishes_nothing() -> None:
    async with Gateway(parse_config(_config())) as gw:
        got = gw.tracks.subscribe("cue", maxsize=100_000)
        await eventually(lambda: len(got) >= 2, BOUND_S, "pictures from the worker")
        assert health_check(gw)[0]
        pid = gw.fusion.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await eventually(lambda: gw.fusion.worker_state == "failed", BOUND_S, "the failure seen")
        got.get_all()
        ok, body = health_check(gw)
        assert not ok
        assert any("fusion worker failed" in r and "died" in r for r in body["reasons"]), body
        up = {m.name: m.samples[0].value for m in _fusion_worker_metrics(gw)}
        assert up["hilgw_fusion_worker_up"] == 0
        assert up["hilgw_fusion_worker_failures"] == 1
        assert gw.task_health.restarts["fusion"] == 1
        await asyncio.sleep(0.3)  # several periods: still no picture without a worker
        assert len(got) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_the_worker_ends_with_the_gateway() -> None:
    async with Gateway(parse_config(_config())) as gw:
        worker = gw.fusion.process_worker
        assert worker is not None
        assert gw.fusion.worker_state == "up"
        got = gw.tracks.subscribe("test")
        await eventually(lambda: len(got) >= 1, BOUND_S, "a picture")
    assert worker.process.returncode == 0  # asked to stop, and it did: not terminated or killed
    with pytest.raises(ProcessLookupError):
        os.kill(worker.pid, 0)  # and reaped


async def test_a_worker_never_taken_over_is_stopped() -> None:
    """A start that fails after the worker is up (a later part of the gateway) leaves no process."""
    stage = FusionStage(FusionConfig(), "gw", Topic("reports"), Topic("tracks"))
    await stage.start()
    worker = stage.process_worker
    assert worker is not None
    await stage.close()
    assert worker.process.returncode == 0


async def test_a_restarted_worker_never_reuses_a_track_id() -> None:
    """Issue 18/20: the worker killed mid-run, its successor's ids are all above every id before.

    The cue path names a cue's target by track id: a fresh engine numbering
    from 1 again would give a new track the id of one already cued.
    """
    reports: Topic[ReportsIn] = Topic("reports")
    tracks: Topic[track_pb2.TrackBatch] = Topic("tracks")
    stage = FusionStage(FusionConfig(publish_hz=20.0, worker="process"), "gw", reports, tracks)
    stage.engine.add_sensor(SITE)
    got = tracks.subscribe("cue", maxsize=10_000)
    rng = np.random.default_rng(3)

    async def ids_of_a_picture() -> set[int]:
        """Feed reports until a picture holds a track; every id seen meanwhile."""
        ids: set[int] = set()
        for _ in range(3000):  # bounded; a slow CI takes longer, never forever
            now = time.time_ns()
            reports.publish(ReportsIn("radar", now, sensor_tracks(0, now, rng)))
            await asyncio.sleep(0.01)
            ids.update(t.track_id for b in got.get_all() for t in b.tracks)
            if ids:
                return ids
        raise AssertionError("no picture with tracks")

    await stage.start()
    task = asyncio.create_task(stage.run())
    try:
        before = await ids_of_a_picture()
        assert min(before) == 1  # the first worker numbers from 1
        pid = stage.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(FusionWorkerError, match="died"):
            await asyncio.wait_for(task, 60.0)
        before.update(t.track_id for b in got.get_all() for t in b.tracks)
        task = asyncio.create_task(stage.run())  # what the supervisor does: a new worker
        await eventually(lambda: stage.worker_state == "up", BOUND_S, "the new worker")
        assert stage.worker_pid != pid
        after = await ids_of_a_picture()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, FusionWorkerError):
            await task
    assert min(after) > max(before), (sorted(before), sorted(after))


def test_an_engine_that_cannot_be_told_where_to_number_from_is_an_error() -> None:
    """A restarted worker with an engine without ``next_id`` fails loudly rather than reuse ids."""
    from gateway.fusion_worker import number_from

    engine = Engine.from_params({})
    number_from(engine, 1)  # a first worker: nothing to do
    assert engine.next_id == 1
    number_from(engine, 500)
    assert engine.next_id == 500
    number_from(engine, 7)  # never lowered
    assert engine.next_id == 500
    with pytest.raises(TypeError, match="next_id"):
        number_from(object(), 2)
