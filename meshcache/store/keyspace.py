"""One namespace's keys: lookup, expiry, eviction and byte accounting.

The op handlers (``meshcache/store/ops_*.py``) work through this class. What they may rely on:

* :attr:`Keyspace.tables` map key → entry, each least recently used first; a key lives in
  :meth:`Keyspace.table` (chosen by the key's hash). An entry is a plain value's blob
  (``bytes``: 8-byte big-endian version, then the value) or a
  :class:`~meshcache.store.values.TypedValue`. ``len()``, ``in``, iteration and
  :meth:`Keyspace.peek` cover the keys of every table; :attr:`Keyspace.count` is how many.
* **Tables.** CPython grows a dict by rehashing all its entries in one call (an
  ``OrderedDict`` also rebuilds its node index): 60 ms at 350k keys, 140 ms at 700k, twice
  that at 1.4M, all of it holding the node's loop. So a namespace starts with one table and,
  once it holds more than :data:`SPLIT_AT` keys, splits into :data:`TABLES` tables, a key's
  table being its hash modulo :data:`TABLES` (a prime, so a table's keys still spread over all
  its slots, which the hash's low bits choose): no single resize then moves more than about
  ``keys / TABLES * 2`` entries (under 10 ms at 2M keys a namespace). It stays split until
  :meth:`Keyspace.flush`. ``bytes`` cache their hash, but the call and the modulo still
  cost about 750 instructions of CPython 3.11 an op (1.5% of a request), so while there is
  one table the hot paths take it directly (:attr:`Keyspace.single`) and pay nothing.
* **LRU across tables.** With one table eviction takes the exact least recently used key.
  Split, it takes the least recently used key of the larger of two neighbouring tables, a
  cursor walking the tables: keys hash evenly, so every table holds a random sample of the
  namespace in its own exact LRU order, and the larger of two has kept more of its old keys.
  The victims are among the oldest keys, not exactly the oldest: under uniform churn the
  median victim is among the oldest 2% of the keys, the 99th percentile among the oldest 13%
  (tests/store/test_tables.py; Redis's sampled LRU, the oldest of 5 random keys, takes one of
  the oldest 17% on average), and the tables stay within a few percent of each other's size.
* :attr:`Keyspace.expires` maps key → absolute expiry (Unix seconds) for keys that have one;
  :attr:`Keyspace.heap` holds ``(expires_at, key)`` for active expiry, invalidated lazily
  (an item is live only while ``expires[key] == expires_at``) and compacted when it grows past
  twice the number of keys with an expiry.
* :attr:`Keyspace.tombstones` maps key → version of its delete, only when tombstones are on
  (``tombstone_grace_s`` is not ``None``); it is a side table, so a plain value costs the same
  with or without it. A tombstone may outlive a newer local write of its key (writes do not
  look at the table, to keep the SET fast path as it is); such a stale tombstone is ignored
  (:meth:`Keyspace.tombstone`) and purged with the rest. :attr:`Keyspace.tomb_used` is exactly
  the sum of :func:`~meshcache.store.sizes.tombstone_cost` over the table; tombstones are not in
  :attr:`Keyspace.used` (they are never evicted to make room for values, and values are never
  evicted to make room for them: they have their own bound, ``max_tombstones``).
* :attr:`Keyspace.used` is exactly the sum of :meth:`Keyspace.full_cost` over the keys after
  every public method returns, and a write that raises ``TOO_LARGE`` or ``OUT_OF_MEMORY``
  changes nothing.
* No call removes more than :data:`EVICT_SLICE` keys (expired or evicted) at once, so none holds
  the node's loop for long. A namespace within its bounds stays within them after a write
  (a write evicts what it adds); one shrunk far below what it holds is evicted down by
  :meth:`Keyspace.evict_to_fit` in slices — :meth:`Store.expire_cycle` does the rest — and
  meanwhile may stay over its new bounds.
"""

from __future__ import annotations

import heapq
import math
import random
import struct
import sys
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from itertools import chain, islice
from typing import Any, Final, TypeVar

from meshcache.errors import OutOfMemoryError, TooLargeError, WrongTypeError
from meshcache.hlc import HLC, LOGICAL_BITS
from meshcache.store import sizes
from meshcache.store.policy import NamespacePolicy
from meshcache.store.values import TypedValue

T = TypeVar("T", bound=TypedValue)

pack_version: Final = struct.Struct(">Q").pack
unpack_version: Final = struct.Struct(">Q").unpack_from

#: Redis's LFU constants: new keys start at 5 so they are not the first to go; the counter is
#: logarithmic (factor 10: ~1M hits saturate 255).
LFU_INIT: Final = 5
LFU_LOG_FACTOR: Final = 10
#: Heap entries are compacted away when the heap exceeds 2x the keys with an expiry plus this.
HEAP_SLACK: Final = 64

EVICTION_REASONS: Final = ("max_bytes", "max_items")
#: Keys one call may evict or expire at most (about a millisecond of work): the rest of a big
#: shrink is left to the next calls and to :meth:`Store.expire_cycle`.
EVICT_SLICE: Final = 1000
#: A namespace splits its keys into this many tables once it holds more than :data:`SPLIT_AT`
#: (a prime: see the module docstring).
TABLES: Final = 61
#: Keys a namespace holds in one table at most (its largest resize: 5,461 entries, ~1 ms; the
#: split itself moves 8,192: 3-4 ms).
SPLIT_AT: Final = 8192
Table = OrderedDict[bytes, "bytes | TypedValue"]


def blob_version(blob: bytes) -> int:
    """The version stored in a plain value's blob."""
    version: int = unpack_version(blob)[0]
    return version


def entry_size(key: bytes, entry: bytes | TypedValue) -> int:
    """The cost of ``entry`` under ``key`` without expiry and LFU extras."""
    if type(entry) is bytes:
        return sizes.plain_cost(len(key), len(entry))
    assert isinstance(entry, TypedValue)
    return sizes.typed_cost(len(key), entry.size)


class TypedWrite:
    """A typed write in progress (see :meth:`Keyspace.begin_write`)."""

    __slots__ = ("created", "key", "obj", "old_full", "snapshot")

    def __init__(
        self,
        key: bytes,
        obj: TypedValue,
        created: bool,
        old_full: int,
        snapshot: TypedValue | None,
    ) -> None:
        self.key = key
        self.obj = obj
        self.created = created
        self.old_full = old_full
        self.snapshot = snapshot


class Keyspace:
    """The keys of one namespace under one :class:`NamespacePolicy`."""

    __slots__ = (
        "all_tables",
        "clock",
        "count",
        "default_ttl",
        "evict_turn",
        "eviction",
        "evictions",
        "expirations",
        "expires",
        "heap",
        "hits",
        "hlc",
        "key_extra",
        "lfu",
        "lfu_decay_s",
        "lfu_sample",
        "max_bytes",
        "max_items",
        "max_value_bytes",
        "misses",
        "name",
        "new_version",
        "plain_fast",
        "policy",
        "rng",
        "set_order",
        "single",
        "split_at",
        "tables",
        "tomb_grace_ms",
        "tomb_heap",
        "tomb_max",
        "tomb_used",
        "tombstones",
        "tombstones_dropped",
        "used",
    )

    def __init__(
        self,
        name: str,
        policy: NamespacePolicy,
        *,
        clock: Callable[[], float],
        hlc: HLC,
        rng: random.Random,
        lfu_decay_s: float = 60.0,
        lfu_sample: int = 16,
        tombstone_grace_s: float | None = None,
        max_tombstones: int = 1_000_000,
        max_value_bytes: int | None = None,
    ) -> None:
        self.name = name
        #: The largest value an op that grows a value in place (APPEND) may leave; None: only
        #: the namespace's bounds apply. Requests are checked against it before they arrive.
        self.max_value_bytes = max_value_bytes
        self.clock = clock
        self.hlc = hlc
        self.new_version = hlc.now
        self.rng = rng
        #: The members in bytewise order of the set ``SPOP`` popped from last, for the next
        #: pop: ``(the set, weakly; its version then; the members)``. Any write gives the set a
        #: new version, so a write other than ``SPOP`` leaves this stale; one set at most.
        self.set_order: tuple[weakref.ref[TypedValue], int, list[bytes]] | None = None
        self.lfu_decay_s = lfu_decay_s
        self.lfu_sample = lfu_sample
        #: Every table, made now, used or not: a node freezes what start-up built
        #: (``gc.freeze``), so full collections never traverse tables made with the namespace
        #: (tables made later, a million keys in them, cost every full collection 150-350 ms).
        self.all_tables: tuple[Table, ...] = tuple(OrderedDict() for _ in range(TABLES))
        #: The only table while there is one, else None (the hot paths' shortcut).
        self.single: Table | None = self.all_tables[0]
        #: The tables in use: the first one only, or all of them once split.
        self.tables: list[Table] = [self.all_tables[0]]
        #: Keys held (in all tables).
        self.count = 0
        #: :attr:`count` beyond which the keys are split (never again once split).
        self.split_at = SPLIT_AT
        #: Where eviction's cursor over the tables is (see the module docstring).
        self.evict_turn = 0
        self.expires: dict[bytes, float] = {}
        self.heap: list[tuple[float, bytes]] = []
        self.lfu: dict[bytes, int] | None = None
        self.key_extra = 0
        self.used = 0
        self.hits = 0
        self.misses = 0
        self.expirations = 0
        self.evictions: dict[str, int] = dict.fromkeys(EVICTION_REASONS, 0)
        self.policy = policy
        self.eviction = policy.eviction
        self.max_bytes = policy.max_bytes
        self.max_items = policy.max_items
        self.default_ttl = policy.default_ttl
        self.plain_fast = False
        self.tombstones: dict[bytes, int] = {}
        self.tomb_heap: list[tuple[int, bytes]] = []
        self.tomb_grace_ms: int | None = (
            None if tombstone_grace_s is None else int(tombstone_grace_s * 1000)
        )
        self.tomb_max = max_tombstones
        self.tomb_used = 0
        #: Tombstones dropped before their grace period because of ``max_tombstones``.
        self.tombstones_dropped = 0
        self.apply_policy(policy)

    # ----------------------------------------------------------------------------- policy

    def apply_policy(self, policy: NamespacePolicy) -> None:
        """Switch to ``policy`` now: LFU counters appear or go, and the keyspace is evicted down
        to the new bounds at once (except under ``none``, which never evicts: it then refuses
        growing writes until deletes or expiry bring it under)."""
        self.policy = policy
        self.eviction = policy.eviction
        self.max_bytes = policy.max_bytes
        self.max_items = policy.max_items
        self.default_ttl = policy.default_ttl
        #: True when plain GET/SET need no bounds, default TTL or LFU work (their fast path).
        self.plain_fast = (
            policy.eviction != "lfu"
            and policy.max_bytes is None
            and policy.max_items is None
            and policy.default_ttl is None
        )
        if policy.eviction == "lfu" and self.lfu is None:
            fresh = self.lfu_fresh()
            self.lfu = dict.fromkeys(self, fresh)
            self.key_extra = sizes.LFU_COST
            self.used += sizes.LFU_COST * self.count
        elif policy.eviction != "lfu" and self.lfu is not None:
            self.lfu = None
            self.key_extra = 0
            self.used -= sizes.LFU_COST * self.count
        if self.over_limits():
            if self.eviction == "none":
                self.purge_expired(budget=EVICT_SLICE)
            else:
                self.evict_to_fit(None)

    # ----------------------------------------------------------------------------- tables

    def table(self, key: bytes) -> Table:
        """The table ``key`` lives in (or would). The ops' hot paths inline it."""
        table = self.single
        if table is None:
            table = self.tables[hash(key) % TABLES]
        return table

    def __len__(self) -> int:
        return self.count

    def __contains__(self, key: bytes) -> bool:
        """Whether ``key`` is held, expired or not (no side effect)."""
        return key in self.table(key)

    def __iter__(self) -> Iterator[bytes]:
        """Every key held, expired ones included, table by table, each least recently used
        first (with one table: the exact LRU order). Do not change the keys meanwhile."""
        return chain.from_iterable(self.tables)

    def items(self) -> Iterator[tuple[bytes, bytes | TypedValue]]:
        """``(key, entry)`` in :meth:`__iter__`'s order."""
        return chain.from_iterable(table.items() for table in self.tables)

    def peek(self, key: bytes) -> bytes | TypedValue | None:
        """The entry under ``key``, expired or not, with no side effect (no hit, no access)."""
        return self.table(key).get(key)

    def key_parts(self) -> Iterator[list[bytes]]:
        """The keys held, as one list per table, each copied when it is reached (a caller
        that snapshots a big namespace checkpoints between tables: one copy of all keys at
        1M keys holds the loop for 20 ms and more). A key held from the first list to the
        last is in exactly one of them; one written or removed meanwhile may be or not."""
        # The tables as they are now: a split meanwhile replaces the list (the one table it
        # splits was then copied already, as the only one), a flush empties the namespace.
        for table in list(self.tables):
            # The dict's own table, not the OrderedDict's links: the order does not matter.
            yield list(dict.keys(table))

    def item_parts(self) -> Iterator[tuple[list[bytes], list[bytes | TypedValue]]]:
        """:meth:`key_parts` with each key's entry as held when its table was copied: the
        keys and, in the same order, their entries, expired ones included."""
        for table in list(self.tables):
            yield list(dict.keys(table)), list(dict.values(table))

    def split(self) -> None:
        """Spread the keys of the one table over :data:`TABLES` tables, keeping each table's
        LRU order."""
        assert len(self.tables) == 1, "split already"
        tables = self.all_tables
        first = tables[0]
        moved = list(first.items())
        first.clear()
        for key, entry in moved:
            tables[hash(key) % TABLES][key] = entry
        self.tables = list(tables)
        self.single = None
        self.split_at = sys.maxsize

    # ----------------------------------------------------------------------------- lookup

    def live(self, key: bytes) -> bytes | TypedValue | None:
        """The entry under ``key`` unless missing or expired (an expired one is removed)."""
        table = self.single
        if table is None:
            table = self.tables[hash(key) % TABLES]
        entry = table.get(key)
        if entry is not None and self.expires:
            expires_at = self.expires.get(key)
            if expires_at is not None and expires_at <= self.clock():
                self.expire(key)
                return None
        return entry

    def read(self, key: bytes) -> bytes | TypedValue | None:
        """:meth:`live`, counted as a hit or a miss; a hit is an access for LRU/LFU."""
        table = self.single
        if table is None:
            table = self.tables[hash(key) % TABLES]
        entry = table.get(key)
        if entry is None:
            self.misses += 1
            return None
        if self.expires:
            expires_at = self.expires.get(key)
            if expires_at is not None and expires_at <= self.clock():
                self.expire(key)
                self.misses += 1
                return None
        self.hits += 1
        table.move_to_end(key)
        if self.lfu is not None:
            self.lfu_hit(key)
        return entry

    def read_typed(self, key: bytes, cls: type[T]) -> T | None:
        """:meth:`read` for ops on a typed value: ``WRONGTYPE`` if the key holds another type."""
        entry = self.read(key)
        if entry is None or type(entry) is cls:
            return entry
        raise wrong_type(key, entry, cls.kind)

    def live_typed(self, key: bytes, cls: type[T]) -> T | None:
        """:meth:`live` for writes to a typed value: ``WRONGTYPE`` if the key holds another
        type; no hit/miss counted."""
        entry = self.live(key)
        if entry is None or type(entry) is cls:
            return entry
        raise wrong_type(key, entry, cls.kind)

    def touch(self, key: bytes) -> None:
        """Record an access of a live key."""
        table = self.single
        if table is None:
            table = self.tables[hash(key) % TABLES]
        table.move_to_end(key)
        if self.lfu is not None:
            self.lfu_hit(key)

    def full_cost(self, key: bytes, entry: bytes | TypedValue) -> int:
        """What ``key`` costs now, with its expiry and LFU extras."""
        cost = entry_size(key, entry) + self.key_extra
        if key in self.expires:
            cost += sizes.EXPIRY_COST
        return cost

    def over_limits(self) -> bool:
        mb = self.max_bytes
        mi = self.max_items
        return (mb is not None and self.used > mb) or (mi is not None and self.count > mi)

    # ----------------------------------------------------------------------------- removal

    def remove(self, key: bytes) -> bytes | TypedValue | None:
        """Remove ``key`` with its expiry and counters; return the entry it held."""
        table = self.single
        if table is None:
            table = self.tables[hash(key) % TABLES]
        entry = table.pop(key, None)
        if entry is None:
            return None
        self.count -= 1
        cost = entry_size(key, entry) + self.key_extra
        if self.expires and self.expires.pop(key, None) is not None:
            cost += sizes.EXPIRY_COST
        if self.lfu is not None:
            del self.lfu[key]
        self.used -= cost
        return entry

    def expire(self, key: bytes) -> None:
        """Remove ``key`` because its time is up (no tombstone: every replica expires it)."""
        if self.remove(key) is not None:
            self.expirations += 1

    def delete(self, key: bytes) -> bytes | TypedValue | None:
        """Remove ``key`` because a write deleted it: :meth:`remove`, then a tombstone with a
        new version when tombstones are on (even if the key was missing here: a replica may
        hold it). Returns the entry it held."""
        entry = self.remove(key)
        if self.tomb_grace_ms is not None:
            self.bury(key, self.new_version())
        return entry

    def flush(self) -> None:
        """Remove every key and every tombstone (FLUSH is not replicated by tombstones)."""
        self.tombstones.clear()
        self.tomb_heap.clear()
        self.tomb_used = 0
        for table in self.tables:
            table.clear()
        self.single = self.all_tables[0]
        self.tables = [self.single]
        self.count = 0
        self.split_at = SPLIT_AT
        self.expires.clear()
        self.heap.clear()
        self.set_order = None
        if self.lfu is not None:
            self.lfu.clear()
        self.used = 0

    # ----------------------------------------------------------------------------- expiry

    def set_expiry(self, key: bytes, expires_at: float | None) -> None:
        """Give a live ``key`` an absolute expiry, or none; accounting included."""
        had = key in self.expires
        self.set_expiry_raw(key, expires_at)
        if expires_at is None:
            if had:
                self.used -= sizes.EXPIRY_COST
        elif not had:
            self.used += sizes.EXPIRY_COST

    def set_expiry_raw(self, key: bytes, expires_at: float | None) -> None:
        """Like :meth:`set_expiry` without touching :attr:`used` (the caller accounts)."""
        if expires_at is None:
            self.expires.pop(key, None)
            return
        self.expires[key] = expires_at
        heap = self.heap
        heapq.heappush(heap, (expires_at, key))
        if len(heap) > 2 * len(self.expires) + HEAP_SLACK:
            self.compact_heap()

    def compact_heap(self) -> None:
        """Drop stale heap items: rebuild from :attr:`expires`."""
        self.heap = [(expires_at, key) for key, expires_at in self.expires.items()]
        heapq.heapify(self.heap)

    def expiry_for_write(self, ttl: float | None) -> float | None:
        """Absolute expiry of a write with ``ttl`` seconds, or the namespace default."""
        if ttl is None:
            ttl = self.default_ttl
            if ttl is None:
                return None
        if ttl == math.inf:
            return None
        return self.clock() + ttl

    def purge_expired(self, now: float | None = None, budget: int | None = None) -> int:
        """Remove expired keys, soonest-expired first, up to ``budget``; return how many."""
        if not self.heap:
            return 0
        if now is None:
            now = self.clock()
        heap = self.heap
        expires = self.expires
        removed = 0
        while heap and heap[0][0] <= now and (budget is None or removed < budget):
            expires_at, key = heapq.heappop(heap)
            if expires.get(key) == expires_at:
                self.expire(key)
                removed += 1
        if len(heap) > 2 * len(expires) + HEAP_SLACK:
            self.compact_heap()
        return removed

    # ----------------------------------------------------------------------------- tombstones

    def tombstone_deadline_ms(self, version: int) -> int:
        """When a tombstone of ``version`` may be purged: its wall time plus the grace period.

        Derived from the version, not from when this node learned of the delete, so every
        replica purges it at the same moment (up to clock skew) and anti-entropy does not ship
        a tombstone back to a replica that just purged it.
        """
        assert self.tomb_grace_ms is not None
        return (version >> LOGICAL_BITS) + self.tomb_grace_ms

    def bury(self, key: bytes, version: int) -> bool:
        """Record that ``key`` was deleted at ``version`` (tombstones on; the caller removed the
        entry and checked last-writer-wins). Not recorded if the grace period is already over;
        an older tombstone of the key is replaced. Returns whether one was recorded."""
        if self.tomb_grace_ms is None:
            return False
        if self.tombstone_deadline_ms(version) <= int(self.clock() * 1000):
            self.unbury(key)
            return False
        tombs = self.tombstones
        if key not in tombs:
            self.tomb_used += sizes.tombstone_cost(len(key))
        tombs[key] = version
        heap = self.tomb_heap
        heapq.heappush(heap, (version, key))
        if len(heap) > 2 * len(tombs) + HEAP_SLACK:
            self.tomb_heap = [(v, k) for k, v in tombs.items()]
            heapq.heapify(self.tomb_heap)
        while len(tombs) > self.tomb_max:
            self._pop_oldest_tombstone()
            self.tombstones_dropped += 1
        return True

    def unbury(self, key: bytes) -> None:
        """Forget ``key``'s tombstone, if any (its heap item goes stale and is skipped)."""
        if self.tombstones.pop(key, None) is not None:
            self.tomb_used -= sizes.tombstone_cost(len(key))

    def tombstone(self, key: bytes) -> int | None:
        """The version of ``key``'s tombstone, unless missing or superseded by a live entry."""
        version = self.tombstones.get(key)
        if version is None or self.live(key) is not None:
            return None
        return version

    def _pop_oldest_tombstone(self) -> int:
        heap = self.tomb_heap
        tombs = self.tombstones
        while heap:
            version, key = heapq.heappop(heap)
            if tombs.get(key) == version:
                self.unbury(key)
                return version
        raise AssertionError("tombstone heap lost an item")  # pragma: no cover

    def purge_tombstones(self, now: float | None = None, budget: int | None = None) -> int:
        """Drop tombstones whose grace period is over, oldest first, up to ``budget``."""
        if not self.tombstones:
            return 0
        if now is None:
            now = self.clock()
        assert self.tomb_grace_ms is not None
        # A version's wall time is its high bits: compare versions against the cut-off version.
        cutoff = (int(now * 1000) - self.tomb_grace_ms + 1) << LOGICAL_BITS
        heap = self.tomb_heap
        tombs = self.tombstones
        purged = 0
        while heap and heap[0][0] < cutoff and (budget is None or purged < budget):
            version, key = heapq.heappop(heap)
            if tombs.get(key) == version:
                self.unbury(key)
                purged += 1
        return purged

    # ----------------------------------------------------------------------------- LFU

    def lfu_fresh(self) -> int:
        return (int(self.clock() // self.lfu_decay_s) << 8) | LFU_INIT

    def lfu_hit(self, key: bytes) -> None:
        """Age the key's counter by the decay periods it missed, then maybe bump it.

        The counter is logarithmic (Redis's scheme): the chance of a bump is
        ``1 / ((counter - LFU_INIT) * LFU_LOG_FACTOR + 1)``. Ageing halves it once per
        ``lfu_decay_s`` elapsed since the key's last access, lazily, so no scan is needed.
        """
        lfu = self.lfu
        assert lfu is not None
        epoch = int(self.clock() // self.lfu_decay_s)
        packed = lfu.get(key, LFU_INIT)
        counter = self._lfu_effective(packed, epoch)
        if counter < 255:
            base = counter - LFU_INIT
            if base <= 0 or self.rng.random() * (base * LFU_LOG_FACTOR + 1) < 1.0:
                counter += 1
        lfu[key] = (epoch << 8) | counter

    @staticmethod
    def _lfu_effective(packed: int, epoch: int) -> int:
        counter = packed & 255
        age = epoch - (packed >> 8)
        if age > 0:
            counter >>= age if age < 8 else 8
        return counter

    def lfu_counter(self, key: bytes) -> int | None:
        """The key's aged LFU counter now (``None`` unless the namespace is ``lfu``)."""
        if self.lfu is None or key not in self.lfu:
            return None
        return self._lfu_effective(self.lfu[key], int(self.clock() // self.lfu_decay_s))

    # ----------------------------------------------------------------------------- eviction

    def evict_to_fit(self, protect: bytes | None, budget: int = EVICT_SLICE) -> int:
        """Expire, then evict per policy, until within bounds or ``budget`` keys are gone;
        never ``protect`` (the key just written). Returns how many keys it removed (equal to
        ``budget`` when it may have stopped short). Under ``none`` nothing is evicted (the
        namespace may stay over a bound it was shrunk below until deletes or expiry bring it
        under)."""
        if self.eviction == "none" or not self.over_limits():
            return 0
        removed = self.purge_expired(budget=budget)
        mb = self.max_bytes
        mi = self.max_items
        while removed < budget:
            if mb is not None and self.used > mb:
                reason = "max_bytes"
            elif mi is not None and self.count > mi:
                reason = "max_items"
            else:
                break
            victim = self._victim(protect)
            if victim is None:
                break
            self.remove(victim)
            self.evictions[reason] += 1
            removed += 1
        return removed

    def _victim(self, protect: bytes | None) -> bytes | None:
        eviction = self.eviction
        if eviction == "ttl":
            victim = self._soonest_expiring(protect)
            if victim is not None:
                return victim
        elif eviction == "lfu":
            return self._least_frequent(protect)
        for key in self._evict_table():
            if key != protect:
                return key
        return self._any_key(protect)

    def _evict_table(self) -> Table:
        """The table to evict from next: the only one, or the larger of two neighbours at the
        cursor (see the module docstring)."""
        tables = self.tables
        n = len(tables)
        if n == 1:
            return tables[0]
        turn = self.evict_turn = (self.evict_turn + 1) % n
        first = tables[turn]
        second = tables[turn + 1 - n]  # the next one, wrapping round
        return first if len(first) >= len(second) else second

    def _any_key(self, protect: bytes | None) -> bytes | None:
        """The least recently used key of the first table holding one other than
        ``protect`` (when the table :meth:`_evict_table` chose has none)."""
        for table in self.tables:
            for key in table:
                if key != protect:
                    return key
        return None

    def _soonest_expiring(self, protect: bytes | None) -> bytes | None:
        heap = self.heap
        expires = self.expires
        skipped: tuple[float, bytes] | None = None
        victim: bytes | None = None
        while heap:
            expires_at, key = heap[0]
            if expires.get(key) != expires_at:
                heapq.heappop(heap)
            elif key == protect:
                skipped = heapq.heappop(heap)
            else:
                victim = key
                break
        if skipped is not None:
            heapq.heappush(heap, skipped)
        return victim

    def _least_frequent(self, protect: bytes | None) -> bytes | None:
        # The lowest aged counter among the lfu_sample least recently used keys of the table
        # to evict from (Redis samples at random; the LRU end is the cheap sample an
        # OrderedDict offers, and it keeps a key that is popular *now* out of reach because
        # every hit moves it to the other end).
        lfu = self.lfu
        assert lfu is not None
        epoch = int(self.clock() // self.lfu_decay_s)
        best: bytes | None = None
        best_counter = 256
        for key in islice(self._evict_table(), self.lfu_sample + 1):
            if key == protect:
                continue
            counter = self._lfu_effective(lfu[key], epoch)
            if counter < best_counter:
                best, best_counter = key, counter
        return best if best is not None else self._any_key(protect)

    # ----------------------------------------------------------------------------- writes

    def put(
        self, key: bytes, blob: bytes | TypedValue, expires_at: float | None, keep_ttl: bool
    ) -> None:
        """Store a plain blob (or a whole typed value) under ``key``, replacing any entry, with
        an absolute expiry or, when ``keep_ttl``, the one the key has.

        The caller has called :meth:`live` on ``key`` in this op. Raises ``TOO_LARGE`` when the
        key alone exceeds ``max_bytes``, ``OUT_OF_MEMORY`` when it does not fit under ``none``;
        either way nothing changed. Otherwise evicts other keys as the policy says.
        """
        table = self.single
        if table is None:
            table = self.tables[hash(key) % TABLES]
        old = table.get(key)
        has_expiry = (key in self.expires) if keep_ttl else expires_at is not None
        new_full = (
            sizes.plain_cost(len(key), len(blob)) if type(blob) is bytes else entry_size(key, blob)
        ) + self.key_extra
        if has_expiry:
            new_full += sizes.EXPIRY_COST
        delta = new_full if old is None else new_full - self.full_cost(key, old)
        if self.max_bytes is not None or self.max_items is not None:
            self.check_room(key, new_full, delta, old is None)
            if old is not None and key not in table:
                # check_room purged expired keys under ``none``, this one among them: it is
                # a new key after all, and must fit as one.
                old, delta = None, new_full
                self.check_room(key, new_full, delta, True)
        table[key] = blob
        self.used += delta
        if old is None:
            self.count += 1
            if self.lfu is not None:
                self.lfu[key] = self.lfu_fresh()
        else:
            table.move_to_end(key)
            if self.lfu is not None:
                self.lfu_hit(key)
        if not keep_ttl:
            self.set_expiry_raw(key, expires_at)
        if self.over_limits():
            self.evict_to_fit(key)
        if self.count > self.split_at:
            self.split()

    def check_room(self, key: bytes, new_full: int, delta: int, new_key: bool) -> None:
        """Refuse a write that cannot fit: ``TOO_LARGE`` if the key alone exceeds ``max_bytes``;
        under ``none``, ``OUT_OF_MEMORY`` if it would push the namespace over a bound."""
        mb = self.max_bytes
        if mb is not None and new_full > mb:
            raise TooLargeError(
                message=f"the entry needs {new_full} bytes; namespace {self.name!r} holds at "
                f"most {mb}"
            )
        if self.eviction == "none" and self._would_overflow(delta, new_key):
            self.purge_expired()
            if self._would_overflow(delta, new_key):
                raise self.oom_error()

    def _would_overflow(self, delta: int, new_key: bool) -> bool:
        mb = self.max_bytes
        mi = self.max_items
        return (mb is not None and delta > 0 and self.used + delta > mb) or (
            new_key and mi is not None and self.count >= mi
        )

    def oom_error(self) -> OutOfMemoryError:
        return OutOfMemoryError(
            message=f"namespace {self.name!r} is full ({self.used} bytes, {self.count} "
            f"keys) and its eviction policy is none"
        )

    def begin_write(self, key: bytes, cls: type[T], args: list[Any]) -> TypedWrite:
        """Start a write that may grow the typed value under ``key`` (created if missing).

        ``args`` are the op's arguments after the key: their sizes bound the growth, and when
        that bound could overflow ``max_bytes`` the value is copied first so
        :meth:`end_write` can put it back. Raises ``WRONGTYPE`` or (``none``, new key, full)
        ``OUT_OF_MEMORY`` before anything changed.
        """
        entry = self.live(key)
        if entry is None:
            if (
                self.eviction == "none"
                and self.max_items is not None
                and self.count >= self.max_items
            ):
                self.purge_expired()
                if self.count >= self.max_items:
                    raise self.oom_error()
            obj: TypedValue = cls()
            created = True
            old_full = 0
        elif type(entry) is cls:
            obj = entry
            created = False
            old_full = self.full_cost(key, obj)
        else:
            raise wrong_type(key, entry, cls.kind)
        snapshot: TypedValue | None = None
        mb = self.max_bytes
        if mb is not None:
            growth = sum(sizes.max_item_cost(len(a) if type(a) is bytes else 24) for a in args)
            if created:
                # The largest base cost of any type, plus room for expiry and LFU extras.
                growth += sizes.typed_cost(len(key), sizes.LIST_BASE) + 2 * sizes.EXPIRY_COST
            if self.used + growth > mb:
                snapshot = obj if created else obj.copy()
        return TypedWrite(key, obj, created, old_full, snapshot)

    def end_write(self, write: TypedWrite, changed: bool) -> None:
        """Finish a typed write: stamp a version, account, delete an emptied value, enforce
        the bounds (rolling back and raising ``TOO_LARGE``/``OUT_OF_MEMORY`` if the value no
        longer fits), evict others per policy."""
        key = write.key
        obj = write.obj
        if not changed:
            if not write.created:
                self.touch(key)
            return
        obj.version = self.new_version()
        if not obj:
            if not write.created:
                self.delete(key)
            return
        if write.created:
            self.table(key)[key] = obj
            self.count += 1
            if self.lfu is not None:
                self.lfu[key] = self.lfu_fresh()
            expires_at = self.expiry_for_write(None)
            self.set_expiry_raw(key, expires_at)
        else:
            self.touch(key)
        new_full = self.full_cost(key, obj)
        delta = new_full - write.old_full
        self.used += delta
        if write.snapshot is not None:
            mb = self.max_bytes
            assert mb is not None
            if new_full > mb:
                self._rollback(write)
                raise TooLargeError(
                    message=f"the {obj.kind} would need {new_full} bytes; namespace "
                    f"{self.name!r} holds at most {mb}"
                )
            if self.eviction == "none" and delta > 0 and self.used > mb:
                self.purge_expired()
                if self.used > mb:
                    self._rollback(write)
                    raise self.oom_error()
        if self.over_limits():
            self.evict_to_fit(key)
        if self.count > self.split_at:
            self.split()

    def _rollback(self, write: TypedWrite) -> None:
        key = write.key
        if write.created:
            self.remove(key)
            return
        snapshot = write.snapshot
        assert snapshot is not None
        self.table(key)[key] = snapshot
        self.used += snapshot.size - write.obj.size

    def shrunk(self, key: bytes, obj: TypedValue, old_size: int) -> None:
        """Finish a write that removed items from a live typed value (``obj.size`` already
        updated from ``old_size``): version, accounting, delete when empty."""
        if not obj:
            self.delete(key)
            # remove() subtracted the shrunk size; the items removed were still counted.
            self.used -= old_size - obj.size
            return
        obj.version = self.new_version()
        self.used += obj.size - old_size
        self.touch(key)


def wrong_type(key: bytes, entry: bytes | TypedValue, wanted: str) -> WrongTypeError:
    """The error for an op on ``key`` that holds another type than ``wanted``."""
    held = "plain value" if type(entry) is bytes else getattr(entry, "kind", "?")
    return WrongTypeError(
        message=f"key {key[:64]!r} holds a {held}; the op needs a {wanted}",
    )


__all__ = [
    "EVICTION_REASONS",
    "EVICT_SLICE",
    "SPLIT_AT",
    "TABLES",
    "Keyspace",
    "TypedWrite",
    "blob_version",
    "entry_size",
    "pack_version",
    "wrong_type",
]
