"""The gateway's memory stays bounded (issue 18, "RSS with 1000 live tracks"):
the fusion backlog is bounded in reports, with drops counted and logged; the
gateway process does not import scipy (the engine runs in the worker), nor
does the worker of the default engine, and the worker does not import
pydantic. benchmarks/bench_memory.py measures the figures; these tests hold
the rules that make them.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from gateway import fusion_stage
from gateway.bus import Topic
from gateway.config import FusionConfig
from gateway.devices.base import ReportsIn
from gateway.fusion.store import MAX_SENSORS
from gateway.fusion_stage import FusionStage, SensorTable
from gateway.fusion_worker import ProcessWorker, StepRequest
from gateway.metrics import _fusion_worker_metrics
from hilgw.errors import ConfigError
from hilgw.geo import local_geometry
from hilgw.v1 import track_pb2
from tests.unit.fusion_worker_support import TARGETS, sensor_tracks

ROOT = Path(__file__).resolve().parents[2]
SITE = local_geometry("radar", TARGETS.mean(axis=0) * 0.999)
BOUND_S = 60.0  # only against a hang


def _batch(n: int, t_ns: int, rng: np.random.Generator) -> ReportsIn:
    """``n`` sensor-track reports (the three targets over and over)."""
    reps = [sensor_tracks(0, t_ns, rng) for _ in range(-(-n // len(TARGETS)))]
    whole = type(reps[0]).concat(reps)
    idx = np.arange(n)
    cut = type(whole)(*(getattr(whole, f)[idx] for f in whole.__slots__))
    return ReportsIn("radar", t_ns, cut)


def test_fusion_backlog_is_bounded_in_reports_and_counts_what_it_drops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Batches past max_backlog_reports are dropped whole (the newest), counted
    in reports, shown in /metrics and logged; what was queued is fused."""
    reports: Topic[ReportsIn] = Topic("reports")
    stage = FusionStage(
        FusionConfig(worker="inline", max_backlog_reports=100),
        "gw",
        reports,
        Topic[track_pb2.TrackBatch]("t"),
    )
    stage.engine.add_sensor(SITE)
    rng = np.random.default_rng(2)
    t = time.time_ns()
    for n in (40, 40, 30, 20):  # 40 + 40 fit; 30 would make 110; 20 makes 100
        reports.publish(_batch(n, t, rng))
    assert stage.backlog_reports == 100
    assert stage.backlog_dropped_reports == 30
    with caplog.at_level(logging.WARNING, logger="gateway.fusion_stage"):
        stage.step_once(t + 1)
    assert stage.engine_counters()["reports_in"] == 100  # all that was queued, nothing else
    assert stage.backlog_reports == 0
    assert "30 reports dropped" in caplog.text
    assert "max_backlog_reports (100)" in caplog.text
    gw = SimpleNamespace(fusion=stage)  # what the collector reads of a gateway
    metrics = {m.name: m.samples[0].value for m in _fusion_worker_metrics(gw)}
    assert metrics["hilgw_fusion_backlog_dropped_reports"] == 30
    assert metrics["hilgw_fusion_backlog_reports"] == 0
    # No new drops: no new warning.
    caplog.clear()
    reports.publish(_batch(50, t + 2, rng))
    with caplog.at_level(logging.WARNING, logger="gateway.fusion_stage"):
        stage.step_once(t + 3)
    assert "dropped" not in caplog.text
    assert stage.engine_counters()["reports_in"] == 150


def test_sensor_table_refuses_a_sensor_the_engine_could_not_take() -> None:
    """The process worker's sensor table in the gateway keeps the engine's limit,
    so a 65th sensor is a config error where it registers, not a failed step."""
    table = SensorTable()
    for k in range(MAX_SENSORS):
        assert table.add_sensor(local_geometry(f"s{k}", TARGETS[0])) == k
    with pytest.raises(ConfigError, match=f"at most {MAX_SENSORS} sensors"):
        table.add_sensor(local_geometry("one-more", TARGETS[0]))


def test_a_process_stage_builds_no_engine_here_but_steps_by_hand_with_one() -> None:
    """worker = "process": no engine in this process until a caller steps by
    hand (tests, tools); that one gets the table's sensors."""
    stage = FusionStage(FusionConfig(), "gw", Topic("reports"), Topic[track_pb2.TrackBatch]("t"))
    assert isinstance(stage.engine, SensorTable)
    assert stage.engine.add_sensor(SITE) == 0
    rng = np.random.default_rng(4)
    t = time.time_ns()
    stage.sub.topic.publish(ReportsIn("radar", t, sensor_tracks(0, t, rng)))
    batch = stage.step_once(t + 1)
    assert len(batch.tracks) == len(TARGETS)
    assert stage.engine_counters() == {}  # the worker's counters: none yet
    with pytest.raises(ConfigError, match="unknown engine"):
        FusionStage(FusionConfig(engine="nope"), "gw", Topic("reports"), Topic[track_pb2.TrackBatch]("t"))


def _mapped(pid: int, name: str) -> bool:
    """Whether a shared object whose path holds ``name`` is mapped in ``pid``."""
    return name in Path(f"/proc/{pid}/maps").read_text()


def test_the_worker_maps_neither_scipy_nor_pydantic_while_it_fuses() -> None:
    """The default engine's worker runs without scipy (~37 MB of RSS, issue
    18: its pre-gate, merge, assignment and gates are numpy and lap) and
    without the config models (pydantic: ~8 MB a process), through steps that
    pre-gate, assign and merge."""
    worker = ProcessWorker(fusion_stage.ENGINES["default"], {}, "gw", 1, timeout_s=60.0)
    try:
        worker.wait_ready(60.0)
        rng = np.random.default_rng(7)
        t0 = time.time_ns()
        for k in range(4):
            t = t0 + k * 1_000_000_000
            reply = worker.step(StepRequest(k + 1, t, sensor_tracks(0, t, rng), (SITE,) if k == 0 else ()))
        assert reply.picture is not None
        assert len(reply.picture.track_id) == len(TARGETS)
        # Paths, not names: numpy's own BLAS is "libscipy_openblas".
        assert not _mapped(worker.pid, "/scipy/")
        assert _mapped(worker.pid, "/lap/")
        assert not _mapped(worker.pid, "pydantic_core")
    finally:
        worker.close()


NO_SCIPY = textwrap.dedent(
    """
    import sys

    class Refuse:  # any scipy import on the way fails the run
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "scipy":
                raise ImportError(f"scipy imported on the default engine's path: {name}")

    sys.meta_path.insert(0, Refuse())
    from tests.unit import test_fusion_dense as dense

    dense.test_second_object_inside_a_tracks_gate_gets_its_own_track()  # plots, shared gates, spread
    dense.test_crossing_during_a_turn_keeps_one_id_per_target()
    dense.test_hand_over_duplicate_is_merged_into_the_older_track()  # sensor tracks, the merge
    print("fused without scipy")
    """
)


def test_the_default_engine_fuses_plots_and_tracks_without_scipy() -> None:
    """Not only the import: closely spaced plots (components the assignment
    solves, the spread covariance), sensor tracks and a merge all run with
    every scipy import refused (issue 18: ~37 MB of the worker's RSS)."""
    out = subprocess.run(
        [sys.executable, "-c", NO_SCIPY], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "fused without scipy" in out.stdout


GATEWAY = textwrap.dedent(
    """
    import asyncio, sys
    import gateway.console  # hilgw run's own module: rich only for a terminal
    from gateway.config import parse_config
    from gateway.supervisor import Gateway

    cfg = parse_config({
        "gateway_id": "mem",
        "mqtt": {"enabled": False},
        "metrics": {"port": 0},
        "web": {"port": 0},
        "devices": [{
            "id": "radar-1", "protocol": "serial_radar", "wire_sensor_id": 7,
            "transport": {"kind": "memory", "name": "mem-radar"},
            "site": {"lat_deg": 54.0, "lon_deg": 10.0, "alt_m": 20.0, "yaw_deg": 30.0, "pitch_deg": 1.0},
        }],
    })

    async def main() -> None:
        async with Gateway(cfg) as gw:
            assert gw.fusion.worker_kind == "process" and gw.fusion.worker_state == "up"
            await asyncio.sleep(0.3)
            assert gw.fusion.sensor_ids == ["radar-1"]
            scipy = sorted(m for m in sys.modules if m.split(".")[0] == "scipy")
            print("scipy:", scipy[:5])
            print("rich:", "rich" in sys.modules)

    asyncio.run(main())
    """
)


def test_a_running_gateway_process_imports_no_scipy() -> None:
    """With fusion in its worker (the default) the gateway process needs no
    scipy (~28 MB): not for a rotated site, not for the engine it does not step;
    nor rich (~4 MB) without a terminal to draw on."""
    out = subprocess.run(
        [sys.executable, "-c", GATEWAY], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "scipy: []" in out.stdout, out.stdout
    assert "rich: False" in out.stdout, out.stdout


def test_a_step_request_crosses_the_pipe_with_its_columns_out_of_band() -> None:
    """The reports' columns are sent as buffers of their own (not copied into a
    pickle first) and arrive equal and writable (the engine may work in place)."""
    import multiprocessing

    from gateway.fusion_worker import StepRequest, _Framed, recv_framed, send_framed

    rng = np.random.default_rng(6)
    t = time.time_ns()
    req = StepRequest(3, t, _batch(5000, t, rng).reports, (SITE,))
    a, b = multiprocessing.Pipe()
    sender = threading.Thread(target=send_framed, args=(a, req))  # the pipe holds less than the request
    sender.start()
    try:
        framed = b.recv()
        assert isinstance(framed, _Framed)
        columns = sum(getattr(req.reports, f).nbytes for f in req.reports.__slots__)
        assert sum(framed.sizes) >= columns  # every column out of band
        got = recv_framed(b, framed)
    finally:
        sender.join(BOUND_S)
        a.close()
        b.close()
    assert isinstance(got, StepRequest)
    assert (got.seq, got.t_ns, got.new_sensors[0].sensor_id) == (3, t, "radar")
    for f in req.reports.__slots__:
        np.testing.assert_array_equal(getattr(got.reports, f), getattr(req.reports, f))
    assert got.reports.x.flags.writeable
    # Read straight into one buffer, each column at a 64-byte boundary (numpy's own alignment).
    assert all(getattr(got.reports, f).ctypes.data % 64 == 0 for f in req.reports.__slots__)


async def test_frame_to_track_keeps_a_bounded_wait_list_without_pictures() -> None:
    """/metrics matches report batches to the picture that takes them in; with
    no picture (a failed worker) the receive times waiting are bounded, the
    oldest dropped and counted, and a picture still matches the newest."""
    from gateway.metrics import GatewayMetrics
    from gateway.stages import StageClock

    gw = SimpleNamespace(reports=Topic[ReportsIn]("reports"), tracks=Topic[track_pb2.TrackBatch]("tracks"))
    gw.stages = StageClock()
    m = GatewayMetrics(gw)
    m.pending_max = 10
    rng = np.random.default_rng(8)
    t = time.time_ns()
    for k in range(25):
        gw.reports.publish(ReportsIn("radar", t + k, sensor_tracks(0, t, rng)))
    m.observe(t + 100)
    assert m.unmatched == 15
    gw.tracks.publish(track_pb2.TrackBatch(time_ns=t + 100))
    m.observe(t + 200)
    counts = {s.name: s.value for fam in m.frame_to_track.collect() for s in fam.samples}
    assert counts["hilgw_frame_to_track_seconds_count"] == 10  # the newest ten, matched
