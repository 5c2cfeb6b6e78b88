"""Prometheus ``/metrics`` and ``/healthz`` of one gateway (docs/operations.md).

Each Gateway has its own ``CollectorRegistry`` (never the process-global one),
so several gateways can run in one process (tests) and each shows only its own.
Counters that already exist (device stats, bus subscriptions, MQTT) are read
at scrape time by a custom collector: the hot path pays nothing for metrics.
Only the latency histograms are observed as things happen, by a task of their
own that watches the ``reports`` and ``tracks`` topics.

Served over HTTP on 127.0.0.1 by default (the ``[metrics]`` block) by the
standard library's server (gateway/metrics_http.py, not aiohttp: memory).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.config import MetricsConfig
from gateway.fusion_stage import report_fates
from gateway.metrics_http import Answer, LoopHttpEndpoint
from hilgw.v1 import health_pb2

if TYPE_CHECKING:
    from gateway.running import RunningGateway

__all__ = ["NON_DECODE_DROPS", "GatewayMetrics", "health_check", "metrics_answer", "start_metrics_server"]

log = logging.getLogger(__name__)

#: Drop reasons a driver counts for frames that decoded fine; every other
#: reason comes from a codec's Rejected event (crc, framing, decode, range,
#: sensor_id, ...) and counts as a decode error.
NON_DECODE_DROPS = frozenset(
    {"stale", "sequence_gap", "queue_full", "queue_overflow", "out_of_order", "kernel_overflow"}
)

#: Device states in which a device counts as receiving (for /healthz).
_RECEIVING = (health_pb2.DEVICE_STATE_UP, health_pb2.DEVICE_STATE_DEGRADED)

# Latency buckets (seconds): 1 ms .. 10 s, for a hot path that publishes at a
# few Hz (frame -> track is bounded below by the step period) and launcher
# links that ack in milliseconds.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)


def _state_name(state: int) -> str:
    return health_pb2.DeviceState.Name(state).removeprefix("DEVICE_STATE_")  # type: ignore[arg-type]  # int is the wire value


def _source_metrics(gw: RunningGateway) -> Iterator[Metric]:
    """Per-radar counters of multi-source devices (``[[devices.sources]]``, issue 22)."""
    lab = ["device", "source"]
    records = CounterMetricFamily("hilgw_source_records", "Records received from the source", labels=lab)
    reports = CounterMetricFamily("hilgw_source_reports", "Reports handed to fusion", labels=lab)
    service = CounterMetricFamily("hilgw_source_service_messages", "CAT034/CAT065 messages", labels=lab)
    oos = CounterMetricFamily(
        "hilgw_source_out_of_sequence", "Records older than the source's newest", labels=lab
    )
    drops = CounterMetricFamily("hilgw_source_drops", "Records dropped, by reason", labels=[*lab, "reason"])
    degraded = CounterMetricFamily(
        "hilgw_source_reports_degraded", "Reports with a field taken as unknown", labels=[*lab, "reason"]
    )
    state = GaugeMetricFamily("hilgw_source_state", "1 for the source's state", labels=[*lab, "state"])
    rot = GaugeMetricFamily("hilgw_source_rotation_seconds", "Antenna rotation period (CAT034)", labels=lab)
    unknown = CounterMetricFamily(
        "hilgw_device_unknown_source_records", "Records of a SAC/SIC the config does not name", labels=lab
    )
    for dev_id, st in gw.stats.items():
        for name, src in st.sources.items():
            key = [dev_id, name]
            records.add_metric(key, src.records_in)
            reports.add_metric(key, src.reports_out)
            service.add_metric(key, src.service_messages)
            oos.add_metric(key, src.out_of_sequence)
            for reason, n in sorted(src.drops.items()):
                drops.add_metric([*key, reason], n)
            for reason, n in sorted(src.degraded.items()):
                degraded.add_metric([*key, reason], n)
            state.add_metric([*key, _state_name(src.state)], 1)
            if src.rotation_s > 0:
                rot.add_metric(key, src.rotation_s)
        for sid, n in sorted(st.unknown_sources.items()):
            unknown.add_metric([dev_id, sid], n)
    yield from (records, reports, service, oos, drops, degraded, state, rot, unknown)


def health_check(gw: RunningGateway) -> tuple[bool, dict[str, Any]]:
    """Healthy when every task is alive and, if the gateway has devices, at
    least one is UP or DEGRADED (link alive, frames arriving)."""
    reasons: list[str] = []
    tasks = gw.task_list
    for t in tasks:
        if t.done():  # every task loops until shutdown: a finished one is dead
            reasons.append(f"task {t.get_name()} ended")
    devices = {dev_id: _state_name(st.state) for dev_id, st in gw.stats.items()}
    details = {dev_id: st.detail for dev_id, st in gw.stats.items() if st.detail}
    if gw.stats and not any(st.state in _RECEIVING for st in gw.stats.values()):
        reasons.append("no device is up")
    if not tasks:
        reasons.append("not started")
    if gw.fusion.worker_state == "failed":  # no picture until a new worker answers
        reasons.append(f"fusion worker failed: {gw.fusion.worker_problem}")
    looping = gw.task_health.problem(time.monotonic())
    if looping is not None:
        reasons.append(looping)
    if gw.cue is not None:  # the cue path down, or its audit log failed (issue 23 §7)
        from gateway.cue.observe import cue_health_reasons

        reasons.extend(cue_health_reasons(gw.cue))
    body = {
        "status": "unhealthy" if reasons else "ok",
        "reasons": reasons,
        "gateway_id": gw.config.gateway_id,
        "devices": devices,
        "details": details,
        "tasks": len(tasks),
    }
    return not reasons, body


class _GatewayCollector(Collector):
    """Reads the gateway's own counters at scrape time."""

    def __init__(self, gw: RunningGateway, metrics: GatewayMetrics) -> None:
        self.gw = gw
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        gw = self.gw
        dev = ["device"]
        frames = CounterMetricFamily("hilgw_device_frames", "Frames received from the device", labels=dev)
        nbytes = CounterMetricFamily("hilgw_device_bytes", "Bytes received from the device", labels=dev)
        reports = CounterMetricFamily(
            "hilgw_device_reports", "Normalised reports handed to fusion", labels=dev
        )
        drops = CounterMetricFamily(
            "hilgw_device_drops", "Frames or reports dropped, by reason", labels=["device", "reason"]
        )
        degraded = CounterMetricFamily(
            "hilgw_device_reports_degraded",
            "Reports published with a field taken as unknown, by reason",
            labels=["device", "reason"],
        )
        decode = CounterMetricFamily(
            "hilgw_device_decode_errors", "Frames the codec rejected (every reason but stale/gap)", labels=dev
        )
        restarts = CounterMetricFamily("hilgw_device_restarts", "Driver task restarts", labels=dev)
        state = GaugeMetricFamily(
            "hilgw_device_state", "1 for the device's current state", labels=["device", "state"]
        )
        age = GaugeMetricFamily(
            "hilgw_device_last_frame_age_seconds", "Since the last good frame", labels=dev
        )
        now_ns = time.time_ns()
        for dev_id, st in gw.stats.items():
            frames.add_metric([dev_id], st.frames_in)
            nbytes.add_metric([dev_id], st.bytes_in)
            reports.add_metric([dev_id], st.reports_out)
            restarts.add_metric([dev_id], st.restarts)
            for reason, n in sorted(st.drops.items()):
                drops.add_metric([dev_id, reason], n)
            for reason, n in sorted(st.degraded.items()):
                degraded.add_metric([dev_id, reason], n)
            decode.add_metric([dev_id], sum(n for r, n in st.drops.items() if r not in NON_DECODE_DROPS))
            state.add_metric([dev_id, _state_name(st.state)], 1)
            if st.last_frame_time_ns:
                age.add_metric([dev_id], max(now_ns - st.last_frame_time_ns, 0) * 1e-9)
        yield from (frames, nbytes, reports, drops, degraded, decode, restarts, state, age)
        yield from _source_metrics(gw)

        sub = ["topic", "subscriber"]
        depth = GaugeMetricFamily("hilgw_queue_depth", "Items waiting in a bus subscription", labels=sub)
        qdrop = CounterMetricFamily(
            "hilgw_queue_drops", "Items a full bus subscription discarded", labels=sub
        )
        published = CounterMetricFamily(
            "hilgw_bus_published", "Items published on a bus topic", labels=["topic"]
        )
        for topic in (gw.reports, gw.raw, gw.tracks, gw.health):
            published.add_metric([topic.name], topic.published)
            for s in topic.subscriptions:
                depth.add_metric([topic.name, s.name], len(s))
                qdrop.add_metric([topic.name, s.name], s.dropped)
        yield from (depth, qdrop, published)

        tracks = GaugeMetricFamily("hilgw_tracks", "System tracks in the last picture", labels=["status"])
        for status, n in sorted(gw.fusion.counts().items()):
            tracks.add_metric([_track_status(status)], n)
        yield tracks
        # What became of the reports fusion took in (engine counters): received =
        # the terminal fates + held (gateway/fusion_stage.py report_fates).
        counters = gw.fusion.engine_counters()  # the stepping engine's, in whichever worker it runs
        if "reports_in" in counters:
            by_fate, held = report_fates(counters)
            fates = CounterMetricFamily(
                "hilgw_fusion_reports", "Reports by what fusion did with them", labels=["fate"]
            )
            for fate, n in by_fate.items():
                fates.add_metric([fate], n)
            yield fates
            yield GaugeMetricFamily(
                "hilgw_fusion_reports_held",
                "Reports held for a later step (out-of-sequence window)",
                value=held,
            )
        if "oos_used" in counters:
            yield CounterMetricFamily(
                "hilgw_fusion_reports_out_of_sequence",
                "Reports handled out of sequence (older than the picture; their fate is counted too)",
                value=counters["oos_used"],
            )
        yield from _fusion_worker_metrics(gw)
        steps = gw.fusion.step_seconds
        if steps:
            yield GaugeMetricFamily(
                "hilgw_fusion_step_seconds_median",
                "Median of recent engine steps",
                value=sorted(steps)[len(steps) // 2],
            )

        yield CounterMetricFamily(
            "hilgw_frame_to_track_unmatched",
            "Report batches left out of hilgw_frame_to_track_seconds: no picture came while "
            f"{self.metrics.pending_max} newer ones waited",
            value=self.metrics.unmatched,
        )
        auth = GaugeMetricFamily(
            "hilgw_authority", "1 for the engagement authority in force", labels=["state"]
        )
        auth.add_metric([self.metrics.authority], 1)
        yield auth

        if gw.mqtt is not None:
            m = gw.mqtt
            yield GaugeMetricFamily(
                "hilgw_mqtt_connected", "1 while connected to the broker", value=int(m.connected)
            )
            yield GaugeMetricFamily(
                "hilgw_mqtt_queue_depth", "Messages waiting for the broker", value=m.queued
            )
            cmd = gw.mqtt_commands  # the cue path's own connection: its outputs are counted there
            out_counts = m.published + cmd.published if cmd is not None else m.published
            pub = CounterMetricFamily("hilgw_mqtt_published", "Messages published", labels=["kind"])
            for kind, n in sorted(out_counts.items()):
                pub.add_metric([kind], n)
            mdrop = CounterMetricFamily(
                "hilgw_mqtt_drops",
                "Messages the store-and-forward queue discarded",
                labels=["kind", "reason"],
            )
            for (kind, why), n in sorted(m.dropped.items()):
                mdrop.add_metric([kind, why], n)
            yield from (pub, mdrop)
            yield GaugeMetricFamily(
                "hilgw_mqtt_queue_critical", "Cues, acks, authority, results waiting (never dropped)",
                value=m.queued_critical,
            )  # fmt: skip
            yield CounterMetricFamily("hilgw_mqtt_connects", "Connections made", value=m.connects)
            if cmd is not None:
                yield GaugeMetricFamily(
                    "hilgw_mqtt_commands_connected",
                    "1 while the operator-command connection is up ([mqtt] command_connection)",
                    value=int(cmd.connected),
                )
                yield CounterMetricFamily(
                    "hilgw_mqtt_commands_sheds",
                    "Times the command connection was dropped and made again under a flood",
                    value=cmd.sheds,
                )
            lanes = gw.cue.lanes if gw.cue is not None else {}
            if lanes:  # one connection per operator lane (docs/cue-path.md §12)
                up = GaugeMetricFamily(
                    "hilgw_mqtt_lane_connected",
                    "1 while an operator lane's connection is up",
                    labels=["operator"],
                )
                shed = CounterMetricFamily(
                    "hilgw_mqtt_lane_sheds",
                    "Times an operator lane's connection was dropped and made again under a flood",
                    labels=["operator"],
                )
                for op, lane in sorted(lanes.items()):
                    up.add_metric([op], int(lane.connected))
                    shed.add_metric([op], lane.sheds)
                yield from (up, shed)
            yield CounterMetricFamily(
                "hilgw_mqtt_connect_failures", "Connection attempts that failed", value=m.connect_failures
            )

        if gw.nats is not None:  # [nats]: the core NATS fast path (docs/federation.md §8)
            link = gw.nats
            yield GaugeMetricFamily(
                "hilgw_nats_connected", "1 while the [nats] fast path is connected", value=int(link.connected)
            )
            yield CounterMetricFamily("hilgw_nats_connects", "[nats] connections made", value=link.connects)
            nerr = CounterMetricFamily(
                "hilgw_nats_errors", "[nats] refused connects and link errors", labels=["reason"]
            )
            for why, count in sorted(link.errors.items()):
                nerr.add_metric([why], count)
            yield nerr

        tr = CounterMetricFamily(
            "hilgw_task_restarts", "Restarts of the gateway's own tasks", labels=["task"]
        )
        for task, n in sorted(gw.task_health.restarts.items()):
            tr.add_metric([task], n)
        yield tr

        rec = gw.recorder
        if rec is not None:
            yield CounterMetricFamily(
                "hilgw_recording_messages", "Messages written", value=rec.messages_written
            )
            yield CounterMetricFamily("hilgw_recording_bytes", "Bytes written", value=rec.bytes_written)
            yield CounterMetricFamily("hilgw_recording_write_errors", "Failed writes", value=rec.write_errors)
            yield GaugeMetricFamily("hilgw_recording_files", "Parts written so far", value=len(rec.files))

        if gw.web is not None:
            yield GaugeMetricFamily("hilgw_web_clients", "Open situation-display pages", value=gw.web.clients)
            dropped = CounterMetricFamily(
                "hilgw_web_clients_dropped", "Display pages dropped for falling behind", labels=["reason"]
            )
            for reason in ("slow", "send_timeout", "send_error", "no_pong"):
                dropped.add_metric([reason], gw.web.dropped[reason])
            refused = CounterMetricFamily(
                "hilgw_web_requests_refused",
                "Display requests refused (limit: 503; host, origin: 403)",
                labels=["reason"],
            )
            for reason in ("limit", "host", "origin"):
                refused.add_metric([reason], gw.web.refused[reason])
            yield from (dropped, refused)

        scoring = gw.scoring
        if scoring is not None:
            rejected = CounterMetricFamily(
                "hilgw_scoring_truth_rejected", "Truth batches not scored against", labels=["reason"]
            )
            for reason in ("non_finite", "out_of_range", "duplicate_id", "no_time"):
                rejected.add_metric([reason], scoring.scorer.truth_rejected[reason])
            yield rejected
            yield CounterMetricFamily(
                "hilgw_scoring_tracks_rejected",
                "Tracks left out of scoring (non-finite state)",
                value=scoring.scorer.tracks_rejected,
            )

        if gw.cue is not None:  # operator commands by fate, faults, audit failures (issue 23 §7)
            from gateway.cue.observe import cue_metrics

            yield from cue_metrics(gw.cue)

        ok, _ = health_check(gw)
        yield GaugeMetricFamily("hilgw_healthy", "1 when /healthz answers 200", value=int(ok))


def _fusion_worker_metrics(gw: RunningGateway) -> Iterator[Metric]:
    """Where fusion steps and whether that works (gateway/fusion_worker.py, issue 18)."""
    f = gw.fusion
    up = GaugeMetricFamily(
        "hilgw_fusion_worker_up", "1 while the fusion worker answers (inline: always)", labels=["kind"]
    )
    up.add_metric([f.worker_kind], int(f.worker_state in ("up", "inline")))
    yield up
    yield CounterMetricFamily(
        "hilgw_fusion_worker_failures",
        "Fusion workers that died, hung or failed a step",
        value=f.worker_failures,
    )
    yield CounterMetricFamily(
        "hilgw_fusion_pictures_stale",
        "Pictures not published: back from the worker later than max_picture_lag_s",
        value=f.pictures_stale,
    )
    yield CounterMetricFamily(
        "hilgw_fusion_ticks_skipped",
        "Fusion periods with no step started: the step before was still running",
        value=f.ticks_skipped,
    )
    yield GaugeMetricFamily(
        "hilgw_fusion_backlog_reports", "Reports waiting for the next fusion step", value=f.backlog_reports
    )
    yield CounterMetricFamily(
        "hilgw_fusion_backlog_dropped_reports",
        "Reports dropped because the fusion backlog was at fusion.max_backlog_reports",
        value=f.backlog_dropped_reports,
    )


def _track_status(status: int) -> str:
    return {1: "tentative", 2: "confirmed", 3: "coasting", 4: "dropped"}.get(status, str(status))


#: Report batches whose receive times wait for a picture, at most (GatewayMetrics.observe).
_PENDING_MAX = 65536


class GatewayMetrics:
    """The registry, the latency histograms and the task that observes them.

    ``authority`` is shown as ``hilgw_authority{state=...}``; it reads "HOLD"
    (the safe start state) until the cue path sets it. The cue path reports
    cue-to-ack latency with :meth:`observe_cue_ack`.
    """

    def __init__(self, gw: RunningGateway) -> None:
        self.gw = gw
        self.registry = CollectorRegistry(auto_describe=False)
        self.authority = "HOLD"
        self.frame_to_track = Histogram(
            "hilgw_frame_to_track_seconds",
            "From a frame's receive time to the first published picture that includes it",
            ["device"],
            registry=self.registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.cue_to_ack = Histogram(
            "hilgw_cue_ack_seconds",
            "From a cue leaving the gateway to its launcher's ack or nack",
            ["launcher"],
            registry=self.registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.registry.register(_GatewayCollector(gw, self))
        self.registry.register(gw.stages.histogram)  # hilgw_stage_seconds{stage} (gateway/stages.py)
        wake = asyncio.Event()
        self._wake = wake
        # DROP_OLDEST: a lost receive time only thins the histogram; counted like any drop.
        self._reports = gw.reports.subscribe("metrics", maxsize=65536, wake=wake)
        self._tracks = gw.tracks.subscribe("metrics", maxsize=256, wake=wake)
        #: Receive times waiting for the picture that takes them in; bounded,
        #: because with no picture (a failed worker, stale pictures) none would
        #: ever leave: past the bound the oldest is dropped and counted.
        self._pending: deque[tuple[str, int]] = deque()
        self.pending_max = _PENDING_MAX
        self.unmatched = 0

    def observe_cue_ack(self, launcher_id: str, seconds: float) -> None:
        self.cue_to_ack.labels(launcher_id).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def observe(self, now_ns: int) -> None:
        """Match queued report batches to the pictures that took them in."""
        for r in self._reports.get_all():
            self._pending.append((r.device_id, r.receive_time_ns))
        over = len(self._pending) - self.pending_max
        if over > 0:
            self.unmatched += over
            for _ in range(over):
                self._pending.popleft()
        for batch in self._tracks.get_all():
            # The engine step at time_ns takes every batch received up to then
            # (gateway/replay.py explains why that order is exact).
            while self._pending and self._pending[0][1] <= batch.time_ns:
                dev_id, t_rx = self._pending.popleft()
                self.frame_to_track.labels(dev_id).observe(max(now_ns - t_rx, 0) * 1e-9)

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self.observe(time.time_ns())


def metrics_answer(metrics: GatewayMetrics, path: str) -> Answer | None:
    """``/metrics`` and ``/healthz``, rendered on the event loop (gateway/metrics_http.py)."""
    if path == "/metrics":
        # Rendering reads counters only; it is quick enough for the loop.
        return 200, CONTENT_TYPE_LATEST, metrics.exposition()
    if path == "/healthz":
        ok, body = health_check(metrics.gw)
        return 200 if ok else 503, "application/json; charset=utf-8", json.dumps(body).encode()
    return None


async def start_metrics_server(metrics: GatewayMetrics, config: MetricsConfig) -> LoopHttpEndpoint:
    endpoint = LoopHttpEndpoint(
        lambda path: metrics_answer(metrics, path), config.host, config.port, "metrics"
    )
    await endpoint.start()
    return endpoint
