"""Typed values: hashes, lists, sets and sorted sets, each with its version and exact size.

Plain values are not objects: the keyspace holds them as one ``bytes`` blob (an 8-byte
big-endian version, then the value) to keep a million small values compact. Typed values are
small ``__slots__`` objects; ``size`` is their accounted cost (``meshcache/store/sizes.py``),
kept exact by the ops that change them, and :meth:`TypedValue.measure` recomputes it from
scratch (tests and replication use it).
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar, Self

from sortedcontainers import SortedList

from meshcache.store import sizes


class TypedValue:
    """Base of the typed values. ``kind`` is the type name used in errors and entry views."""

    __slots__ = ("size", "version")
    kind: ClassVar[str] = ""

    size: int
    version: int

    def __len__(self) -> int:
        raise NotImplementedError

    def copy(self) -> Self:
        """An independent copy (same size and version)."""
        raise NotImplementedError

    def measure(self) -> int:
        """The accounted size computed from the contents."""
        raise NotImplementedError

    def contents(self) -> Any:
        """A msgpack-able copy of the contents (see :class:`~meshcache.store.entry.EntryView`)."""
        raise NotImplementedError

    @classmethod
    def from_contents(cls, contents: Any, version: int) -> Self:
        """Build a value from :meth:`contents` output; ``size`` is measured."""
        raise NotImplementedError


class _Collection(TypedValue):
    """A typed value whose contents are one container in ``data`` (hash, list, set)."""

    __slots__ = ("data",)
    data: Any
    _base: ClassVar[int] = 0

    def __init__(self) -> None:
        self.data = self._load(())
        self.size = self._base
        self.version = 0

    @classmethod
    def _load(cls, contents: Any) -> Any:
        """The container for :meth:`contents` output (with every item as ``bytes``)."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.data)

    def copy(self) -> Self:
        new = type(self)()
        new.data = self.data.copy()
        new.size = self.size
        new.version = self.version
        return new

    @classmethod
    def from_contents(cls, contents: Any, version: int) -> Self:
        new = cls()
        new.data = cls._load(contents)
        new.size = new.measure()
        new.version = version
        return new


class HashValue(_Collection):
    __slots__ = ()
    kind = "hash"
    data: dict[bytes, bytes]
    _base = sizes.HASH_BASE

    @classmethod
    def _load(cls, contents: Any) -> dict[bytes, bytes]:
        return {bytes(f): bytes(v) for f, v in dict(contents).items()}

    def measure(self) -> int:
        per = sizes.HASH_ITEM + 2 * sizes.BYTES_OVERHEAD
        return sizes.HASH_BASE + sum(len(f) + len(v) + per for f, v in self.data.items())

    def contents(self) -> dict[bytes, bytes]:
        return dict(self.data)


class ListValue(_Collection):
    __slots__ = ()
    kind = "list"
    data: deque[bytes]
    _base = sizes.LIST_BASE

    @classmethod
    def _load(cls, contents: Any) -> deque[bytes]:
        return deque(bytes(v) for v in contents)

    def measure(self) -> int:
        per = sizes.LIST_ITEM + sizes.BYTES_OVERHEAD
        return sizes.LIST_BASE + sum(len(v) + per for v in self.data)

    def contents(self) -> list[bytes]:
        return list(self.data)


class SetValue(_Collection):
    __slots__ = ("__weakref__",)  # SPOP keeps one set's members in order (Keyspace.set_order)
    kind = "set"
    data: set[bytes]
    _base = sizes.SET_BASE

    @classmethod
    def _load(cls, contents: Any) -> set[bytes]:
        return {bytes(m) for m in contents}

    def measure(self) -> int:
        per = sizes.SET_ITEM + sizes.BYTES_OVERHEAD
        return sizes.SET_BASE + sum(len(m) + per for m in self.data)

    def contents(self) -> list[bytes]:
        return sorted(self.data)


class ZSetValue(TypedValue):
    """A sorted set: ``scores`` maps member → score, ``order`` holds (score, member) sorted.

    Tuples order by score, then member bytewise, which is exactly the protocol's order.
    """

    __slots__ = ("order", "scores")
    kind = "zset"

    def __init__(self) -> None:
        self.scores: dict[bytes, float] = {}
        self.order: SortedList = SortedList()
        self.size = sizes.ZSET_BASE
        self.version = 0

    def __len__(self) -> int:
        return len(self.scores)

    def copy(self) -> Self:
        new = type(self)()
        new.scores = self.scores.copy()
        new.order = self.order.copy()
        new.size = self.size
        new.version = self.version
        return new

    def measure(self) -> int:
        per = sizes.ZSET_ITEM + sizes.BYTES_OVERHEAD
        return sizes.ZSET_BASE + sum(len(m) + per for m in self.scores)

    def contents(self) -> list[list[Any]]:
        return [[member, score] for score, member in self.order]

    @classmethod
    def from_contents(cls, contents: Any, version: int) -> Self:
        new = cls()
        for member, score in contents:
            new.scores[bytes(member)] = float(score)
        new.order = SortedList((s, m) for m, s in new.scores.items())
        new.size = new.measure()
        new.version = version
        return new


TYPES: dict[str, type[TypedValue]] = {
    cls.kind: cls for cls in (HashValue, ListValue, SetValue, ZSetValue)
}
#: The type name of a plain value in entry views.
PLAIN = "bytes"

__all__ = ["PLAIN", "TYPES", "HashValue", "ListValue", "SetValue", "TypedValue", "ZSetValue"]
