"""MQTT output against a real mosquitto on 127.0.0.1: delivery, reconnect after
the broker restarts, store-and-forward while it is away, counted overflow."""

from __future__ import annotations

import asyncio
import contextlib

import aiomqtt
import pytest

from gateway.config import MqttConfig
from gateway.outputs.mqtt import Outgoing
from gateway.outputs.session import MqttSession
from hilgw.v1 import track_pb2
from tests.conftest import Mosquitto
from tests.waiting import eventually

pytestmark = pytest.mark.e2e


def cfg(port: int, **kw: object) -> MqttConfig:
    return MqttConfig.model_validate({"port": port, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5, **kw})


async def collect(
    port: int, topic: str, n: int, subscribed: asyncio.Event, timeout_s: float = 20.0
) -> list[bytes]:
    """The first ``n`` payloads on ``topic``; ``subscribed`` is set once the broker acked (SUBACK)."""
    got: list[bytes] = []
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(topic, qos=1)
        subscribed.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                async for msg in client.messages:
                    got.append(bytes(msg.payload))  # type: ignore[arg-type]
                    if len(got) >= n:
                        break
    return got


def batch(seq: int) -> bytes:
    return track_pb2.TrackBatch(gateway_id="gw", batch_sequence=seq).SerializeToString()


async def test_publishes_protobuf_and_survives_broker_restart(mosquitto: Mosquitto) -> None:
    pub = MqttSession(cfg(mosquitto.port), "gw")
    task = asyncio.create_task(pub.run())
    try:
        await eventually(lambda: pub.connected)
        subscribed = asyncio.Event()
        listener = asyncio.create_task(collect(mosquitto.port, pub.topics.tracks, 3, subscribed))
        await eventually(subscribed.is_set, what="the listener's SUBACK", task=listener)
        for seq in (1, 2, 3):
            pub.enqueue(Outgoing(pub.topics.tracks, batch(seq), qos=1, kind="tracks"))
        got = await listener
        assert [track_pb2.TrackBatch.FromString(p).batch_sequence for p in got] == [1, 2, 3]

        # Broker goes away; what is published meanwhile waits in the queue.
        await asyncio.to_thread(mosquitto.stop)
        await eventually(lambda: not pub.connected)
        for seq in (4, 5):
            pub.enqueue(Outgoing(pub.topics.tracks, batch(seq), qos=1, kind="tracks"))
        assert pub.queued == 2
        await asyncio.to_thread(mosquitto.restart)
        subscribed = asyncio.Event()
        listener = asyncio.create_task(collect(mosquitto.port, pub.topics.tracks, 2, subscribed))
        # The listener subscribes before the publisher is back (its queue is sent at once).
        await eventually(subscribed.is_set, what="the listener's SUBACK", task=listener)
        await eventually(lambda: pub.connects >= 2)
        got = await listener
        assert [track_pb2.TrackBatch.FromString(p).batch_sequence for p in got] == [4, 5]
        assert pub.queued == 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_full_queue_drops_oldest_and_counts() -> None:
    # No broker at all: nothing drains the queue.
    pub = MqttSession(cfg(1, queue_size=10), "gw")
    for seq in range(25):
        pub.enqueue(Outgoing("t", batch(seq), kind="tracks"))
    assert pub.queued == 10
    assert pub.dropped["tracks", "queue_full"] == 15
    assert track_pb2.TrackBatch.FromString(pub._bulk[0][1].payload).batch_sequence == 15
