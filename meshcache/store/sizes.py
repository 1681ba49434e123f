"""What an entry costs: the byte accounting that ``max_bytes`` bounds.

Every figure is the resident cost on 64-bit CPython 3.11 as measured with ``tracemalloc`` (bulk
build of 200 000 items, requested bytes per item; re-measure with ``tools/bench_store_memory.py``
when the representation changes). The store keeps, per namespace, the sum of
:func:`plain_cost` / :func:`typed_cost` over its keys exact under every op; the allocator's
rounding and fragmentation come on top, which is why the memory benchmark reports RSS per key
next to the accounted bytes per key (the documented factor between the two).

Cost of one key:

* every key: :data:`KEYSPACE_SLOT` (an ``OrderedDict`` slot and its linked-list node) plus the
  key's ``bytes`` object (:func:`bytes_cost`);
* a plain value: one ``bytes`` blob holding an 8-byte version header and the value;
* a typed value: its object (:data:`TYPED_OBJECT`), its container's base cost and, per item,
  the container's slot plus the item's objects (the ``*_ITEM`` constants plus bytes costs);
* a key with an expiry: :data:`EXPIRY_COST` (the side dict slot, the float, the heap tuple);
* a key in an ``lfu`` namespace: :data:`LFU_COST` (the side dict slot and the packed counter).

A tombstone (a deleted key remembered for replication, :func:`tombstone_cost`) is accounted
apart from the values, in its own counter.
"""

from __future__ import annotations

#: A ``bytes`` object's header (33 bytes) plus pymalloc's average rounding to 16 bytes.
BYTES_OVERHEAD = 40
#: The version header at the front of a plain value's blob.
VERSION_HEADER = 8
#: One ``OrderedDict`` slot: hash table entry and index, plus the doubly linked node.
KEYSPACE_SLOT = 105
#: The side structures of a key with an expiry: dict slot + float + (float, key) heap tuple.
EXPIRY_COST = 165
#: The LFU side dict slot and its packed (epoch, counter) int.
LFU_COST = 84
#: A typed value's own object (``__slots__``: size, version, container).
TYPED_OBJECT = 56

HASH_BASE = TYPED_OBJECT + 72
#: dict slot per field; the field and the value are ``bytes`` objects on top.
HASH_ITEM = 52
LIST_BASE = TYPED_OBJECT + 768
#: deque slot per element (64-pointer blocks); the element is a ``bytes`` object on top.
LIST_ITEM = 8
SET_BASE = TYPED_OBJECT + 224
#: set slot per member; the member is a ``bytes`` object on top.
SET_ITEM = 42
ZSET_BASE = TYPED_OBJECT + 8 + 72 + 305
#: dict slot + float score + (score, member) tuple + SortedList slot, per member; the member's
#: ``bytes`` object (shared by the dict and the tuple) is on top.
ZSET_ITEM = 141


#: One tombstone: the side dict slot, the version int, the (version, key) heap tuple and its
#: heap slot (measured: 153 bytes for 200 000 tombstones); the key's ``bytes`` object on top.
TOMBSTONE_COST = 153


def tombstone_cost(key_len: int) -> int:
    """Cost of a tombstone of a key of ``key_len`` bytes."""
    return key_len + BYTES_OVERHEAD + TOMBSTONE_COST


def bytes_cost(n: int) -> int:
    """Cost of a ``bytes`` object of length ``n``."""
    return n + BYTES_OVERHEAD


def plain_cost(key_len: int, blob_len: int) -> int:
    """Cost of a key holding a plain value stored as a blob of ``blob_len`` bytes."""
    return key_len + blob_len + (KEYSPACE_SLOT + 2 * BYTES_OVERHEAD)


def typed_cost(key_len: int, value_size: int) -> int:
    """Cost of a key holding a typed value whose own size is ``value_size``."""
    return key_len + value_size + (KEYSPACE_SLOT + BYTES_OVERHEAD)


def max_item_cost(arg_len: int) -> int:
    """An upper bound on what adding one argument of ``arg_len`` bytes to a typed value costs.

    Used to decide before a typed write whether it can possibly overflow ``max_bytes``.
    """
    return arg_len + BYTES_OVERHEAD + ZSET_ITEM
