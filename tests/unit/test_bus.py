"""The in-process bus: bounded subscriptions, explicit full policies, counted drops."""

from __future__ import annotations

import asyncio

from gateway.bus import FullPolicy, Topic


async def test_each_subscriber_gets_every_item_in_order() -> None:
    t: Topic[int] = Topic("t")
    a, b = t.subscribe("a"), t.subscribe("b")
    for i in range(5):
        t.publish(i)
    assert [await a.get() for _ in range(5)] == list(range(5))
    assert b.get_all() == list(range(5))
    assert a.dropped == b.dropped == 0


async def test_drop_oldest_keeps_the_newest_and_counts() -> None:
    t: Topic[int] = Topic("t")
    s = t.subscribe("s", maxsize=3, policy=FullPolicy.DROP_OLDEST)
    for i in range(10):
        t.publish(i)
    assert s.get_all() == [7, 8, 9]
    assert s.dropped == 7


async def test_drop_newest_keeps_what_is_queued_and_counts() -> None:
    t: Topic[int] = Topic("t")
    s = t.subscribe("s", maxsize=3, policy=FullPolicy.DROP_NEWEST)
    for i in range(10):
        t.publish(i)
    assert s.get_all() == [0, 1, 2]
    assert s.dropped == 7


async def test_shared_wake_event_fires_for_any_subscription() -> None:
    wake = asyncio.Event()
    t1: Topic[int] = Topic("t1")
    t2: Topic[str] = Topic("t2")
    s1, s2 = t1.subscribe("x", wake=wake), t2.subscribe("x", wake=wake)
    t2.publish("hello")
    await asyncio.wait_for(wake.wait(), 1)
    assert s1.get_all() == []
    assert s2.get_all() == ["hello"]


async def test_get_waits_for_a_publish_and_close_unsubscribes() -> None:
    t: Topic[int] = Topic("t")
    s = t.subscribe("s")
    getter = asyncio.create_task(s.get())
    await asyncio.sleep(0)
    t.publish(42)
    assert await asyncio.wait_for(getter, 1) == 42
    s.close()
    t.publish(43)
    assert len(s) == 0
    assert t.subscriptions == []
