"""The local storage engine: namespaces of keys, each under its own policy.

:class:`Store` is what the node calls for every data op. It is synchronous, single-threaded
(the node's trio thread owns it) and free of I/O; time comes from the injected ``clock`` and
versions from the injected :class:`~meshcache.hlc.HLC`.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import compress
from typing import Any, cast

from meshcache.errors import (
    CommandError,
    ConfigError,
    ErrorCode,
    NoSuchNamespaceError,
    UnknownOpError,
)
from meshcache.hlc import HLC
from meshcache.store import ops_plain, ops_typed, sizes
from meshcache.store.entry import EntryView, contents_size, plain_tie_break, tie_break
from meshcache.store.keyspace import (
    EVICT_SLICE,
    TABLES,
    Keyspace,
    blob_version,
    pack_version,
    unpack_version,
)
from meshcache.store.policy import DEFAULT_POLICY, NamespacePolicy
from meshcache.store.values import PLAIN, TYPES, TypedValue

DEFAULT_NAMESPACE = "default"

Handler = Callable[[Keyspace, list[Any]], Any]

#: Every op the store executes (all of ``meshcache.wire.ops.OPS`` but PING and INFO).
HANDLERS: dict[str, Handler] = {**ops_plain.HANDLERS, **ops_typed.HANDLERS}


@dataclass(frozen=True, slots=True)
class NamespaceStats:
    """A snapshot of one namespace's counters.

    ``bytes`` is the accounted size (``meshcache/store/sizes.py``); ``evictions`` counts keys
    evicted by the bound that forced them out (``max_bytes`` or ``max_items``); ``expirations``
    counts keys removed because their expiry passed (lazily or actively).
    """

    items: int
    bytes: int
    hits: int
    misses: int
    evictions: dict[str, int]
    expirations: int
    policy: NamespacePolicy
    keys_with_ttl: int = 0
    #: Tombstones held (deleted keys remembered for replication) and their accounted bytes,
    #: which are not in ``bytes``; tombstones dropped early because of ``max_tombstones``.
    tombstones: int = 0
    tombstone_bytes: int = 0
    tombstones_dropped: int = 0

    @property
    def evictions_total(self) -> int:
        return sum(self.evictions.values())


@dataclass(slots=True)
class BlobsApplied:
    """What :meth:`Store.apply_blobs` did with a batch: how many blobs it applied, how many
    lost last-writer-wins (``stale``), refusals by error code, and the positions of blobs it
    left alone because their versions are beyond the clock limit it was given (``ahead``: the
    caller clamps those one by one)."""

    applied: int = 0
    stale: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    ahead: list[int] = field(default_factory=list)


class Store:
    """Namespaces → keys → entries, with eviction, expiry and byte accounting.

    Args:
        clock: Unix time in seconds (injected; the node passes ``time.time``).
        hlc: the node's clock for entry versions.
        policies: namespaces to create; ``default`` is added with the default policy unless
            given.
        rng: randomness for LFU counter increments (seeded for repeatable tests).
        lfu_decay_s: an LFU counter halves once per this many seconds without access.
        lfu_sample: how many least recently used keys LFU eviction compares.
        tombstone_grace_s: when not ``None``, deletes leave a tombstone for this long
            (counted from the delete's version) so that last-writer-wins across replicas
            sees them; ``None`` (the default, a single node) keeps no tombstones.
        max_tombstones: per namespace; beyond it the oldest tombstones are dropped early and
            counted in ``NamespaceStats.tombstones_dropped``.
        max_value_bytes: the largest value APPEND may leave (``TOO_LARGE`` beyond it); None:
            only the namespaces' bounds apply.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        hlc: HLC,
        policies: Mapping[str, NamespacePolicy] | None = None,
        rng: random.Random | None = None,
        lfu_decay_s: float = 60.0,
        lfu_sample: int = 16,
        tombstone_grace_s: float | None = None,
        max_tombstones: int = 1_000_000,
        max_value_bytes: int | None = None,
    ) -> None:
        if lfu_decay_s <= 0 or lfu_sample < 1:
            raise ConfigError("lfu_decay_s must be > 0 and lfu_sample >= 1")
        if (tombstone_grace_s is not None and not tombstone_grace_s > 0) or max_tombstones < 1:
            raise ConfigError("tombstone_grace_s must be > 0 and max_tombstones >= 1")
        self._tombstone_grace_s = tombstone_grace_s
        self._max_tombstones = max_tombstones
        self._max_value_bytes = max_value_bytes
        self._clock = clock
        self._hlc = hlc
        self._rng = rng if rng is not None else random.Random(0)
        self._lfu_decay_s = lfu_decay_s
        self._lfu_sample = lfu_sample
        self._spaces: dict[str, Keyspace] = {}
        # Namespace → the greatest version an earlier incarnation of its name may have written:
        # replicated records at or below it are discarded (counted in ``incarnation_discarded``).
        self._floors: dict[str, int] = {}
        #: Replicated records discarded per namespace as an earlier incarnation's.
        self.incarnation_discarded: Counter[str] = Counter()
        self._expire_turn = 0
        wanted = dict(policies or {})
        wanted.setdefault(DEFAULT_NAMESPACE, DEFAULT_POLICY)
        for name, policy in wanted.items():
            self.set_policy(name, policy)

    # --------------------------------------------------------------------------- hot path

    def execute(self, namespace: str, op: str, args: list[Any]) -> Any:
        """Run one data op of docs/protocol.md on ``namespace`` and return its result.

        ``args`` must come from ``meshcache.wire.ops.normalize_args``. Raises a
        ``CommandError`` subclass: ``NO_SUCH_NAMESPACE``, ``UNKNOWN_OP`` (PING and INFO are the
        node's), or the op's own errors; an op that raises changed nothing.
        """
        ks = self._spaces.get(namespace)
        if ks is None:
            raise NoSuchNamespaceError(message=f"no namespace {namespace!r}")
        handler = HANDLERS.get(op)
        if handler is None:
            raise UnknownOpError(message=f"the store does not execute {op!r}")
        return handler(ks, args)

    # --------------------------------------------------------------------------- namespaces

    def set_policy(self, name: str, policy: NamespacePolicy) -> None:
        """Create namespace ``name`` or change its policy live (eviction down to new bounds
        happens now). ``ConfigError`` if the policy is invalid."""
        policy.validate()
        if not name:
            raise ConfigError("a namespace needs a name")
        ks = self._spaces.get(name)
        if ks is None:
            self._spaces[name] = Keyspace(
                name,
                policy,
                clock=self._clock,
                hlc=self._hlc,
                rng=self._rng,
                lfu_decay_s=self._lfu_decay_s,
                lfu_sample=self._lfu_sample,
                tombstone_grace_s=self._tombstone_grace_s,
                max_tombstones=self._max_tombstones,
                max_value_bytes=self._max_value_bytes,
            )
        else:
            ks.apply_policy(policy)

    @property
    def last_version(self) -> int:
        """The greatest version this store's clock issued or observed so far: every write it
        applied is at most this, every write it applies afterwards above it."""
        return self._hlc.last

    def policy(self, name: str) -> NamespacePolicy:
        return self._space(name).policy

    def drop_namespace(self, name: str) -> None:
        """Delete a namespace and its keys. ``default`` cannot be dropped (``ConfigError``)."""
        if name == DEFAULT_NAMESPACE:
            raise ConfigError("the default namespace cannot be dropped")
        if self._spaces.pop(name, None) is None:
            raise NoSuchNamespaceError(message=f"no namespace {name!r}")
        self._floors.pop(name, None)

    def set_floor(self, name: str, floor: int) -> None:
        """Discard from now on every replicated record of namespace ``name`` (applied with
        :meth:`apply_entry`, :meth:`apply_plain`, :meth:`apply_blobs` or
        :meth:`apply_tombstone`) whose version is at or below ``floor``: it belongs to an
        earlier incarnation of the name. The clock observes ``floor``, so every version this
        node issues afterwards is above it. A floor of 0 discards nothing."""
        self._space(name)
        if floor:
            self._hlc.observe(floor)
            self._floors[name] = floor
        else:
            self._floors.pop(name, None)

    def floor(self, name: str) -> int:
        """Namespace ``name``'s floor (:meth:`set_floor`); 0 when it has none."""
        return self._floors.get(name, 0)

    def version_now(self) -> int:
        """A new version from this store's clock: above every version it issued or applied."""
        return self._hlc.now()

    def _below_floor(self, namespace: str, version: int) -> bool:
        floor = self._floors.get(namespace, 0)
        if version > floor:
            return False
        self._space(namespace)  # an unknown namespace is refused, not discarded
        self.incarnation_discarded[namespace] += 1
        return True

    def namespace_names(self) -> list[str]:
        return sorted(self._spaces)

    def stats(self) -> dict[str, NamespaceStats]:
        return {
            name: NamespaceStats(
                items=ks.count,
                bytes=ks.used,
                hits=ks.hits,
                misses=ks.misses,
                evictions=dict(ks.evictions),
                expirations=ks.expirations,
                policy=ks.policy,
                keys_with_ttl=len(ks.expires),
                tombstones=len(ks.tombstones),
                tombstone_bytes=ks.tomb_used,
                tombstones_dropped=ks.tombstones_dropped,
            )
            for name, ks in sorted(self._spaces.items())
        }

    # --------------------------------------------------------------------------- expiry

    def expire_cycle(self, now: float | None = None, budget: int = 1000) -> int:
        """Remove up to ``budget`` expired keys, soonest-expired first in each namespace.

        Costs O(removed · log n): expired keys are found on per-namespace heaps, never by a
        scan. What is left of the budget then purges tombstones whose grace period is over,
        then evicts namespaces still over their bounds (a shrunk policy is applied in slices).
        Returns how many keys and tombstones were removed; the node calls it every 100 ms, and
        again at once while it returns ``budget``.
        """
        if now is None:
            now = self._clock()
        spaces = list(self._spaces.values())
        # Start at a different namespace each cycle so one busy namespace cannot starve the
        # others of the budget.
        self._expire_turn = start = (self._expire_turn + 1) % len(spaces)
        removed = 0
        for ks in spaces[start:] + spaces[:start]:
            if removed >= budget:
                break
            removed += ks.purge_expired(now, budget - removed)
        for ks in spaces[start:] + spaces[:start]:
            if removed >= budget:
                break
            removed += ks.purge_tombstones(now, budget - removed)
        for ks in spaces[start:] + spaces[:start]:
            if removed >= budget:
                break
            removed += ks.evict_to_fit(None, budget - removed)
        return removed

    # --------------------------------------------------------------------------- replication

    def get_entry(self, namespace: str, key: bytes) -> EntryView | None:
        """A copy of ``key``'s live entry, or ``None`` if missing or expired."""
        ks = self._space(namespace)
        entry = ks.live(key)
        if entry is None:
            return None
        expires_at = ks.expires.get(key)
        if type(entry) is bytes:
            return EntryView(PLAIN, entry[sizes.VERSION_HEADER :], expires_at, blob_version(entry))
        assert isinstance(entry, TypedValue)
        return EntryView(entry.kind, entry.contents(), expires_at, entry.version)

    def entry_facts(self, namespace: str, key: bytes) -> tuple[int, int, int] | None:
        """``(version, contents size, tie-break)`` of ``key``'s live entry, or ``None`` if
        missing or expired: what replicas compare of it (:func:`contents_size`,
        :func:`tie_break`), without copying it out as :meth:`get_entry` does. An anti-entropy
        scan asks this of every key it holds."""
        ks = self._space(namespace)
        entry = ks.live(key)
        if entry is None:
            return None
        expires_at = ks.expires.get(key) if ks.expires else None
        if type(entry) is bytes:
            return (
                blob_version(entry),
                len(entry) - sizes.VERSION_HEADER,
                plain_tie_break(memoryview(entry)[sizes.VERSION_HEADER :], expires_at),
            )
        assert isinstance(entry, TypedValue)
        contents = entry.contents()
        return entry.version, contents_size(contents), tie_break(entry.kind, contents, expires_at)

    def entry_wire(self, namespace: str, key: bytes) -> list[Any] | None:
        """``get_entry(namespace, key).to_wire()`` without the :class:`EntryView` in between
        (a hand-off sends every key it holds this way), or ``None``."""
        ks = self._space(namespace)
        entry = ks.live(key)
        if entry is None:
            return None
        if type(entry) is bytes:
            expires_at = ks.expires.get(key) if ks.expires else None
            return [PLAIN, entry[sizes.VERSION_HEADER :], expires_at, blob_version(entry)]
        view = self.get_entry(namespace, key)
        return None if view is None else view.to_wire()

    def apply_entry(self, namespace: str, key: bytes, entry: EntryView) -> bool:
        """Last-writer-wins: replace ``key`` with ``entry`` if its version is newer than the
        live entry and than the key's tombstone (a tombstone of an equal version wins; a live
        entry of an equal version wins when its :func:`~meshcache.store.entry.tie_break` is
        not smaller, so every replica keeps the same one of two writes of one version).

        The version goes through :meth:`HLC.observe` (clamped if a peer's clock is far ahead)
        so later local writes get greater versions. An entry already expired removes an older
        local one. Returns whether anything was applied. Raises ``TOO_LARGE`` or
        ``OUT_OF_MEMORY`` as a local write would; ``BAD_REQUEST``-free: an unknown type is a
        ``RemoteProtocolError`` from :meth:`EntryView.from_wire` earlier.
        """
        ks = self._space(namespace)
        if self._floors and self._below_floor(namespace, entry.version):
            return False
        admitted, current = _lww_admits(ks, key, entry.version, entry)
        if not admitted:
            return False
        version = self._hlc.observe(entry.version)
        expires_at = entry.expires_at
        if expires_at is not None and expires_at <= self._clock():
            if current is not None:
                ks.remove(key)
            ks.unbury(key)
            return True
        if entry.type == PLAIN:
            ks.put(key, pack_version(version) + bytes(entry.value), expires_at, False)
            ks.unbury(key)
            return True
        obj = TYPES[entry.type].from_contents(entry.value, version)
        if not obj:
            if current is not None:
                ks.remove(key)
        else:
            ks.put(key, obj, expires_at, False)
        ks.unbury(key)
        return True

    def apply_plain(self, namespace: str, key: bytes, value: bytes, version: int) -> bool:
        """:meth:`apply_entry` for a plain value without expiry, the bulk of a hand-off,
        without building an :class:`EntryView` (same order, same errors). ``version`` must be
        at or below the HLC's :meth:`~meshcache.hlc.HLC.drift_limit` (the caller checks it
        once per batch): it is not clamped."""
        ks = self._space(namespace)
        if self._floors and self._below_floor(namespace, version):
            return False
        blob = pack_version(version) + value
        if not _lww_admits(ks, key, version, blob)[0]:
            return False
        self._hlc.witness(version)
        ks.put(key, blob, None, False)
        ks.unbury(key)
        return True

    def plain_blobs(
        self, namespace: str, keys: list[bytes], entries: list[bytes | TypedValue]
    ) -> tuple[list[bytes], list[bytes]]:
        """Split keys and their entries (a part of :meth:`item_parts`, or a slice of one) for
        a hand-off: ``[key, blob, key, blob, ...]`` for the plain values without an expiry
        (the blob as stored: 8-byte big-endian version, then the value — what
        :meth:`apply_blobs` takes), and the other keys (typed values, values with an expiry),
        which travel as records read when they are sent."""
        expires = self._space(namespace).expires
        if not expires and set(map(type, entries)) <= {bytes}:  # all plain, none expires
            flat = [b""] * (2 * len(keys))
            flat[0::2] = keys
            flat[1::2] = cast("list[bytes]", entries)
            return flat, []
        flat = []
        add = flat.append
        rest: list[bytes] = []
        for key, entry in zip(keys, entries, strict=True):
            if type(entry) is bytes and not (expires and key in expires):
                add(key)
                add(entry)
            else:
                rest.append(key)
        return flat, rest

    def apply_blobs(
        self, namespace: str, keys: list[bytes], blobs: list[bytes], limit: int
    ) -> BlobsApplied:
        """:meth:`apply_plain` for a batch of blobs as :meth:`plain_blobs` gives them: the
        same last-writer-wins per key, without an expiry, in one pass.

        A key the namespace does not hold (and has no tombstone for) is inserted directly and
        the bounds are enforced once at the end of the batch (so a namespace may be over
        ``max_bytes`` by at most one batch while it runs; ``none`` namespaces take the per-key
        path and refuse with ``OUT_OF_MEMORY`` as a write would). Blobs whose version is above
        ``limit`` (the HLC's drift limit) are not applied but listed in ``ahead``. Raises
        ``BAD_REQUEST`` at the first item that is not bytes or is shorter than a version;
        the items before it stay applied (every one is a last-writer-wins write on its own).
        """
        ks = self._space(namespace)
        done = BlobsApplied()
        header = sizes.VERSION_HEADER
        unpack = unpack_version
        if len(keys) != len(blobs):
            raise ValueError("apply_blobs takes as many blobs as keys")
        # Checked for the whole batch at C speed; the loop below takes them as given.
        bad = _first_bad_blob(keys, blobs, header)
        if bad is not None:
            keys, blobs = keys[:bad], blobs[:bad]
        top = unpack(max(blobs))[0] if blobs else 0  # big-endian: the greatest blob's version
        if top > limit:
            versions = [unpack(blob)[0] for blob in blobs]
            done.ahead = [i for i, version in enumerate(versions) if version > limit]
            behind = [version <= limit for version in versions]
            keys, blobs = list(compress(keys, behind)), list(compress(blobs, behind))
            top = max(compress(versions, behind), default=0)
        floor = self._floors.get(namespace, 0) if self._floors else 0
        if floor and blobs and unpack(min(blobs))[0] <= floor:
            # An earlier incarnation's blobs: discarded, answered as stale.
            later = [unpack(blob)[0] > floor for blob in blobs]
            discarded = len(blobs) - sum(later)
            keys, blobs = list(compress(keys, later)), list(compress(blobs, later))
            done.stale += discarded
            self.incarnation_discarded[namespace] += discarded
        tables = ks.tables
        single = ks.single
        tombstones = ks.tombstones
        lfu = ks.lfu
        fresh = ks.lfu_fresh() if lfu is not None else 0
        direct = ks.eviction != "none" or (ks.max_bytes is None and ks.max_items is None)
        max_bytes = ks.max_bytes
        extra = ks.key_extra + sizes.plain_cost(0, 0)
        applied = used = count = 0
        try:
            for key, blob in zip(keys, blobs, strict=True):
                table = single if single is not None else tables[hash(key) % TABLES]
                if direct and key not in table and not (tombstones and key in tombstones):
                    cost = len(key) + len(blob) + extra
                    if max_bytes is not None and cost > max_bytes:
                        done.refused["TOO_LARGE"] = done.refused.get("TOO_LARGE", 0) + 1
                        continue
                    table[key] = blob
                    used += cost
                    count += 1
                    if lfu is not None:
                        lfu[key] = fresh
                    applied += 1
                    continue
                # Replacing an entry (or under ``none``): the store's own write path, with the
                # accounting it reads brought up to date first.
                ks.used += used
                ks.count += count
                used = count = 0
                if not _lww_admits(ks, key, unpack(blob)[0], blob)[0]:
                    done.stale += 1
                    continue
                try:
                    ks.put(key, blob, None, False)
                except CommandError as exc:
                    code = str(exc.code)
                    done.refused[code] = done.refused.get(code, 0) + 1
                    continue
                finally:
                    single = ks.single  # a put may split the one table
                    tables = ks.tables
                ks.unbury(key)
                applied += 1
        finally:
            ks.used += used
            ks.count += count
            done.applied = applied
            self._hlc.witness(top)
            if ks.count > ks.split_at:
                ks.split()
            if direct and ks.over_limits():
                ks.evict_to_fit(None, max(EVICT_SLICE, applied))
        if bad is not None:
            raise CommandError(
                ErrorCode.BAD_REQUEST, f"item {bad}: a key and a blob of at least {header} bytes"
            )
        return done

    def apply_tombstone(self, namespace: str, key: bytes, version: int) -> bool:
        """Last-writer-wins for a replicated delete of ``key`` at ``version``.

        Applied when ``version`` is at least the live entry's (a delete wins a tie) and newer
        than any tombstone held: the entry is removed and, when tombstones are on and the grace
        period is not over, a tombstone is kept. The version goes through :meth:`HLC.observe`
        like :meth:`apply_entry`'s. Returns whether it was applied.
        """
        ks = self._space(namespace)
        if self._floors and self._below_floor(namespace, version):
            return False
        current = ks.live(key)
        if current is not None:
            held = current.version if isinstance(current, TypedValue) else blob_version(current)
            if held > version:
                return False
        buried = ks.tombstones.get(key)
        if buried is not None and buried >= version and current is None:
            return False
        version = self._hlc.observe(version)
        if current is not None:
            ks.remove(key)
        ks.bury(key, version)
        return True

    def get_tombstone(self, namespace: str, key: bytes) -> int | None:
        """The version of ``key``'s tombstone, or ``None`` (no delete held, or a live entry
        written since)."""
        return self._space(namespace).tombstone(key)

    def tombstones(self, namespace: str) -> Iterator[tuple[bytes, int]]:
        """``(key, version)`` of the tombstones of ``namespace`` not superseded by a live entry
        (a snapshot list's iterator)."""
        ks = self._space(namespace)
        if not ks.tombstones:
            return iter(())
        return iter([(k, v) for k, v in list(ks.tombstones.items()) if ks.tombstone(k) is not None])

    def keys(self, namespace: str) -> Iterator[bytes]:
        """The live keys of ``namespace`` (a snapshot list's iterator; expired keys skipped)."""
        keys = self.key_snapshot(namespace)
        expires = self._space(namespace).expires
        if not expires:
            return iter(keys)
        now = self._clock()
        return iter([k for k in keys if expires.get(k, now + 1) > now])

    def key_snapshot(self, namespace: str) -> list[bytes]:
        """Every key ``namespace`` holds now, in no particular order, expired ones included:
        for a caller that reads each key anyway (an expired one reads as missing) and works
        through the list in slices. Copied at C speed — about 10 ns a key, where walking
        the keys in LRU order costs 270 ns (a stall of 0.27 s at 1M keys) — but in one step:
        a caller that can checkpoint takes :meth:`key_parts` instead."""
        keys: list[bytes] = []
        for part in self._space(namespace).key_parts():
            keys += part
        return keys

    def key_parts(self, namespace: str) -> Iterator[list[bytes]]:
        """:meth:`key_snapshot` a table at a time (see :meth:`Keyspace.key_parts`): each list
        is copied when the iterator reaches it, so a caller checkpointing between them holds
        the loop for one table's copy at most.

        Raises:
            CommandError: ``NO_SUCH_NAMESPACE`` (at the call, not at the first item).
        """
        return self._space(namespace).key_parts()

    def table_items(
        self, namespace: str, index: int
    ) -> tuple[list[bytes], list[bytes | TypedValue]] | None:
        """The live keys of one of the namespace's tables and their entries, copied now; None
        when the namespace uses fewer tables. For a walk over the keys a table per step,
        resumed by the table's index: a key keeps its table while the process lives, but for
        the one split of a namespace's first table into :data:`TABLES` (after which a walk may
        give a key again, never miss one).

        Raises:
            CommandError: ``NO_SUCH_NAMESPACE``.
        """
        ks = self._space(namespace)
        if not 0 <= index < len(ks.tables):
            return None
        table = ks.tables[index]
        keys, entries = list(dict.keys(table)), list(dict.values(table))
        expires = ks.expires
        if expires:
            now = self._clock()
            live = [expires.get(k, now + 1) > now for k in keys]
            if not all(live):
                keys = list(compress(keys, live))
                entries = list(compress(entries, live))
        return keys, entries

    def item_parts(self, namespace: str) -> Iterator[tuple[list[bytes], list[bytes | TypedValue]]]:
        """:meth:`key_parts` with each key's entry as held when its table was copied (see
        :meth:`Keyspace.item_parts`): for a scan that reads every entry, without a lookup per
        key.

        Raises:
            CommandError: ``NO_SUCH_NAMESPACE`` (at the call, not at the first item).
        """
        return self._space(namespace).item_parts()

    def tombstone_keys(self, namespace: str) -> list[bytes]:
        """The keys of every tombstone held now, superseded ones included (see
        :meth:`get_tombstone`): one C-level copy, for a caller working in slices."""
        return list(self._space(namespace).tombstones)

    # --------------------------------------------------------------------------- internals

    def _space(self, name: str) -> Keyspace:
        ks = self._spaces.get(name)
        if ks is None:
            raise NoSuchNamespaceError(message=f"no namespace {name!r}")
        return ks

    def keyspace(self, name: str) -> Keyspace:
        """The namespace's :class:`Keyspace` (tests and benchmarks; not for the node)."""
        return self._space(name)


def _first_bad_blob(keys: list[Any], blobs: list[Any], header: int) -> int | None:
    """The position of the first pair of :meth:`Store.apply_blobs`'s batch that is not a key
    and a blob of at least ``header`` bytes, or None."""
    if (
        set(map(type, keys)) <= {bytes}
        and set(map(type, blobs)) <= {bytes}
        and min(map(len, blobs), default=header) >= header
    ):
        return None
    for i, (key, blob) in enumerate(zip(keys, blobs, strict=True)):
        if type(key) is not bytes or type(blob) is not bytes or len(blob) < header:
            return i
    raise AssertionError("a batch that failed its check has no bad pair")


def _lww_admits(
    ks: Keyspace, key: bytes, version: int, candidate: bytes | EntryView
) -> tuple[bool, bytes | TypedValue | None]:
    """Whether a replicated write at ``version`` beats what ``ks`` holds for ``key`` (its live
    entry, then its tombstone: a delete wins a tie), and the live entry. A beaten tombstone
    stays: the caller unburies the key once the write is stored. ``candidate`` is the write: a
    plain value's blob as stored (version header, value, no expiry) or an
    :class:`EntryView`; it is looked at only when the live entry has the same version, to
    break the tie by :func:`~meshcache.store.entry.tie_break`."""
    current = ks.live(key)
    if current is not None:
        held = current.version if isinstance(current, TypedValue) else blob_version(current)
        if held >= version and (
            held > version or _held_tie(ks, key, current) >= _candidate_tie(candidate)
        ):
            return False, current
    if ks.tombstones:
        buried = ks.tombstones.get(key)
        # A delete wins a tie: both sides of a tie then agree whatever the order.
        if buried is not None and buried >= version and current is None:
            return False, current
    # A beaten tombstone stays until the write is stored (the caller unburies it then): a
    # write the store refuses changes nothing, and the delete goes on beating older writes.
    return True, current


def _held_tie(ks: Keyspace, key: bytes, entry: bytes | TypedValue) -> int:
    expires_at = ks.expires.get(key) if ks.expires else None
    if type(entry) is bytes:
        return tie_break(PLAIN, memoryview(entry)[sizes.VERSION_HEADER :], expires_at)
    assert isinstance(entry, TypedValue)
    return tie_break(entry.kind, entry.contents(), expires_at)


def _candidate_tie(candidate: bytes | EntryView) -> int:
    if type(candidate) is bytes:
        return tie_break(PLAIN, memoryview(candidate)[sizes.VERSION_HEADER :], None)
    assert isinstance(candidate, EntryView)
    return candidate.tie()


__all__ = ["DEFAULT_NAMESPACE", "HANDLERS", "BlobsApplied", "NamespaceStats", "Store"]
