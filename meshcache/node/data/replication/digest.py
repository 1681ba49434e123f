"""Merkle-style digests of token ranges, and the repair plan two replicas derive from them.

Anti-entropy between two replicas of a token range goes: exchange :class:`RangeDigest` s →
:func:`compare` gives the buckets that differ → exchange the :class:`KeyVersion` lists of those
buckets (:func:`keys_in_buckets`) → :func:`plan_repair` says which keys each side sends, in
batches bounded in keys and bytes.

What callers may rely on:

* A digest of range ``r`` at depth ``d`` has ``2**d`` buckets; a key's bucket depends only on
  its token's offset in ``r`` (:func:`bucket_of`). A bucket's hash is the XOR of
  :func:`item_hash` over its items ``(key, version, deleted, tie)`` (the record's size plays no
  part; ``tie`` is the record's :func:`~meshcache.store.tie_break`, so two replicas holding
  different values of one version differ), so :meth:`RangeDigest.add` and
  :meth:`RangeDigest.discard` keep it current on every write, delete, expiry or eviction in
  O(1), and the result equals :meth:`RangeDigest.build` from scratch. Each key must be in a
  digest at most once (the caller removes the old item before adding the new one:
  :meth:`RangeDigest.replace`).
* Two digests of the same range and depth are equal exactly when their item sets are, except
  for 64-bit hash collisions (a chance of about ``2**-64`` per differing bucket).
* Items whose token is outside the range are ignored by :meth:`RangeDigest.build` and refused
  by :meth:`RangeDigest.add` (``LocalProtocolError``); a remote digest or key list that does not
  match the range asked for is a ``RemoteProtocolError``.
* :func:`plan_repair` on the two sides' key lists of the differing buckets gives, applied with
  last-writer-wins, the same items on both sides (the property tests check one round
  converges). It orders records as :func:`.tombstones.lww_order` and the store do:
  ``(version, deleted, tie)``.

Expired entries: the store hides them, but purges them lazily, so an incrementally maintained
digest may still hold an expired item for a moment; the key lists are then taken from the
store, which skips expired entries, and no repair follows. Tombstones past their grace period
likewise disappear from both sides at the same moment, since their deadline comes from their
version (see :mod:`meshcache.node.data.replication.tombstones`).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from meshcache.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from meshcache.ring.tokens import TOKEN_SPACE, TokenRange, key_token
from meshcache.store import Store

#: Deepest digest accepted (65 536 buckets, 512 KiB of hashes); the default is 10 (8 KiB).
MAX_DEPTH: Final = 16
DEFAULT_DEPTH: Final = 10
#: Bytes a key costs in a key list or a repair batch beyond its key bytes (msgpack framing of
#: ``[key, version, deleted, size, tie]``).
KEY_LIST_OVERHEAD: Final = 25
#: What a record's wire size is estimated as beyond its contents and key.
ITEM_OVERHEAD: Final = 32


class KeyVersion(NamedTuple):
    """One key's record as anti-entropy sees it.

    ``size`` is what sending the record costs in bytes (0 when unknown); it is not hashed.
    ``tie`` is the record's :func:`~meshcache.store.tie_break` (0 for a tombstone): the order
    between two records of one version.
    """

    key: bytes
    version: int
    deleted: bool = False
    size: int = 0
    tie: int = 0

    def to_wire(self) -> list[Any]:
        return [self.key, self.version, self.deleted, self.size, self.tie]

    @classmethod
    def from_wire(cls, data: Any) -> KeyVersion:
        try:
            key, version, deleted, size, tie = data
        except (TypeError, ValueError):
            raise RemoteProtocolError(
                "a key version must be [key, version, deleted, size, tie]"
            ) from None
        if type(key) is not bytes or type(deleted) is not bool:
            raise RemoteProtocolError("bad key or deleted flag in a key version")
        if type(version) is not int or not 0 <= version < 2**64:
            raise RemoteProtocolError(f"bad version {version!r}")
        if type(size) is not int or size < 0:
            raise RemoteProtocolError(f"bad size {size!r}")
        if type(tie) is not int or not 0 <= tie < 2**64:
            raise RemoteProtocolError(f"bad tie-break {tie!r}")
        return cls(key, version, deleted, size, tie)

    @property
    def order(self) -> tuple[int, bool, int]:
        """Its place in last-writer-wins: ``(version, deleted, tie)``, the greater wins."""
        return (self.version, self.deleted, self.tie)


def item_hash(key: bytes, version: int, deleted: bool, tie: int = 0) -> int:
    """The 64-bit hash of one item (BLAKE2b; part of the digest wire contract): of the key,
    then the version (8 bytes, big-endian), 1 or 0 for deleted, and the tie-break (8 bytes)."""
    return _from_bytes(
        _blake2b(key + _ITEM_TAIL(version, deleted, tie), digest_size=8).digest(), "big"
    )


_ITEM_TAIL = struct.Struct(">Q?Q").pack
_blake2b = hashlib.blake2b
_from_bytes = int.from_bytes


def bucket_of(token: int, trange: TokenRange, depth: int) -> int:
    """The bucket of ``token`` in a digest of ``trange`` at ``depth`` (``token`` in range)."""
    offset = (token - trange.start - 1) % TOKEN_SPACE
    return (offset << depth) // trange.size


class RangeDigest:
    """XOR hashes of ``2**depth`` buckets of one token range (see the module docstring)."""

    __slots__ = ("count", "depth", "leaves", "range")

    def __init__(self, trange: TokenRange, depth: int = DEFAULT_DEPTH) -> None:
        if not 0 <= depth <= MAX_DEPTH:
            raise ConfigError(f"digest depth must be in 0..{MAX_DEPTH}")
        self.range = trange
        self.depth = depth
        self.leaves = [0] * (1 << depth)
        #: Items added minus items discarded (a sanity figure; not compared).
        self.count = 0

    @classmethod
    def build(
        cls, trange: TokenRange, items: Iterable[KeyVersion], depth: int = DEFAULT_DEPTH
    ) -> RangeDigest:
        """The digest of the items in ``trange`` (others are skipped)."""
        digest = cls(trange, depth)
        leaves = digest.leaves
        for item in items:
            token = key_token(item.key)
            if token in trange:
                leaves[bucket_of(token, trange, depth)] ^= item_hash(
                    item.key, item.version, item.deleted, item.tie
                )
                digest.count += 1
        return digest

    def _toggle(self, key: bytes, version: int, deleted: bool, tie: int) -> None:
        token = key_token(key)
        if token not in self.range:
            raise LocalProtocolError(f"key {key[:64]!r} is outside {self.range}")
        self.leaves[bucket_of(token, self.range, self.depth)] ^= item_hash(
            key, version, deleted, tie
        )

    def add(self, key: bytes, version: int, deleted: bool = False, tie: int = 0) -> None:
        """Account a new item (the key must not be in the digest already)."""
        self._toggle(key, version, deleted, tie)
        self.count += 1

    def discard(self, key: bytes, version: int, deleted: bool = False, tie: int = 0) -> None:
        """Remove an item that was added (XOR is its own inverse)."""
        self._toggle(key, version, deleted, tie)
        self.count -= 1

    def replace(
        self,
        key: bytes,
        old: tuple[int, bool] | tuple[int, bool, int] | None,
        new: tuple[int, bool] | tuple[int, bool, int] | None,
    ) -> None:
        """Key ``key`` went from ``old`` ``(version, deleted[, tie])`` to ``new`` (``None``:
        absent)."""
        if old is not None:
            self.discard(key, *old)
        if new is not None:
            self.add(key, *new)

    def level(self, d: int) -> list[int]:
        """The ``2**d`` node hashes at tree level ``d`` (0 is the root, ``depth`` the leaves)."""
        if not 0 <= d <= self.depth:
            raise LocalProtocolError(f"level {d} outside 0..{self.depth}")
        nodes = self.leaves
        for _ in range(self.depth - d):
            nodes = [nodes[i] ^ nodes[i + 1] for i in range(0, len(nodes), 2)]
        return nodes

    @property
    def root(self) -> int:
        return self.level(0)[0]

    def to_wire(self) -> list[Any]:
        """``[start, end, depth, leaves]``, the leaves as one bin of 8-byte big-endian hashes."""
        packed = b"".join(h.to_bytes(8, "big") for h in self.leaves)
        return [self.range.start, self.range.end, self.depth, packed]

    @classmethod
    def from_wire(cls, data: Any) -> RangeDigest:
        """Inverse of :meth:`to_wire`; ``RemoteProtocolError`` if malformed."""
        try:
            start, end, depth, packed = data
        except (TypeError, ValueError):
            raise RemoteProtocolError("a digest must be [start, end, depth, leaves]") from None
        for bound in (start, end):
            if type(bound) is not int or not 0 <= bound < TOKEN_SPACE:
                raise RemoteProtocolError(f"bad digest range bound {bound!r}")
        if type(depth) is not int or not 0 <= depth <= MAX_DEPTH:
            raise RemoteProtocolError(f"bad digest depth {depth!r}")
        if type(packed) is not bytes or len(packed) != 8 << depth:
            raise RemoteProtocolError("digest leaves do not match its depth")
        digest = cls(TokenRange(start, end), depth)
        digest.leaves = [int.from_bytes(packed[i : i + 8], "big") for i in range(0, len(packed), 8)]
        return digest

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RangeDigest):
            return NotImplemented
        return (self.range, self.depth, self.leaves) == (other.range, other.depth, other.leaves)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RangeDigest({self.range}, depth={self.depth}, root={self.root:#018x})"


def compare(local: RangeDigest, remote: RangeDigest) -> list[int]:
    """The buckets whose hashes differ, ascending.

    ``RemoteProtocolError`` if ``remote`` is not a digest of ``local``'s range and depth.
    """
    if (local.range, local.depth) != (remote.range, remote.depth):
        raise RemoteProtocolError(
            f"digest of {remote.range} depth {remote.depth}; wanted {local.range} "
            f"depth {local.depth}"
        )
    return differing(local.leaves, remote.leaves)


def differing(a: Sequence[int], b: Sequence[int]) -> list[int]:
    """Indices where two equal-length lists of node hashes (one tree level) differ."""
    if len(a) != len(b):
        raise RemoteProtocolError("digest levels of different sizes")
    return [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]


def leaves_under(nodes: Iterable[int], d: int, depth: int) -> list[int]:
    """The leaf buckets below nodes ``nodes`` of level ``d`` of a tree of ``depth``.

    For a two-step exchange that saves bandwidth when few buckets differ: compare
    :meth:`RangeDigest.level` ``d`` first, then only the leaves under the differing nodes.
    """
    shift = depth - d
    return [leaf for n in sorted(set(nodes)) for leaf in range(n << shift, (n + 1) << shift)]


def keys_in_buckets(
    items: Iterable[KeyVersion], trange: TokenRange, depth: int, buckets: Collection[int]
) -> list[KeyVersion]:
    """The items of ``trange`` that fall in ``buckets``, sorted by key."""
    wanted = set(buckets)
    out = []
    for item in items:
        token = key_token(item.key)
        if token in trange and bucket_of(token, trange, depth) in wanted:
            out.append(item)
    out.sort()
    return out


def check_key_list(
    items: Iterable[KeyVersion], trange: TokenRange, depth: int, buckets: Collection[int]
) -> list[KeyVersion]:
    """A peer's key list, checked: every key in ``trange`` and in the asked-for ``buckets``,
    no key twice; ``RemoteProtocolError`` otherwise (a peer sending keys it was not asked
    about, or of a range it does not hold)."""
    wanted = set(buckets)
    seen: set[bytes] = set()
    out = list(items)
    for item in out:
        token = key_token(item.key)
        if token not in trange or bucket_of(token, trange, depth) not in wanted:
            raise RemoteProtocolError(f"key {item.key[:64]!r} was not asked for")
        if item.key in seen:
            raise RemoteProtocolError(f"key {item.key[:64]!r} listed twice")
        seen.add(item.key)
    return out


@dataclass(frozen=True, slots=True)
class RepairPlan:
    """Who sends what: ``push`` batches of our keys the peer lacks or holds older; ``pull``
    batches of keys we lack or hold older, to ask the peer for. Each batch holds at most the
    plan's ``max_keys`` keys and ``max_bytes`` bytes (a single larger key goes alone)."""

    push: list[list[bytes]]
    pull: list[list[bytes]]

    @property
    def push_keys(self) -> int:
        return sum(len(b) for b in self.push)

    @property
    def pull_keys(self) -> int:
        return sum(len(b) for b in self.pull)

    def __bool__(self) -> bool:
        return bool(self.push or self.pull)


def plan_repair(
    local: Iterable[KeyVersion],
    remote: Iterable[KeyVersion],
    *,
    max_keys: int = 500,
    max_bytes: int = 1 << 20,
) -> RepairPlan:
    """Compare two key lists of the same buckets and split the differences into batches.

    A key goes to ``push`` when ours wins by ``(version, deleted, tie)`` or the peer lacks it,
    to ``pull`` when theirs wins or we lack it. A batch's bytes are the items' ``size`` (the
    winning side's) plus :data:`KEY_LIST_OVERHEAD` and the key length.
    """
    if max_keys < 1 or max_bytes < 1:
        raise ConfigError("max_keys and max_bytes must be >= 1")
    ours = {i.key: i for i in local}
    theirs = {i.key: i for i in remote}
    push: list[KeyVersion] = []
    pull: list[KeyVersion] = []
    for key in sorted(ours.keys() | theirs.keys()):
        a = ours.get(key)
        b = theirs.get(key)
        if b is None or (a is not None and a.order > b.order):
            assert a is not None
            push.append(a)
        elif a is None or b.order > a.order:
            pull.append(b)
    return RepairPlan(_batches(push, max_keys, max_bytes), _batches(pull, max_keys, max_bytes))


def _batches(items: list[KeyVersion], max_keys: int, max_bytes: int) -> list[list[bytes]]:
    out: list[list[bytes]] = []
    batch: list[bytes] = []
    used = 0
    for item in items:
        cost = item.size + len(item.key) + KEY_LIST_OVERHEAD
        if batch and (len(batch) >= max_keys or used + cost > max_bytes):
            out.append(batch)
            batch, used = [], 0
        batch.append(item.key)
        used += cost
    if batch:
        out.append(batch)
    return out


def key_version(store: Store, namespace: str, key: bytes) -> KeyVersion | None:
    """One key's item: its live entry, else its tombstone, else ``None`` (missing, expired,
    or purged). ``size`` estimates its record's wire size (contents + key +
    :data:`ITEM_OVERHEAD`)."""
    facts = store.entry_facts(namespace, key)
    if facts is not None:
        version, size, tie = facts
        return KeyVersion(key, version, False, size + len(key) + ITEM_OVERHEAD, tie)
    tomb = store.get_tombstone(namespace, key)
    if tomb is None:
        return None
    return KeyVersion(key, tomb, True, len(key) + ITEM_OVERHEAD)


__all__ = [
    "DEFAULT_DEPTH",
    "KEY_LIST_OVERHEAD",
    "MAX_DEPTH",
    "KeyVersion",
    "RangeDigest",
    "RepairPlan",
    "bucket_of",
    "check_key_list",
    "compare",
    "differing",
    "item_hash",
    "key_version",
    "keys_in_buckets",
    "leaves_under",
    "plan_repair",
]
