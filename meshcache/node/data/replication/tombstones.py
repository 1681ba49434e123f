"""Deletes as tombstones: the replication record of a key, and the last-writer-wins order.

The store keeps the tombstones (``Store(tombstone_grace_s=...)``: a side table per namespace,
byte-accounted apart from the values, purged by :meth:`Store.expire_cycle` once
``physical_ms(version) + grace`` has passed). This module is what replication moves around:
a key's *record* is either its live :class:`~meshcache.store.EntryView` or a
:class:`Tombstone`.

What callers may rely on:

* The order between two records of one key is :func:`lww_order`: the greater version wins; on
  equal versions a delete beats a write, and of two writes the one with the greater
  :func:`~meshcache.store.tie_break` (a hash of type, expiry and contents) wins.
  :meth:`Store.apply_entry` and :meth:`Store.apply_tombstone` follow the same order, so applying
  any permutation of the same records to any replica ends in the same state
  (``tests/store/test_tombstones.py``, ``tests/store/test_tie_break.py``).
* A tombstone's wire form is ``["tombstone", nil, nil, version]``: the shape of an entry's
  wire form with a type no entry has, so :meth:`EntryView.from_wire` can never mistake it for a
  value, and :func:`record_from_wire` reads both.
* A tombstone is kept for the grace period only. A replica that misses a delete for longer than
  that (down, partitioned, hints lost and no anti-entropy round) can bring the value back; the
  grace period must exceed the hint max age plus one full anti-entropy cycle
  (``docs/replication.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from meshcache.errors import RemoteProtocolError
from meshcache.store import EntryView, Store

TOMBSTONE: Final = "tombstone"


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A delete of a key at ``version``."""

    version: int

    def to_wire(self) -> list[Any]:
        """``["tombstone", None, None, version]``."""
        return [TOMBSTONE, None, None, self.version]


Record = EntryView | Tombstone
"""What one replica holds for a key: its live entry or its tombstone."""


def is_deleted(record: Record) -> bool:
    return type(record) is Tombstone


def lww_order(record: Record) -> tuple[int, bool, int]:
    """The sort key of last-writer-wins: ``(version, is_delete, tie_break)``; the greater one
    wins (a tombstone's tie-break is 0: no two tombstones of one version differ)."""
    if type(record) is Tombstone:
        return (record.version, True, 0)
    assert isinstance(record, EntryView)
    return (record.version, False, record.tie())


def wins(a: Record, b: Record | None) -> bool:
    """Whether ``a`` beats ``b`` (anything beats ``None``; equal records do not beat).

    The tie-break is computed only when the versions are equal."""
    if b is None or a.version != b.version:
        return b is None or a.version > b.version
    return lww_order(a) > lww_order(b)


def record_from_wire(data: Any) -> Record:
    """Inverse of ``to_wire`` for entries and tombstones; ``RemoteProtocolError`` if malformed."""
    if type(data) in (list, tuple) and len(data) == 4 and data[0] == TOMBSTONE:
        version = data[3]
        if type(version) is not int or not 0 <= version < 2**64:
            raise RemoteProtocolError(f"bad tombstone version {version!r}")
        if data[1] is not None or data[2] is not None:
            raise RemoteProtocolError("a tombstone carries no value and no expiry")
        return Tombstone(version)
    return EntryView.from_wire(data)


def read_record(store: Store, namespace: str, key: bytes) -> Record | None:
    """The key's record on this node: live entry, else tombstone, else ``None``."""
    entry = store.get_entry(namespace, key)
    if entry is not None:
        return entry
    version = store.get_tombstone(namespace, key)
    return None if version is None else Tombstone(version)


def apply_record(store: Store, namespace: str, key: bytes, record: Record) -> bool:
    """Last-writer-wins apply of a replicated record; returns whether it changed anything.

    Raises what :meth:`Store.apply_entry` raises (``TOO_LARGE``, ``OUT_OF_MEMORY``,
    ``NO_SUCH_NAMESPACE``); a tombstone raises only ``NO_SUCH_NAMESPACE``.
    """
    if type(record) is Tombstone:
        return store.apply_tombstone(namespace, key, record.version)
    assert isinstance(record, EntryView)
    return store.apply_entry(namespace, key, record)


__all__ = [
    "TOMBSTONE",
    "Record",
    "Tombstone",
    "apply_record",
    "is_deleted",
    "lww_order",
    "read_record",
    "record_from_wire",
    "wins",
]
