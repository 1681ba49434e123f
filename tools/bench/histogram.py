"""A fixed-bucket, log-linear latency histogram (the HdrHistogram idea, in a plain list).

Values are whole microseconds. Values below 256 get a bucket each; above that every power of two
is split into 128 equal buckets, so a bucket is never wider than 1/128 (< 0.8%) of its values.
Recording is a few integer operations and one list increment, with no allocation; histograms
from several worker processes merge by adding their count lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

SUB_BITS = 7
SUB = 1 << SUB_BITS  # buckets per power of two above the linear range
LINEAR = 2 * SUB  # values below this are exact
MAX_SHIFT = 40  # covers > 10^14 µs, far beyond any run
SIZE = (MAX_SHIFT << SUB_BITS) + LINEAR


def bucket_of(us: int) -> int:
    """The bucket index of ``us`` microseconds (negative values count as 0)."""
    if us < LINEAR:
        return us if us > 0 else 0
    shift = us.bit_length() - (SUB_BITS + 1)
    return (shift << SUB_BITS) + (us >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """The lowest and highest microsecond value that land in bucket ``index``."""
    if index < LINEAR:
        return index, index
    shift = (index - SUB) >> SUB_BITS
    mantissa = index - (shift << SUB_BITS)
    return mantissa << shift, ((mantissa + 1) << shift) - 1


def new_counts() -> list[int]:
    """An empty count list; workers record with ``counts[bucket_of(us)] += n``."""
    return [0] * SIZE


class LatencyHistogram:
    """Counts of latencies in microseconds, with percentile queries.

    Percentiles are reported as the upper bound of the bucket that holds them, so they are never
    below the true value and at most 0.8% above it.
    """

    __slots__ = ("counts",)

    def __init__(self, counts: Sequence[int] | None = None) -> None:
        if counts is not None and len(counts) != SIZE:
            raise ValueError(f"a count list has {SIZE} buckets, not {len(counts)}")
        self.counts: list[int] = list(counts) if counts is not None else new_counts()

    def record(self, us: int, n: int = 1) -> None:
        self.counts[bucket_of(us)] += n

    def merge(self, counts: Iterable[int]) -> None:
        """Add another histogram's counts (e.g. from another worker process)."""
        mine = self.counts
        for i, c in enumerate(counts):
            if c:
                mine[i] += c

    @property
    def total(self) -> int:
        return sum(self.counts)

    def percentile(self, p: float) -> int:
        """The latency in µs at or below which ``p`` percent of the values fall (0 if empty)."""
        total = self.total
        if total == 0:
            return 0
        rank = max(1, -(-total * p // 100))  # ceil, at least the first value
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return bucket_bounds(i)[1]
        return bucket_bounds(SIZE - 1)[1]  # pragma: no cover - rank <= total

    def mean(self) -> float:
        total = self.total
        if total == 0:
            return 0.0
        acc = 0
        for i, c in enumerate(self.counts):
            if c:
                lo, hi = bucket_bounds(i)
                acc += c * (lo + hi) // 2
        return acc / total
