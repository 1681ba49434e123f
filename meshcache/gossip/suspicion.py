"""Lifeguard's dynamic suspicion timeout.

A suspicion starts at ``max_timeout`` and shrinks towards ``min_timeout`` as independent members
confirm it, following memberlist's formula::

    timeout(c) = max(min, max - (max - min) * log(c + 1) / log(k + 1))

where ``c`` is the number of distinct confirmations and ``k`` the number expected. With ``k < 1``
the timeout is simply ``min``.
"""

from __future__ import annotations

import math


def suspicion_bounds(
    mult: int, max_mult: int, n_members: int, probe_interval: float
) -> tuple[float, float]:
    """``(min, max)``: ``min = mult * log10(max(1, n)) * interval``; ``max = max_mult * min``.

    ``min`` never drops below one probe interval, so a two-node cluster still waits a round.
    """
    low = max(mult * math.log10(max(1, n_members)) * probe_interval, probe_interval)
    return low, max_mult * low


class Suspicion:
    """The timer of one suspected member. ``deadline`` moves earlier as confirmations arrive."""

    __slots__ = ("_confirmers", "_k", "_max", "_min", "start")

    def __init__(
        self, *, start: float, k: int, min_timeout: float, max_timeout: float, by: str
    ) -> None:
        self.start = start
        self._k = k
        self._min = min_timeout
        self._max = max_timeout
        # The original accuser does not count as a confirmation.
        self._confirmers: set[str] = {by}

    @property
    def confirmations(self) -> int:
        return len(self._confirmers) - 1

    def confirm(self, by: str) -> bool:
        """Record an independent confirmation; True if ``by`` had not confirmed yet."""
        if self.confirmations >= self._k or by in self._confirmers:
            return False
        self._confirmers.add(by)
        return True

    def timeout(self) -> float:
        if self._k < 1:
            return self._min
        c = self.confirmations
        frac = math.log(c + 1) / math.log(self._k + 1)
        return max(self._min, self._max - (self._max - self._min) * frac)

    @property
    def deadline(self) -> float:
        return self.start + self.timeout()
