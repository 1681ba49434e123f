"""Far-future versions on replica writes: clamp, count, and say so.

A peer whose clock runs ahead stamps versions from the future; taken as they are, such a write
would beat every later write of its key until the wall clock caught up ("a bad clock pins a
key"). :meth:`meshcache.hlc.HLC.observe` already replaces any version more than its
``max_drift_ms`` ahead of the local wall clock with the greatest version at that limit; this
module runs every incoming replica version through it *before* the record reaches the store,
so the node can count the clamp per peer and log it with the key (the store clamps too, but
silently).

What callers may rely on:

* :meth:`VersionClamp.admit` returns the version to store: the remote one when it is within the
  drift limit, else the limit. The HLC has observed it either way, so every later local write
  gets a greater version (on this node the clamped write is overtaken at once; elsewhere as
  soon as the clamped version is replicated).
* A clamped record stays clamped everywhere: replicas hold the clamped version, and its
  re-clamping by a peer with a slower clock only lowers it further, which last-writer-wins
  then settles like any other difference.
* Counters: :attr:`VersionClamp.clamped` in total and :attr:`VersionClamp.by_peer`;
  :attr:`VersionClamp.max_ahead_ms` the worst skew seen (for a log line or a gauge).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass

from meshcache.hlc import HLC, physical_ms
from meshcache.node.data.replication.tombstones import Record


@dataclass(frozen=True, slots=True)
class Admitted:
    """The outcome of admitting one remote version."""

    version: int
    original: int
    ahead_ms: int

    @property
    def clamped(self) -> bool:
        return self.version != self.original


class VersionClamp:
    """Admits remote versions through ``hlc`` and counts the clamps."""

    __slots__ = ("_hlc", "by_peer", "clamped", "max_ahead_ms")

    def __init__(self, hlc: HLC) -> None:
        self._hlc = hlc
        self.clamped = 0
        self.by_peer: Counter[str] = Counter()
        self.max_ahead_ms = 0

    @property
    def hlc(self) -> HLC:
        """The clock versions are admitted through (a forwarded write is stamped with it)."""
        return self._hlc

    def limit(self) -> int:
        """A version at or below this one is admitted unchanged (now and later): a batch can
        take it once and send only the versions above it through :meth:`admit`."""
        return self._hlc.drift_limit()

    def admit(self, version: int, peer: str | None = None) -> Admitted:
        """Observe a remote ``version`` and return what to store (see the module docstring)."""
        stored = self._hlc.observe(version)
        if stored == version:
            return Admitted(version, version, 0)
        ahead = physical_ms(version) - physical_ms(stored)
        self.clamped += 1
        if peer is not None:
            self.by_peer[peer] += 1
        self.max_ahead_ms = max(self.max_ahead_ms, ahead)
        return Admitted(stored, version, ahead)

    def admit_record(self, record: Record, peer: str | None = None) -> tuple[Record, Admitted]:
        """:meth:`admit` for a whole record: the record with the version to store."""
        admitted = self.admit(record.version, peer)
        if admitted.clamped:
            record = dataclasses.replace(record, version=admitted.version)
        return record, admitted


__all__ = ["Admitted", "VersionClamp"]
