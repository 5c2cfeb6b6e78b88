"""Gateway-added latency by stage, measured from a frame's receipt (issue 18).

Every report batch carries the wall-clock time its frame was read from the
transport (``receive_time_ns``, stamped by the driver right after the read).
The gateway observes how long after that the batch reached each stage:

* ``bus``: normalised and published on the in-process ``reports`` topic;
* ``encoded``: serialised as a ``SensorReportBatch`` and queued for MQTT;
* ``mqtt``: handed to the broker's socket (QoS 0) or acknowledged (QoS 1).

Observed once per batch, never per report: a prometheus Histogram observe
costs about a microsecond, a batch carries up to thousands of reports. The
histogram is ``hilgw_stage_seconds{stage}`` on ``/metrics``; benchmarks add a
listener to get every sample (benchmarks/bench_latency.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import Histogram

__all__ = ["STAGES", "StageClock"]

STAGES = ("bus", "encoded", "mqtt")

#: Sub-millisecond resolution: the goal is p99 <= 2 ms (issue 18).
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

#: Called with (stage, receive_time_ns, now_ns, reports) for every observation.
Listener = Callable[[str, int, int, int], None]


class StageClock:
    """The per-stage latency histogram and its optional raw-sample listeners."""

    def __init__(self) -> None:
        # registry=None: GatewayMetrics registers it when /metrics is configured.
        self.histogram = Histogram(
            "hilgw_stage_seconds",
            "From a frame's receipt at the transport to a report batch reaching the stage",
            ["stage"],
            registry=None,
            buckets=_BUCKETS,
        )
        self._child = {s: self.histogram.labels(s) for s in STAGES}
        self.listeners: list[Listener] = []

    def observe(self, stage: str, receive_time_ns: int, reports: int = 0) -> None:
        """Record that a batch received at ``receive_time_ns`` reached ``stage`` now."""
        if not receive_time_ns:
            return  # not from a transport (e.g. a synthetic message): nothing to time
        now = time.time_ns()
        self._child[stage].observe(max(now - receive_time_ns, 0) * 1e-9)
        for listener in self.listeners:
            listener(stage, receive_time_ns, now, reports)
