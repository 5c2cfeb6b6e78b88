"""The in-process bus: bounded subscriptions, explicit full policies, counted drops."""

from __future__ import annotations

import asyncio

import pytest

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


async def test_weighed_drop_newest_bounds_the_summed_weight_and_counts_it() -> None:
    """A queue bounded by weight (the fusion backlog in reports, issue 18)."""
    t: Topic[list[int]] = Topic("t")
    s = t.subscribe("s", maxsize=100, policy=FullPolicy.DROP_NEWEST, weigh=len, max_weight=10)
    for item in ([1] * 4, [2] * 4, [3] * 3, [4] * 2, [5] * 11):
        t.publish(item)
    # 4 + 4 fit; 3 would make 11 > 10; 2 fits (10); 11 alone never fits.
    assert s.weight == 10
    assert s.dropped == 2
    assert s.dropped_weight == 3 + 11
    assert await s.get() == [1] * 4
    assert s.weight == 6
    t.publish([6] * 4)  # room again
    assert s.get_all() == [[2] * 4, [4] * 2, [6] * 4]
    assert s.weight == 0
    assert s.dropped == 2


async def test_weighed_drop_oldest_evicts_until_the_newest_fits() -> None:
    t: Topic[list[int]] = Topic("t")
    s = t.subscribe("s", maxsize=100, policy=FullPolicy.DROP_OLDEST, weigh=len, max_weight=10)
    for item in ([1] * 4, [2] * 4, [3] * 2, [4] * 7):
        t.publish(item)
    assert s.get_all() == [[3] * 2, [4] * 7]  # 1 and 2 evicted for 4
    assert s.dropped == 2
    assert s.dropped_weight == 8


async def test_a_sink_takes_what_the_bounds_admit_in_order_and_counts_the_rest() -> None:
    """The fusion stage's subscription (issue 18): items go to the sink as they
    are published, under the same bounds, counts and ``len`` as a queue."""
    t: Topic[list[int]] = Topic("t")
    sunk: list[list[int]] = []
    s = t.subscribe("s", maxsize=3, policy=FullPolicy.DROP_NEWEST, weigh=len, max_weight=10, sink=sunk.append)
    for item in ([1] * 4, [2] * 4, [3] * 3, [4] * 2, [5] * 11, [6]):
        t.publish(item)
    # As the queue test above: 3 would make 11 > 10, 11 never fits; then 3 items: full.
    assert sunk == [[1] * 4, [2] * 4, [4] * 2]
    assert (len(s), s.weight, s.dropped, s.dropped_weight) == (3, 10, 3, 3 + 11 + 1)
    assert s.get_all() == []  # the sink has them
    assert (len(s), s.weight, s.delivered) == (0, 0, 3)
    t.publish([7] * 10)  # room again after the take
    assert sunk[-1] == [7] * 10
    assert s.dropped == 3


async def test_a_sink_refuses_drop_oldest_and_get() -> None:
    """A sunk item cannot be evicted for a newer one, nor got one by one."""
    t: Topic[int] = Topic("t")
    with pytest.raises(ValueError, match="DROP_NEWEST"):
        t.subscribe("s", policy=FullPolicy.DROP_OLDEST, sink=lambda _i: None)
    s = t.subscribe("s", policy=FullPolicy.DROP_NEWEST, sink=lambda _i: None)
    with pytest.raises(TypeError, match="get_all"):
        await s.get()
