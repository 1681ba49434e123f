"""How long the node takes to answer each op: histograms over a recent window and since start.

The data port's dispatcher times every request it serves, from the moment it starts decoding
the frame to the moment the answer's bytes exist (for an answer that waits on a forward, a
quorum or a Raft commit, when the wait is over). It costs the request path two clock reads,
one comparison and one increment (measured in docs/benchmarks.md):

* **Buckets** are half-octaves: a duration of ``d`` nanoseconds goes to slot
  ``(d * d).bit_length()``, so slot ``i`` holds ``2 ** ((i - 1) / 2) <= d < 2 ** (i / 2)`` ns
  (factor √2 between bounds, no table search, no float). :data:`SLOTS` slots cover every
  duration below 2**64 ns, so the index can never overflow.
* **Windows**: the counts of the current window and of the one before it are kept per op.
  Windows are ``window`` seconds long and aligned on the recorder's start; the recorder moves
  to a new window when an observation (or a reader) arrives past the end of the current one,
  so every count in a window was observed inside it. "Recent" figures merge the two windows:
  they cover the last ``window`` to ``2 * window`` seconds (``window_s`` says how long).
* **Since start** counts (Prometheus' cumulative histogram) are the windows already closed,
  summed at each rotation, plus the current one: no second increment per request. The sum of
  the durations is not kept (one more addition per request): :func:`estimated_sum` counts each
  request at the middle of its bucket, within -15% / +21% of the true sum.

Quantiles are read from the buckets: the rank's bucket, linearly interpolated inside it, so a
reported quantile is in the same bucket as the exact one (within a factor √2).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

#: Slots of one histogram: ``(d * d).bit_length()`` for any duration ``d < 2**64`` ns.
SLOTS: Final = 129

#: Upper bounds of the buckets exported to Prometheus: 2**k ns for k in 10..34 (1.02 µs to
#: 17.2 s, factor 2); +Inf is added.
EXPORT_POWERS: Final = tuple(range(10, 35))

#: Seconds in one window (the recent figures cover one to two of them).
DEFAULT_WINDOW: Final = 10.0


def slot(took_ns: int) -> int:
    """The bucket of a duration in nanoseconds (what the request path computes inline)."""
    return (took_ns * took_ns).bit_length()


def bucket_bounds(index: int) -> tuple[float, float]:
    """``(low, high)`` in nanoseconds: the bucket holds ``low <= d < high``."""
    if index <= 0:
        return 0.0, 1.0
    return 2.0 ** ((index - 1) / 2), 2.0 ** (index / 2)


def quantile(counts: list[int], q: float) -> float | None:
    """The ``q`` quantile (nanoseconds) of a histogram's counts; None when it is empty.

    The observation of rank ``ceil(q * n)`` is located in its bucket and the value is
    interpolated linearly between the bucket's bounds by its position among the bucket's
    observations, so the answer lies in the bucket of the exact quantile.
    """
    n = sum(counts)
    if n == 0:
        return None
    rank = max(1, math.ceil(q * n))
    seen = 0
    for index in range(SLOTS):
        here = counts[index]
        if here and seen + here >= rank:
            low, high = bucket_bounds(index)
            return low + (high - low) * (rank - seen) / here
        seen += here
    raise AssertionError("unreachable: rank <= n")


def summary(counts: list[int]) -> dict[str, Any]:
    """``count``, ``p50_ms`` and ``p99_ms`` of a histogram (INFO's figures of one op)."""
    n = sum(counts)
    return {
        "count": n,
        "p50_ms": _ms(quantile(counts, 0.5)),
        "p99_ms": _ms(quantile(counts, 0.99)),
    }


def estimated_sum(counts: list[int]) -> float:
    """The sum of a histogram's durations (ns), each counted at the middle of its bucket.

    Every duration ``d`` of a bucket ``[low, high)`` with ``high = low * sqrt(2)`` is off by
    at most ``(high - low) / 2``: the estimate is within -15% and +21% of the true sum (a
    duration of 0 ns is counted as 0).
    """
    total = 0.0
    for index, n in enumerate(counts):
        if n and index:
            low, high = bucket_bounds(index)
            total += n * (low + high) / 2
    return total


def merged(histograms: Iterable[list[int]]) -> list[int]:
    """The slot-wise sum of histograms."""
    out = [0] * SLOTS
    for counts in histograms:
        for i, n in enumerate(counts):
            if n:
                out[i] += n
    return out


class RequestLatency:
    """Per-op latency histograms of one node: the current and previous window, and since start.

    The request path takes :meth:`counts` of an op once (the list is the same object for the
    recorder's whole life) and then, per request, checks :attr:`rotate_at` against the clock
    it read and bumps one slot; :meth:`observe` does exactly that for callers off the hot path.

    Args:
        window: seconds per window (> 0).
        clock: nanoseconds on a monotonic clock (``time.perf_counter_ns``); the same clock
            the request path reads.
    """

    __slots__ = ("_clock", "_current", "_previous", "_start", "_total", "rotate_at", "window_ns")

    def __init__(
        self, window: float = DEFAULT_WINDOW, *, clock: Callable[[], int] = time.perf_counter_ns
    ) -> None:
        if not window > 0:
            raise ValueError("window must be > 0 seconds")
        self.window_ns = int(window * 1e9)
        self._clock = clock
        self._start = clock()
        self.rotate_at = self._start + self.window_ns
        """When the current window ends (clock nanoseconds): an observation at or after it
        calls :meth:`rotate` first."""
        self._current: dict[str, list[int]] = {}
        self._previous: dict[str, list[int]] = {}
        self._total: dict[str, list[int]] = {}

    def counts(self, op: str) -> list[int]:
        """The current window's histogram of ``op``: always the same list for one op."""
        counts = self._current.get(op)
        if counts is None:
            counts = self._current[op] = [0] * SLOTS
        return counts

    def observe(self, op: str, took_ns: int, now_ns: int) -> None:
        """Count one request of ``op`` that took ``took_ns``, answered at ``now_ns``."""
        if now_ns >= self.rotate_at:
            self.rotate(now_ns)
        self.counts(op)[(took_ns * took_ns).bit_length()] += 1

    def rotate(self, now_ns: int) -> None:
        """Close the windows that ended by ``now_ns`` (nothing if the current one has not)."""
        ended = (now_ns - self._start) // self.window_ns
        if ended <= 0:
            return
        previous: dict[str, list[int]] = {}
        for op, counts in self._current.items():
            if not any(counts):
                continue
            total = self._total.get(op)
            if total is None:
                total = self._total[op] = [0] * SLOTS
            for i, n in enumerate(counts):
                if n:
                    total[i] += n
            if ended == 1:  # the window that just closed is the previous one
                previous[op] = counts.copy()
            counts[:] = _ZEROS  # in place: the request path holds this list
        self._previous = previous
        self._start += ended * self.window_ns
        self.rotate_at = self._start + self.window_ns

    def _now(self) -> int:
        now = self._clock()
        if now >= self.rotate_at:
            self.rotate(now)
        return now

    def recent(self) -> tuple[float, dict[str, list[int]]]:
        """``(seconds covered, op -> histogram of the previous and current window)``; ops
        without requests in either are left out."""
        now = self._now()
        covered = (now - self._start + self.window_ns) / 1e9
        return covered, _combined(self._current, self._previous)

    def since_start(self) -> dict[str, list[int]]:
        """op -> histogram of every request since the recorder started."""
        self._now()
        return _combined(self._current, self._total)

    def figures(self, data_ops: Iterable[str] = ()) -> dict[str, Any]:
        """INFO's ``latency`` section: ``window_s``, ``ops`` (op -> ``count``, ``p50_ms``,
        ``p99_ms`` over the recent window) and ``data``, the same figures over the ops named
        in ``data_ops`` together."""
        covered, recent = self.recent()
        chosen = set(data_ops)
        return {
            "window_s": round(covered, 3),
            "ops": {op: summary(counts) for op, counts in sorted(recent.items())},
            "data": summary(merged(c for op, c in recent.items() if op in chosen)),
        }


def cumulative(counts: list[int]) -> list[tuple[str, float]]:
    """Prometheus buckets of a histogram: ``[(le seconds, count below it), ..., ("+Inf", n)]``.

    The bound 2**k ns ends slot ``2 * k`` exactly, so each exported count is exact (values
    equal to a bound, to the nanosecond, are counted in the bucket above it).
    """
    out: list[tuple[str, float]] = []
    running = 0
    index = 0
    for k in EXPORT_POWERS:
        while index <= 2 * k:
            running += counts[index]
            index += 1
        out.append((repr(2**k / 1e9), float(running)))
    out.append(("+Inf", float(sum(counts))))
    return out


def _combined(*windows: dict[str, list[int]]) -> dict[str, list[int]]:
    """op -> the slot-wise sum of its histograms in ``windows``, for ops counted in any."""
    out: dict[str, list[int]] = {}
    for window in windows:
        for op, counts in window.items():
            if not any(counts):  # most ops' lists: the node never serves them
                continue
            into = out.get(op)
            if into is None:
                out[op] = counts.copy()
            else:
                for i, n in enumerate(counts):
                    if n:
                        into[i] += n
    return out


_ZEROS: Final = (0,) * SLOTS


def _ms(ns: float | None) -> float | None:
    return None if ns is None else round(ns / 1e6, 4)


__all__ = [
    "DEFAULT_WINDOW",
    "EXPORT_POWERS",
    "SLOTS",
    "RequestLatency",
    "bucket_bounds",
    "cumulative",
    "estimated_sum",
    "merged",
    "quantile",
    "slot",
    "summary",
]
