"""The gateway application: owns start-up, the named tasks, and orderly shut-down.

    async with Gateway(config) as gw:
        await gw.wait_stopped()          # until gw.stop() (SIGINT/SIGTERM)

Every long-running part is a named task in one TaskGroup. A device task that
fails is restarted with exponential back-off and its state shows in
DeviceHealth (RESTARTING, then STARTING/UP); bad frames never fail a task.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Self

import numpy as np
import numpy.typing as npt

from gateway.bus import Topic
from gateway.config import DeviceConfig, GatewayConfig
from gateway.devices.base import (
    DeviceDriver,
    DriverContext,
    DriverServices,
    RawFrame,
    ReportsIn,
    build_driver,
)
from gateway.emulation import EmulatedDevices
from gateway.fusion.api import ReportArrays
from gateway.fusion_stage import FusionStage
from gateway.health import ALL_REJECTED, DeviceStats
from gateway.normalise import reports_to_proto
from gateway.outputs.broker import EmbeddedBroker
from gateway.outputs.commands import command_session
from gateway.outputs.mqtt import Outgoing
from gateway.outputs.session import MqttSession
from gateway.stages import StageClock
from gateway.task_health import TaskHealth
from hilgw.errors import ConfigError, HilgwError
from hilgw.v1 import cue_pb2, health_pb2, track_pb2

if TYPE_CHECKING:
    from gateway.cue.path import CuePath  # issue 7: imported when configured (aiohttp is not free to import)
    from gateway.federation.fastpath import NatsLink
    from gateway.federation.picture import PictureBridge
    from gateway.federation.sites import SiteInput
    from gateway.metrics import GatewayMetrics
    from gateway.metrics_http import LoopHttpEndpoint
    from gateway.partners.output import PartnerFeed
    from gateway.recording import Recorder
    from gateway.score import GatewayScoring
    from gateway.web.endpoint import HttpEndpoint
    from gateway.web.server import SituationDisplay

log = logging.getLogger(__name__)

_ALIVE = (health_pb2.DEVICE_STATE_UP, health_pb2.DEVICE_STATE_DEGRADED, health_pb2.DEVICE_STATE_STARTING)


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        #: Gateway-added latency by stage (``hilgw_stage_seconds``, gateway/stages.py).
        self.stages = StageClock()
        self.reports: Topic[ReportsIn] = Topic("reports", on_publish=self._on_report)
        self.raw: Topic[RawFrame] = Topic("raw")
        self.tracks: Topic[track_pb2.TrackBatch] = Topic("tracks")
        self.health: Topic[health_pb2.DeviceHealth] = Topic("health")
        self.stats: dict[str, DeviceStats] = {}
        self.devices: list[DeviceConfig] = []
        self.fusion = FusionStage(config.fusion, config.gateway_id, self.reports, self.tracks)
        self.mqtt: MqttSession | None = None
        #: The cue path's own connection for operator commands (``[mqtt] command_connection``).
        self.mqtt_commands: MqttSession | None = None
        self.nats: NatsLink | None = None  # [nats]: the core NATS fast path (docs/federation.md §5)
        self.task_health = TaskHealth(config.supervisor)
        self.mqtt_port = config.mqtt.port
        self.emulation: EmulatedDevices | None = None
        self.started_mono = 0.0
        self._stop = asyncio.Event()
        self._stack = AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []
        # --- recording, metrics, web display (issue 7; docs/recording.md, docs/operations.md)
        self.recorder: Recorder | None = None
        self.metrics: GatewayMetrics | None = None
        self.web: SituationDisplay | None = None
        self.endpoints: dict[str, HttpEndpoint | LoopHttpEndpoint] = {}  # "metrics"/"web" -> bound host:port
        self.cue: CuePath | None = None  # issue 5: [cue]
        self.scoring: GatewayScoring | None = None  # issue 6: [scoring]
        self.partner_feeds: dict[str, PartnerFeed] = {}  # [[partners]] (docs/partners.md)
        self._report_seq: dict[str, int] = {}  # per-device SensorReportBatch sequence on MQTT
        self.sites: list[SiteInput] = []  # [federation]: one input per site gateway
        self.cue_picture: PictureBridge | None = None  # [cue.picture]: the remote picture
        self._live_subject = ""  # [nats]: where this gateway's picture goes on the fast path

    # --- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._shutdown()

    def stop(self) -> None:
        self._stop.set()

    async def wait_stopped(self) -> None:
        await self._stop.wait()

    async def _start(self) -> None:
        cfg = self.config
        self.started_mono = time.monotonic()
        self._stack.push_async_callback(self.fusion.close)
        self.fusion.spawn()  # the fusion worker's imports overlap the start-up below
        devices = list(cfg.devices)
        if cfg.emulation is not None:
            cued = frozenset(lc.id for lc in cfg.cue.launchers) if cfg.cue is not None else frozenset()
            self.emulation = EmulatedDevices(
                cfg.emulation, overridden={d.id for d in devices}, cued_launchers=cued
            )
            self._stack.push_async_callback(self.emulation.stop)
            devices += await self.emulation.start()
        self.devices = [d for d in devices if d.enabled]
        from gateway.wiring.partners import source_markings  # markings travel with the data

        self.fusion.markings = source_markings(self.devices, cfg.partners)

        if cfg.mqtt.enabled:
            port: int | None = None  # the configured host(s)
            if cfg.mqtt.broker == "embedded":
                broker = await self._stack.enter_async_context(EmbeddedBroker(cfg.mqtt.port))
                self.mqtt_port = port = broker.port
            # The main session: publisher and scoring, and the cue path unless it has its own.
            self.mqtt = MqttSession(cfg.mqtt, cfg.gateway_id, port=port)
            self.mqtt.stages = self.stages
            if cfg.mqtt.command_connection and cfg.cue is not None and cfg.cue.enabled:
                # Operator commands on a connection of their own: no telemetry in front
                # of a HOLD, in the broker's queue or in ours (issue 23 §1).
                self.mqtt_commands = command_session(cfg.mqtt, cfg.gateway_id, port=port)
        if cfg.nats is not None:
            from gateway.federation.fastpath import NatsLink, live_subject

            self.nats = NatsLink(cfg.nats, f"hilgw-{cfg.gateway_id}")
            self._live_subject = live_subject(cfg.mqtt.topic_prefix, cfg.gateway_id)

        if cfg.federation is not None:  # a theatre: site pictures are its sensors (docs/federation.md)
            from gateway.wiring.federation import start_sites

            self.sites = start_sites(self)
        # The fusion worker process is up before any device reads; it was
        # spawned first, so its imports (a second or two) overlapped the rest.
        # A worker that cannot start fails the start.
        await self.fusion.start()
        tg = await self._stack.enter_async_context(asyncio.TaskGroup())
        drivers: dict[str, DeviceDriver] = {}
        for dev in self.devices:
            stats = DeviceStats(dev.id, dev.protocol, dev.transport.kind, gateway_id=cfg.gateway_id)
            self.stats[dev.id] = stats
            driver = drivers[dev.id] = self._make_driver(dev, stats)
            self._spawn(tg, f"device:{dev.id}", self._supervise_device(driver))
        if cfg.cue is not None and cfg.cue.enabled:
            self._start_cue_path(tg, drivers)
        self._spawn_observers(tg)  # before any await: the recorder must not miss a frame
        self._wire_cue_observers()
        self._spawn(tg, "fusion", self._keep_running("fusion", self.fusion.run))
        self._spawn(tg, "health", self._keep_running("health", self._health_loop))
        if cfg.scoring is not None:  # issue 6: live truth scoring (gateway/score.py)
            from gateway.score import GatewayScoring

            scoring = self.scoring = GatewayScoring(self, cfg.scoring)
            self._spawn(tg, "scoring", self._keep_running("scoring", scoring.run))
        if cfg.partners:  # partner feeds (docs/partners.md)
            from gateway.wiring.partners import build_partners

            for name, run in build_partners(self, self.partner_feeds):
                self._spawn(tg, name, self._keep_running(name, run))
        if self.mqtt is not None:
            mqtt = self.mqtt
            self._spawn(tg, "mqtt", self._keep_running("mqtt", mqtt.run))
            self._spawn(tg, "mqtt:feed", self._keep_running("mqtt:feed", self._feed_mqtt))
        if self.mqtt_commands is not None:
            commands = self.mqtt_commands
            self._spawn(tg, "mqtt:commands", self._keep_running("mqtt:commands", commands.run))
        if self.nats is not None:
            self._spawn(tg, "nats", self._keep_running("nats", self.nats.run))
        await self._serve_observers()
        # What start-up built (imports, config, the engine: a few hundred thousand
        # objects) lives as long as the gateway. Frozen, the cyclic GC no longer
        # walks it: each full collection paused the loop 35-50 ms, every few
        # seconds at 10k reports/s, and that pause was the tail of the
        # gateway-added latency (issue 18, benchmarks/RESULTS.md). Undone at stop.
        gc.freeze()
        self._stack.callback(gc.unfreeze)
        log.info("gateway %s started with %d device(s)", cfg.gateway_id, len(self.devices))

    async def _shutdown(self) -> None:
        for t in self._tasks:
            t.cancel()
        try:
            async with asyncio.timeout(self.config.shutdown_timeout_s):
                await self._stack.aclose()
        except TimeoutError:
            log.warning("shutdown took longer than %.1f s", self.config.shutdown_timeout_s)
        self._tasks.clear()

    def _spawn(self, tg: asyncio.TaskGroup, name: str, coro: Awaitable[None]) -> None:
        self._tasks.append(tg.create_task(coro, name=name))  # type: ignore[arg-type]  # a coroutine

    def _start_cue_path(self, tg: asyncio.TaskGroup, drivers: dict[str, DeviceDriver]) -> None:
        """The engagement-cue path (docs/cue-path.md): starts in HOLD, always.

        Each ``[[cue.launchers]]`` entry is joined to the launcher device of the
        same id; a restart of the task (``_keep_running``) builds a new core,
        which comes up in HOLD again.
        """
        from gateway.cue.driver_link import DriverLink
        from gateway.cue.path import CuePath
        from gateway.devices.launcher import LauncherDriver

        cfg = self.config
        assert cfg.cue is not None
        tracks = self.tracks
        if cfg.cue.picture is not None:  # cue on a theatre's picture (docs/federation.md §4)
            from gateway.wiring.federation import start_cue_picture

            tracks, self.cue_picture = start_cue_picture(self)
        cue = self.cue = CuePath(
            cfg.cue,
            cfg.gateway_id,
            tracks=tracks,
            health=self.health,
            mqtt=cfg.mqtt if cfg.mqtt.enabled else None,
            mqtt_port=self.mqtt_port,
            session=self.mqtt_commands or self.mqtt,
        )
        for launcher in cfg.cue.launchers:
            driver = drivers.get(launcher.id)
            if not isinstance(driver, LauncherDriver):
                raise ConfigError(
                    f"cue.launchers[{launcher.id}]", "no launcher device with this id in [[devices]]"
                )
            cue.add_link(DriverLink(launcher.id, driver, cue.launcher_event))
        self._spawn(tg, "cue", self._keep_running("cue", cue.run))

    # --- devices -----------------------------------------------------------------

    def _make_driver(self, dev: DeviceConfig, stats: DeviceStats) -> DeviceDriver:
        """A driver on this gateway's topics, fusion engine and own-ship registry."""
        from gateway.devices.ownship import registry_for

        ctx = DriverContext(self.config.gateway_id, self.reports, self.raw, stats)
        services = DriverServices(self.fusion.engine.add_sensor, registry_for(self))
        return build_driver(dev, ctx, services)

    async def _supervise_device(self, driver: DeviceDriver) -> None:
        dev, stats = driver.config, driver.ctx.stats
        delay = dev.restart.initial_s
        while True:
            started = time.monotonic()
            try:
                await driver.run()
                reason = "driver returned"
            except HilgwError as exc:
                reason = str(exc)
            except Exception as exc:  # a bug: keep the gateway up, make it loud
                log.exception("%s: driver failed", dev.id)
                reason = f"internal error: {exc!r}"
            if time.monotonic() - started > 2 * dev.restart.max_s:
                delay = dev.restart.initial_s  # it had been healthy: start the back-off over
            stats.restarts += 1
            stats.last_error = reason
            stats.set_state(health_pb2.DEVICE_STATE_RESTARTING, f"{reason}; retry in {delay:.1f} s")
            log.warning("%s: %s; restarting in %.1f s", dev.id, reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, dev.restart.max_s)

    async def _keep_running(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """Run ``factory()`` for ever: restart it when it fails or returns, with a
        back-off that starts over after a healthy run; every restart is counted
        (:class:`~gateway.task_health.TaskHealth`: /metrics, /healthz, watchdog)."""
        sup = self.config.supervisor
        delay = sup.restart_initial_s
        while True:
            started = time.monotonic()
            try:
                await factory()
                reason = "returned"
            except Exception as exc:  # a bug: keep the gateway up, make it loud and counted
                log.exception("task %s failed", name)
                reason = f"{type(exc).__name__}: {exc}"
            now = time.monotonic()
            if now - started >= sup.healthy_run_s:
                delay = sup.restart_initial_s  # it had been healthy: start the back-off over
            self.task_health.restarted(name, reason, now, delay)
            log.warning(
                "task %s ended (%s); restart %d in %.1f s",
                name,
                reason,
                self.task_health.restarts[name],
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, sup.restart_max_s)

    # --- health and outputs -----------------------------------------------------

    def check_heartbeats(self, now_mono: float) -> None:
        """Mark devices DOWN whose last frame is older than their timeout, and
        DEGRADED whose frames arrive but are all rejected (issue 22)."""
        for dev in self.devices:
            st = self.stats[dev.id]
            if st.check is not None:
                st.check(now_mono)  # the driver's own (per-source) checks
            verdict = st.input_verdict(now_mono)
            if verdict == "rejected" and st.state in (*_ALIVE, health_pb2.DEVICE_STATE_DOWN):
                # A dirty feed is not a dead one, nor one still starting.
                last = f"; last: {st.last_error}" if st.last_error else ""
                st.set_state(health_pb2.DEVICE_STATE_DEGRADED, f"{ALL_REJECTED}{last}")
                continue
            if verdict == "accepted" and st.detail.startswith(ALL_REJECTED):
                st.set_state(health_pb2.DEVICE_STATE_UP, "receiving")
            if st.state not in _ALIVE:
                continue
            since = st.last_frame_mono or self.started_mono
            if now_mono - since > dev.heartbeat_timeout_s:
                st.set_state(health_pb2.DEVICE_STATE_DOWN, f"no frame for {now_mono - since:.1f} s")

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_interval_s)
            self.check_heartbeats(time.monotonic())
            for site in self.sites:
                site.settle()  # pictures missing for gap_wait_s become counted gaps
            now = time.time_ns()
            for st in self.stats.values():
                self.health.publish(st.to_proto(now))

    async def _feed_mqtt(self) -> None:
        wake = asyncio.Event()
        tracks = self.tracks.subscribe("mqtt", maxsize=64, wake=wake)
        health = self.health.subscribe("mqtt", maxsize=1024, wake=wake)
        reports = None
        if self.config.mqtt.publish_reports:
            reports = self.reports.subscribe("mqtt", maxsize=4096, wake=wake)
        try:
            while True:
                await wake.wait()
                wake.clear()
                self._forward(tracks.get_all(), health.get_all(), reports.get_all() if reports else [])
        finally:
            for sub in (tracks, health, reports):
                if sub is not None:
                    sub.close()

    def _forward(
        self,
        tracks: list[track_pb2.TrackBatch],
        health: list[health_pb2.DeviceHealth],
        reports: list[ReportsIn],
    ) -> None:
        assert self.mqtt is not None
        mqtt, topics = self.mqtt, self.mqtt.topics
        qos = self.config.mqtt.tracks_qos  # 1 when a theatre must get every picture
        fast = self.nats if self.nats is not None and self.nats.config.publish_tracks else None
        for batch in tracks:
            payload = self.fusion.wire(batch)
            mqtt.enqueue(Outgoing(topics.tracks, payload, qos, kind="tracks"))
            if fast is not None:  # the same bytes, at most once, JetStream-free (docs/federation.md §5)
                fast.publish(self._live_subject, payload)
        for h in health:
            mqtt.enqueue(Outgoing(topics.health(h.device_id), h.SerializeToString(), 1, True, "health"))
        sensor_ids = self.fusion.sensor_ids
        for device_id, group in _by_device(reports):
            # Batches of one device queued since the last wake go out as one
            # message: under load a wake finds many small read-sized batches,
            # and each message costs a task, a syscall and a broker hop
            # (issue 18). Each report keeps its own receive time.
            # Lineage: (gateway, epoch, per-device sequence) names each batch (docs/federation.md).
            seq = self._report_seq[device_id] = self._report_seq.get(device_id, 0) + 1
            arrays = ReportArrays.concat([r.reports for r in group])
            sources = [r.source for r in group]
            if len(group) == 1:
                rx: int | npt.NDArray[np.int64] = group[0].receive_time_ns
                source = sources[0]
            else:
                rx = np.repeat(
                    np.array([r.receive_time_ns for r in group], np.int64), [len(r.reports) for r in group]
                )
                source = _concat_sources(sources)
            msg = reports_to_proto(
                arrays, sensor_ids, rx, self.config.gateway_id, batch_sequence=seq, source=source
            )
            msg.epoch_ns = self.fusion.epoch_ns
            t_rx = group[0].receive_time_ns  # the oldest in the message: its latency is the worst
            self.stages.observe("encoded", t_rx, len(arrays))
            mqtt.enqueue(
                Outgoing(
                    topics.reports(device_id), msg.SerializeToString(), kind="reports", receive_time_ns=t_rx
                )
            )

    def _on_report(self, r: ReportsIn) -> None:
        self.stages.observe("bus", r.receive_time_ns, len(r.reports))

    # --- recording, metrics, web display (issue 7) ---------------------------------

    def _spawn_observers(self, tg: asyncio.TaskGroup) -> None:
        """Recorder, metrics and display subscribe here, synchronously."""
        cfg = self.config
        if cfg.recording is not None:
            from gateway.recording import Recorder, run_metadata

            rec = self.recorder = Recorder(
                cfg.recording,
                run_metadata(cfg, self.devices, self.fusion.epoch_ns),
                raw=self.raw,
                tracks=self.tracks,
                health=self.health,
                reports=self.reports,
                sensor_ids=lambda: self.fusion.sensor_ids,
                gateway_id=cfg.gateway_id,
            )
            self._spawn(tg, "recorder", self._keep_running("recorder", rec.run))
        if cfg.metrics is not None:
            from gateway.metrics import GatewayMetrics

            met = self.metrics = GatewayMetrics(self)
            self._spawn(tg, "metrics", self._keep_running("metrics", met.run))
        if cfg.web is not None:
            from gateway.web.server import SituationDisplay

            web = self.web = SituationDisplay(self, cfg.web)
            self._spawn(tg, "web", self._keep_running("web", web.run))

    def _wire_cue_observers(self) -> None:
        """The cue path's authority and cue list to the display and ``/metrics``, its
        cue-to-ack latency to ``hilgw_cue_ack_seconds`` (docs/operations.md).

        Called once the cue path and the observers exist; :meth:`CuePath.on_state`
        also pushes the current state if the path already runs, so it does not
        matter which started first. Each (re)start of the path publishes HOLD.
        """
        cue, web, metrics = self.cue, self.web, self.metrics
        if cue is None or (web is None and metrics is None):
            return
        from gateway.cue.authority import authority_name
        from gateway.cue.book import status_name

        def show(authority: cue_pb2.AuthorityState, cues: cue_pb2.CueList) -> None:
            name = authority_name(authority.authority)  # "HOLD", "CUE_ON_APPROVAL", "AUTO_CUE"
            if metrics is not None:
                metrics.authority = name
            if web is not None:
                web.authority = name
                web.cues = [
                    {
                        "cue_id": c.cue_id,
                        "launcher_id": c.launcher_id,
                        "track_id": c.system_track_id,
                        "status": status_name(c.status),
                    }
                    for c in cues.cues
                ]

        cue.on_state(show)
        if metrics is not None:
            cue.on_ack_latency(metrics.observe_cue_ack)

    async def _serve_observers(self) -> None:
        if self.metrics is not None and self.config.metrics is not None:
            from gateway.metrics import start_metrics_server

            ep = await start_metrics_server(self.metrics, self.config.metrics)
            self._stack.push_async_callback(ep.stop)
            self.endpoints["metrics"] = ep
        if self.web is not None:
            from gateway.web.server import start_web_server

            web = await start_web_server(self.web)
            self._stack.push_async_callback(web.stop)
            self.endpoints["web"] = web

    @property
    def task_list(self) -> list[asyncio.Task[None]]:
        """The gateway's named tasks (for /healthz)."""
        return list(self._tasks)

    def subscription_drops(self) -> dict[str, int]:
        """Items discarded by full bus subscriptions, by topic/subscriber."""
        out: dict[str, int] = {}
        for topic in (self.reports, self.raw, self.tracks, self.health):
            for sub in topic.subscriptions:
                out[f"{topic.name}/{sub.name}"] = sub.dropped
        return out


def _by_device(reports: list[ReportsIn]) -> list[tuple[str, list[ReportsIn]]]:
    """Report batches grouped by device, in arrival order within each device."""
    groups: dict[str, list[ReportsIn]] = {}
    for r in reports:
        groups.setdefault(r.device_id, []).append(r)
    return list(groups.items())


def _concat_sources(sources: list[npt.NDArray[np.void] | None]) -> npt.NDArray[np.void] | None:
    """The wire rows of several batches as one, or None unless all have the same layout."""
    first = sources[0]
    if first is None or any(s is None or s.dtype != first.dtype for s in sources):
        return None
    return np.concatenate(sources)  # type: ignore[arg-type]  # None excluded above
