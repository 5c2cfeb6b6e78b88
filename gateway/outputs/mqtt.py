"""MQTT building blocks: topic names, the outgoing message, cancel-safe publish, TLS.

The connection itself, its reconnect policy and the store-and-forward queue
are :class:`gateway.outputs.session.MqttSession`. Topics are listed in
docs/topics.md.

With ``[mqtt.tls]`` the connection is TLS (>= 1.2) and the broker is always
verified against the configured CA; the SSL context is built afresh for every
connection attempt, so certificates renewed on disk are picked up at the next
reconnect without a restart (docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import aiomqtt

from gateway.config import MqttTlsConfig


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
