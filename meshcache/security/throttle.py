"""Slowing down password guessing: a delay per client address that grows with its failures.

Sans-I/O: callers pass ``now``. Each failed ``AUTH`` from an address adds one to its count; the
count halves every ``half_life`` seconds without failures, so an address that stops guessing is
forgiven, and one that keeps going stays slow. A success does not reset it (a client that knows
one password must not be able to wipe the record of its guesses at another).

The delay before an ``AUTH`` from an address is answered::

    0                                         while failures < free
    min(max_delay, base * 2 ** (failures - free))   after that

With the defaults, after 4 failures in a row the 5th attempt waits 0.1 s, the 10th 3.2 s, and
from the 11th on each waits 5 s: about 700 guesses an hour from one address (the wait is per
address, so more connections do not help), instead of the dozens per second scrypt alone would
allow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

FREE_FAILURES = 4
BASE_DELAY = 0.1
MAX_DELAY = 5.0
HALF_LIFE = 60.0
#: Addresses remembered at most; past it the least recently failed are forgotten.
MAX_ADDRESSES = 100_000


@dataclass(slots=True)
class _Record:
    failures: float
    at: float


@dataclass(slots=True)
class AuthThrottle:
    """Failure counts per client address and the delay they earn."""

    free: int = FREE_FAILURES
    base: float = BASE_DELAY
    max_delay: float = MAX_DELAY
    half_life: float = HALF_LIFE
    max_addresses: int = MAX_ADDRESSES
    _records: dict[str, _Record] = field(default_factory=dict)

    def failures(self, address: str, now: float) -> float:
        """The decayed failure count of ``address`` at ``now``."""
        record = self._records.get(address)
        if record is None:
            return 0.0
        return record.failures * math.pow(0.5, max(0.0, now - record.at) / self.half_life)

    def delay(self, address: str, now: float) -> float:
        """Seconds to wait before answering an ``AUTH`` from ``address``."""
        failures = self.failures(address, now)
        if failures < self.free:
            return 0.0
        return min(self.max_delay, self.base * 2 ** (failures - self.free))

    def failed(self, address: str, now: float) -> None:
        """Count one failed ``AUTH`` from ``address``."""
        count = self.failures(address, now) + 1.0
        self._records.pop(address, None)  # re-inserted last: dicts keep insertion order
        self._records[address] = _Record(count, now)
        while len(self._records) > self.max_addresses:
            del self._records[next(iter(self._records))]

    def __len__(self) -> int:
        return len(self._records)


__all__ = ["AuthThrottle"]
