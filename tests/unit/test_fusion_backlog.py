"""The fusion stage's report backlog (gateway/fusion/backlog.py, issue 18):
batches stacked as they arrive come out as ``ReportArrays.concat`` of them,
in order, across growth, and what was taken is never written again."""

from __future__ import annotations

import time

import numpy as np

from gateway.bus import Topic
from gateway.config import FusionConfig
from gateway.devices.base import ReportsIn
from gateway.fusion.api import ReportArrays
from gateway.fusion.backlog import ReportBacklog
from gateway.fusion_stage import FusionStage
from hilgw.v1 import track_pb2
from tests.unit.fusion_worker_support import sensor_tracks


def _reports(n: int, rng: np.random.Generator) -> ReportArrays:
    """``n`` reports with every column random (so a misplaced row shows)."""
    e = ReportArrays.empty()
    cols = []
    for f in ReportArrays.__slots__:
        col = getattr(e, f)
        shape = (n, *col.shape[1:])
        if col.dtype.kind == "f":
            cols.append(rng.standard_normal(shape))
        else:
            cols.append(rng.integers(0, 100, shape).astype(col.dtype))
    return ReportArrays(*cols)


def _equal(a: ReportArrays, b: ReportArrays) -> bool:
    return all(
        getattr(a, f).dtype == getattr(b, f).dtype and np.array_equal(getattr(a, f), getattr(b, f))
        for f in ReportArrays.__slots__
    )


def test_taken_reports_are_the_batches_joined_in_order_across_growth() -> None:
    rng = np.random.default_rng(1)
    backlog = ReportBacklog(capacity=8)
    for period in range(4):
        parts = [_reports(int(k), rng) for k in rng.integers(0, 40, 12)]  # grows 8 -> 512
        for p in parts:
            backlog.add(p)
        assert len(backlog) == sum(len(p) for p in parts)
        assert _equal(backlog.take(), ReportArrays.concat(parts)), period
        assert len(backlog) == 0
    assert _equal(backlog.take(), ReportArrays.empty())


def test_what_was_taken_is_not_overwritten_by_the_next_period() -> None:
    """The worker (or an engine that holds reports for a later step) may still
    use a period's arrays while the next period's reports arrive."""
    rng = np.random.default_rng(2)
    backlog = ReportBacklog(capacity=4)
    first = _reports(4, rng)
    backlog.add(first)
    taken = backlog.take()
    backlog.add(_reports(3, rng))  # rows 0..2 again, no growth
    assert _equal(taken, first)
    backlog.add(_reports(100, rng))  # and with growth
    assert _equal(taken, first)


def test_the_stage_hands_the_worker_every_admitted_report_in_publish_order() -> None:
    """What a step request carries is what the bus admitted, as the queue of
    batches joined in order gave it (before the backlog stacked them)."""
    reports: Topic[ReportsIn] = Topic("reports")
    tracks: Topic[track_pb2.TrackBatch] = Topic("t")
    stage = FusionStage(FusionConfig(max_backlog_reports=100), "gw", reports, tracks)
    rng = np.random.default_rng(3)
    t = time.time_ns()
    sent = [_reports(n, rng) for n in (30, 50, 40, 20)]  # 40 does not fit (120 > 100); 20 does
    for r in sent:
        reports.publish(ReportsIn("radar", t, r))
    req = stage._request(t + 1)
    assert _equal(req.reports, ReportArrays.concat([sent[0], sent[1], sent[3]]))
    assert stage.backlog_reports == 0
    assert stage.backlog_dropped_reports == 40
    reports.publish(ReportsIn("radar", t, sensor_tracks(0, t, rng)))
    assert len(stage._request(t + 2).reports) == len(sensor_tracks(0, t, rng))
