"""The gateway's one MQTT session (aiomqtt 2.x): connection, failover, subscriptions, store-and-forward.

    session = MqttSession(config.mqtt, config.gateway_id)
    sub = session.subscribe("hilgw/gw-1/authority/command", handler)   # handler(topic, payload)
    unlink = session.on_link(listener)                                  # listener(up: bool)
    session.enqueue(Outgoing(topic, payload, qos=1, kind="tracks"))     # never blocks
    await session.run()                                                 # until cancelled

The publisher, the cue path and live scoring share it (issue 15): one
connection, one reconnect policy, one queue, one set of counters.

Reconnect policy. aiomqtt does not reconnect by itself; :meth:`run` loops
over connections. A failed attempt moves to the next broker address
(``[mqtt] hosts``, failover) and doubles the back-off up to
``reconnect_max_s``, jittered by +-20 % so a fleet does not reconnect in step.
A connection that lived ``reconnect_reset_s`` or longer was healthy: when it
is lost the back-off starts again from ``reconnect_initial_s``, on the same
address first.

Persistent session. The client id is stable (``[mqtt] client_id`` or
``hilgw-{gateway_id}``) and, with ``persistent_session`` (the default),
connects with ``clean_session = False``: the broker keeps the subscriptions
and queues QoS 1 messages for the gateway while it is away (MQTT 3.1.1
§3.1.2.4), so operator commands sent during a blip are delivered after it.

Store-and-forward. Outgoing messages wait in two lanes:

* the *critical* lane (:data:`CRITICAL_KINDS`: cues, acks, authority, cue
  list, command results, status) is never dropped. Every one of these is
  journaled in the cue audit log before it is enqueued (docs/cue-path.md §7),
  is produced at the rate of decisions, not of sensor data, and is sent
  before anything in the other lane;
* the *bulk* lane (tracks, reports, health, score) holds ``queue_size``
  messages; when full the *oldest* goes (the freshest picture matters most)
  and is counted in ``dropped[(kind, "queue_full")]``.

A message leaves its lane only when the broker has taken it (PUBACK for QoS 1):
the ones in flight when the link drops go back to the front of their lane and
are sent again after the reconnect (at least once; consumers dedupe by the
message's own sequence). Up to ``max_inflight`` messages are in flight
(gateway/outputs/pump.py: QoS 0 ones are written in the sender's own turn).

Status. ``{base}/status`` is ``online`` (retained, QoS 1) on every connect and
``offline`` on a clean stop, published before the disconnect; the will says
``offline`` for an unclean end (a crash, SIGKILL, a lost link).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiomqtt

from gateway.config import MqttConfig
from gateway.outputs.aiomqtt_guards import GuardedClient, consume_outcome
from gateway.outputs.mqtt import Outgoing, Topics, cancel_safe, publish, tls_context
from gateway.outputs.pump import Pump
from gateway.stages import StageClock

__all__ = [
    "CRITICAL_KINDS",
    "BrokerAddress",
    "MqttSession",
    "Subscription",
    "broker_addresses",
]

log = logging.getLogger(__name__)
#: Incoming messages dispatched per loop turn at most, beyond the one aiomqtt hands over.
_DRAIN_PER_TURN = 256

#: The window over which a command connection's incoming rate is judged (``shed_above_per_s``).
_SHED_WINDOW_S = 0.25

#: Message kinds that are never dropped (docs/topics.md, docs/cue-path.md §8).
CRITICAL_KINDS = frozenset({"cue", "ack", "authority", "cues", "result", "status"})

#: Called with (topic, payload) for every message on a subscribed filter.
Handler = Callable[[str, bytes], None]
#: Called with True on every connect, False on every loss of the connection.
LinkListener = Callable[[bool], None]


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def broker_addresses(config: MqttConfig, port: int | None = None) -> list[BrokerAddress]:
    """The brokers to try, in order: ``[mqtt] hosts`` or else ``host``/``port``.

    ``port`` (the embedded broker's actual port) replaces the configured one.
    """
    if config.hosts and port is None:
        out = []
        for entry in config.hosts:
            host, _, p = entry.rpartition(":")
            out.append(BrokerAddress(host, int(p)))  # the format is checked at config load
        return out
    return [BrokerAddress(config.host, port or config.port)]


def _first(exc: BaseException) -> BaseException:
    """The first leaf of a (nested) exception group: the error to report."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _cancels() -> int:
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def _settle_cancels(base: int) -> None:
    """Re-raise a cancellation that Python 3.11 swallowed.

    aiomqtt's ``asyncio.wait_for`` (CONNACK, the disconnect) returns normally
    when the future completes together with a cancel (CPython gh-86296): the
    task runs on with one cancel requested and, un-noticed, a cancelled
    session on a connection that is dropped often (a shed command
    connection) would connect again for ever. ``base``: the task's
    ``cancelling()`` when :meth:`MqttSession.run` began; any request beyond
    it is a real cancel (nothing else cancels this task: see
    :func:`_until_one_fails`).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling() > base:
        raise asyncio.CancelledError


async def _until_one_fails(*named: tuple[Coroutine[Any, Any, None], str]) -> None:
    """Run a connection's tasks until one of them fails, cancel the rest, raise
    its error (a :class:`FloodShed` before any other).

    Not a TaskGroup: in 3.11 a TaskGroup whose child fails cancels the parent
    task and never takes that back (it is uncancelled only on entering
    ``__aexit__``, before the wait), so a real cancel arriving as the group
    ended could not be told from the group's own; undoing "the group's" undid
    the real one, and a session stopped just after a shed connected again for
    ever (tests/e2e/test_operator_broker_flood.py, about 1 run in 10). Here
    only the caller cancels this task.
    """
    tasks = [asyncio.create_task(coro, name=name) for coro, name in named]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks)
    errors = [e for t in tasks if not t.cancelled() and (e := t.exception()) is not None]
    if errors:
        raise next((e for e in errors if isinstance(e, FloodShed)), errors[0])


class FloodShed(aiomqtt.MqttError):
    """The connection took more than ``shed_above_per_s`` messages: dropped on purpose."""


class Subscription:
    """One topic filter and its handler; :meth:`close` unsubscribes it."""

    def __init__(self, session: MqttSession, topic: str, qos: int, handler: Handler) -> None:
        self.session = session
        self.topic = topic
        self.qos = qos
        self.handler = handler
        #: SUBACKs the broker sent for it, one per connection: what a caller waits on
        #: before it relies on messages arriving (tests, a bench that publishes next).
        self.acks = 0

    def close(self) -> None:
        self.session._unsubscribe(self)


class MqttSession:
    """One MQTT connection for the whole gateway; see the module docstring."""

    def __init__(
        self,
        config: MqttConfig,
        gateway_id: str,
        *,
        port: int | None = None,
        client_id: str | None = None,
        announce: bool = True,
        rcvbuf_bytes: int = 0,
        shed_above_per_s: int = 0,
    ) -> None:
        self.config = config
        #: Publish the retained ``status`` (online, offline, the will): the main
        #: session does; a second connection of the same gateway does not.
        self.announce = announce
        #: SO_RCVBUF of the connection (0: the OS default, autotuned); see gateway.outputs.commands.
        self.rcvbuf_bytes = rcvbuf_bytes
        #: More incoming messages than this a second: the connection is shed (0: never);
        #: see gateway.outputs.commands.
        self.shed_above_per_s = shed_above_per_s
        #: Connections dropped on purpose because of an incoming flood.
        self.sheds = 0
        self.topics = Topics(config.topic_prefix, gateway_id)
        self.client_id = client_id or config.client_id or f"hilgw-{gateway_id}"
        self.addresses = broker_addresses(config, port)
        self._critical: deque[tuple[int, Outgoing]] = deque()
        self._bulk: deque[tuple[int, Outgoing]] = deque()
        self._inflight: dict[int, Outgoing] = {}
        self._seq = itertools.count()
        self._ready = asyncio.Event()
        self._subs: list[Subscription] = []
        self._subs_changed = asyncio.Event()
        self._link_listeners: list[LinkListener] = []
        #: Called with each message once the broker has it (QoS 1: PUBACK); for benches.
        self.on_published: Callable[[Outgoing], None] | None = None
        #: Times the ``mqtt`` stage of messages with a receive time (gateway/stages.py).
        self.stages: StageClock | None = None
        #: (kind, reason) -> messages dropped. Reasons: ``queue_full`` (bulk lane
        #: full, the oldest went), ``link_lost`` (QoS 0, in flight when the link went).
        self.dropped: Counter[tuple[str, str]] = Counter()
        self.published: Counter[str] = Counter()
        #: Incoming messages by outcome: ``handled``, ``handler_error``, ``unmatched``,
        #: ``shed`` (QoS 0, read but discarded when the connection was shed).
        self.received: Counter[str] = Counter()
        self.connected = False
        self.address: BrokerAddress | None = None  # the broker of the current/last connection
        self.connects = 0
        self.connect_failures = 0
        self.disconnects = 0
        self.last_error = ""
        #: Monotonic time of the last loss of the connection (None: never connected/lost).
        self.down_since_mono: float | None = None
        self._last_failure_log = -1e9
        self._last_shed_log = -1e9
        self._subscribing = False
        self._session_present = False
        self._quiet_down = False  # a shed connection whose loss listeners have not heard of
        #: Filters the broker acknowledged in the current persistent session.
        self._acked_subs: set[tuple[str, int]] = set()

    # --- the queue ------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Messages waiting (both lanes, not counting those in flight)."""
        return len(self._critical) + len(self._bulk)

    @property
    def queued_critical(self) -> int:
        return len(self._critical)

    def enqueue(self, msg: Outgoing) -> None:
        """Queue a message; never blocks. Bulk lane full: the oldest goes, counted."""
        item = (next(self._seq), msg)
        if msg.kind in CRITICAL_KINDS:
            self._critical.append(item)
        else:
            self._bulk.append(item)
            self._trim()
        self._ready.set()

    def _trim(self) -> None:
        while len(self._bulk) > self.config.queue_size:
            _, old = self._bulk.popleft()
            self.dropped[old.kind, "queue_full"] += 1

    def _requeue_inflight(self) -> None:
        """Messages not confirmed when the link went: back to the front, in order."""
        for seq in sorted(self._inflight, reverse=True):
            msg = self._inflight[seq]
            if msg.qos == 0:
                # At most once: it may have reached the socket before the link went.
                self.dropped[msg.kind, "link_lost"] += 1
                continue
            (self._critical if msg.kind in CRITICAL_KINDS else self._bulk).appendleft((seq, msg))
        self._inflight.clear()
        self._trim()

    # --- subscriptions and link listeners -----------------------------------------------------

    def subscribe(self, topic: str, handler: Handler, *, qos: int = 1) -> Subscription:
        """Deliver every message on ``topic`` (a filter) to ``handler(topic, payload)``.

        Kept across reconnects. The handler runs in the session's task: it must
        not block; an exception it raises is logged and counted, never fatal.
        """
        sub = Subscription(self, topic, qos, handler)
        self._subs.append(sub)
        self._subs_changed.set()
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subs.remove(sub)
        # Left subscribed at the broker until the next connect: messages for it
        # then match no handler and are ignored (counted as ``unmatched``).

    def on_link(self, listener: LinkListener) -> Callable[[], None]:
        """Call ``listener(up)`` on every connect and loss; returns a remover."""
        self._link_listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._link_listeners.remove(listener)

        return remove

    def _notify(self, up: bool) -> None:
        for listener in list(self._link_listeners):
            try:
                listener(up)
            except Exception:  # a listener's bug must not end the connection
                log.exception("mqtt: link listener %r failed", listener)

    # --- the connection -----------------------------------------------------------------------

    def _client(self, addr: BrokerAddress) -> aiomqtt.Client:
        c = self.config
        try:
            context = tls_context(c.tls) if c.tls is not None else None
        except OSError as err:  # ssl.SSLError is an OSError
            # A bad certificate file is an operator error: say so, keep retrying
            # (the file may be being replaced); `hilgw doctor` names the fix.
            raise aiomqtt.MqttError(f"tls: {err}") from err
        client = GuardedClient(
            hostname=addr.host,
            port=addr.port,
            identifier=self.client_id,
            username=c.username,
            password=c.password,
            keepalive=c.keepalive_s,
            clean_session=not c.persistent_session,
            will=aiomqtt.Will(self.topics.status, b"offline", qos=1, retain=True) if self.announce else None,
            tls_context=context,
            timeout=c.connect_timeout_s,
            socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf_bytes)]
            if self.rcvbuf_bytes
            else None,
        )
        # aiomqtt drops CONNACK's session-present flag; we need it to know whether the
        # broker kept our subscriptions (MQTT 3.1.1 §3.2.2.2). Private, like _queue below.
        paho = client._client
        on_connect = paho.on_connect

        def connected(c: Any, userdata: Any, flags: Any, *rest: Any) -> None:
            self._session_present = bool(getattr(flags, "session_present", False))
            on_connect(c, userdata, flags, *rest)  # type: ignore[misc]

        self._session_present = False
        paho.on_connect = connected
        # aiomqtt warns (one log line per publish) above 10 unconfirmed publishes;
        # our window allows max_inflight of them by design.
        client.pending_calls_threshold = c.max_inflight + 10
        return client

    async def run(self) -> None:
        """Connect, publish, receive, reconnect on loss; runs until cancelled."""
        c = self.config
        delay = c.reconnect_initial_s
        index = 0
        base = _cancels()
        while True:
            _settle_cancels(base)
            addr = self.addresses[index % len(self.addresses)]
            up_since: float | None = None
            shed = False
            client: aiomqtt.Client | None = None
            try:
                client = self._client(addr)
                async with client:
                    _settle_cancels(base)
                    up_since = time.monotonic()
                    self.connected, self.address = True, addr
                    self.connects += 1
                    log.info("mqtt: connected to %s as %s", addr, self.client_id)
                    if self.announce:
                        await publish(client, self.topics.status, b"online", qos=1, retain=True)
                    if not self._session_present:  # a new session: nothing is subscribed
                        self._acked_subs.clear()
                    self._subs_changed.set()
                    self._subscribing = any((x.topic, x.qos) not in self._acked_subs for x in self._subs)
                    if self._quiet_down:  # back after a shed: the link was never lost for listeners
                        self._quiet_down = False
                    else:
                        self._notify(True)
                    try:
                        await _until_one_fails(
                            (Pump(self, client).run(), "mqtt:pump"),
                            (self._receive(client), "mqtt:receive"),
                            (self._subscriber(client), "mqtt:subscribe"),
                        )
                    except asyncio.CancelledError:
                        await self._say_offline(client)
                        raise
            except* FloodShed:
                shed = True
                _settle_cancels(base)
            except* aiomqtt.MqttError as group:
                self._failed(addr, _first(group), up_since is not None)
                _settle_cancels(base)
            finally:
                if client is not None:
                    # paho went on reading (and acknowledging) while the connection
                    # was being closed: handle those too (a HOLD may be among them).
                    self._drain_after_loss(client._queue, keep_qos0=not shed)
                if self.connected:
                    self.connected = False
                    self.disconnects += 1
                    self.down_since_mono = time.monotonic()
                    if shed:
                        # Dropped on purpose and made again at once: listeners (the cue
                        # path's operator link, its audit) hear of it only if the
                        # reconnect fails. Sheds are counted and logged instead.
                        self._quiet_down = True
                    else:
                        self._notify(False)
                self._requeue_inflight()
                if client is not None:
                    consume_outcome(client)
            if shed:  # on purpose: at once, to the same broker, the back-off untouched
                self.sheds += 1
                continue
            if self._quiet_down:  # the reconnect after a shed failed: now the link is down
                self._quiet_down = False
                self._notify(False)
            healthy = up_since is not None and time.monotonic() - up_since >= c.reconnect_reset_s
            if healthy:
                delay = c.reconnect_initial_s  # it had been healthy: start the back-off over
            else:
                index += 1  # failover: the next address on the list
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            if not healthy:
                delay = min(delay * 2, c.reconnect_max_s)

    def _failed(self, addr: BrokerAddress, exc: BaseException, was_connected: bool) -> None:
        self.last_error = str(exc)
        if was_connected:
            log.warning("mqtt: connection to %s lost: %s", addr, exc)
            return
        self.connect_failures += 1
        # An operator must see a broker that refuses us (a wrong certificate
        # looks like a time-out to aiomqtt), but one line per attempt would
        # flood the log: at most one a minute.
        now = time.monotonic()
        if now - self._last_failure_log >= 60.0:
            self._last_failure_log = now
            log.warning(
                "mqtt: cannot connect to %s (%d attempts so far): %s", addr, self.connect_failures, exc
            )

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """A clean stop: retained ``offline`` before the disconnect (the will is for unclean ends)."""
        if not self.announce:
            return
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(1.0):
                await client.publish(self.topics.status, b"offline", qos=1, retain=True)

    async def _receive(self, client: aiomqtt.Client) -> None:
        """Dispatch incoming messages; raises MqttError when the connection drops."""
        queued = client._queue  # aiomqtt's incoming queue, private: see below
        limit = self.shed_above_per_s * _SHED_WINDOW_S
        window_end, count = time.monotonic() + _SHED_WINDOW_S, 0
        try:
            async for msg in client.messages:
                if limit:
                    count += 1 + queued.qsize()
                    now = time.monotonic()
                    if now >= window_end:
                        window_end, count = now + _SHED_WINDOW_S, 0
                    elif count > limit and not self._subscribing:
                        # (not while a SUBACK is awaited: the subscription must be made)
                        self._shed(queued, msg)
                self._dispatch(msg)
                # aiomqtt hands over one message per several loop turns (a task and an
                # asyncio.wait each) while paho reads many per turn: under a flood the
                # queue grew without bound and a HOLD behind it waited for seconds
                # (issue 23 §1). Take what is queued already in the same turn.
                for _ in range(_DRAIN_PER_TURN):  # bounded: other tasks (a local HOLD) get turns too
                    if queued.empty():
                        break
                    self._dispatch(queued.get_nowait())
        except aiomqtt.MqttError:
            self._drain_after_loss(queued)
            raise
        self._drain_after_loss(queued)
        raise aiomqtt.MqttError("message stream ended")  # aiomqtt ends iteration on a lost link

    def _shed(self, queued: asyncio.Queue[aiomqtt.Message], msg: aiomqtt.Message) -> None:
        """Drop the connection under an incoming flood (see gateway.outputs.commands).

        What paho has read already is still handled if it was QoS 1 (paho has
        acknowledged it: the broker will not send it again); QoS 0 messages read
        but not yet handled are discarded and counted (``received["shed"]``):
        they are the flood, and handling them is what the shedding saves.
        Operator commands are QoS 1 (docs/cue-path.md §11).
        """
        now = time.monotonic()
        if now - self._last_shed_log >= 60.0:  # one line a minute, not one per shed
            self._last_shed_log = now
            log.warning(
                "mqtt: %s: more than %d messages a second: connection shed and made again (%d so far)",
                self.client_id,
                self.shed_above_per_s,
                self.sheds + 1,
            )
        if msg.qos:
            self._dispatch(msg)
        else:
            self._count_shed()
        self._drain_after_loss(queued, keep_qos0=False)
        raise FloodShed(f"more than {self.shed_above_per_s} messages/s")

    def _drain_after_loss(self, queued: asyncio.Queue[aiomqtt.Message], *, keep_qos0: bool = True) -> None:
        """The link is gone, but paho acknowledged (PUBACK) what it read already: the
        broker will not send those again, so they are handled now, not dropped with
        this connection's client (under a flood a HOLD could be among them, issue 23).
        ``keep_qos0=False`` (a shed connection): QoS 0 ones are discarded, counted."""
        while not queued.empty():
            m = queued.get_nowait()
            if keep_qos0 or m.qos:
                self._dispatch(m)
            else:
                self._count_shed()

    def _count_shed(self) -> None:
        self.received["shed"] += 1

    def _dispatch(self, msg: aiomqtt.Message) -> None:
        payload = msg.payload if isinstance(msg.payload, bytes) else b""
        matched = False
        for sub in list(self._subs):
            if msg.topic.matches(sub.topic):
                matched = True
                try:
                    sub.handler(msg.topic.value, payload)
                    self.received["handled"] += 1
                except Exception:  # a handler's bug must not end the connection
                    self.received["handler_error"] += 1
                    log.exception("mqtt: handler for %s failed", sub.topic)
        if not matched:
            self.received["unmatched"] += 1

    async def _subscriber(self, client: aiomqtt.Client) -> None:
        """(Re)subscribe every filter on connect and whenever one is added."""
        # The broker kept the session (persistent, session present): what it
        # acknowledged before is still subscribed; after a shed, the reconnect
        # must not wait for a SUBACK queued behind the next flood.
        done = self._acked_subs
        acked: set[int] = set()  # id() of the subscriptions counted on this connection
        while True:
            await self._subs_changed.wait()
            self._subs_changed.clear()
            for sub in list(self._subs):
                key = (sub.topic, sub.qos)
                if key not in done:
                    self._subscribing = True
                    await cancel_safe(client.subscribe(sub.topic, qos=sub.qos))
                    done.add(key)  # SUBACKed
                if id(sub) not in acked:  # also a second handler on a filter already acked
                    acked.add(id(sub))  # (or one the kept session had: in place all the same)
                    sub.acks += 1
            self._subscribing = False
