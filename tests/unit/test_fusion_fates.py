"""Every report fusion takes in has exactly one fate: hilgw_fusion_reports_total adds up (issue 14)."""

from __future__ import annotations

import dataclasses

import numpy as np

from gateway.fusion.api import ReportArrays
from gateway.fusion_stage import report_fates
from tests.unit.test_fusion_engine import NCV, S, at, engine, plots

T0 = 100 * S
X0 = np.array([[30e3, 20e3, 5000.0, 200.0, 0.0, 0.0]])


def test_received_is_the_sum_of_terminal_fates_and_held() -> None:
    e = engine(dataclasses.replace(NCV, oos_lag_s=2.0))
    e.step(plots(0, at(X0, 0.0), T0, None), T0)  # starts a track
    # A plot outside the track's gate (d² > gate) but inside its wider start-suppression gate
    # (d² < init gate), the track taking no other plot: neither used nor a new track. The
    # young track's covariance is wide: 11 km down range is d² ≈ 30 (gates 25.9 and 35.4).
    off = at(X0, 1.0)
    off[0, :3] += 11_000.0 * X0[0, :3] / np.linalg.norm(X0[0, :3])
    e.step(plots(0, off, T0 + S, None), T0 + S)
    assert report_fates(e.counters)[0]["not_used"] == 1
    now, future = plots(0, at(X0, 3.0), T0 + 3 * S, None), plots(0, at(X0, 10.0), T0 + 10 * S, None)
    e.step(ReportArrays.concat([now, future]), T0 + 3 * S)  # one used, one held for later
    oos = plots(0, at(X0, 2.5), T0 + 2 * S + S // 2, None)  # older than the picture, within the lag
    late = plots(0, at(X0, 0.5), T0 + S // 2, None)  # older than the lag
    e.step(ReportArrays.concat([oos, late]), T0 + 4 * S)

    fates, held = report_fates(e.counters)
    assert fates == {
        "received": 6,
        "plot": 2,  # in sequence once, out of sequence once: counted once
        "sensor_track": 0,
        "started_track": 1,
        "dropped_late": 1,
        "not_used": 1,
    }
    assert held == 1
    assert e.counters["oos_used"] == 1  # a path, reported apart, not a fate
    terminal = sum(v for k, v in fates.items() if k != "received")
    assert fates["received"] == terminal + held
