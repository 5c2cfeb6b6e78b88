"""The cue path's links to the outside that are not launchers: MQTT topics, the
operator link (docs/cue-path.md §8, §11) and the time-sync check (§5).

A part of :class:`gateway.cue.path.CuePath`, apart for size: the shell's
I/O with the broker and with the time-sync command. Nothing here decides:
what it hears goes to the core through the path's inbox.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.cue.book import Effect, Now, Publish
from gateway.cue.keys import KeyRing
from gateway.outputs.commands import LANE_ID, lane_session
from gateway.outputs.mqtt import Outgoing
from gateway.outputs.session import MqttSession
from hilgw.v1 import cue_pb2

if TYPE_CHECKING:
    from gateway.cue.core import CueCore
    from gateway.sections.cue import CueConfig
    from gateway.sections.mqtt import MqttConfig

__all__ = ["CueTopics", "OperatorLinkMixin", "lane_ids"]

log = logging.getLogger("gateway.cue.path")


class CueTopics:
    """MQTT topics of the cue path (docs/cue-path.md §6)."""

    def __init__(self, prefix: str, gateway_id: str) -> None:
        self.base = f"{prefix}/{gateway_id}"
        self.authority = f"{self.base}/authority"  # AuthorityState, retained
        self.authority_command = f"{self.base}/authority/command"  # AuthorityCommand (in)
        self.cue_command = f"{self.base}/cue/command"  # CueCommand (in)
        self.cue_list = f"{self.base}/cue/list"  # CueList, retained
        self.result = f"{self.base}/command/result"  # CommandResult

    def lane_authority(self, operator_id: str) -> str:
        return f"{self.base}/lane/{operator_id}/authority"  # AuthorityCommand (in), §12

    def lane_cue(self, operator_id: str) -> str:
        return f"{self.base}/lane/{operator_id}/cue"  # CueCommand (in), §12

    def cue(self, launcher_id: str) -> str:
        return f"{self.base}/cues/{launcher_id}"  # EngagementCue as sent

    def ack(self, launcher_id: str) -> str:
        return f"{self.base}/acks/{launcher_id}"  # CueAck

    def for_publish(self, p: Publish) -> str:
        m = p.message
        if isinstance(m, cue_pb2.EngagementCue):
            return self.cue(m.launcher_id)
        if isinstance(m, cue_pb2.CueAck):
            return self.ack(m.launcher_id)
        return {"authority": self.authority, "cues": self.cue_list, "result": self.result}[p.kind]


def lane_ids(keys: KeyRing) -> list[str]:
    """The operators that get a lane: every operator id a key is bound to (sorted).

    An id that cannot be one MQTT topic level (:data:`LANE_ID`) gets none, with
    a warning: that operator's keys still work on the shared topics.
    """
    out = set()
    for key in keys.operator.values():
        if key.operator is None:
            continue
        if LANE_ID.match(key.operator):
            out.add(key.operator)
        else:
            log.warning("cue path: operator id %r cannot name a lane: shared topics only", key.operator)
    return sorted(out)


class OperatorLinkMixin:
    """MQTT and time sync of :class:`~gateway.cue.path.CuePath` (which provides the rest)."""

    if TYPE_CHECKING:
        config: CueConfig
        mqtt: MqttConfig | None
        mqtt_port: int | None
        gateway_id: str
        topics: CueTopics
        session: MqttSession | None
        lanes: dict[str, MqttSession]
        lane_ids: list[str]
        core: CueCore | None
        mqtt_connected: asyncio.Event
        _link_down_since: int | None
        _link_lost_acted: bool

        clock: Callable[[], Now]

        def command(self, kind: str, payload: bytes, lane: str | None = None) -> None: ...
        def _put(self, item: tuple[str, object]) -> None: ...
        def _signed(self, p: Publish) -> Publish: ...

    # --- time sync --------------------------------------------------------------------------

    async def _time_sync_loop(self) -> None:
        ts = self.config.inhibit.time_sync
        while True:
            ok, detail = await self._check_time_sync()
            self._put(("timesync", (ok, detail)))
            await asyncio.sleep(ts.interval_s)

    async def _check_time_sync(self) -> tuple[bool, str]:
        ts = self.config.inhibit.time_sync
        try:
            proc = await asyncio.create_subprocess_exec(
                *ts.command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
            )
        except OSError as exc:
            return False, f"cannot run {ts.command[0]}: {exc.strerror}"
        try:
            async with asyncio.timeout(ts.timeout_s):  # not wait_for: see _loop
                rc = await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return False, f"time sync check timed out after {ts.timeout_s} s"
        return rc == 0, "synchronised" if rc == 0 else f"time sync check exit status {rc}"

    # --- MQTT: the operator link (docs/cue-path.md §11) ------------------------------------

    def _attach(self, session: MqttSession) -> list[Callable[[], None]]:
        """Subscribe the command topics and follow the link; returns the undo calls."""
        subs = []
        if self.mqtt is None or self.mqtt.command_shared_topics or not self._lanes_on():
            subs = [
                session.subscribe(self.topics.authority_command, lambda _t, p: self.command("authority", p)),
                session.subscribe(self.topics.cue_command, lambda _t, p: self.command("cue", p)),
            ]
        if session.connected:
            self._on_link(True)
        else:
            self._link_down_since = self.clock().mono_ns  # counted from our start
        remove = session.on_link(self._on_link)
        return [remove, *(sub.close for sub in subs)]

    def _lanes_on(self) -> bool:
        return self.mqtt is not None and self.mqtt.command_lanes == "auto" and bool(self.lane_ids)

    def _attach_lanes(self, tg: asyncio.TaskGroup) -> list[Callable[[], None]]:
        """One connection per operator lane (§12), run in ``tg``; returns the undo calls.

        A lane's connection only reads: what the cue path answers goes out on
        its command connection. Its link state does not drive the operator-link
        policy (§11): that follows the command connection, which always exists.
        """
        if self.mqtt is None or not self._lanes_on():
            return []
        undo: list[Callable[[], None]] = []
        for op in self.lane_ids:
            lane = self.lanes[op] = lane_session(self.mqtt, self.gateway_id, op, port=self.mqtt_port)
            lane.subscribe(self.topics.lane_authority(op), self._lane_handler("authority", op))
            lane.subscribe(self.topics.lane_cue(op), self._lane_handler("cue", op))
            tg.create_task(lane.run(), name=f"cue:lane:{op}")  # ends with the group
        undo.append(self.lanes.clear)
        log.info("cue path: command lanes for %s", ", ".join(self.lane_ids))
        return undo

    def _lane_handler(self, kind: str, op: str) -> Callable[[str, bytes], None]:
        def handle(_topic: str, payload: bytes) -> None:
            self.command(kind, payload, op)

        return handle

    def _on_link(self, up: bool) -> None:
        """Called by the session on every connect and loss (in its task: never blocks)."""
        session = self.session
        where = str(session.address) if session is not None and session.address else "broker"
        if up:
            self.mqtt_connected.set()
            self._link_down_since = None
            self._link_lost_acted = False
            if self.core is not None:  # the retained state is current after a reconnect
                self._enqueue_mqtt(
                    self._signed(Publish("authority", self.core.authority_state(), retain=True))
                )
                self._enqueue_mqtt(self._signed(Publish("cues", self.core.cue_list(), retain=True)))
        else:
            self.mqtt_connected.clear()
            self._link_down_since = self.clock().mono_ns
        self._put(("operator_link", (up, f"{'connected to' if up else 'lost'} {where}")))

    def _link_policy(self, core: CueCore, now: Now) -> list[Effect]:
        """Authority outlives a lost operator link by ``operator_link_timeout_s``, then HOLD."""
        since = self._link_down_since
        if since is None or self._link_lost_acted:
            return []
        down_s = (now.mono_ns - since) * 1e-9
        if down_s < self.config.operator_link_timeout_s:
            return []
        self._link_lost_acted = True  # once per loss; a reconnect re-arms it
        log.warning("cue path: no operator link for %.1f s: HOLD (operator_link_lost)", down_s)
        return core.operator_link_lost(down_s, now)

    def _enqueue_mqtt(self, p: Publish) -> None:
        if self.session is None:
            return
        payload = p.message.SerializeToString()
        # All cue-path kinds are critical: never dropped (gateway/outputs/session.py).
        self.session.enqueue(
            Outgoing(self.topics.for_publish(p), payload, qos=1, retain=p.retain, kind=p.kind)
        )
