"""Lifeguard local-health awareness.

The score counts recent evidence that *this* node is slow (missed nacks, failed probes, having
to refute a suspicion); successful probes lower it. Timeouts are multiplied by ``score + 1``, so
an overloaded node probes more slowly and waits longer before accusing others.
"""

from __future__ import annotations


class Awareness:
    """A health score clamped to ``0..max_score`` (0 = healthy)."""

    __slots__ = ("_max", "_score")

    def __init__(self, max_score: int) -> None:
        self._max = max_score
        self._score = 0

    @property
    def score(self) -> int:
        return self._score

    def apply_delta(self, delta: int) -> None:
        """Add ``delta`` (negative = healthier), clamped to the valid range."""
        self._score = min(self._max, max(0, self._score + delta))

    def scale(self, timeout: float) -> float:
        """``timeout * (score + 1)``."""
        return timeout * (self._score + 1)
