"""MQTT publisher (aiomqtt 2.x) with reconnect and a bounded store-and-forward queue.

aiomqtt does not reconnect by itself: :meth:`MqttPublisher.run` wraps one
connection in a loop with exponential back-off. Messages wait in one bounded
queue while the broker is away; when it is full the *oldest* message goes and
is counted by topic class (``dropped``), so after an outage the freshest
picture is what arrives. Topics are listed in docs/topics.md.

With ``[mqtt.tls]`` the connection is TLS (>= 1.2) and the broker is always
verified against the configured CA; the SSL context is built afresh for every
connection attempt, so certificates renewed on disk are picked up at the next
reconnect without a restart (docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections import Counter, deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import aiomqtt

from gateway.config import MqttConfig, MqttTlsConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    kind: str = "other"  # counter key: tracks, reports, health, ...


class Topics:
    """Topic names of one gateway (docs/topics.md)."""

    def __init__(self, prefix: str, gateway_id: str) -> None:
        self.base = f"{prefix}/{gateway_id}"

    @property
    def tracks(self) -> str:
        return f"{self.base}/tracks"

    def reports(self, sensor_id: str) -> str:
        return f"{self.base}/reports/{sensor_id}"

    def health(self, device_id: str) -> str:
        return f"{self.base}/health/{device_id}"

    @property
    def authority(self) -> str:
        return f"{self.base}/authority"

    @property
    def status(self) -> str:
        return f"{self.base}/status"


_T = TypeVar("_T")


async def cancel_safe(aw: Awaitable[_T]) -> _T:
    """Await ``aw`` in a task of its own, so that a cancel of the caller always raises here.

    aiomqtt waits for PUBACK and SUBACK with ``asyncio.wait_for``, which on
    Python 3.11 returns normally when a cancel arrives in the same loop
    iteration as the answer (CPython gh-86296). A loop around such a call then
    runs on, and the TaskGroup or shutdown waiting for it waits for ever (seen
    on a loaded machine: a cue path that never stopped). Through ``shield`` the
    caller's cancel raises at once; the inner call is cancelled as well, and
    whatever it does with that no longer matters. ``task.cancelling()`` cannot
    tell a swallowed cancel on 3.11: a TaskGroup whose child failed leaves it raised.
    """
    inner = asyncio.ensure_future(aw)
    try:
        return await asyncio.shield(inner)
    except asyncio.CancelledError:
        inner.cancel()
        raise


async def publish(
    client: aiomqtt.Client, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
) -> None:
    """``client.publish`` through :func:`cancel_safe`."""
    await cancel_safe(client.publish(topic, payload, qos=qos, retain=retain))


def tls_context(tls: MqttTlsConfig) -> ssl.SSLContext:
    """An SSL context for the broker connection: verify the broker against
    ``ca_file`` (never CERT_NONE), present the client certificate if one is set.

    Raises OSError (a file is missing or unreadable) or ssl.SSLError (a file is
    not a certificate/key, or the key does not match, or the password is wrong).
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if tls.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = tls.verify_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    if tls.cert_file is not None:
        ctx.load_cert_chain(
            str(tls.cert_file),
            str(tls.key_file) if tls.key_file is not None else None,
            password=tls.key_password,
        )
    return ctx


class MqttPublisher:
    def __init__(self, config: MqttConfig, gateway_id: str) -> None:
        self.config = config
        self.topics = Topics(config.topic_prefix, gateway_id)
        self.client_id = config.client_id or f"hilgw-{gateway_id}"
        self._queue: deque[Outgoing] = deque()
        self._ready = asyncio.Event()
        self.dropped: Counter[str] = Counter()
        self.published: Counter[str] = Counter()
        self.connected = False
        self.connects = 0
        self.connect_failures = 0
        self.last_error = ""
        self._last_failure_log = -1e9

    @property
    def queued(self) -> int:
        return len(self._queue)

    def enqueue(self, msg: Outgoing) -> None:
        """Queue a message; never blocks. Full queue: drop the oldest, count it."""
        if len(self._queue) >= self.config.queue_size:
            old = self._queue.popleft()
            self.dropped[old.kind] += 1
        self._queue.append(msg)
        self._ready.set()

    async def run(self, port: int | None = None) -> None:
        """Connect, publish, reconnect on loss; runs until cancelled."""
        c = self.config
        delay = c.reconnect_initial_s
        while True:
            try:
                context = tls_context(c.tls) if c.tls is not None else None
            except OSError as err:  # ssl.SSLError is an OSError
                # A bad certificate file is an operator error: say so, keep retrying
                # (the file may be being replaced); `hilgw doctor` names the fix.
                self.last_error = f"tls: {err}"
                log.error("mqtt: cannot set up TLS: %s", err)
                context = None
            try:
                if c.tls is not None and context is None:
                    raise aiomqtt.MqttError(self.last_error)
                async with aiomqtt.Client(
                    hostname=c.host,
                    port=port or c.port,
                    identifier=self.client_id,
                    username=c.username,
                    password=c.password,
                    keepalive=c.keepalive_s,
                    will=aiomqtt.Will(self.topics.status, b"offline", qos=1, retain=True),
                    tls_context=context,
                ) as client:
                    self.connected = True
                    self.connects += 1
                    delay = c.reconnect_initial_s
                    log.info("mqtt: connected to %s:%s", c.host, port or c.port)
                    await publish(client, self.topics.status, b"online", qos=1, retain=True)
                    # The pump alone would notice a lost link only at its next
                    # publish; the watcher ends the connection as soon as
                    # aiomqtt sees it go, so health shows it and back-off starts.
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._pump(client), name="mqtt:pump")
                        tg.create_task(self._watch(client), name="mqtt:watch")
            except* aiomqtt.MqttError as group:
                exc = group.exceptions[0]
                self.last_error = str(exc)
                if self.connected:
                    log.warning("mqtt: connection lost: %s", exc)
                else:
                    self.connect_failures += 1
                    # An operator must see a broker that refuses us (a wrong
                    # certificate looks like a time-out to aiomqtt), but one
                    # line per attempt would flood the log: at most one a minute.
                    now = time.monotonic()
                    if now - self._last_failure_log >= 60.0:
                        self._last_failure_log = now
                        log.warning(
                            "mqtt: cannot connect to %s:%s (%d attempts so far): %s",
                            c.host, port or c.port, self.connect_failures, exc,
                        )  # fmt: skip
            finally:
                self.connected = False
            # Jittered exponential back-off so a fleet does not reconnect in step.
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, c.reconnect_max_s)

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Raises MqttError when the connection drops (aiomqtt ends iteration so)."""
        async for _ in client.messages:
            pass  # nothing is subscribed on this connection
        raise aiomqtt.MqttError("message stream ended")

    async def _pump(self, client: aiomqtt.Client) -> None:
        while True:
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            msg = self._queue[0]
            await publish(client, msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
            # Removed only once handed to the client: a message in flight when
            # the link drops is sent again after reconnect (at least once).
            if self._queue and self._queue[0] is msg:
                self._queue.popleft()
            self.published[msg.kind] += 1
