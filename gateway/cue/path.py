"""The asyncio shell of the cue path: feeds :class:`~gateway.cue.core.CueCore`.

    path = CuePath(config.cue, config.gateway_id, tracks=gw.tracks, health=gw.health, mqtt=config.mqtt)
    path.add_link(launcher_link)              # one per launcher (gateway.cue.link.LauncherLink)
    await path.run()                          # until cancelled

Inputs: the ``tracks`` and ``health`` bus topics, launcher events
(:meth:`CuePath.launcher_event`, called by the launcher driver), operator
commands from MQTT (``{prefix}/{gateway_id}/authority/command`` and
``.../cue/command``) and a timer (``inhibit.tick_s`` <= 100 ms) so that an
inhibit takes effect within 250 ms. Every event is evaluated at once.

Order of work for each event (docs/cue-path.md §5): the core decides and
stages audit records; the shell flushes the audit log (fsync); only then are
cues and cancels handed to the links and messages published. If the flush
fails, the core drops to HOLD for good and nothing is sent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

from gateway.bus import FullPolicy, Subscription, Topic
from gateway.config import MqttConfig
from gateway.cue.audit import AuditError, AuditLog, audit_head_key
from gateway.cue.book import LIVE, Effect, Now, Publish, SendCancel, SendCue
from gateway.cue.core import CueCore
from gateway.cue.intake import Intake
from gateway.cue.keys import KeyRing, load_keys
from gateway.cue.link import Ack, Heartbeat, LauncherEvent, LauncherLink, LinkState, ReplyRejected
from gateway.cue.local_hold import LocalHoldServer
from gateway.cue.operator_link import CueTopics, OperatorLinkMixin, lane_ids
from gateway.cue.outputs import OutputSigner
from gateway.outputs.session import MqttSession
from gateway.sections.cue import CueConfig
from hilgw.errors import HilgwError
from hilgw.v1 import cue_pb2, health_pb2, track_pb2

__all__ = ["AckLatencyListener", "CuePath", "CueTopics", "StateListener", "system_now"]

#: Called with the authority and cue list as published (after every change).
StateListener = Callable[[cue_pb2.AuthorityState, cue_pb2.CueList], None]
#: Called with (launcher id, seconds from a cue's last send to its ack or nack).
AckLatencyListener = Callable[[str, float], None]

log = logging.getLogger(__name__)

_ALIVE = (health_pb2.DEVICE_STATE_UP, health_pb2.DEVICE_STATE_DEGRADED, health_pb2.DEVICE_STATE_STARTING)


def system_now() -> Now:
    return Now(time.time_ns(), time.monotonic_ns())


_Item = tuple[str, object]
#: Rejections answered on the result topic per second (more are counted, not answered):
#: a flood must not crowd the authority state out of the MQTT queue.
_ANSWER_RATE = 50.0
_SUMMARY_PERIOD_NS = 1_000_000_000  # rejection summaries: at most one audit record a second
#: The retained state is republished (signed, with a fresh time_ns) this often, so
#: a reader can tell a live gateway from the last words of a dead one.
STATE_REPUBLISH_S = 2.0
_SIGNED_KINDS = ("authority", "cues", "result")
_HOLD = cue_pb2.AUTHORITY_HOLD


class CuePath(OperatorLinkMixin):
    """The cue-path task. :meth:`run` builds a fresh core: every (re)start is HOLD."""

    def __init__(
        self,
        config: CueConfig,
        gateway_id: str,
        *,
        tracks: Topic[track_pb2.TrackBatch],
        health: Topic[health_pb2.DeviceHealth] | None = None,
        mqtt: MqttConfig | None = None,
        mqtt_port: int | None = None,
        session: MqttSession | None = None,
        keys: KeyRing | None = None,
        clock: Callable[[], Now] = system_now,
        fsync: bool = True,
    ) -> None:
        self.config = config
        self.gateway_id = gateway_id
        self.mqtt = mqtt
        self.mqtt_port = mqtt_port
        self.topics = CueTopics(mqtt.topic_prefix if mqtt else "hilgw", gateway_id)
        self.clock = clock
        self.fsync = fsync
        self._keys = keys
        self._tracks_topic = tracks
        self._health_topic = health
        self.links: dict[str, LauncherLink] = {}
        #: Everything the cue path publishes (for MCAP recording, metrics, tests).
        self.out: Topic[Publish] = Topic("cue")
        self.core: CueCore | None = None
        self.mqtt_connected = asyncio.Event()
        self.send_errors = 0
        self._inbox: deque[_Item] = deque()
        #: Commands that lower the authority, and local holds: taken before anything queued.
        self._priority: deque[_Item] = deque()
        #: Cheap pre-checks and per-reason counts of operator commands (gateway.cue.intake).
        self.intake = Intake()
        self.unanswered = 0  # rejections counted but not answered (rate limit)
        self.faults = 0  # event handlers that raised and were contained (HOLD, audited)
        self.running = False
        self.local_hold: LocalHoldServer | None = None  # while running (benchmarks read it)
        self.latches = 0  # HOLD latches set (local switch, verified HOLD commands)
        self.last_latch_ns = 0
        self._answer_tokens = _ANSWER_RATE
        self._answer_mono = 0
        self._summary_mono = 0
        self._republish_mono = 0
        self._signer: OutputSigner | None = None
        self._wake = asyncio.Event()
        #: The gateway's shared MQTT session; None: the path opens its own (tests, tools).
        self._shared_session = session
        self.session: MqttSession | None = None
        #: Operator id -> the connection reading that operator's lane (§12), while running.
        self.lanes: dict[str, MqttSession] = {}
        self.lane_ids: list[str] = []  # operators with a lane (keys bound to an operator id)
        #: Monotonic ns since which the operator link is down (None: up); §11.
        self._link_down_since: int | None = None
        self._link_lost_acted = False
        self._last_sync_mono: int | None = None
        self._state_listeners: list[StateListener] = []
        self._ack_listeners: list[AckLatencyListener] = []

    # --- wiring ------------------------------------------------------------------------

    def add_link(self, link: LauncherLink) -> None:
        self.links[link.launcher_id] = link

    def on_state(self, listener: StateListener) -> None:
        """Call ``listener(authority, cues)`` whenever the authority or the cue list
        changes (with or without MQTT), and at once if the path is running.

        Observation only: called in the cue-path task after the event's sends;
        it must not block or modify the messages (they are the ones published),
        and an exception it raises is logged and ignored.
        """
        self._state_listeners.append(listener)
        if self.core is not None:
            self._call(listener, self.core.authority_state(), self.core.cue_list())

    def on_ack_latency(self, listener: AckLatencyListener) -> None:
        """Call ``listener(launcher_id, seconds)`` for each ack or nack of a cue: the
        monotonic time from the cue's last send (the core's decision, before the
        journal flush and the link) to the handling of the answer. Same rules as
        :meth:`on_state`."""
        self._ack_listeners.append(listener)

    def launcher_event(self, event: LauncherEvent) -> None:
        """Called by a launcher driver for every ack, heartbeat and link change. Never blocks."""
        self._put(("launcher", event))

    def command(self, kind: str, payload: bytes, lane: str | None = None) -> None:
        """An operator command from any transport (``kind``: "authority" or "cue").

        Never raises and never touches the disk: the cheap checks of
        :class:`~gateway.cue.intake.Intake` run here, at arrival; a rejection is
        counted (summarised in the audit once a second) and answered (rate
        limited); a command that passes goes to the core, on the priority lane
        if it lowers the authority. ``lane``: the operator id whose lane carried it
        (docs/cue-path.md §12); its signer must be that operator.
        """
        core = self.core
        if core is None:  # not started: the core checks (and journals) it at start
            if lane is not None:  # (lanes are read only once the core exists: cannot happen,
                self.intake.count(kind, "not_started", payload)  # but never unchecked)
                return
            self._put((kind, (payload, None)))
            return
        now = self.clock()
        chk = self.intake.check(kind, payload, core.verifier, now.wall_ns, core.authority.value, lane=lane)
        if chk.reason:
            self._answer_rejection(chk.kind, chk.reason, chk.command, now)
            return
        item = (kind, (payload, chk.command))
        if chk.lowers:
            if isinstance(chk.command, cue_pb2.AuthorityCommand) and chk.command.requested == _HOLD:
                self.latch()  # verified: no cue leaves from now, before the queue is even looked at
            self._priority.append(item)
            self._wake.set()
        else:
            self._put(item)

    def latch(self) -> None:
        """No cue leaves from this instant (any thread; gateway.cue.local_hold)."""
        core = self.core
        if core is not None:
            core.latched = True
            self.latches += 1
            self.last_latch_ns = time.time_ns()

    def _submit_local(self, source: str, fut: concurrent.futures.Future[str] | None, count: int) -> None:
        """A local HOLD (socket or signal), in the loop: onto the priority lane.
        ``count``: the hold process's latch counter for this HOLD (0: the signal)."""
        if self.core is None or not self.running:
            if fut is not None and not fut.done():
                fut.set_result("ERR cue path not running (it starts in HOLD)")
            return
        self._priority.append(("local_hold", (source, fut, count)))
        self._wake.set()

    def health_reasons(self) -> list[str]:
        """Why the cue path is not healthy (empty when it is): for ``/healthz``."""
        core = self.core
        if core is None or not self.running:
            return ["cue path not running"]
        if not core.audit_ok:
            return ["cue path: audit log failed (HOLD until restart)"]
        if self.local_hold is not None and self.local_hold.down:
            return ["cue path: local hold switch process ended (SIGUSR1 still holds)"]
        return []

    def _answer_rejection(self, kind: str, reason: str, cmd: object, now: Now) -> None:
        """Publish a CommandResult for a rejected command, at most ``_ANSWER_RATE``/s."""
        elapsed = (now.mono_ns - self._answer_mono) * 1e-9
        self._answer_mono = now.mono_ns
        self._answer_tokens = min(_ANSWER_RATE, self._answer_tokens + elapsed * _ANSWER_RATE)
        if self._answer_tokens < 1.0:
            self.unanswered += 1
            return
        self._answer_tokens -= 1.0
        res = cue_pb2.CommandResult(
            kind=kind[:16], accepted=False, reason=reason, time_ns=now.wall_ns, gateway_id=self.gateway_id
        )
        if isinstance(cmd, cue_pb2.AuthorityCommand | cue_pb2.CueCommand):
            res.operator_id, res.key_id, res.sequence = cmd.operator_id[:64], cmd.key_id[:64], cmd.sequence
            if isinstance(cmd, cue_pb2.CueCommand):
                res.cue_id = cmd.cue_id
        p = self._publish_result(res)
        self.out.publish(p)
        self._enqueue_mqtt(p)

    def _publish_result(self, res: cue_pb2.CommandResult) -> Publish:
        return self._signed(Publish("result", res))

    def _republish(self, core: CueCore) -> None:
        """The retained state again, signed with a fresh time (MQTT only)."""
        self._enqueue_mqtt(self._signed(Publish("authority", core.authority_state(), retain=True)))
        self._enqueue_mqtt(self._signed(Publish("cues", core.cue_list(), retain=True)))

    def _signed(self, p: Publish) -> Publish:
        """Sign what operators read (gateway.cue.outputs); the authority state gets
        the time of publication first, so its age tells whether the gateway lives."""
        if p.kind in _SIGNED_KINDS and self._signer is not None:
            if isinstance(p.message, cue_pb2.AuthorityState):
                p.message.time_ns = time.time_ns()
            self._signer.sign(p.message)
        return p

    def _put(self, item: _Item) -> None:
        self._inbox.append(item)  # unbounded on purpose: acks and commands must not be lost
        self._wake.set()

    # --- run ------------------------------------------------------------------------------

    def _open(self) -> CueCore:
        keys = self._keys or load_keys(self.config.keys_file)
        gw_key = keys.signing_key()
        self._signer = OutputSigner(gw_key) if gw_key is not None else None
        if gw_key is None:
            log.warning("cue path: no [gateway.<id>] secret in the keys file: outputs unsigned")
        head_key = audit_head_key(gw_key.private) if gw_key is not None and gw_key.private else None
        audit, history = AuditLog.open(
            self.config.audit_path, fsync=self.fsync, head_key=head_key, max_bytes=self.config.audit_max_bytes
        )
        core = CueCore(self.config, keys, self.gateway_id, audit, self.clock(), history, sealers=self.links)
        self.lane_ids = lane_ids(keys)
        for lc in self.config.launchers:
            if lc.key_id is not None:
                log.warning(
                    "cue path: cue.launchers[%s].key_id is no longer used: cues are signed once, on the "
                    "wire, with the launcher device's cue_keys (docs/cue-path.md §3)",
                    lc.id,
                )
        log.info("cue path: HOLD at start; audit %s (%d records)", self.config.audit_path, audit.count)
        return core

    async def run(self) -> None:
        """Run until cancelled. A failure ends the task (the supervisor restarts it in HOLD)."""
        self.core = core = self._open()  # before subscribing: a failure leaves no stray subscription
        self.running = True
        tracks = self._tracks_topic.subscribe(
            "cue", maxsize=8, policy=FullPolicy.DROP_OLDEST, wake=self._wake
        )
        health = None
        if self._health_topic is not None:
            health = self._health_topic.subscribe("cue", maxsize=1024, wake=self._wake)
        self.local_hold = local = LocalHoldServer(
            self.config.local_hold_socket,
            self.latch,
            self._submit_local,
            use_signal=self.config.local_hold_signal,
        )
        core.hold_latch = local.hold_latch  # read by the sending path: no cue while it is pending
        unhook: list[Callable[[], None]] = []
        try:
            await self._execute(core.tick(self.clock()))  # HOLD, and cancels of a previous run's cues
            async with local, asyncio.TaskGroup() as tg:
                if self.mqtt is not None and self.mqtt.enabled:
                    session = self.session = self._shared_session or MqttSession(
                        self.mqtt,
                        self.gateway_id,
                        port=self.mqtt_port,
                        client_id=f"hilgw-{self.gateway_id}-cue",
                    )
                    unhook = self._attach(session)
                    if self._shared_session is None:
                        tg.create_task(session.run(), name="cue:mqtt")
                    unhook += self._attach_lanes(tg)
                if self.config.inhibit.time_sync.kind == "command":
                    tg.create_task(self._time_sync_loop(), name="cue:timesync")
                tg.create_task(self._loop(core, tracks, health), name="cue:loop")
        except BaseException as exc:
            await self._stopping(core, exc)
            raise
        finally:
            self.running = False
            for _, item in self._priority:  # local holds still waiting: answer them
                fut = item[1] if isinstance(item, tuple) else None
                if isinstance(fut, concurrent.futures.Future) and not fut.done():
                    fut.set_result("ERR cue path stopped (HOLD until restart)")
            self._priority.clear()
            for undo in unhook:
                undo()
            self.mqtt_connected.clear()
            tracks.close()
            if health is not None:
                health.close()
            try:
                core.audit.close()
            except AuditError as exc:  # already HOLD and unhealthy; stopping must not fail on it
                log.error("cue path: closing the audit log: %s", exc)
            # Down (failed, or stopping): nothing can be cued until a restart,
            # which comes up in HOLD; the display and metrics say so now.
            down = cue_pb2.AuthorityState(
                authority=cue_pb2.AUTHORITY_HOLD,
                since_time_ns=time.time_ns(),
                changed_by="stopped",
                reason="cue path not running",
                gateway_id=self.gateway_id,
            )
            for state_listener in self._state_listeners:
                self._call(state_listener, down, cue_pb2.CueList())

    async def _loop(
        self,
        core: CueCore,
        tracks: Subscription[track_pb2.TrackBatch],
        health: Subscription[health_pb2.DeviceHealth] | None,
    ) -> None:
        tick = self.config.inhibit.tick_s
        while True:
            # asyncio.timeout, never wait_for, in a loop that is cancelled: on
            # 3.11 wait_for returns normally when the cancel and the event
            # arrive together (CPython gh-86296), and the loop would never end.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick):
                    await self._wake.wait()
            self._wake.clear()
            now = self.clock()
            await self._drain_priority(core)
            for batch in tracks.get_all()[-1:]:  # only the freshest picture matters
                await self._guarded(core, "tracks", core.on_tracks, batch, self.clock())
            if health is not None:
                for h in health.get_all():
                    alive = h.state in _ALIVE
                    await self._guarded(core, "health", core.on_sensor_health, h.device_id, alive, now)
            while self._inbox:
                await self._drain_priority(core)  # a lowering command never waits behind the queue
                kind, item = self._inbox.popleft()
                await self._guarded(core, kind, self._dispatch, core, kind, item, self.clock())
            now = self.clock()
            if now.mono_ns - self._summary_mono >= _SUMMARY_PERIOD_NS:
                summary = self.intake.take_summary()
                if summary is not None:
                    self._summary_mono = now.mono_ns
                    summary["unanswered"] = self.unanswered
                    await self._guarded(core, "summary", self._summarise, core, now, summary)
            if now.mono_ns - self._republish_mono >= STATE_REPUBLISH_S * 1e9:
                self._republish_mono = now.mono_ns
                self._republish(core)
            await self._guarded(core, "link", self._link_policy, core, self.clock())
            await self._guarded(core, "tick", core.tick, self.clock())

    async def _drain_priority(self, core: CueCore) -> None:
        acked = 0
        while self._priority:
            kind, item = self._priority.popleft()
            if kind == "local_hold" and isinstance(item, tuple):
                source, fut, count = item
                await self._guarded(core, kind, core.local_hold, self.clock(), str(source))
                acked = max(acked, int(count))
                if isinstance(fut, concurrent.futures.Future) and not fut.done():
                    ok = core.audit_ok and core.authority.value == cue_pb2.AUTHORITY_HOLD
                    fut.set_result(f"OK HOLD {core.audit.count}" if ok else "ERR audit log failed; HOLD")
            else:
                await self._guarded(core, kind, self._dispatch, core, kind, item, self.clock())
            if not self._priority:
                core.latched = False  # the HOLD is journaled and the authority says so now
                if core.hold_latch is not None:
                    # Only the HOLDs journaled here: one the hold process latched since
                    # (a higher count) keeps the latch until its own turn.
                    core.hold_latch.ack(acked)

    @staticmethod
    def _summarise(core: CueCore, now: Now, summary: dict[str, object]) -> list[Effect]:
        return core.note(now, "commands_rejected", **summary)

    async def _guarded(
        self, core: CueCore, where: str, handle: Callable[..., list[Effect]], *args: object
    ) -> None:
        """Run one event handler; if it raises (a bug, or an input nobody foresaw),
        contain it: HOLD, live cues cancelled, the fault journaled, the path goes on
        (issue 23 §2). A fault while containing one ends the task (supervisor: HOLD)."""
        try:
            effects = handle(*args)
        except Exception as exc:
            self.faults += 1
            log.exception("cue path: %s handler failed; HOLD", where)
            effects = core.contain_fault(self.clock(), where, f"{type(exc).__name__}: {exc}"[:300])
        await self._execute(effects)

    async def _stopping(self, core: CueCore, exc: BaseException) -> None:
        """The task is ending (cancelled, or failed): journal the rejections not yet
        summarised, cancel live cues, journal why."""
        if not core.audit_ok:
            return
        effects: list[Effect] = []
        summary = self.intake.take_summary()
        with contextlib.suppress(Exception):
            if summary is not None:
                effects += self._summarise(core, self.clock(), {**summary, "unanswered": self.unanswered})
            if any(c.status in LIVE for c in core.cues.values()):
                stopped = isinstance(exc, asyncio.CancelledError)
                why = "stopped" if stopped else f"{type(exc).__name__}: {exc}"
                kind = "stopped" if stopped else "fault"
                effects += core.contain_fault(self.clock(), "cue path ending", why[:300], kind=kind)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            async with asyncio.timeout(0.5):  # bounded: links may be going away too
                await self._execute(effects)

    def _dispatch(self, core: CueCore, kind: str, item: object, now: Now) -> list[Effect]:
        if kind in ("authority", "cue") and isinstance(item, tuple):
            payload, cmd = item
            try:
                if kind == "authority":
                    return core.on_authority_command(payload, now)
                return core.on_cue_command(payload, now)
            finally:
                if cmd is not None:
                    self.intake.done(cmd)
        if kind == "operator_link" and isinstance(item, tuple):
            return core.on_operator_link(bool(item[0]), str(item[1]), now)
        if kind == "timesync" and isinstance(item, tuple):
            return core.on_time_sync(bool(item[0]), str(item[1]), now)
        if isinstance(item, Ack):
            return core.on_ack(item.ack, now)
        if isinstance(item, Heartbeat):
            return core.on_heartbeat(item.launcher_id, now, item.ok, item.detail, item.rx_mono_ns)
        if isinstance(item, LinkState):
            return core.on_link(item.launcher_id, item.up, now)
        if isinstance(item, ReplyRejected):
            return core.on_reply_rejected(item.launcher_id, item.message, item.reason, now)
        log.error("cue path: unknown inbox item %r", item)
        return []

    async def _execute(self, effects: list[Effect]) -> None:
        core = self.core
        assert core is not None
        try:
            core.audit.flush()  # journal first (fsync) ...
        except AuditError as exc:
            log.critical("cue path: %s; HOLD, no cue leaves until restart", exc)
            effects = core.audit_failed(self.clock(), str(exc))
        authority: cue_pb2.AuthorityState | None = None
        cues: cue_pb2.CueList | None = None
        for eff in effects:  # ... act second
            if isinstance(eff, SendCue | SendCancel):
                await self._send(eff)
            else:
                self._signed(eff)
                self.out.publish(eff)
                self._enqueue_mqtt(eff)
                if isinstance(eff.message, cue_pb2.AuthorityState):
                    authority = eff.message
                elif isinstance(eff.message, cue_pb2.CueList):
                    cues = eff.message
        # ... and observers last (display, metrics): nothing they do reaches the core.
        if authority is not None or cues is not None:
            if authority is None:  # the core publishes both together; be safe anyway
                authority = core.authority_state()
            if cues is None:
                cues = core.cue_list()
            for state_listener in self._state_listeners:
                self._call(state_listener, authority, cues)
        while core.ack_latency:
            launcher_id, ns = core.ack_latency.popleft()
            for ack_listener in self._ack_listeners:
                self._call(ack_listener, launcher_id, ns * 1e-9)

    @staticmethod
    def _call(listener: Callable[..., None], *args: object) -> None:
        try:
            listener(*args)
        except Exception:  # an observer's bug must not stop (and so HOLD) the cue path
            log.exception("cue path: listener %r failed", listener)

    async def _send(self, eff: SendCue | SendCancel) -> None:
        """Hand the sealed cue or cancel (the core journaled its tag) to its link."""
        link = self.links.get(eff.launcher_id)
        if link is None:  # the core seals only through a link: cannot happen
            self.send_errors += 1
            log.error("cue path: no link for launcher %s", eff.launcher_id)
            return
        try:
            async with asyncio.timeout(self.config.ack_timeout_s):  # not wait_for: see _loop
                await link.send(eff.sealed)
        except (HilgwError, TimeoutError, OSError) as exc:
            # No ack will come: the core's ack timeout resends (bounded) or fails the cue.
            self.send_errors += 1
            log.warning("cue path: send to %s failed: %s", eff.launcher_id, exc)
