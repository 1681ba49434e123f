"""The hot area of a node: copies of other owners' hot keys, apart from the owned data.

Sans-I/O: every call takes ``now`` (trio's clock, for leases) and, for reads, ``wall`` (the
Unix time entries expire by). A copy is a plain value with the owner's version, the entry's
expiry and a lease end; it is served only while its lease runs and its entry has not
expired. The area is bounded in accounted bytes per namespace and evicts least recently used
copies first; nothing in it is replicated, handed off, scanned by anti-entropy or counted in
the namespace's keys.

A push older than what the area knew of its key is refused, also once the copy is gone: the
owner's pushes travel on two connections (renewals on the pooled one, a write's update on the
update lane, which may still arrive after the owner gave up waiting for it), so a push can
arrive after a newer one, and after the newer copy was dropped (the key cooled, a write
passed, the lease ran out). The version of every copy that leaves, of every drop, and the
version a write this node forwarded left (:meth:`HotArea.at_least`) stays behind as the key's
**floor** (floors take at most :data:`MAX_FLOOR_BYTES`, the oldest forgotten first).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass

#: The hot area of a namespace without ``max_bytes``.
UNBOUNDED_AREA_BYTES = 32 * 1024 * 1024
#: Accounted bytes of one copy beyond its key and value (the record, the dict slot).
COPY_OVERHEAD = 120
#: Accounted bytes of the floors of an area at most (the oldest go first), apart from the
#: copies' bound: a floor costs its key and :data:`FLOOR_OVERHEAD`.
MAX_FLOOR_BYTES = 1024 * 1024
FLOOR_OVERHEAD = 100
#: Drop versions at or above this carry no version (the owner held no record: ``DROP_ALL``)
#: and leave no floor.
NO_VERSION = 2**63


@dataclass(slots=True)
class Copy:
    """One copy: a plain value as its owner had it, valid until ``lease_end``."""

    value: bytes
    version: int
    expires_at: float | None
    lease_end: float
    size: int


Slot = tuple[str, bytes]


class HotArea:
    """Bounded LRU copies of hot keys, by ``(namespace, key)``.

    ``stats`` counts ``copies_stored``, ``copies_renewed``, ``copies_stale`` (a push older
    than the copy held, or than the key's floor), ``copies_expired`` (lease or entry expiry),
    ``copies_evicted`` (room) and ``copies_dropped`` (invalidated).
    """

    def __init__(self) -> None:
        self._copies: OrderedDict[Slot, Copy] = OrderedDict()
        # (namespace, key) -> the newest version known of a key whose copy left (or was
        # dropped unheld): no push older than it is stored.
        self._floors: dict[Slot, int] = {}
        self._floor_bytes = 0
        self._bytes: Counter[str] = Counter()
        self._limits: dict[str, int] = {}
        self.stats: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._copies)

    def __contains__(self, slot: object) -> bool:
        return slot in self._copies

    @property
    def total_bytes(self) -> int:
        return sum(self._bytes.values())

    def bytes_of(self, namespace: str) -> int:
        return self._bytes[namespace]

    def newest(self, namespace: str, key: bytes) -> int:
        """The newest version this area knows of ``key``: its copy's, or else its floor's
        (-1: none)."""
        slot = (namespace, key)
        held = self._copies.get(slot)
        floor = self._floors.get(slot, -1)
        return floor if held is None else max(held.version, floor)

    def set_limit(self, namespace: str, max_bytes: int) -> None:
        """Bound the namespace's copies to ``max_bytes`` (evicting now if it is over)."""
        self._limits[namespace] = max_bytes
        self._make_room(namespace, 0)

    def put(
        self,
        namespace: str,
        key: bytes,
        value: bytes,
        version: int,
        expires_at: float | None,
        lease_end: float,
    ) -> bool:
        """Store or renew a copy; False when a newer copy is held, the key's floor is newer
        (see the module doc), or it cannot fit."""
        slot = (namespace, key)
        held = self._copies.get(slot)
        if self._floors and version < self._floors.get(slot, -1):
            self.stats["copies_stale"] += 1
            return False
        if held is not None:
            if held.version > version:
                self.stats["copies_stale"] += 1
                return False
            if held.version == version:
                held.lease_end = max(held.lease_end, lease_end)
                held.expires_at = expires_at
                self._copies.move_to_end(slot)
                self.stats["copies_renewed"] += 1
                return True
            self._remove(slot)
        size = len(key) + len(value) + COPY_OVERHEAD
        limit = self._limits.get(namespace, UNBOUNDED_AREA_BYTES)
        if size > limit:
            self.stats["copies_too_large"] += 1
            return False
        self._make_room(namespace, size)
        self._copies[slot] = Copy(value, version, expires_at, lease_end, size)
        self._bytes[namespace] += size
        if self._floors and self._floors.pop(slot, None) is not None:
            self._floor_bytes -= len(key) + FLOOR_OVERHEAD  # the copy's version is at least it
        self.stats["copies_stored"] += 1
        return True

    def renew(
        self, namespace: str, key: bytes, version: int, expires_at: float | None, lease_end: float
    ) -> bool:
        """Extend the lease of the copy held at ``version``; False when no such copy is held
        (then its owner sends the value)."""
        held = self._copies.get((namespace, key))
        if held is None or held.version != version:
            return False
        held.lease_end = max(held.lease_end, lease_end)
        held.expires_at = expires_at
        self.stats["copies_renewed"] += 1
        return True

    def get(self, namespace: str, key: bytes, now: float, wall: float) -> Copy | None:
        """The copy if it may be served now (lease running, entry not expired), else None."""
        slot = (namespace, key)
        held = self._copies.get(slot)
        if held is None:
            return None
        if held.lease_end <= now or (held.expires_at is not None and held.expires_at <= wall):
            self._remove(slot)
            self.stats["copies_expired"] += 1
            return None
        self._copies.move_to_end(slot)
        return held

    def drop(self, namespace: str, key: bytes, version: int | None = None) -> bool:
        """Remove the copy (only if it is older than ``version`` when one is given). A drop
        of a version (below :data:`NO_VERSION`) raises the key's floor to ``version - 1``
        whether a copy was held or not: no push older than the drop's record is stored
        afterwards."""
        slot = (namespace, key)
        if version is not None and version - 1 < NO_VERSION:
            self._raise_floor(slot, version - 1)
        held = self._copies.get(slot)
        if held is None or (version is not None and held.version >= version):
            return False
        self._remove(slot)
        self.stats["copies_dropped"] += 1
        return True

    def at_least(self, namespace: str, key: bytes, version: int) -> bool:
        """The key's record is known to be at ``version`` or newer (a write this node forwarded
        left it): drop a copy older than it, and raise the key's floor to it, so that no older
        push is stored afterwards. True if a copy was dropped."""
        slot = (namespace, key)
        self._raise_floor(slot, version)
        held = self._copies.get(slot)
        if held is None or held.version >= version:
            return False
        self._remove(slot)
        self.stats["copies_dropped"] += 1
        return True

    def drop_namespace(self, namespace: str) -> None:
        for slot in [s for s in self._copies if s[0] == namespace]:
            self._remove(slot)
        self._floors = {s: v for s, v in self._floors.items() if s[0] != namespace}
        self._floor_bytes = sum(len(s[1]) + FLOOR_OVERHEAD for s in self._floors)
        self._limits.pop(namespace, None)

    def expire(self, now: float, wall: float) -> int:
        """Remove every copy whose lease ended or whose entry expired; how many went."""
        gone = [
            slot
            for slot, c in self._copies.items()
            if c.lease_end <= now or (c.expires_at is not None and c.expires_at <= wall)
        ]
        for slot in gone:
            self._remove(slot)
        self.stats["copies_expired"] += len(gone)
        return len(gone)

    def slots(self) -> list[tuple[Slot, Copy]]:
        return list(self._copies.items())

    def _remove(self, slot: Slot) -> None:
        held = self._copies.pop(slot)
        self._bytes[slot[0]] -= held.size
        self._raise_floor(slot, held.version)

    def _raise_floor(self, slot: Slot, version: int) -> None:
        floors = self._floors
        held = floors.get(slot)
        if held is None:
            self._floor_bytes += len(slot[1]) + FLOOR_OVERHEAD
            while self._floor_bytes > MAX_FLOOR_BYTES and floors:
                oldest = next(iter(floors))
                del floors[oldest]
                self._floor_bytes -= len(oldest[1]) + FLOOR_OVERHEAD
        elif version <= held:
            return
        floors[slot] = version

    def _make_room(self, namespace: str, size: int) -> None:
        limit = self._limits.get(namespace, UNBOUNDED_AREA_BYTES)
        if self._bytes[namespace] + size <= limit:
            return
        for slot in [s for s in self._copies if s[0] == namespace]:
            self._remove(slot)
            self.stats["copies_evicted"] += 1
            if self._bytes[namespace] + size <= limit:
                return


__all__ = [
    "COPY_OVERHEAD",
    "FLOOR_OVERHEAD",
    "MAX_FLOOR_BYTES",
    "UNBOUNDED_AREA_BYTES",
    "Copy",
    "HotArea",
]
