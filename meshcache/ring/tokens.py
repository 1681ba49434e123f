"""Where keys and virtual nodes sit on the ring: the token functions and token ranges.

The ring is the 32-bit token space ``[0, 2**32)``, read clockwise and wrapping at ``2**32``.
Both functions are part of the cluster's contract — every node and every smart client (in any
language) must compute the same tokens — so they are pinned by golden-value tests:

* ``key_token(key)`` is the CRC-32 of the key bytes (ISO-HDLC / IEEE 802.3, as ``zlib.crc32``).
  Measured against BLAKE2b it spreads keys over the ring just as evenly (see
  ``docs/benchmarks.md``, Ring) at about a seventh of the cost, and it is on the path of every
  request. It is not a defence against keys chosen to collide; neither would an unkeyed
  cryptographic hash be, since the vnode tokens are public.
* ``vnode_token(node_id, i)`` is the first 4 bytes, big-endian, of BLAKE2b with a 4-byte digest
  of ``utf8(node_id) + b"#" + ascii(str(i))``. It runs only when a ring is built. Vnode *i* of a
  node depends on nothing but the node id and *i*, so raising a node's weight adds vnodes
  without moving its existing ones.
"""

from __future__ import annotations

import hashlib
import zlib
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import compress
from typing import Any, TypeVar

from meshcache.errors import CommandError, ErrorCode

T = TypeVar("T")

TOKEN_BITS = 32
TOKEN_SPACE = 1 << TOKEN_BITS
"""Number of distinct tokens; every token is in ``range(TOKEN_SPACE)``."""

# RangeSet.mask's bucket table: a bucket is the tokens sharing their top 16 bits.
BUCKET_SHIFT = 16
OUTSIDE, INSIDE, SPLIT = 0, 1, 2

key_token = zlib.crc32
"""``key_token(key: bytes) -> int``: the token of a key (CRC-32, see the module docstring).

Bound directly to ``zlib.crc32`` so the hot path pays for no extra Python call.
"""


def vnode_token(node_id: str, index: int) -> int:
    """The token of virtual node ``index`` of ``node_id`` (see the module docstring)."""
    data = node_id.encode() + b"#" + str(index).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=4).digest(), "big")


@dataclass(frozen=True, slots=True, order=True)
class TokenRange:
    """The tokens in ``(start, end]``, clockwise, wrapping past ``TOKEN_SPACE - 1`` to 0.

    ``start == end`` means the whole ring (a ring with a single vnode position owns it all).
    """

    start: int
    end: int

    def __contains__(self, token: object) -> bool:
        if not isinstance(token, int):
            return False
        if self.start < self.end:
            return self.start < token <= self.end
        if self.start > self.end:
            return token > self.start or token <= self.end
        return True

    @property
    def size(self) -> int:
        """How many tokens the range holds (``TOKEN_SPACE`` for the whole ring)."""
        return (self.end - self.start) % TOKEN_SPACE or TOKEN_SPACE

    @property
    def wraps(self) -> bool:
        """True when the range crosses token 0 (and so is two intervals of integers)."""
        return self.start >= self.end

    def __str__(self) -> str:
        return f"({self.start:#010x}, {self.end:#010x}]"


def label_runs(bounds: list[int], labels: list[T]) -> list[tuple[TokenRange, T]]:
    """Coalesce labelled elementary ranges into maximal runs of equal labels.

    ``bounds`` are strictly increasing tokens; ``labels[i]`` labels ``(bounds[i-1], bounds[i]]``
    (for ``i == 0`` the range that wraps from ``bounds[-1]``). Adjacent ranges with equal labels,
    including across the wrap, come back as one :class:`TokenRange`; the result is clockwise from
    the first run that starts after a label change.
    """
    n = len(bounds)
    if n == 0:
        return []
    first = next((i for i in range(n) if labels[i] != labels[i - 1]), None)
    if first is None:
        return [(TokenRange(bounds[-1], bounds[-1]), labels[0])]
    runs: list[tuple[TokenRange, T]] = []
    run_start = bounds[first - 1]
    for step in range(n):
        i = (first + step) % n
        nxt = (i + 1) % n
        if step == n - 1 or labels[nxt] != labels[i]:
            runs.append((TokenRange(run_start, bounds[i]), labels[i]))
            run_start = bounds[i]
    return runs


class RangeSet:
    """A union of token ranges (overlapping or not) with an O(log n) membership test.

    :meth:`mask` tests many keys at once through a table of the 65,536 token buckets (a
    token's top 16 bits) that says whether a bucket is wholly outside, wholly inside or split
    by a range end; only tokens in split buckets — a few hundred buckets of a ring's 65,536 —
    need the binary search.
    """

    __slots__ = ("_buckets", "_ends", "_starts", "whole")

    def __init__(self, ranges: Iterable[TokenRange]) -> None:
        intervals: list[tuple[int, int]] = []  # (start, end]: start < end, no wrap
        self.whole = False
        for r in ranges:
            if r.start == r.end:
                self.whole = True
            elif r.start < r.end:
                intervals.append((r.start, r.end))
            else:
                if r.start < TOKEN_SPACE - 1:  # (TOKEN_SPACE - 1, TOKEN_SPACE - 1] is empty
                    intervals.append((r.start, TOKEN_SPACE - 1))
                intervals.append((-1, r.end))
        intervals.sort()
        merged: list[tuple[int, int]] = []
        for start, end in intervals:  # overlapping or touching ranges become one
            if merged and start <= merged[-1][1]:
                if end > merged[-1][1]:
                    merged[-1] = (merged[-1][0], end)
            else:
                merged.append((start, end))
        self._starts = [s for s, _ in merged]
        self._ends = [e for _, e in merged]
        self._buckets: bytes | None = None  # built by the first mask()

    def _bucket_table(self) -> bytes:
        """Per bucket of ``2**BUCKET_SHIFT`` tokens: OUTSIDE, INSIDE or SPLIT."""
        table = bytearray(TOKEN_SPACE >> BUCKET_SHIFT)  # all OUTSIDE
        size = 1 << BUCKET_SHIFT
        for start, end in zip(self._starts, self._ends, strict=True):
            first, last = start + 1, end  # the tokens in (start, end]
            fb, lb = first >> BUCKET_SHIFT, last >> BUCKET_SHIFT
            if fb == lb:
                whole_bucket = first == fb * size and last == fb * size + size - 1
                table[fb] = INSIDE if whole_bucket else SPLIT
                continue
            table[fb] = INSIDE if first == fb * size else SPLIT
            table[lb] = INSIDE if last == lb * size + size - 1 else SPLIT
            table[fb + 1 : lb] = bytes([INSIDE]) * (lb - fb - 1)
        return bytes(table)

    def __contains__(self, token: int) -> bool:
        if self.whole:
            return True
        i = bisect_left(self._ends, token)
        return i < len(self._ends) and self._starts[i] < token

    def __bool__(self) -> bool:
        return self.whole or bool(self._ends)

    def __len__(self) -> int:
        """How many disjoint ranges it holds (the whole ring is one)."""
        return 1 if self.whole else len(self._ends)

    def mask(self, keys: Sequence[bytes]) -> list[bool]:
        """For each key, whether its token is in the set: ``key_token(k) in self`` for many
        keys at once (hand-off scans a whole store this way).

        Raises ``TypeError`` for an item that is not bytes-like.
        """
        return self.mask_tokens(map(key_token, keys))

    def mask_tokens(self, tokens: Iterable[int]) -> list[bool]:
        """For each token, whether it is in the set."""
        if self.whole:
            return [True for _ in tokens]
        if self._buckets is None:
            self._buckets = self._bucket_table()
        buckets, ends, starts, n = self._buckets, self._ends, self._starts, len(self._ends)
        return [
            (b := buckets[token >> BUCKET_SHIFT]) == INSIDE
            or (b == SPLIT and (i := bisect_left(ends, token)) < n and starts[i] < token)
            for token in tokens
        ]

    def select(self, keys: Sequence[bytes]) -> list[bytes]:
        """The keys whose tokens are in the set, in their order."""
        return list(compress(keys, self.mask(keys)))


def ranges_to_wire(ranges: Iterable[TokenRange]) -> list[list[int]]:
    """Token ranges as the wire carries them: ``[[start, end], ...]``."""
    return [[r.start, r.end] for r in ranges]


def ranges_from_wire(data: Any) -> list[TokenRange]:
    """Read ``[[start, end], ...]`` sent by a peer.

    Raises:
        CommandError: ``BAD_REQUEST`` when it is not a list of two in-range tokens each.
    """
    if type(data) is not list:
        raise CommandError(ErrorCode.BAD_REQUEST, "ranges must be an array of [start, end]")
    out = []
    for item in data:
        if (
            type(item) is not list
            or len(item) != 2
            or not all(type(t) is int and 0 <= t < TOKEN_SPACE for t in item)
        ):
            raise CommandError(ErrorCode.BAD_REQUEST, f"bad token range {item!r}"[:200])
        out.append(TokenRange(item[0], item[1]))
    return out
