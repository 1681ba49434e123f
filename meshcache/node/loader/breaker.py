"""A circuit breaker per source: fail fast while the database is down, probe, recover.

:class:`Breaker` is a small state machine with no I/O and no clock of its own: every call
takes ``now``. ``closed`` lets every load through and counts consecutive failures; at
``threshold`` it turns ``open`` for ``cooldown`` seconds, during which loads fail at once;
then one load at a time goes through as a probe (``half_open``): a success closes it, a
failure opens it again for twice as long (up to ``max_cooldown``). The defaults (0.5 s, at
most 2 s) keep a probe going at least every 2 s, so loads resume within about 2 s of the
database's return, at the cost of one failed query per 2 s while it is down.
"""

from __future__ import annotations

from enum import IntEnum


class BreakerState(IntEnum):
    """The state, as exported in metrics (0 closed, 1 half-open, 2 open)."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class Breaker:
    """One source's breaker.

    Args:
        threshold: consecutive failures that open it.
        cooldown: seconds it stays open the first time.
        max_cooldown: the longest it stays open after failed probes.
    """

    def __init__(
        self, *, threshold: int = 5, cooldown: float = 0.5, max_cooldown: float = 2.0
    ) -> None:
        self.threshold = threshold
        self.base_cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened = 0  # times it turned open
        self._cooldown = cooldown
        self._until = 0.0
        self._probing = False

    def allow(self, now: float) -> bool:
        """Whether a load may go to the source now (in half-open state: one probe at a time)."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if now < self._until:
                return False
            self.state = BreakerState.HALF_OPEN
        if self._probing:
            return False
        self._probing = True
        return True

    def retry_in(self, now: float) -> float:
        """Seconds until the next probe may go (0 when one may go now)."""
        return max(0.0, self._until - now) if self.state is BreakerState.OPEN else 0.0

    def success(self) -> None:
        """A load (or probe) got an answer from the source."""
        self.state = BreakerState.CLOSED
        self.failures = 0
        self._probing = False
        self._cooldown = self.base_cooldown

    def failure(self, now: float) -> None:
        """A load failed because of the source (down, timed out, refused)."""
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN:
            self._open(now, min(self._cooldown * 2, self.max_cooldown))
        elif self.state is BreakerState.CLOSED and self.failures >= self.threshold:
            self._open(now, self.base_cooldown)

    def _open(self, now: float, cooldown: float) -> None:
        self.state = BreakerState.OPEN
        self.opened += 1
        self._cooldown = cooldown
        self._until = now + cooldown
        self._probing = False


__all__ = ["Breaker", "BreakerState"]
