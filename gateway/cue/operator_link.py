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
from gateway.outputs.mqtt import Outgoing
from gateway.outputs.session import MqttSession
from hilgw.v1 import cue_pb2

if TYPE_CHECKING:
    from gateway.cue.core import CueCore
    from gateway.sections.cue import CueConfig

__all__ = ["CueTopics", "OperatorLinkMixin"]

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


class OperatorLinkMixin:
    """MQTT and time sync of :class:`~gateway.cue.path.CuePath` (which provides the rest)."""

    if TYPE_CHECKING:
        config: CueConfig
        topics: CueTopics
        session: MqttSession | None
        core: CueCore | None
        mqtt_connected: asyncio.Event
        _link_down_since: int | None
        _link_lost_acted: bool

        clock: Callable[[], Now]

        def command(self, kind: str, payload: bytes) -> None: ...
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
