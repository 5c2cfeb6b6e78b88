"""The MQTT session's sender: moves messages from its lanes to one connection.

One :class:`Pump` a connection (:meth:`MqttSession.run` starts it with the
connection's other tasks). Up to ``[mqtt] max_inflight`` messages are in
flight; a message leaves the session's store only once the broker has it.

Every message is handed to paho directly, in the pump's own turn and in the
lanes' order (critical first), and QoS 0 is written to the socket at once
(``loop_write``): no task, future or ``asyncio.wait_for`` a message. Through
aiomqtt's ``publish`` a message took a task, a ``wait_for`` (itself a task)
and four loop turns from the queue to the socket (a write watch scheduled,
added, fired, the waiting task woken), and every device read that became
ready meanwhile ran first; at 10,000 reports/s that was most of the
gateway-added latency and its tail (issue 18, benchmarks/RESULTS.md). It
also let a cue's task run after reports handed over in the same turn.

A message is done (out of the store, counted, the ``mqtt`` stage timed) when
paho says so through ``on_publish``: QoS 0 once written, QoS 1 on its
PUBACK. Those in flight when the link goes are the session's to requeue
(QoS 1) or count as ``link_lost`` (QoS 0), as before. aiomqtt's own publishes
(the session's status) keep their path: ``on_publish`` passes their ids on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Protocol

import aiomqtt
import paho.mqtt.client as mqtt

from gateway.config import MqttConfig
from gateway.outputs.mqtt import Outgoing
from gateway.stages import StageClock

__all__ = ["Pump"]

log = logging.getLogger("gateway.outputs.session")

#: Messages handed to paho in one loop turn at most, then the pump yields: a
#: backlog of thousands must not hold the loop (a HOLD command waits behind it).
_PER_TURN = 256


class PumpedSession(Protocol):
    """What the pump reads and writes of its :class:`~gateway.outputs.session.MqttSession`.

    A protocol rather than the class itself, so that the session can import the
    pump without the pump importing the session (no import cycle).
    """

    config: MqttConfig
    _critical: deque[tuple[int, Outgoing]]
    _bulk: deque[tuple[int, Outgoing]]
    _inflight: dict[int, Outgoing]
    _ready: asyncio.Event
    on_published: Callable[[Outgoing], None] | None
    stages: StageClock | None
    published: Counter[str]


class Pump:
    """Sends the session's queued messages on one connection until it fails or is cancelled."""

    def __init__(self, session: PumpedSession, client: aiomqtt.Client) -> None:
        self.session = session
        self.client = client
        self.paho: mqtt.Client = client._client  # aiomqtt 2.x keeps paho private; messages go to it directly
        #: Free places in the in-flight window (``[mqtt] max_inflight``); ``freed`` is set
        #: when a confirmation gives one back.
        self.free = session.config.max_inflight
        self.freed = asyncio.Event()
        #: paho message id -> (store sequence, message, paho's info): QoS 0 handed to paho,
        #: not yet written.
        self.unwritten: dict[int, tuple[int, Outgoing, mqtt.MQTTMessageInfo]] = {}
        #: paho message id -> (store sequence, message): QoS 1 handed to paho, no PUBACK yet.
        self.unacked: dict[int, tuple[int, Outgoing]] = {}
        self._chain_on_publish()

    def _chain_on_publish(self) -> None:
        """Take paho's ``on_publish`` for our messages; pass the rest (aiomqtt's own) on."""
        aiomqtt_on_publish: Callable[..., None] | None = self.paho.on_publish
        unwritten, unacked = self.unwritten, self.unacked

        def on_publish(c: Any, userdata: Any, mid: int, *rest: Any) -> None:
            qos0 = unwritten.pop(mid, None)
            if qos0 is not None:
                self.confirmed(qos0[0], qos0[1])
                return
            qos1 = unacked.pop(mid, None)
            if qos1 is not None:
                self.confirmed(*qos1)
            elif aiomqtt_on_publish is not None:
                aiomqtt_on_publish(c, userdata, mid, *rest)

        self.paho.on_publish = on_publish

    async def run(self) -> None:
        """Send until cancelled; raises ``aiomqtt.MqttError`` when the connection fails."""
        s = self.session
        critical, bulk = s._critical, s._bulk
        while True:
            handed = 0
            while (critical or bulk) and handed < _PER_TURN:
                if not self.free:
                    if self.unwritten:
                        self._flush()  # writes what paho holds: QoS 0 ones give their places back
                    if not self.free:
                        break  # the window is full of unconfirmed messages: wait below
                seq, msg = (critical or bulk).popleft()  # critical first
                self.free -= 1
                s._inflight[seq] = msg
                self._hand_to_paho(seq, msg)
                handed += 1
            if handed:
                self._flush()
            if not (critical or bulk):
                s._ready.clear()
                await s._ready.wait()
            elif not self.free:
                self.freed.clear()
                await self.freed.wait()  # a confirmation gives a place back
            else:
                await asyncio.sleep(0)  # _PER_TURN handed: let the rest of the loop run

    def _hand_to_paho(self, seq: int, msg: Outgoing) -> None:
        info = self.paho.publish(msg.topic, msg.payload, msg.qos, msg.retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")  # as aiomqtt's publish
        if info.is_published():  # done already (not with aiomqtt's external loop, but allowed)
            self.confirmed(seq, msg)
        elif msg.qos == 0:
            self.unwritten[info.mid] = (seq, msg, info)
        else:
            self.unacked[info.mid] = (seq, msg)

    def _flush(self) -> None:
        """Write what paho holds now; a full socket leaves the rest to paho's write watch.

        During this write paho calls no ``on_publish``: for each QoS 0 message it
        would build a ReasonCode and a Properties object (MQTT 5 types, ~40 us a
        message under cProfile) that nobody reads. Which messages went out is
        read from their ``MQTTMessageInfo`` instead, in order (paho writes in
        order). What a later write watch sends goes through ``on_publish``.
        """
        paho = self.paho
        on_publish = paho.on_publish
        paho.on_publish = None
        try:
            rc = paho.loop_write()
        finally:
            paho.on_publish = on_publish
        unwritten = self.unwritten
        while unwritten:
            mid = next(iter(unwritten))
            seq, msg, info = unwritten[mid]
            if not info.is_published():
                break
            del unwritten[mid]
            self.confirmed(seq, msg)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            # paho has closed the connection and told aiomqtt (on_disconnect): the
            # session's receiver ends the connection, as when aiomqtt's own write
            # watch fails. Not raised here: one way for a connection to end keeps
            # the session's stop path simple (session._until_one_fails).
            log.debug("mqtt: write failed (%s): the connection is going", mqtt.error_string(rc))

    def confirmed(self, seq: int, msg: Outgoing) -> None:
        """The broker has the message (QoS 1: PUBACK; QoS 0: written): out of the store."""
        s = self.session
        s._inflight.pop(seq, None)
        s.published[msg.kind] += 1
        self.free += 1
        self.freed.set()
        if s.stages is not None and msg.receive_time_ns:
            s.stages.observe("mqtt", msg.receive_time_ns)
        if s.on_published is not None:
            try:
                s.on_published(msg)
            except Exception:  # an observer's bug must not end the connection
                log.exception("mqtt: on_published observer failed")
