"""The gateway's one MQTT session against a real mosquitto (issue 15): failover
to the next broker address, retained ``offline`` on a clean stop, a persistent
session that receives what was sent while it was away, a critical lane that
is never dropped."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal

import aiomqtt
import pytest

from gateway.config import MqttConfig
from gateway.outputs.mqtt import Outgoing
from gateway.outputs.session import MqttSession, broker_addresses
from tests.conftest import Mosquitto, free_port
from tests.waiting import eventually

pytestmark = pytest.mark.e2e


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def first(sub: aiomqtt.Client, n: int) -> list[aiomqtt.Message]:
    """The next ``n`` messages ``sub`` receives (within 10 s)."""
    got: list[aiomqtt.Message] = []
    async with asyncio.timeout(10):
        async for msg in sub.messages:
            got.append(msg)
            if len(got) == n:
                break
    return got


async def retained(port: int, topic: str) -> bytes:
    async with aiomqtt.Client("127.0.0.1", port) as sub:
        await sub.subscribe(topic, qos=1)
        async with asyncio.timeout(5):
            msg = await anext(sub.messages)
    return bytes(msg.payload)  # type: ignore[arg-type]


def test_broker_addresses_from_hosts_or_host_port() -> None:
    two = MqttConfig(hosts=["10.0.0.1:1883", "broker-b:8883"])
    assert [str(a) for a in broker_addresses(two)] == ["10.0.0.1:1883", "broker-b:8883"]
    assert [str(a) for a in broker_addresses(MqttConfig(host="h", port=1))] == ["h:1"]
    # The embedded broker's actual port wins over the configured address.
    assert [str(a) for a in broker_addresses(two, port=5)] == ["127.0.0.1:5"]
    with pytest.raises(ValueError, match="not host:port"):
        MqttConfig(hosts=["nohost"])


async def test_fails_over_to_the_next_broker_and_says_offline_on_a_clean_stop(mosquitto: Mosquitto) -> None:
    dead = free_port()  # nothing listens there
    cfg = MqttConfig(hosts=[f"127.0.0.1:{dead}", f"127.0.0.1:{mosquitto.port}"], reconnect_initial_s=0.05)
    session = MqttSession(cfg, "gw")
    task = asyncio.create_task(session.run())
    try:
        await eventually(lambda: session.connected)
        assert session.address is not None
        assert session.address.port == mosquitto.port
        assert session.connect_failures >= 1
        assert await retained(mosquitto.port, session.topics.status) == b"online"
    finally:
        await stop(task)
    # A clean stop publishes offline itself (the will is only for unclean ends).
    assert await retained(mosquitto.port, session.topics.status) == b"offline"


async def test_persistent_session_receives_what_was_sent_while_it_was_away(mosquitto: Mosquitto) -> None:
    cfg = MqttConfig(port=mosquitto.port, reconnect_initial_s=0.05)
    got: list[bytes] = []
    first = MqttSession(cfg, "gw")
    sub = first.subscribe("hilgw/gw/authority/command", lambda _t, p: got.append(p))
    task = asyncio.create_task(first.run())
    await eventually(lambda: sub.acks >= 1, what="SUBACK of the first session", task=task)
    await stop(task)
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as op:  # the gateway is away
        await op.publish("hilgw/gw/authority/command", b"while away", qos=1)
    again = MqttSession(cfg, "gw")  # the same client id: the broker kept the session
    again.subscribe("hilgw/gw/authority/command", lambda _t, p: got.append(p))
    task = asyncio.create_task(again.run())
    try:
        await eventually(lambda: got == [b"while away"])
    finally:
        await stop(task)


async def test_critical_messages_are_never_dropped_and_go_first(mosquitto: Mosquitto) -> None:
    cfg = MqttConfig(port=mosquitto.port, queue_size=10, reconnect_initial_s=0.05)
    session = MqttSession(cfg, "gw")
    for i in range(40):  # no connection yet: everything waits
        session.enqueue(Outgoing("t/bulk", b"%d" % i, qos=1, kind="tracks"))
        if i % 4 == 0:
            session.enqueue(Outgoing("t/crit", b"%d" % i, qos=1, kind="cue"))
    assert session.queued_critical == 10
    assert session.dropped == {("tracks", "queue_full"): 30}
    order: list[str] = []
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
        await sub.subscribe("t/#", qos=1)
        task = asyncio.create_task(session.run())
        try:
            order = [m.topic.value for m in await first(sub, 20)]
        finally:
            await stop(task)
    assert order == ["t/crit"] * 10 + ["t/bulk"] * 10


async def test_messages_in_flight_when_the_broker_dies_are_sent_again(mosquitto: Mosquitto) -> None:
    cfg = MqttConfig(port=mosquitto.port, reconnect_initial_s=0.05, reconnect_max_s=0.2)
    session = MqttSession(cfg, "gw")
    task = asyncio.create_task(session.run())
    try:
        await eventually(lambda: session.connected)
        await asyncio.to_thread(mosquitto.pause)  # takes, never acknowledges
        for i in range(20):
            session.enqueue(Outgoing("t/x", b"%d" % i, qos=1, kind="cue"))
        await eventually(lambda: len(session._inflight) == 20)
        await asyncio.to_thread(mosquitto.kill)
        await eventually(lambda: not session.connected)
        assert session.queued_critical == 20  # back in the store, in order
        await asyncio.to_thread(mosquitto.start)
        await eventually(lambda: session.queued == 0 and not session._inflight)
        assert session.published["cue"] == 20
    finally:
        await stop(task)


async def test_a_gateway_stopped_cleanly_leaves_status_offline(mosquitto: Mosquitto) -> None:
    from gateway.config import parse_config
    from gateway.supervisor import Gateway

    cfg = parse_config({"gateway_id": "gw-stop", "mqtt": {"port": mosquitto.port}})
    async with Gateway(cfg) as gw:
        assert gw.mqtt is not None
        session = gw.mqtt
        await eventually(lambda: session.connected)
        assert await retained(mosquitto.port, "hilgw/gw-stop/status") == b"online"
    assert await retained(mosquitto.port, "hilgw/gw-stop/status") == b"offline"


async def test_a_broker_killed_under_load_leaves_no_asyncio_error_behind(mosquitto: Mosquitto) -> None:
    """No "Future exception was never retrieved (Unexpected disconnection)" and
    no ``add_writer`` "Bad file descriptor" from aiomqtt/paho when the broker
    dies under a QoS 1 flood and the session is stopped in the same loop turn
    (gateway/outputs/session.py: _Client, _consume_outcome). Both went to the
    loop's exception handler, which this test replaces."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: seen.append(f"{ctx['message']} {ctx.get('exception')!r}"))
    cfg = MqttConfig(port=mosquitto.port, reconnect_initial_s=0.05, reconnect_max_s=0.2)
    try:
        for k in range(8):
            session = MqttSession(cfg, "gw")
            session.subscribe("t/#", lambda _t, _p: None)  # the broker echoes the flood back
            task = asyncio.create_task(session.run())
            await eventually(lambda s=session: s.connected, task=task)  # type: ignore[misc]
            for i in range(200):
                session.enqueue(Outgoing("t/x", b"%d" % i * 50, qos=1, kind="tracks"))
            await asyncio.sleep(0.01 * (k % 4))  # the kill at different points of the flood
            mosquitto.kill()  # blocking on purpose: the loop sees the reset and the stop in one turn
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await asyncio.to_thread(mosquitto.start)
            del session, task
            gc.collect()  # an unretrieved future's complaint comes when it is collected
            await asyncio.sleep(0.05)  # and what the loop had scheduled has run
    finally:
        loop.set_exception_handler(previous)
    assert seen == []


async def test_a_qos0_message_is_on_the_socket_in_the_senders_next_turn(mosquitto: Mosquitto) -> None:
    """QoS 0 (reports, tracks) goes from the queue to the socket in one turn of the
    sender, with no task or future per message (gateway/outputs/pump.py): through
    aiomqtt's publish it took four more loop turns, and each device read ready
    meanwhile ran first (the gateway-added latency of issue 18)."""
    session = MqttSession(MqttConfig(port=mosquitto.port), "gw")
    written: list[bytes] = []
    session.on_published = lambda m: written.append(m.payload)
    task = asyncio.create_task(session.run())
    try:
        await eventually(lambda: session.connected, task=task)
        await asyncio.sleep(0.05)  # the connection's start-up (status, subscriptions) is done
        session.enqueue(Outgoing("t/r", b"report", qos=0, kind="reports"))
        turns = 0
        while not written and turns < 20:
            await asyncio.sleep(0)
            turns += 1
        assert written == [b"report"]
        assert turns <= 2  # wake the sender; it writes: no turn of its own a message
        assert session.published["reports"] == 1
        assert not session._inflight
    finally:
        await stop(task)


async def test_qos0_flood_arrives_whole_in_order_and_bounded_by_the_window(mosquitto: Mosquitto) -> None:
    """More QoS 0 messages than the sender hands over a turn and than the window
    holds: all arrive, in order; a broker that stops reading leaves at most
    ``max_inflight`` in flight and the rest queued; killed, the unwritten ones in
    flight are counted ``link_lost`` and nothing else goes missing."""
    cfg = MqttConfig(port=mosquitto.port, max_inflight=4, reconnect_initial_s=5.0)
    session = MqttSession(cfg, "gw")
    task = asyncio.create_task(session.run())
    got: list[bytes] = []
    try:
        await eventually(lambda: session.connected, task=task)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
            await sub.subscribe("t/#", qos=0)
            for i in range(600):  # > 256 a turn, > max_inflight
                session.enqueue(Outgoing("t/r", b"%d" % i, qos=0, kind="reports"))
            got = [bytes(m.payload) for m in await first(sub, 600)]  # type: ignore[arg-type]
        assert got == [b"%d" % i for i in range(600)]
        assert session.published["reports"] == 600

        big = b"x" * (1 << 20)
        # A broker that stops reading for a while: the socket fills, at most
        # max_inflight wait in paho, the rest in the lane; once it reads again,
        # paho's own write watch sends what it holds and the lane follows.
        mosquitto.pause()
        for _ in range(40):
            session.enqueue(Outgoing("t/big", big, qos=0, kind="mcap"))
        await eventually(lambda: len(session._inflight) == 4 and session.queued > 0)
        mosquitto.proc.send_signal(signal.SIGCONT)
        await eventually(lambda: session.published["mcap"] == 40 and not session._inflight)
        assert not session.dropped

        mosquitto.pause()  # takes nothing more: the socket fills
        for _ in range(40):
            session.enqueue(Outgoing("t/big", big, qos=0, kind="tracks"))
        await eventually(lambda: len(session._inflight) == 4 and session.queued > 0)
        await asyncio.to_thread(mosquitto.kill)
        await eventually(lambda: not session.connected)
        lost = session.dropped["tracks", "link_lost"]
        assert lost >= 1  # in flight, not yet written when the link went
        assert session.published["tracks"] + lost + session.queued == 40  # every one accounted for
    finally:
        await stop(task)
        await asyncio.to_thread(mosquitto.start)


async def test_a_critical_message_goes_out_before_the_qos0_queued_with_it(mosquitto: Mosquitto) -> None:
    """A cue (QoS 1, critical lane) queued with a burst of QoS 0 reports reaches the
    broker before any of them: QoS 0 is handed to paho in the sender's turn, a QoS 1
    message through a task, so the sender lets that task hand it over first."""
    session = MqttSession(MqttConfig(port=mosquitto.port), "gw")
    task = asyncio.create_task(session.run())
    order: list[str] = []
    try:
        await eventually(lambda: session.connected, task=task)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
            await sub.subscribe("t/#", qos=1)
            await asyncio.sleep(0.05)  # the session's own start-up is done: its sender waits
            for i in range(50):
                session.enqueue(Outgoing("t/report", b"%d" % i, qos=0, kind="reports"))
            session.enqueue(Outgoing("t/cue", b"cue", qos=1, kind="cue"))
            order = [m.topic.value for m in await first(sub, 51)]
    finally:
        await stop(task)
    assert order[0] == "t/cue"
    assert order[1:] == ["t/report"] * 50
