"""A token bucket for bytes: bounds the bandwidth of anti-entropy and hint replay.

Sans-I/O: :meth:`ByteBudget.take` and :meth:`ByteBudget.delay` take ``now`` (seconds, any
monotonic clock). What callers may rely on: over any interval of ``t`` seconds, the bytes
granted are at most ``burst + rate * t`` plus the excess of at most one request larger than
``burst``. Such a request is granted only when the bucket is full (it never starves) and
leaves the bucket in debt, so what follows waits until it is paid back.
"""

from __future__ import annotations

from meshcache.errors import ConfigError


class ByteBudget:
    """``rate`` bytes per second, up to ``burst`` bytes at once."""

    __slots__ = ("_level", "_stamp", "burst", "granted", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if not rate > 0 or burst < 1:
            raise ConfigError("a byte budget needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._level = float(burst)
        self._stamp = now
        #: Bytes granted so far (for a metric).
        self.granted = 0

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._level = min(float(self.burst), self._level + (now - self._stamp) * self.rate)
            self._stamp = now

    def take(self, n: int, now: float) -> bool:
        """Grant ``n`` bytes now if the bucket allows; return whether granted."""
        self._refill(now)
        need = min(n, self.burst)
        if self._level + 1e-9 < need:
            return False
        # An oversized request drains the bucket below zero: the debt paces what follows.
        self._level -= n
        self.granted += n
        return True

    def delay(self, n: int, now: float) -> float:
        """Seconds to wait before :meth:`take` of ``n`` bytes can succeed (0 if it can now)."""
        self._refill(now)
        need = min(n, self.burst)
        return max(0.0, (need - self._level) / self.rate)


__all__ = ["ByteBudget"]
