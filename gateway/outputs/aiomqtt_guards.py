"""Two guards around aiomqtt 2.5 for a broker that dies under load (the MQTT session's clients).

Without them, killing a broker while the session publishes logs asyncio
errors that are not ours to log: ``Exception in callback add_writer ...
Bad file descriptor`` and ``Future exception was never retrieved
(Unexpected disconnection)``. Each guard says where they come from
(tests/e2e/test_mqtt_session.py kills mosquitto under a QoS 1 flood).
"""

from __future__ import annotations

import asyncio
import logging

import aiomqtt
import paho.mqtt.client as mqtt
from aiomqtt.types import PahoSocket

__all__ = ["GuardedClient", "consume_outcome"]

log = logging.getLogger("gateway.outputs.session")


class GuardedClient(aiomqtt.Client):
    """aiomqtt's client with its write watch made safe against a socket closed meanwhile.

    paho asks for a write watch (``on_socket_register_write``) when it queues
    a packet; aiomqtt 2.5 schedules ``loop.add_writer(fd)`` for the next loop
    turn (``call_soon_threadsafe``, as paho may call from the connect thread).
    When the broker dies in that turn, the reader callback closes the socket
    first (paho's ``_sock_close``, whose unregister finds no watch yet) and
    the scheduled ``add_writer`` then hits a closed descriptor: the loop logs
    ``Exception in callback add_writer ... [Errno 9] Bad file descriptor``
    (or, had the number been reused by the next connection, it would watch
    that socket for a dead client). Here the watch is added only if the
    socket is still open and still the client's.
    """

    def _on_socket_register_write(self, client: mqtt.Client, userdata: object, sock: PahoSocket) -> None:
        def writable() -> None:
            # As aiomqtt: a write error is a broken connection; end it now.
            try:
                client.loop_write()
            except Exception as exc:
                if not self._disconnected.done():
                    self._disconnected.set_exception(exc)

        def watch() -> None:
            fd = sock.fileno()
            if fd < 0 or client.socket() is not sock:
                return  # closed (and unregistered by paho) before this turn: nothing to watch
            if not client.want_write():
                # Written meanwhile (the session's pump writes QoS 0 at once, see
                # gateway/outputs/pump.py), and paho has unregistered: a watch now
                # would only fire once to find nothing to write.
                return
            self._loop.add_writer(fd, writable)

        self._loop.call_soon_threadsafe(watch)


def consume_outcome(client: aiomqtt.Client) -> None:
    """Mark the client's connect/disconnect outcomes retrieved, now or when they come.

    aiomqtt 2.5 sets ``_disconnected`` to ``MqttCodeError("Unexpected
    disconnection")`` when the broker goes, and only its message iterator
    reads it. When the session's tasks end first (a stop, a failed publish or
    subscribe in the same turn as the broker's death), ``__aexit__`` sees the
    future done and returns without reading it, and asyncio logs "Future
    exception was never retrieved" when the client is collected. The
    session has its own account of the loss (``_failed``, ``last_error``);
    what is left here is only logged at debug level.
    """

    def consume(fut: asyncio.Future[None]) -> None:
        if not fut.cancelled() and (exc := fut.exception()) is not None:
            log.debug("mqtt: client outcome: %r", exc)

    for fut in (client._connected, client._disconnected):  # private to aiomqtt 2.x, see above
        fut.add_done_callback(consume)
