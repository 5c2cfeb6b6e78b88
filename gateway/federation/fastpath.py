"""The native NATS fast path beside the MQTT session (docs/federation.md §5).

Why a second link. NATS's MQTT listener keeps every MQTT session in the
JetStream stream ``$MQTT_sess`` and every QoS 1 message in ``$MQTT_msgs``:
an MQTT CONNECT (clean or not) waits for the leader of ``$MQTT_sess`` and a
QoS 1 PUBLISH for the leader of ``$MQTT_msgs``. When the node that led them
is killed, nats-server 2.9 re-elects them only after its raft election
time-out of 4-9 s (server/raft.go constants, no configuration key; measured
5-10 s here, benchmarks/federation/RESULTS.md), so a gateway on MQTT alone cannot fail over in under
2 s. A core NATS connection (nats-py) needs no JetStream: when its node dies
the client is on another node within milliseconds and publishes made
meanwhile are buffered by the client and flushed there.

So with ``[nats]`` a site gateway also publishes each TrackBatch, unchanged,
on the core subject ``{topic prefix}.{gateway id}.tracks_live`` (at most
once), and a theatre (or a cue picture bridge) subscribes to it as well as
to the MQTT topic. The QoS 1 persistent session stays the backstop: what the
fast path missed while a client reconnected arrives over MQTT once the
cluster has re-elected its leaders. The consumer uses each (epoch,
sequence) once whichever path brought it first (gateway/federation/sites.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from gateway.federation.nats_security import connect_options, refusal, server_urls
from gateway.sections.federation import NatsConfig
from hilgw.errors import ConfigError

__all__ = ["NatsLink", "live_subject"]

log = logging.getLogger(__name__)

#: Errors of a server that refuses this gateway (nats_security.refusal): retried with back-off.
_REFUSALS = frozenset({"tls_verify", "tls", "tls_required", "auth"})

Handler = Callable[[str, bytes], None]
LinkListener = Callable[[bool], None]


def live_subject(topic_prefix: str, gateway_id: str) -> str:
    """The core subject a gateway's live picture goes on: the MQTT topic
    prefix in NATS's own form ('/' -> '.'), the gateway id, ``tracks_live``."""
    return f"{topic_prefix.replace('/', '.')}.{gateway_id}.tracks_live"


class NatsLink:
    """One core NATS connection: at-most-once publish from a bounded queue, subscriptions.

    ``publish`` never blocks; when the queue is full the oldest message goes
    (counted in ``dropped["queue_full"]``): the freshest picture matters most
    and the MQTT session carries every picture anyway.
    """

    def __init__(self, config: NatsConfig, name: str) -> None:
        self.config = config
        self.name = name
        self._queue: deque[tuple[str, bytes]] = deque()
        self._ready = asyncio.Event()
        self._subs: list[tuple[str, Handler]] = []
        self._subs_changed = asyncio.Event()
        self._listeners: list[LinkListener] = []
        self.connected = False
        #: The server of the current connection ("host:port"), or "".
        self.server = ""
        self.connects = 0
        self.disconnects = 0
        self.published = 0
        #: reason -> messages dropped: ``queue_full``, ``publish_error``.
        self.dropped: Counter[str] = Counter()
        #: Incoming messages by outcome: ``handled``, ``handler_error``.
        self.received: Counter[str] = Counter()
        #: Failed connects and link errors by reason: ``config`` (a ``[nats.tls]``/
        #: ``[nats.auth]`` file or secret, named in ``last_error``), ``tls_verify``,
        #: ``tls``, ``tls_required``, ``auth``, ``timeout``, ``unreachable``, ``other``
        #: (gateway/federation/nats_security.py: refusal).
        self.errors: Counter[str] = Counter()
        #: The last of them: "host:port: what and what to fix" (or the config key).
        self.last_error = ""
        #: reason -> the last error of that reason (a refusal is often followed
        #: by the reset of the connection it refused: both are kept).
        self.last_errors: dict[str, str] = {}
        self._logged: dict[str, float] = {}

    def subscribe(self, subject: str, handler: Handler) -> None:
        """Deliver every message on ``subject`` to ``handler(subject, payload)``; kept across reconnects."""
        self._subs.append((subject, handler))
        self._subs_changed.set()

    def on_link(self, listener: LinkListener) -> None:
        """Call ``listener(up)`` on every connect and every loss of the connection."""
        self._listeners.append(listener)

    def publish(self, subject: str, payload: bytes) -> None:
        """Queue ``payload`` for ``subject``; never blocks."""
        self._queue.append((subject, payload))
        while len(self._queue) > self.config.queue_size:
            self._queue.popleft()
            self.dropped["queue_full"] += 1
        self._ready.set()

    def _link(self, up: bool, nc: NatsClient | None = None) -> None:
        if up == self.connected:
            return
        self.connected = up
        if up:
            self.connects += 1
            url = nc.connected_url if nc is not None else None
            self.server = f"{url.hostname}:{url.port}" if url is not None else ""
        else:
            self.disconnects += 1
        for listener in list(self._listeners):
            try:
                listener(up)
            except Exception:  # a listener's bug must not end the link
                log.exception("nats: link listener %r failed", listener)

    def _error(self, where: str, reason: str, text: str) -> None:
        """Count an error; warn once a minute per reason (a refusing server
        is retried every ``reconnect_wait_s``: one line each would flood the log)."""
        self.errors[reason] += 1
        self.last_error = self.last_errors[reason] = f"{where}: {text}"
        now = time.monotonic()
        if now - self._logged.get(reason, -1e9) >= 60.0:
            self._logged[reason] = now
            log.warning("nats: %s (%d %s error(s) so far)", self.last_error, self.errors[reason], reason)

    async def _connect(self) -> NatsClient:
        c = self.config
        opts = connect_options(c)  # ConfigError naming the key; read at each connect (files replaced)
        nc = NatsClient()
        # nats-py annotates these int and uses them as float seconds (asyncio.wait_for, sleep).
        opts.update(
            connect_timeout=c.connect_timeout_s,
            reconnect_time_wait=c.reconnect_wait_s,
            ping_interval=c.ping_interval_s,
        )

        async def disconnected() -> None:
            self._link(False)

        refusals = 0

        async def reconnected() -> None:
            nonlocal refusals
            refusals = 0
            self._link(True, nc)

        async def error(exc: Exception) -> None:
            nonlocal refusals
            # nats-py reports a refused connect here (and retries it forever,
            # max_reconnect_attempts=-1): a wrong CA, a refused certificate, bad
            # credentials. Name the server and the reason.
            srv = getattr(nc, "_current_server", None)  # private to nats-py: the server it tried
            url = getattr(srv, "uri", None)
            where = f"{url.hostname}:{url.port}" if url is not None else ",".join(c.servers)
            reason, text = refusal(exc)
            if c.tls is None and reason in ("tls_verify", "tls"):
                # nats-py upgrades to TLS when the server's INFO asks for it, with
                # the system CAs: what to fix is [nats.tls], not a file of it.
                reason, text = "tls_required", "the server requires TLS: set [nats.tls]"
            if reason in ("other", "unreachable") and self.connected:
                log.debug("nats: %s: %s", where, text)  # a dropped link: the reconnect says the rest
                return
            self._error(where, reason, text)
            if reason in _REFUSALS:
                # A server that refused this identity refuses it again: nats-py would
                # try every reconnect_wait_s (a TLS handshake and asyncio's sslproto
                # warning each time). It awaits this callback before its next try,
                # so waiting here backs it off, doubling up to 5 s.
                refusals += 1
                await asyncio.sleep(min(5.0, c.reconnect_wait_s * 2.0**refusals))

        await nc.connect(
            servers=server_urls(c),
            name=self.name,
            max_reconnect_attempts=-1,
            max_outstanding_pings=2,
            # Start on the first server of the list (as the MQTT session does):
            # a gateway's list is its own order of preference.
            dont_randomize=True,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
            **opts,  # the TLS context and credentials
        )
        return nc

    async def run(self) -> None:
        """Connect (retrying), subscribe, publish; runs until cancelled."""
        delay = self.config.reconnect_wait_s
        while True:
            try:
                nc = await self._connect()
            except ConfigError as exc:  # kept retrying: the file may be being replaced
                self._error("config", "config", str(exc))
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 5.0)
                continue
            except (OSError, TimeoutError, NatsError) as exc:
                log.debug("nats: cannot connect: %s", exc)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 5.0)
                continue
            delay = self.config.reconnect_wait_s
            self._link(True, nc)
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._subscriber(nc), name="nats:subscribe")
                    tg.create_task(self._pump(nc), name="nats:pump")
            finally:
                self._link(False)
                with contextlib.suppress(Exception):  # closing a dead client: nothing to save
                    await nc.close()

    async def _subscriber(self, nc: NatsClient) -> None:
        done = 0
        while True:
            await self._subs_changed.wait()
            self._subs_changed.clear()
            for subject, handler in self._subs[done:]:
                await nc.subscribe(subject, cb=self._callback(handler))
            done = len(self._subs)

    def _callback(self, handler: Handler) -> Callable[[Msg], Awaitable[None]]:
        async def cb(msg: Msg) -> None:
            try:
                handler(msg.subject, msg.data)
                self.received["handled"] += 1
            except Exception:  # a handler's bug must not end the subscription
                self.received["handler_error"] += 1
                log.exception("nats: handler for %s failed", msg.subject)

        return cb

    async def _pump(self, nc: NatsClient) -> None:
        while True:
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            subject, payload = self._queue.popleft()
            try:
                # Buffered by nats-py while it reconnects (pending_size) and
                # flushed on the next node: no wait for any JetStream leader.
                await nc.publish(subject, payload)
                self.published += 1
            except NatsError as exc:
                self.dropped["publish_error"] += 1
                log.debug("nats: publish on %s failed: %s", subject, exc)
                if nc.is_closed:  # never with unlimited reconnects; if so, start over
                    raise ConnectionError("nats: connection closed") from exc
