"""Counters and histograms the hot path updates without locks, flushed to Prometheus in batches.

A prometheus-client update takes a lock and validates its metric on every call, and a
histogram walks its buckets in Python: five such updates were a quarter of Route's handler
time. On the event loop's one thread a plain integer add needs no lock, so hot children
accumulate locally and ``flush`` adds the totals to the real children (one update per child,
not per call) from the same thread, every ``FLUSH_INTERVAL`` and at shutdown. A scrape can lag
by that interval; no increment is lost or counted twice, in single- or multi-process mode
(the real children still write prometheus-client's multi-process files).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

#: How stale a scrape may be. Short against a 15 s scrape interval, long against a call.
FLUSH_INTERVAL = 0.25


class BufferedCounter:
    """A counter child: ``inc`` on the event loop thread only; ``flush`` from it too."""

    __slots__ = ("_child", "pending")

    def __init__(self, child: Any) -> None:
        self._child = child
        self.pending = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.pending += amount

    def flush(self) -> None:
        if self.pending:
            amount, self.pending = self.pending, 0.0
            self._child.inc(amount)


class BufferedHistogram:
    """A histogram child: per-bucket counts and the sum, added to the child at flush.

    Uses prometheus-client's ``_buckets`` and ``_sum`` values (stable since 0.4) because the
    public API can only add one observation at a time.
    """

    __slots__ = ("_bounds", "_child", "_counts", "_dirty", "_sum")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._bounds: tuple[float, ...] = tuple(child._upper_bounds)  # +Inf last
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._dirty = False

    def observe(self, amount: float) -> None:
        # Prometheus buckets are "less than or equal": bisect_left finds the first bound >= x.
        self._counts[bisect_left(self._bounds, amount)] += 1
        self._sum += amount
        self._dirty = True

    def flush(self) -> None:
        if not self._dirty:
            return
        counts, self._counts = self._counts, [0] * len(self._bounds)
        total, self._sum, self._dirty = self._sum, 0.0, False
        for bucket, count in zip(self._child._buckets, counts, strict=True):
            if count:
                bucket.inc(count)
        self._child._sum.inc(total)


class BufferedChildren:
    """Every buffered child of one ``Metrics``, so one call flushes them all."""

    def __init__(self) -> None:
        self._children: list[BufferedCounter | BufferedHistogram] = []

    def counter(self, child: Any) -> BufferedCounter:
        buffered = BufferedCounter(child)
        self._children.append(buffered)
        return buffered

    def histogram(self, child: Any) -> BufferedHistogram:
        buffered = BufferedHistogram(child)
        self._children.append(buffered)
        return buffered

    def flush(self) -> None:
        for child in self._children:
            child.flush()

    def forget(self, children: Sequence[BufferedCounter | BufferedHistogram]) -> None:
        """Stop flushing children whose series were removed (a deleted experiment)."""
        gone = {id(child) for child in children}
        self._children = [child for child in self._children if id(child) not in gone]
