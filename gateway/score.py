"""Live truth scoring over MQTT: ``hilgw score`` and the gateway's optional scoring task.

Both feed a :class:`gateway.scoring.LiveScorer` with

* truth: ``hilgw.v1.TruthBatch`` on the truth topic (``{prefix}/truth``, from
  ``hilgw emulate --mqtt`` or the bench's own truth publisher);
* the system tracks (``TrackBatch``) and the sensor reports (``SensorReportBatch``,
  for the first-detection times) of one gateway,

and publish a ``hilgw.v1.ScoreReport`` on ``{prefix}/{gateway_id}/score`` once
a second (the command also prints a table, live and at the end).

``hilgw score --config FILE | --mqtt HOST:PORT [--gateway-id ID] [--duration S]``
subscribes to the gateway's topics on the broker; the gateway itself scores
when its config has ``[scoring] truth_topic = "..."`` (:class:`GatewayScoring`,
fed from its internal topics; in bench mode it also starts the truth
publisher of its emulated scenario).

Cue timing: every ``EngagementCue`` on ``{prefix}/{gateway_id}/cues/+`` (the
cue path publishes each cue it sends there) marks the first cue of the target
its system track is assigned to; the cue's time is the start of its validity
window (a cue carries no send time).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import aiomqtt
import numpy as np
from google.protobuf.message import DecodeError
from rich.console import Console
from rich.live import Live
from rich.table import Table

from gateway.outputs.mqtt import Outgoing, Topics, tls_context
from gateway.outputs.mqtt import publish as mqtt_publish
from gateway.scoring import LiveScorer
from hilgw.errors import ConfigError
from hilgw.v1 import cue_pb2, report_pb2, track_pb2, truth_pb2

if TYPE_CHECKING:
    from gateway.config import MqttConfig, ScoringConfig
    from gateway.running import RunningGateway

__all__ = ["GatewayScoring", "main", "render", "score_topic"]

log = logging.getLogger(__name__)


def score_topic(prefix: str, gateway_id: str) -> str:
    """Where a gateway's ScoreReport goes: ``{prefix}/{gateway_id}/score``."""
    return f"{Topics(prefix, gateway_id).base}/score"


def _t(ns: int, epoch: int) -> str:
    return f"{(ns - epoch) / 1e9:7.1f}" if ns and epoch else "-"


def render(rep: truth_pb2.ScoreReport, epoch_ns: int = 0) -> Table:
    """A rich table of a ScoreReport: the metrics, then one row per truth target."""
    title = (
        f"{'final ' if rep.final else ''}score of {rep.gateway_id or '?'}: "
        f"OSPA {rep.ospa_m:.0f} m (mean {rep.mean_ospa_m:.0f}), "
        f"GOSPA {rep.gospa_m:.0f} m (mean {rep.mean_gospa_m:.0f}; loc {rep.gospa_localisation_m:.0f} m, "
        f"{rep.missed} missed, {rep.false_tracks} false), c={rep.cutoff_m:g} m p={rep.order_p:g}, "
        f"{rep.steps} steps, swaps {rep.id_swaps}, breaks {rep.track_breaks}, "
        f"track ids/target {rep.track_ids_per_target:.2f}, "
        f"duplicates {rep.duplicate_tracks} (max {rep.max_duplicate_tracks}, "
        f"{rep.steps_with_duplicates} steps)"
    )
    tab = Table(title=title, title_justify="left")
    for col in (
        "target",
        "track",
        "truth t",
        "detected t",
        "confirmed t",
        "det→conf s",
        "det→cue s",
        "swaps",
        "breaks",
        "ids",
        "dup steps",
        "tracked",
    ):
        tab.add_column(col, justify="left" if col == "target" else "right")
    for t in rep.targets:
        dtc = "-" if math.isnan(t.detection_to_confirmed_s) else f"{t.detection_to_confirmed_s:.1f}"
        dtq = "-" if math.isnan(t.detection_to_cue_s) else f"{t.detection_to_cue_s:.1f}"
        frac = f"{t.steps_tracked}/{t.steps_present}"
        tab.add_row(
            t.target_id,
            str(t.track_id or "-"),
            _t(t.first_truth_time_ns, epoch_ns),
            _t(t.first_detection_time_ns, epoch_ns),
            _t(t.first_confirmed_time_ns, epoch_ns),
            dtc,
            dtq,
            str(t.id_swaps),
            str(t.track_breaks),
            str(t.track_ids),
            str(t.duplicate_steps),
            frac,
        )
    return tab


def _cue_time(cue: cue_pb2.EngagementCue) -> int:
    """When a cue left: the start of its validity window (the cue carries no send time)."""
    return int(cue.valid_from_ns or cue.time_of_validity_ns)


def _report_positions(msg: report_pb2.SensorReportBatch) -> tuple[np.ndarray, np.ndarray]:
    n = len(msg.reports)
    pos = np.array([[r.ecef.x, r.ecef.y, r.ecef.z] for r in msg.reports]).reshape(-1, 3)
    t = np.fromiter((r.measurement_time_ns for r in msg.reports), np.int64, n)
    return pos, t


# --- inside the gateway ---------------------------------------------------------------


class GatewayScoring:
    """The gateway's scoring task (``[scoring]``): bus tracks/reports + MQTT truth -> ScoreReport.

    Subscribes to the gateway's topics when built (before any await, like the
    recorder), so it misses nothing from the start.
    """

    def __init__(self, gw: RunningGateway, config: ScoringConfig) -> None:
        self.gw = gw
        self.config = config
        self.scorer = LiveScorer(config.cutoff_m, config.order_p, config.max_truth_age_s)
        self.tracks = gw.tracks.subscribe("scoring", maxsize=256)
        self.reports = gw.reports.subscribe("scoring", maxsize=4096)
        self.topic = score_topic(gw.config.mqtt.topic_prefix, gw.config.gateway_id)
        #: The last report published (also for tests and the console).
        self.last: truth_pb2.ScoreReport | None = None
        self.truth_batches = 0
        self.cues = 0
        #: Messages on the subscribed topics that did not decode (counted, skipped).
        self.undecodable = 0
        self._cues_topic = f"{Topics(gw.config.mqtt.topic_prefix, gw.config.gateway_id).base}/cues/+"

    async def run(self) -> None:
        gw, c = self.gw, self.config
        mq = gw.config.mqtt
        if c.emulated_truth and gw.emulation is not None and gw.emulation.truth is None:
            await gw.emulation.start_truth(f"{mq.host}:{gw.mqtt_port}", c.truth_topic)
        session = gw.mqtt
        assert session is not None  # [scoring] needs [mqtt] (checked at config load)
        # On the gateway's one MQTT session (issue 15): it resubscribes after a reconnect.
        subs = [
            session.subscribe(c.truth_topic, self._on_truth, qos=0),
            # The cue path publishes every cue it sends there (docs/topics.md).
            session.subscribe(self._cues_topic, self._on_cue, qos=0),
        ]
        try:
            await self._tick()
        finally:
            for sub in subs:
                sub.close()

    def _on_cue(self, topic: str, payload: bytes) -> None:
        try:
            cue = cue_pb2.EngagementCue.FromString(payload)
        except DecodeError:  # a foreign message on the topic: count it, keep going
            self.undecodable += 1
            log.warning("scoring: undecodable message on %s", topic)
            return
        self.cues += 1
        self.scorer.on_cue(cue.system_track_id, _cue_time(cue))

    def _on_truth(self, topic: str, payload: bytes) -> None:
        try:
            batch = truth_pb2.TruthBatch.FromString(payload)
        except DecodeError:
            self.undecodable += 1
            log.warning("scoring: undecodable message on %s", topic)
            return
        self.truth_batches += 1
        self.scorer.on_truth_batch(batch)

    async def _tick(self) -> None:
        period = 1.0 / self.config.publish_hz
        next_pub = time.monotonic() + period
        while True:
            await asyncio.sleep(0.1)
            self.step()
            if time.monotonic() >= next_pub:
                next_pub += period
                self.publish()

    def step(self) -> None:
        """Feed what the bus delivered since the last call."""
        for r in self.reports.get_all():
            self.scorer.on_reports(r.reports.x[:, :3], r.reports.t_ns)
        for b in self.tracks.get_all():
            self.scorer.on_track_batch(b)

    def publish(self) -> None:
        rep = self.last = self.scorer.report(self.gw.config.gateway_id)
        if self.gw.mqtt is not None and rep.steps:
            self.gw.mqtt.enqueue(Outgoing(self.topic, rep.SerializeToString(), qos=0, kind="score"))


# --- the command --------------------------------------------------------------------


def _client(mq: MqttConfig | None, port: int, ident: str, host: str | None = None) -> aiomqtt.Client:
    if mq is None:
        return aiomqtt.Client(host or "127.0.0.1", port, identifier=ident)
    ctx = tls_context(mq.tls) if mq.tls is not None else None
    return aiomqtt.Client(
        host or mq.host,
        port,
        identifier=ident,
        username=mq.username,
        password=mq.password,
        tls_context=ctx,
    )


async def _score(ns: argparse.Namespace, mq: MqttConfig | None, host: str, port: int) -> int:
    prefix, gw_id = ns.prefix, ns.gateway_id
    topics = Topics(prefix, gw_id)
    scorer = LiveScorer(ns.cutoff, ns.order, ns.max_truth_age)
    out_topic = score_topic(prefix, gw_id)
    live = sys.stdout.isatty() if ns.live is None else ns.live
    # Not a terminal: wide enough that the table is not cut (logs, CI).
    console = Console() if live else Console(width=160)
    epoch = [0]
    deadline = None if ns.duration is None else time.monotonic() + ns.duration
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with _client(mq, port, f"hilgw-score-{id(scorer):x}", host) as cli:
        await cli.subscribe(ns.truth_topic)
        await cli.subscribe(topics.tracks)
        await cli.subscribe(topics.reports("+"))
        await cli.subscribe(f"{topics.base}/cues/+")

        undecodable = [0]

        def handle(topic: aiomqtt.Topic, payload: bytes) -> None:
            if topic.matches(ns.truth_topic):
                tb = truth_pb2.TruthBatch.FromString(payload)
                epoch[0] = epoch[0] or int(tb.epoch_ns)
                scorer.on_truth_batch(tb)
            elif topic.matches(topics.tracks):
                scorer.on_track_batch(track_pb2.TrackBatch.FromString(payload))
            elif topic.matches(f"{topics.base}/cues/+"):
                cue = cue_pb2.EngagementCue.FromString(payload)
                scorer.on_cue(cue.system_track_id, _cue_time(cue))
            else:
                scorer.on_reports(*_report_positions(report_pb2.SensorReportBatch.FromString(payload)))

        async def consume() -> None:
            async for msg in cli.messages:
                try:
                    handle(msg.topic, bytes(msg.payload))
                except DecodeError:  # a foreign message: counted, skipped
                    undecodable[0] += 1

        async def publish(final: bool) -> truth_pb2.ScoreReport:
            rep = scorer.report(gw_id, final=final)
            await mqtt_publish(cli, out_topic, rep.SerializeToString(), qos=1 if final else 0)
            return rep

        task = asyncio.create_task(consume(), name="score:consume")
        view = Live(render(scorer.report(gw_id), 0), console=console, refresh_per_second=2) if live else None
        try:
            if view is not None:
                view.start()
            while not stop.is_set():
                left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):  # not wait_for: it can swallow a cancel on 3.11
                        await stop.wait()
                if task.done():
                    task.result()  # the broker went away: raise its error
                rep = await publish(False)
                if view is not None:
                    view.update(render(rep, epoch[0]))
                elif rep.steps:
                    console.print(
                        f"steps={rep.steps} ospa={rep.ospa_m:.1f} gospa={rep.gospa_m:.1f} "
                        f"missed={rep.missed} false={rep.false_tracks} dup={rep.duplicate_tracks} "
                        f"swaps={rep.id_swaps}",
                        highlight=False,
                    )
        finally:
            if view is not None:
                view.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task
        final = await publish(True)
    console.print(render(final, epoch[0]))
    if undecodable[0]:
        print(f"hilgw score: {undecodable[0]} undecodable message(s) skipped", file=sys.stderr)
    if not final.steps:
        print("hilgw score: nothing scored (no truth, or no track batch near a truth batch)", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``hilgw score`` command line."""
    p = argparse.ArgumentParser(
        prog="hilgw score", description="Score a gateway's tracks against truth, live."
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", type=Path, help="the gateway's config (broker, prefix, id, [scoring])")
    src.add_argument("--mqtt", metavar="HOST:PORT", help="the broker")
    p.add_argument("--gateway-id", default=None, help="whose tracks (default: the config's, or 'hilgw')")
    p.add_argument("--prefix", default=None, help="topic prefix (default: the config's, or 'hilgw')")
    p.add_argument("--truth-topic", default=None, help="default: [scoring] truth_topic, or PREFIX/truth")
    p.add_argument("--cutoff", type=float, default=None, help="OSPA/GOSPA cutoff c in m (default 2000)")
    p.add_argument("--order", type=float, default=None, help="OSPA/GOSPA order p (default 2)")
    p.add_argument("--max-truth-age", type=float, default=2.0, help="s; older truth is not scored against")
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: SIGINT)")
    v = p.add_mutually_exclusive_group()
    v.add_argument("--live", dest="live", action="store_true", default=None, help="live table")
    v.add_argument("--no-live", dest="live", action="store_false", help="one line per second")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hilgw score``; 0 ok, 1 nothing scored, 2 bad arguments."""
    ns = build_parser().parse_args(argv)
    mq: MqttConfig | None = None
    try:
        if ns.config is not None:
            from gateway.config import load_config

            cfg = load_config(ns.config)
            mq, host, port = cfg.mqtt, cfg.mqtt.host, cfg.mqtt.port
            ns.gateway_id = ns.gateway_id or cfg.gateway_id
            ns.prefix = ns.prefix or cfg.mqtt.topic_prefix
            if cfg.scoring is not None:
                ns.truth_topic = ns.truth_topic or cfg.scoring.truth_topic
                ns.cutoff = ns.cutoff if ns.cutoff is not None else cfg.scoring.cutoff_m
                ns.order = ns.order if ns.order is not None else cfg.scoring.order_p
        else:
            host, sep, p = str(ns.mqtt).rpartition(":")
            if not sep or not host or not p.isdigit():
                raise ConfigError("--mqtt", f"expected HOST:PORT, got {ns.mqtt!r}")
            port = int(p)
        ns.gateway_id = ns.gateway_id or "hilgw"
        ns.prefix = ns.prefix or "hilgw"
        ns.truth_topic = ns.truth_topic or f"{ns.prefix}/truth"
        ns.cutoff = 2000.0 if ns.cutoff is None else ns.cutoff
        ns.order = 2.0 if ns.order is None else ns.order
        if not ns.cutoff > 0 or not ns.order >= 1:
            raise ConfigError("--cutoff/--order", f"need c > 0 and p >= 1, got {ns.cutoff}, {ns.order}")
    except ConfigError as exc:
        print(f"hilgw score: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_score(ns, mq, host, port))
    except aiomqtt.MqttError as exc:
        print(f"hilgw score: broker {host}:{port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
