"""Entry views: one key's whole state, for replication, hand-off and anti-entropy.

Last-writer-wins compares versions; two writes of one key can carry the same version (two
nodes in the same millisecond with the same logical counter, one on each side of a partition).
:func:`tie_break` orders them the same way on every replica: a 64-bit BLAKE2b hash of the
record's type, expiry and contents in a canonical form (hash fields sorted, sets sorted, sorted
sets by score then member, scores as IEEE doubles). The greater hash wins; a tombstone beats
any value of its version (``meshcache/node/data/replication/tombstones.py``). Anti-entropy
digests carry the same hash, so replicas holding different values of one version see the
difference and repair it.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any

from meshcache.errors import RemoteProtocolError
from meshcache.store.values import PLAIN, TYPES

_DOUBLE = struct.Struct(">d")


def _framed(h: Any, item: bytes) -> None:
    h.update(len(item).to_bytes(4, "big"))
    h.update(item)


def tie_break(kind: str, contents: Any, expires_at: float | None) -> int:
    """The tie-break of last-writer-wins between records of one version (see the module
    docstring): a 64-bit int, the greater wins.

    ``contents`` is in the store's canonical form: what :meth:`Store.get_entry` gives (for a
    value received from a peer use :meth:`EntryView.tie`, which builds that form first). A
    plain value may be a ``memoryview`` (the store hashes its blobs without copying them).
    """
    if kind == PLAIN:
        return plain_tie_break(contents, expires_at)
    h = hashlib.blake2b(kind.encode(), digest_size=8)
    h.update(b"\x00" if expires_at is None else b"\x01" + _DOUBLE.pack(expires_at))
    if kind == "hash":
        for field_, value in sorted(contents.items()):
            _framed(h, field_)
            _framed(h, value)
    elif kind == "zset":
        for member, score in contents:
            _framed(h, member)
            h.update(_DOUBLE.pack(score))
    else:  # list (in order), set (sorted)
        for item in contents:
            _framed(h, item)
    return int.from_bytes(h.digest(), "big")


def plain_tie_break(value: bytes | memoryview, expires_at: float | None) -> int:
    """:func:`tie_break` of a plain value (the common case, and what a scan of a store of
    plain values computes for every key: its hash state up to the type is kept)."""
    h = _PLAIN_HASH.copy()
    h.update(_NO_EXPIRY if expires_at is None else b"\x01" + _DOUBLE.pack(expires_at))
    h.update(value)
    return int.from_bytes(h.digest(), "big")


_PLAIN_HASH = hashlib.blake2b(PLAIN.encode(), digest_size=8)
_NO_EXPIRY = b"\x00"


def contents_size(contents: Any) -> int:
    """About how many bytes an entry's contents (as :meth:`EntryView.value` holds them) take
    on the wire: what paces their transfer."""
    if type(contents) is bytes:
        return len(contents)
    if type(contents) is dict:
        return sum(len(k) + len(v) + 2 for k, v in contents.items())
    # list (list/set) of bytes, or zset [[member, score]]
    return sum(len(v) + 2 if type(v) is bytes else len(v[0]) + 11 for v in contents)


@dataclass(frozen=True, slots=True)
class EntryView:
    """A copy of one entry, independent of the store.

    Attributes:
        type: ``"bytes"`` (plain value), ``"hash"``, ``"list"``, ``"set"`` or ``"zset"``.
        value: ``bytes``; ``dict[bytes, bytes]`` for a hash; ``list[bytes]`` for a list (head
            first) or a set (sorted bytewise); ``list[[member, score]]`` for a sorted set
            (ascending).
        expires_at: absolute expiry in Unix seconds, or ``None``.
        version: the HLC version of the last write.
    """

    type: str
    value: Any
    expires_at: float | None
    version: int

    def to_wire(self) -> list[Any]:
        """A msgpack-able form: ``[type, value, expires_at, version]``."""
        return [self.type, self.value, self.expires_at, self.version]

    def tie(self) -> int:
        """:func:`tie_break` of this record as a store that applied it holds it (a typed
        value is rebuilt first: a set's duplicates dropped, a sorted set's scores as floats)."""
        if self.type == PLAIN:
            return tie_break(PLAIN, self.value, self.expires_at)
        contents = TYPES[self.type].from_contents(self.value, self.version).contents()
        return tie_break(self.type, contents, self.expires_at)

    @classmethod
    def from_wire(cls, data: Any) -> EntryView:
        """Inverse of :meth:`to_wire`; ``RemoteProtocolError`` if ``data`` is malformed."""
        try:
            kind, value, expires_at, version = data
        except (TypeError, ValueError):
            raise RemoteProtocolError(
                "an entry must be [type, value, expires_at, version]"
            ) from None
        if kind != PLAIN and kind not in TYPES:
            raise RemoteProtocolError(f"unknown entry type {kind!r}")
        if type(version) is not int or not 0 <= version < 2**64:
            raise RemoteProtocolError(f"bad entry version {version!r}")
        if expires_at is not None and type(expires_at) not in (int, float):
            raise RemoteProtocolError(f"bad entry expiry {expires_at!r}")
        if kind == PLAIN and type(value) is not bytes:
            raise RemoteProtocolError("a plain entry's value must be bin")
        return cls(kind, value, None if expires_at is None else float(expires_at), version)


__all__ = ["EntryView", "tie_break"]
