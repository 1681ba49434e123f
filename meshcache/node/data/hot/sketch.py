"""Heavy-hitter detection over a sample of reads: Space-Saving top-K in a decaying window.

Sans-I/O and pure: the caller passes ``now`` and a :class:`random.Random`.

* :class:`SpaceSaving` is Metwally et al.'s summary: ``capacity`` counters; an unseen item
  takes over the smallest counter and inherits its count as its *error*. Every item whose true
  count exceeds ``total / capacity`` is monitored, and for a monitored item
  ``count - error <= true count <= count``.
* :class:`HotSketch` feeds it one read in ``sample_every`` on average (a random gap, so a
  periodic access pattern cannot hide a key) and halves every counter each ``window`` seconds,
  so popularity fades: a key must keep being read to stay hot.

The cost of a read that is not sampled is one decrement and one comparison.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Hashable
from dataclasses import dataclass
from heapq import heapify, heappop, heappush, heapreplace
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


class SpaceSaving(Generic[T]):
    """Space-Saving top-K counters.

    The smallest counter is found with a heap holding one ``(count, tiebreak, item)`` entry per
    monitored item. An increment only updates the item's counter, so an entry's count may be
    behind (never ahead: counts only grow between decays); when the entry on top is behind, it is
    pushed back down with the item's count, until the top entry is current: that item has the
    smallest counter. An increment is a dict update; a new item costs O(log K) amortized.

    Args:
        capacity: how many items are monitored at once (K).
    """

    __slots__ = ("_counts", "_errors", "_heap", "_tick", "capacity", "total")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._counts: dict[T, float] = {}
        self._errors: dict[T, float] = {}
        self._heap: list[tuple[float, int, T]] = []
        self._tick = itertools.count()
        self.total = 0.0

    def add(self, item: T, weight: float = 1.0) -> None:
        """Count ``weight`` (> 0) occurrences of ``item``."""
        self.total += weight
        counts = self._counts
        count = counts.get(item)
        if count is not None:
            counts[item] = count + weight
            return
        heap = self._heap
        floor = 0.0
        if len(counts) >= self.capacity:
            while True:
                behind, _, victim = heap[0]
                current = counts[victim]
                if current == behind:
                    heappop(heap)
                    break
                heapreplace(heap, (current, next(self._tick), victim))
            floor = current
            del counts[victim]
            del self._errors[victim]
        counts[item] = floor + weight
        self._errors[item] = floor
        heappush(heap, (floor + weight, next(self._tick), item))

    def _rebuild(self) -> None:
        tick = self._tick
        self._heap = [(c, next(tick), item) for item, c in self._counts.items()]
        heapify(self._heap)

    def count(self, item: T) -> float:
        """The overestimate of ``item``'s count (0 when not monitored)."""
        return self._counts.get(item, 0.0)

    def guaranteed(self, item: T) -> float:
        """A lower bound of ``item``'s count: its count minus its error."""
        return self._counts.get(item, 0.0) - self._errors.get(item, 0.0)

    def items(self) -> list[tuple[T, float, float]]:
        """``(item, count, guaranteed count)`` of every monitored item, largest count first."""
        errors = self._errors
        return sorted(
            ((item, c, c - errors[item]) for item, c in self._counts.items()),
            key=lambda row: -row[1],
        )

    def scale(self, factor: float) -> None:
        """Multiply every count, error and the total by ``factor`` (decay)."""
        self.total *= factor
        for item in self._counts:
            self._counts[item] *= factor
            self._errors[item] *= factor
        self._rebuild()

    def __contains__(self, item: object) -> bool:
        return item in self._counts

    def __len__(self) -> int:
        return len(self._counts)


@dataclass(frozen=True, slots=True)
class Heavy(Generic[T]):
    """One heavy item of a window: its estimated share of the reads, reads per second, and
    its guaranteed count of samples (what the estimates rest on)."""

    item: T
    share: float
    rate: float
    samples: float


class HotSketch(Generic[T]):
    """Sampled, decaying Space-Saving: which items take a large share of the reads now.

    Args:
        capacity: counters kept (K).
        sample_every: one read in this many (on average) is counted.
        window: seconds between two decays (each halves every count).
        rng: draws the gaps between samples.
        now: the time the sketch starts.
    """

    __slots__ = ("_rng", "_since", "_span", "sample_every", "samples", "skip", "summary", "window")

    def __init__(
        self,
        *,
        capacity: int = 128,
        sample_every: int = 16,
        window: float = 1.0,
        rng: random.Random,
        now: float,
    ) -> None:
        if sample_every < 1:
            raise ValueError("sample_every must be >= 1")
        self.summary: SpaceSaving[T] = SpaceSaving(capacity)
        self.sample_every = sample_every
        self.window = window
        self._rng = rng
        #: Reads left before the next sample; callers on the hot path decrement it themselves.
        self.skip = self._gap()
        self._since = now
        # The decayed length of time the counts cover, decayed like them.
        self._span = 0.0
        self.samples = 0

    def _gap(self) -> int:
        # uniform in [1, 2n - 1]: mean n (random() rather than randint(): a third of the cost)
        return 1 + int(self._rng.random() * (2 * self.sample_every - 1))

    def observe(self, item: T) -> None:
        """One read of ``item``: counted when it is the sampled one."""
        self.skip -= 1
        if self.skip <= 0:
            self.sample(item)

    def sample(self, item: T) -> None:
        """Count ``item`` as a sampled read (when ``skip`` reached 0) and draw the next gap."""
        self.skip = self._gap()
        self.samples += 1
        self.summary.add(item)

    def credit(self, item: T, reads: int) -> None:
        """Count ``reads`` reads of ``item`` served elsewhere on this sketch's behalf (copies
        of a key answer reads its owner never sees), scaled like the sampled ones."""
        if reads > 0:
            self.summary.add(item, reads / self.sample_every)

    def roll(self, now: float) -> bool:
        """Decay when a window has passed since the last decay; whether it did."""
        elapsed = now - self._since
        if elapsed < self.window:
            return False
        self._span = (self._span + elapsed) * 0.5
        self._since = now
        self.summary.scale(0.5)
        return True

    def heavy(
        self, now: float, *, share: float, rate: float, min_samples: float = 4.0
    ) -> list[Heavy[T]]:
        """Items whose *guaranteed* count passes both thresholds, heaviest first.

        The guaranteed count (count minus error) keeps a scan over many distinct keys, whose
        counters all carry large errors, from making any of them heavy.
        """
        summary = self.summary
        total = summary.total
        span = self._span + (now - self._since)
        if total <= 0 or span <= 0:
            return []
        out: list[Heavy[T]] = []
        per_second = self.sample_every / span
        for item, _, sure in summary.items():
            if sure < min_samples:
                continue
            item_share = sure / total
            item_rate = sure * per_second
            if item_share >= share and item_rate >= rate:
                out.append(Heavy(item, item_share, item_rate, sure))
        return out


__all__ = ["Heavy", "HotSketch", "SpaceSaving"]
