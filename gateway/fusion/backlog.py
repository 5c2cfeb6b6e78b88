"""Report batches stacked as they arrive, for the next fusion step (issue 18).

The fusion stage used to keep a period's report batches (150-600 of them at
10,000 reports/s and 5 Hz) and join them with ``ReportArrays.concat`` when
the step was due: one burst of 0.3-1.2 ms on the event loop five times a
second, and every frame read waited behind it. Here each batch is copied
into preallocated columns as it is published (a few microseconds a batch),
so taking the period's reports is O(1): the filled rows, handed over whole,
and fresh columns of the same capacity for the next period.

The columns handed over are never written again (the next period writes new
ones), so an engine may keep them (reports held for a later step) or work
in place on them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gateway.fusion.api import ReportArrays

__all__ = ["ReportBacklog"]

_FIELDS = ReportArrays.__slots__
#: Dtype and row shape of each column, as ReportArrays.empty() makes them.
_LAYOUT: tuple[tuple[np.dtype[Any], tuple[int, ...]], ...] = tuple(
    (getattr(ReportArrays.empty(), f).dtype, getattr(ReportArrays.empty(), f).shape[1:]) for f in _FIELDS
)


class ReportBacklog:
    """The reports of one period, stacked in arrival order.

    Capacity doubles when a period brings more reports than it holds (an
    amortised copy) and is kept for the periods after, so a steady rate
    allocates but never copies twice. Its size is bounded by whoever feeds
    it: the fusion stage's subscription admits at most
    ``[fusion] max_backlog_reports`` reports between two takes.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = max(1, capacity)
        self._cols = self._new(self._capacity)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @staticmethod
    def _new(capacity: int) -> list[np.ndarray[Any, Any]]:
        # np.empty: pages are touched as rows are written, not here.
        return [np.empty((capacity, *shape), dtype) for dtype, shape in _LAYOUT]

    def add(self, reports: ReportArrays) -> None:
        """Append ``reports`` (copied: the batch stays the publisher's)."""
        k = len(reports)
        if k == 0:
            return
        n = self._n
        if n + k > self._capacity:
            self._grow(n + k)
        end = n + k
        for col, f in zip(self._cols, _FIELDS, strict=True):
            col[n:end] = getattr(reports, f)
        self._n = end

    def _grow(self, need: int) -> None:
        cap = self._capacity
        while cap < need:
            cap *= 2
        cols = self._new(cap)
        n = self._n
        for new, old in zip(cols, self._cols, strict=True):
            new[:n] = old[:n]
        self._cols, self._capacity = cols, cap

    def take(self) -> ReportArrays:
        """The reports added since the last take, in order; the backlog is then empty."""
        n = self._n
        if n == 0:
            return ReportArrays.empty()
        cols = self._cols
        self._cols = self._new(self._capacity)
        self._n = 0
        return ReportArrays(*(c[:n] for c in cols))
