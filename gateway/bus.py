"""The in-process bus: typed topics with bounded, counted subscriptions.

Publishing never blocks the publisher (a driver must keep reading its
device). Each subscriber has its own bounded queue and an explicit policy for
when it is full; every item a policy discards is counted on the subscription
(docs/architecture.md, rule 5), and the counts show in health and metrics.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["FullPolicy", "Subscription", "Topic"]


class FullPolicy(enum.Enum):
    DROP_OLDEST = "drop_oldest"  # keep the freshest picture (tracks, health)
    DROP_NEWEST = "drop_newest"  # keep what is queued (ordered journals)


class Subscription(Generic[T]):
    """One consumer's bounded queue on a topic."""

    def __init__(
        self,
        topic: Topic[T],
        name: str,
        maxsize: int,
        policy: FullPolicy,
        wake: asyncio.Event | None,
        weigh: Callable[[T], int] | None = None,
        max_weight: int = 0,
        sink: Callable[[T], None] | None = None,
    ) -> None:
        if sink is not None and policy is not FullPolicy.DROP_NEWEST:
            # A sunk item cannot be taken back to make room for a newer one.
            raise ValueError(f"subscription {name!r}: a sink needs FullPolicy.DROP_NEWEST")
        self.topic = topic
        self.name = name
        self.maxsize = maxsize
        self.policy = policy
        self.dropped = 0
        self.delivered = 0
        #: With ``weigh``: the summed weight queued now, its bound, and the
        #: weight of the items the policy discarded (see :meth:`Topic.subscribe`).
        self.weight = 0
        self.max_weight = max_weight
        self.dropped_weight = 0
        self._weigh = weigh
        self._items: deque[T] = deque()
        self._sink = sink
        self._sunk = 0  # items handed to the sink since the last get_all
        self._ready = asyncio.Event()
        self._wake = wake

    def __len__(self) -> int:
        return len(self._items) + self._sunk

    def _offer(self, item: T) -> None:
        if self._weigh is not None:
            self._offer_weighed(item, self._weigh(item))
            return
        if len(self) >= self.maxsize:
            self.dropped += 1
            if self.policy is FullPolicy.DROP_NEWEST:
                return
            self._items.popleft()
        self._accept(item)

    def _accept(self, item: T) -> None:
        if self._sink is not None:
            self._sink(item)
            self._sunk += 1
        else:
            self._items.append(item)
        self._ready.set()
        if self._wake is not None:
            self._wake.set()

    async def get(self) -> T:
        if self._sink is not None:
            raise TypeError(f"subscription {self.name!r} hands its items to a sink: use get_all")
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        self.delivered += 1
        item = self._items.popleft()
        if self._weigh is not None:
            self.weight -= self._weigh(item)
        return item

    def _offer_weighed(self, item: T, w: int) -> None:
        """:meth:`_offer` bounded by weight as well as by count."""
        if w > self.max_weight:  # would never fit: no policy keeps it
            self.dropped += 1
            self.dropped_weight += w
            return
        while len(self) and (len(self) >= self.maxsize or self.weight + w > self.max_weight):
            self.dropped += 1
            if self.policy is FullPolicy.DROP_NEWEST:
                self.dropped_weight += w
                return
            old = self._items.popleft()
            ow = self._weigh(old) if self._weigh is not None else 0
            self.weight -= ow
            self.dropped_weight += ow
        self._accept(item)
        self.weight += w

    def get_all(self) -> list[T]:
        """Everything queued now, without waiting (batching consumers).

        With a sink, the items went to it as they came: none are returned, and
        the sink's holder takes them (this call marks them delivered)."""
        items = list(self._items)
        self._items.clear()
        self.weight = 0
        self.delivered += len(items) + self._sunk
        self._sunk = 0
        return items

    async def wait(self) -> None:
        """Wait until at least one item is queued."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()

    def close(self) -> None:
        self.topic._subs.remove(self)

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[T]:
        while True:
            yield await self.get()


class Topic(Generic[T]):
    """A named stream of items of one type."""

    def __init__(self, name: str, on_publish: Callable[[T], None] | None = None) -> None:
        """``on_publish``, when given, sees every item as it is published (before
        any subscriber): the gateway times the ``bus`` stage with it (gateway/stages.py)."""
        self.name = name
        self.published = 0
        self._subs: list[Subscription[T]] = []
        self._on_publish = on_publish

    def subscribe(
        self,
        name: str,
        maxsize: int = 1024,
        policy: FullPolicy = FullPolicy.DROP_OLDEST,
        wake: asyncio.Event | None = None,
        weigh: Callable[[T], int] | None = None,
        max_weight: int = 0,
        sink: Callable[[T], None] | None = None,
    ) -> Subscription[T]:
        """``wake``, when given, is set on every delivery: one consumer can wait
        on several subscriptions with one event.

        ``weigh``, when given, bounds the queue by weight too: the items queued
        weigh at most ``max_weight`` together (the fusion stage weighs a report
        batch by its reports, so its backlog is bounded in memory, not in
        batches of any size). The policy applies as for ``maxsize``; an item
        heavier than ``max_weight`` alone is dropped. Drops are counted in
        ``dropped`` (items) and ``dropped_weight``.

        ``sink``, when given, takes each item the bounds admit as it is
        published, instead of the queue: the fusion stage stacks its report
        batches as they come, so the step's boundary does no per-batch work
        (issue 18). The bounds, counts and ``len`` are as without it; the
        items are never returned (:meth:`Subscription.get_all` marks them
        delivered), and only ``DROP_NEWEST`` is possible.
        """
        sub = Subscription(self, name, maxsize, policy, wake, weigh, max_weight, sink)
        self._subs.append(sub)
        return sub

    def publish(self, item: T) -> None:
        self.published += 1
        if self._on_publish is not None:
            self._on_publish(item)
        for sub in self._subs:
            sub._offer(item)

    @property
    def subscriptions(self) -> list[Subscription[T]]:
        return list(self._subs)
