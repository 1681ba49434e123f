"""A circuit breaker: fail fast while something is down, probe it, recover.

The node keeps one per read-through source (:mod:`meshcache.node.loader.loader`) and one per
peer (:mod:`meshcache.node.net.breakers`). :class:`Breaker` is a small state machine with no
I/O and no clock of its own: every call takes ``now``. ``closed`` lets every call through and
counts consecutive failures; at ``threshold`` (or at once, for a failure the caller calls
*decisive*) it turns ``open`` for ``cooldown`` seconds, during which calls fail at once or go
elsewhere; then one call at a time goes through as a probe (``half_open``): a success closes
it, a failure opens it again for twice as long (up to ``max_cooldown``). The defaults (0.5 s,
at most 2 s) keep a probe going at least every 2 s, so calls resume within about 2 s of the
other side's return, at the cost of one failed call per 2 s while it is down.
"""

from __future__ import annotations

from enum import IntEnum


class BreakerState(IntEnum):
    """The state, as exported in metrics (0 closed, 1 half-open, 2 open)."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class Breaker:
    """One breaker (of a source, of a peer).

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
        """Whether a call may go now (in half-open state: one probe at a time, which this
        caller now is and must report with :meth:`success` or :meth:`failure`)."""
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

    def hurry(self) -> None:
        """Let the next probe go at once: something else says the other side is back."""
        if self.state is BreakerState.OPEN:
            self._until = 0.0

    def success(self) -> None:
        """A call (or probe) got an answer from the other side."""
        self.state = BreakerState.CLOSED
        self.failures = 0
        self._probing = False
        self._cooldown = self.base_cooldown

    def failure(self, now: float, *, decisive: bool = False) -> None:
        """A call failed because of the other side (down, timed out, refused). ``decisive``:
        the failure alone shows the other side unreachable, so it opens a closed breaker
        without waiting for ``threshold`` of them."""
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN:
            self._open(now, min(self._cooldown * 2, self.max_cooldown))
        elif self.state is BreakerState.CLOSED and (decisive or self.failures >= self.threshold):
            self._open(now, self.base_cooldown)

    def _open(self, now: float, cooldown: float) -> None:
        self.state = BreakerState.OPEN
        self.opened += 1
        self._cooldown = cooldown
        self._until = now + cooldown
        self._probing = False


__all__ = ["Breaker", "BreakerState"]
