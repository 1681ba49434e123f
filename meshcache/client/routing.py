"""Which node a request goes to: the routing seam of every client front end.

A front end asks its :class:`Router` for ``candidates(key)`` — the addresses to try, best first —
connects to the first that answers and reports back with ``connected`` / ``failed``. Two routers
implement it: :class:`SeedRouter` (the first seed that answers, failing over down the list) and
:class:`~meshcache.client.ring_router.RingRouter`, which places each key on its owners by the
cluster ring and tells the front end when to fetch a newer ring. Addresses are
:class:`meshcache.wire.Address` values, read by :func:`meshcache.wire.parse_addresses`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Protocol

from meshcache.errors import ConfigError
from meshcache.wire.address import Address


class Router(Protocol):
    """Picks the node for a request. Called from many threads or tasks at once."""

    def candidates(self, key: bytes | None) -> Sequence[Address]:
        """The addresses to try for ``key`` (None: any node will do), best first.

        The caller must not change the sequence (a router may hand out a shared one).
        """
        ...

    def primary(self, key: bytes) -> Address | None:
        """The node the key's requests go to first; None when the router does not place keys
        (then a batch of many keys is never split by node)."""
        ...

    def connected(self, address: Address) -> None:
        """A connection to ``address`` was just made."""
        ...

    def failed(self, address: Address) -> None:
        """Connecting to ``address`` failed, or a connection to it broke."""
        ...

    def observe_ring_version(self, version: int) -> bool:
        """A response carried this ring version.

        True tells the caller to fetch the ring (``RING`` and ``NS_LIST``) now and hand the
        result to :meth:`ring_fetched`; at most one caller at a time is told so. A front end
        also calls this with version 0 before its first request, so that a router which has
        never seen a ring asks for one.
        """
        ...

    def ring_fetched(self, replies: Sequence[Any] | None) -> None:
        """The ``RING`` and ``NS_LIST`` results fetched after ``observe_ring_version`` said so
        (None: the fetch failed). Called exactly once per True from ``observe_ring_version``."""
        ...

    def hot_due(self) -> Address | None:
        """The node to ask for its hot keys (``HOTKEYS``) now, or None; a node named here
        gets its answer handed to :meth:`hot_fetched`."""
        ...

    def hot_fetched(self, address: Address, replies: Sequence[Any] | None) -> None:
        """What ``address`` answered to ``HOTKEYS`` (None: the fetch failed)."""
        ...

    @property
    def hot(self) -> Mapping[bytes, Sequence[Address]]:
        """The keys known to be hot (their writes go to :meth:`primary`)."""
        ...

    @property
    def written(self) -> Mapping[bytes, Any]:
        """The keys whose reads demand a version (empty: no read does)."""
        ...

    def hot_hint(self, address: Address, version: int) -> None:
        """A response from ``address`` carried this hot-set version."""
        ...

    def wrote(
        self,
        keys: Sequence[bytes],
        version: int | None,
        versions: Sequence[tuple[bytes, int]] | None = None,
    ) -> None:
        """A write of ``keys`` was answered, with the version it left (None: none said) and,
        for a write of several keys, each hot key's own (None: not said)."""
        ...

    def min_version(self, key: bytes) -> int | None:
        """The version a read of ``key`` demands (``HOT_GET``), or None."""
        ...


class SeedRouter:
    """Every request goes to one seed: the first that answered; on failure, the next one.

    State is one index replaced by a single assignment, so no lock is needed across threads.
    """

    def __init__(self, addresses: Sequence[Address]) -> None:
        if not addresses:
            raise ConfigError("no node address given")
        self.addresses = tuple(addresses)
        self.ring_version = 0
        self._prefer(0)

    def _prefer(self, i: int) -> None:
        # The failover order is rebuilt only when the preferred seed changes, not per request;
        # both fields change by single assignments, read in either order they stay consistent.
        self._preferred = i
        self._candidates = (*self.addresses[i:], *self.addresses[:i])

    @property
    def preferred(self) -> Address:
        return self.addresses[self._preferred]

    def candidates(self, key: bytes | None) -> list[Address]:
        return list(self._candidates)

    def primary(self, key: bytes) -> Address | None:
        return None

    def connected(self, address: Address) -> None:
        if address in self.addresses and address != self.addresses[self._preferred]:
            self._prefer(self.addresses.index(address))

    def failed(self, address: Address) -> None:
        i = self._preferred
        if self.addresses[i] == address:
            self._prefer((i + 1) % len(self.addresses))

    def observe_ring_version(self, version: int) -> bool:
        if version > self.ring_version:
            self.ring_version = version
        return False

    def ring_fetched(self, replies: Sequence[Any] | None) -> None:
        """Never asked for: a seed router does not fetch the ring."""

    def hot_due(self) -> Address | None:
        """Never: a seed router does not place keys, hot or not."""
        return None

    def hot_fetched(self, address: Address, replies: Sequence[Any] | None) -> None:
        """Never asked for."""

    #: A seed router knows no hot key and demands no version.
    hot: Mapping[bytes, Sequence[Address]] = MappingProxyType({})
    written: Mapping[bytes, Any] = MappingProxyType({})

    def hot_hint(self, address: Address, version: int) -> None:
        """Ignored: a seed router does not place keys."""

    def wrote(
        self,
        keys: Sequence[bytes],
        version: int | None,
        versions: Sequence[tuple[bytes, int]] | None = None,
    ) -> None:
        """Ignored: a seed router's reads go where its writes went."""

    def min_version(self, key: bytes) -> int | None:
        return None


__all__ = ["Router", "SeedRouter"]
