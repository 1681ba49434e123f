"""A hybrid logical clock: the versions that last-writer-wins replication compares.

A version is an unsigned 64-bit integer: milliseconds since the Unix epoch in the high 48 bits
and a logical counter in the low 16 (docs/protocol.md, "Values and types"). Packing both in one
int keeps versions cheap to store and compare: ``a > b`` is the happened-after order.

What callers may rely on:

* :meth:`HLC.now` returns a version strictly greater than every version it returned before and
  every version :meth:`HLC.observe` accepted, whatever the wall clock does (it may stall or go
  backwards; the logical counter carries on, spilling into the millisecond field if it must).
* A version is never below ``wall_ms() << 16`` at the time it was made, so versions stay close
  to real time and ``physical_ms(version)`` is a usable timestamp.
* :meth:`HLC.observe` never moves the clock more than ``max_drift_ms`` ahead of the local wall
  clock: a peer with a broken clock cannot drag every node into the future.
* The one exception to the first rule: between :meth:`HLC.pin` and :meth:`HLC.unpin`,
  :meth:`HLC.now` returns the pinned version (a write whose version was fixed elsewhere, e.g. by
  the node that forwarded it); afterwards the clock has witnessed it.
"""

from __future__ import annotations

from collections.abc import Callable

LOGICAL_BITS = 16
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1
MAX_VERSION = (1 << 64) - 1


def physical_ms(version: int) -> int:
    """The wall-clock part of ``version``: milliseconds since the Unix epoch."""
    return version >> LOGICAL_BITS


def logical(version: int) -> int:
    """The logical counter of ``version`` (0..65535)."""
    return version & LOGICAL_MASK


def make_version(ms: int, counter: int = 0) -> int:
    """Pack ``ms`` and ``counter`` into one version."""
    if not 0 <= counter <= LOGICAL_MASK:
        raise ValueError(f"logical counter {counter} out of range")
    return (ms << LOGICAL_BITS) | counter


class HLC:
    """A hybrid logical clock over an injected wall clock.

    Args:
        wall_ms: returns the wall clock in milliseconds since the Unix epoch (injected so that
            simulations and tests control time).
        max_drift_ms: how far ahead of our wall clock a remote version may be before
            :meth:`observe` clamps it.

    Not thread-safe: one node's trio thread owns it.
    """

    __slots__ = ("_last", "_max_drift_ms", "_pinned", "_wall_ms", "clamped")

    def __init__(self, wall_ms: Callable[[], int], *, max_drift_ms: int = 60_000) -> None:
        if max_drift_ms < 0:
            raise ValueError("max_drift_ms must be >= 0")
        self._wall_ms = wall_ms
        self._max_drift_ms = max_drift_ms
        self._last = 0
        self._pinned = 0
        #: How many remote versions :meth:`observe` had to clamp (a peer's clock is off).
        self.clamped = 0

    @property
    def last(self) -> int:
        """The greatest version issued or observed so far (0 before the first)."""
        return self._last

    def now(self) -> int:
        """A new version, strictly greater than any issued or observed before (while pinned:
        the pinned version)."""
        if self._pinned:
            return self._pinned
        wall = self._wall_ms() << LOGICAL_BITS
        last = self._last
        version = wall if wall > last else last + 1
        self._last = version
        return version

    def wall_ms(self) -> int:
        """The wall clock it reads, in milliseconds since the epoch (no version issued)."""
        return self._wall_ms()

    def pin(self, version: int) -> None:
        """Make :meth:`now` return ``version`` until :meth:`unpin`: the caller runs one write
        whose version was fixed before (it checked that the keys it writes hold older
        records) and unpins in a ``finally``, with no checkpoint in between."""
        if not 0 < version <= MAX_VERSION:
            raise ValueError(f"version {version} out of range")
        self._pinned = version

    def unpin(self) -> None:
        """End :meth:`pin`; the clock has witnessed the pinned version."""
        pinned, self._pinned = self._pinned, 0
        if pinned > self._last:
            self._last = pinned

    def witness(self, remote: int) -> None:
        """:meth:`observe` for a version the caller already found at or below
        :meth:`drift_limit` (a batch checks the limit once, not per version)."""
        if remote > self._last:
            self._last = remote

    def drift_limit(self) -> int:
        """The greatest version :meth:`observe` admits unclamped right now (it only grows)."""
        return ((self._wall_ms() + self._max_drift_ms) << LOGICAL_BITS) | LOGICAL_MASK

    def observe(self, remote: int) -> int:
        """Merge a version received from a peer; return it, clamped if it was too far ahead.

        A remote version more than ``max_drift_ms`` ahead of our wall clock is replaced by the
        greatest version at that limit and counted in :attr:`clamped`. Afterwards every
        :meth:`now` is greater than the returned value.
        """
        limit = self.drift_limit()
        if remote > limit:
            remote = limit
            self.clamped += 1
        if remote > self._last:
            self._last = remote
        return remote


__all__ = ["HLC", "LOGICAL_BITS", "MAX_VERSION", "logical", "make_version", "physical_ms"]
