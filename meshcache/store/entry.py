"""Entry views: one key's whole state, for replication, hand-off and anti-entropy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshcache.errors import RemoteProtocolError
from meshcache.store.values import PLAIN, TYPES


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


__all__ = ["EntryView"]
