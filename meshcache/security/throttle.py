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

One record per address serves both ports (the data port and the RESP port), so guessing on
both earns one slow-down; the record also remembers which ports its failures came through, for
``meshcache_auth_failing_addresses{port}``. A record whose count has decayed below
``FORGOTTEN`` (four half-lives after a single failure) is forgotten.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass, field

FREE_FAILURES = 4
BASE_DELAY = 0.1
MAX_DELAY = 5.0
HALF_LIFE = 60.0
#: Addresses remembered at most; past it the least recently failed are forgotten.
MAX_ADDRESSES = 100_000
#: A decayed failure count under this is no longer on record.
FORGOTTEN = 1 / 16
#: The ports an AUTH comes through (the label of ``meshcache_auth_failing_addresses``).
PORTS = ("data", "resp")


@dataclass(slots=True)
class _Record:
    failures: float
    at: float
    ports: frozenset[str]


@dataclass(slots=True)
class AuthThrottle:
    """Failure counts per client address and the delay they earn."""

    free: int = FREE_FAILURES
    base: float = BASE_DELAY
    max_delay: float = MAX_DELAY
    half_life: float = HALF_LIFE
    max_addresses: int = MAX_ADDRESSES
    _records: dict[str, _Record] = field(default_factory=dict)
    _by_port: Counter[str] = field(default_factory=Counter)
    _expiries: list[tuple[float, str]] = field(default_factory=list)

    def failures(self, address: str, now: float) -> float:
        """The decayed failure count of ``address`` at ``now``."""
        record = self._records.get(address)
        return 0.0 if record is None else self._decayed(record, now)

    def _decayed(self, record: _Record, now: float) -> float:
        return record.failures * math.pow(0.5, max(0.0, now - record.at) / self.half_life)

    def delay(self, address: str, now: float) -> float:
        """Seconds to wait before answering an ``AUTH`` from ``address``."""
        failures = self.failures(address, now)
        if failures < self.free:
            return 0.0
        return min(self.max_delay, self.base * 2 ** (failures - self.free))

    def failed(self, address: str, now: float, port: str = "data") -> None:
        """Count one failed ``AUTH`` from ``address`` through ``port`` (``data`` or ``resp``)."""
        count = self.failures(address, now) + 1.0
        record = self._drop(address)  # re-inserted last: the least recently failed stay first
        ports = frozenset((port,)) if record is None else record.ports | {port}
        record = self._records[address] = _Record(count, now, ports)
        self._by_port.update(ports)
        heapq.heappush(self._expiries, (self._expiry(record), address))
        while len(self._records) > self.max_addresses:
            self._drop(next(iter(self._records)))
        self._forget_old(now)

    def failing(self, now: float | None) -> dict[str, int]:
        """Port -> addresses on record with failures through that port (an address that
        failed through both ports counts under both); ``now`` None: forget nothing first."""
        if now is not None:
            self._forget_old(now)
        return {port: self._by_port[port] for port in sorted({*PORTS, *self._by_port})}

    def _expiry(self, record: _Record) -> float:
        """When the record's count decays under :data:`FORGOTTEN`."""
        return record.at + self.half_life * math.log2(record.failures / FORGOTTEN)

    def _forget_old(self, now: float) -> None:
        """Drop the records whose count has decayed under :data:`FORGOTTEN` (each failure
        left one entry in a heap ordered by when it would be forgotten: no scan)."""
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _, address = heapq.heappop(expiries)
            record = self._records.get(address)
            # A record that failed again since (or an evicted one) has a later entry, or none.
            if record is not None and self._expiry(record) <= now:
                self._drop(address)

    def _drop(self, address: str) -> _Record | None:
        record = self._records.pop(address, None)
        if record is not None:
            self._by_port.subtract(record.ports)
        return record

    def __len__(self) -> int:
        return len(self._records)


__all__ = ["FORGOTTEN", "PORTS", "AuthThrottle"]
