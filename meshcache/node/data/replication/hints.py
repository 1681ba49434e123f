"""Hinted hand-off: writes for owners that gossip reports dead, kept to replay on their return.

A :class:`HintQueue` is a bounded store of ``(namespace, key, record wire form)`` per target
node. It does no I/O and reads no clock: every call that needs time takes ``now``, from a clock
that does not go back (each target's hints are kept in the order they were queued, oldest
first, and expiry and overflow take them from there).

What callers may rely on:

* **Bounds.** After every call, the bytes held for any target are at most
  ``max_bytes_per_target`` and the bytes held in total at most ``max_bytes`` (a hint's size
  is :func:`hint_size`: its msgpack form plus a fixed object overhead).
* **Coalescing.** At most one hint per (target, namespace, key): the newest by
  :func:`.tombstones.lww_order` (a delete wins a tie). An older or equal hint for a
  key already hinted is not queued and is counted in ``coalesced``.
* **Overflow drops the oldest.** When a bound is exceeded the oldest hints go first (of that
  target for the per-target bound, of any target for the total bound); they are counted in
  ``dropped_overflow`` and their target is put in :attr:`HintQueue.needs_repair`. A hint that
  alone exceeds a bound is refused (``refused_too_large``), with the same flag. Nothing is lost
  silently: a target in ``needs_repair`` must get a full anti-entropy round before the flag is
  cleared with :meth:`HintQueue.repaired`.
* **Expiry.** :meth:`HintQueue.expire` drops hints queued more than ``max_age_s`` ago
  (``dropped_expired``, target flagged as above); replaying a stale hint is harmless
  (last-writer-wins) but a target down that long needs anti-entropy anyway.
* **Replay.** :meth:`HintQueue.drain` yields batches of one target's hints, oldest first, each
  at most ``budget_bytes`` (a single larger hint goes alone) and removed from the queue as it
  is yielded. If sending a batch fails, :meth:`HintQueue.restore` puts it back at the front
  (unless a newer hint for the key arrived meanwhile).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import msgpack

from meshcache.errors import ConfigError

#: Python object overhead per queued hint (the hint's tuple and its record's, a dict slot, the
#: key and namespace objects) on top of the msgpack size of its record: a round estimate.
HINT_OVERHEAD: Final = 320

HintKey = tuple[str, bytes]


def hint_size(namespace: str, key: bytes, record: Any) -> int:
    """What a hint is accounted at: its record's msgpack size, key, namespace and overhead."""
    packed = msgpack.packb(record, use_bin_type=True)
    return len(packed) + len(key) + len(namespace) + HINT_OVERHEAD


class Hint(NamedTuple):
    """One write (or delete) owed to ``target``.

    ``record`` is the wire form (``EntryView.to_wire()`` or ``Tombstone.to_wire()``), kept as a
    tuple; ``version``/``deleted`` are its last-writer-wins order, kept so coalescing need not
    parse it.

    The queue keeps each hint as a plain tuple of these fields (:data:`_Held`) and hands out
    :class:`Hint` objects: a plain tuple whose items are all atoms (a plain value's hint, its record
    a tuple too) is no longer tracked by the garbage collector once collections have seen it,
    so the hints a busy node holds for replicas that fall behind (tens of thousands) do not
    make every full collection walk them (80,000 hints as objects: 38 ms a collection). A
    tuple subclass such as this one is always tracked.
    """

    target: str
    namespace: str
    key: bytes
    version: int
    deleted: bool
    record: Any
    created: float
    size: int
    seq: int = 0


_Held = tuple[str, str, bytes, int, bool, Any, float, int, int]
"""A queued hint: :class:`Hint`'s fields in order, as a plain tuple."""
_TARGET: Final = 0
_NAMESPACE: Final = 1
_KEY: Final = 2
_VERSION: Final = 3
_DELETED: Final = 4
_CREATED: Final = 6
_SIZE: Final = 7
_SEQ: Final = 8


@dataclass(slots=True)
class HintStats:
    """Counters since the queue was made (monotonic)."""

    queued: int = 0
    coalesced: int = 0
    drained: int = 0
    restored: int = 0
    dropped_overflow: int = 0
    dropped_expired: int = 0
    dropped_target_removed: int = 0
    refused_too_large: int = 0


class HintQueue:
    """Hints per target under a total and a per-target byte bound (see the module docstring).

    Args:
        max_bytes: bound on the bytes held for all targets.
        max_bytes_per_target: bound on the bytes held for one target.
        max_age_s: a hint older than this is dropped by :meth:`expire`.
    """

    def __init__(self, *, max_bytes: int, max_bytes_per_target: int, max_age_s: float) -> None:
        if max_bytes < 1 or max_bytes_per_target < 1 or not max_age_s > 0:
            raise ConfigError("hint bounds must be >= 1 byte and max_age_s > 0")
        self.max_bytes = max_bytes
        self.max_bytes_per_target = max_bytes_per_target
        self.max_age_s = max_age_s
        self._queues: dict[str, OrderedDict[HintKey, _Held]] = {}
        self._target_bytes: dict[str, int] = {}
        self._bytes = 0
        self._count = 0
        # Each target's queue is in the order of ``now`` (front: oldest), which callers pass
        # from a clock that does not go back: expiry and overflow take from the fronts, with
        # no global index to keep (one rebuilt over every hint held the loop for up to 50 ms
        # at 80,000 hints).
        self._seq = 0
        #: Targets that lost hints (overflow, expiry, too large): they need anti-entropy.
        self.needs_repair: set[str] = set()
        self.stats = HintStats()

    # ------------------------------------------------------------------------ inspection

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return self._count

    def targets(self) -> list[str]:
        """Targets with at least one hint queued."""
        return [t for t, q in self._queues.items() if q]

    def pending(self, target: str) -> int:
        q = self._queues.get(target)
        return 0 if q is None else len(q)

    def bytes_for(self, target: str) -> int:
        return self._target_bytes.get(target, 0)

    def get(self, target: str, namespace: str, key: bytes) -> Hint | None:
        held = self._held(target, namespace, key)
        return None if held is None else Hint._make(held)

    def _held(self, target: str, namespace: str, key: bytes) -> _Held | None:
        q = self._queues.get(target)
        return None if q is None else q.get((namespace, key))

    def hints(self, target: str) -> list[Hint]:
        """A copy of ``target``'s hints, oldest first."""
        q = self._queues.get(target)
        return [] if q is None else list(map(Hint._make, q.values()))

    # ------------------------------------------------------------------------ queueing

    def add(
        self,
        target: str,
        namespace: str,
        key: bytes,
        record: Any,
        *,
        version: int,
        deleted: bool,
        now: float,
        size: int | None = None,
    ) -> bool:
        """Queue a hint; return whether the queue now holds it (``False``: an equal or newer
        hint is already queued for the key, or the hint alone exceeds a bound)."""
        if size is None:
            size = hint_size(namespace, key, record)
        hk = (namespace, key)
        q = self._queues.get(target)
        old = None if q is None else q.get(hk)
        if old is not None and (old[_VERSION], old[_DELETED]) >= (version, deleted):
            self.stats.coalesced += 1
            return False
        if size > self.max_bytes_per_target or size > self.max_bytes:
            self.stats.refused_too_large += 1
            self.needs_repair.add(target)
            return False
        if old is not None:
            self._unlink(old)
            self.stats.coalesced += 1
        if type(record) is list:
            record = tuple(record)
        self._link((target, namespace, key, version, deleted, record, now, size, 0), front=False)
        self.stats.queued += 1
        self._enforce(target)
        return True

    def restore(self, hints: Iterable[Hint]) -> None:
        """Put back hints taken by :meth:`drain` whose replay failed, at the front of their
        targets' queues and with their age kept; a hint superseded meanwhile is skipped."""
        hints = list(hints)
        for hint in reversed(hints):
            q = self._queues.get(hint.target)
            held = None if q is None else q.get((hint.namespace, hint.key))
            if held is not None and (held[_VERSION], held[_DELETED]) >= (
                hint.version,
                hint.deleted,
            ):
                self.stats.coalesced += 1
                continue
            if held is not None:
                self._unlink(held)
            self._link(tuple(hint), front=True)
            self.stats.restored += 1
        for target in {h.target for h in hints}:
            self._enforce(target)

    # ------------------------------------------------------------------------ replay

    def drain(self, target: str, budget_bytes: int, max_hints: int = 1000) -> Iterator[list[Hint]]:
        """Batches of ``target``'s hints for replay, oldest first, until none are left.

        Each batch holds at most ``max_hints`` hints and ``budget_bytes`` bytes (a single
        larger hint goes alone); it is removed from the queue when yielded. Hints added while
        draining are drained too. Stop iterating to leave the rest queued.
        """
        if budget_bytes < 1 or max_hints < 1:
            raise ConfigError("budget_bytes and max_hints must be >= 1")
        while True:
            q = self._queues.get(target)
            if not q:
                return
            batch: list[_Held] = []
            used = 0
            for held in q.values():
                if batch and (used + held[_SIZE] > budget_bytes or len(batch) >= max_hints):
                    break
                batch.append(held)
                used += held[_SIZE]
            for held in batch:
                self._unlink(held)
            self.stats.drained += len(batch)
            yield list(map(Hint._make, batch))

    # ------------------------------------------------------------------------ dropping

    def expire(self, now: float) -> int:
        """Drop hints queued at or before ``now - max_age_s``; return how many."""
        cutoff = now - self.max_age_s
        dropped = 0
        for target, q in self._queues.items():
            while q:
                held = next(iter(q.values()))
                if held[_CREATED] > cutoff:
                    break
                self._unlink(held)
                self.needs_repair.add(target)
                dropped += 1
        self.stats.dropped_expired += dropped
        return dropped

    def drop_target(self, target: str) -> int:
        """Forget every hint for ``target`` (it left the ring: its data is no longer owed)."""
        q = self._queues.get(target)
        hints = [] if q is None else list(q.values())
        for held in hints:
            self._unlink(held)
        self._queues.pop(target, None)
        self._target_bytes.pop(target, None)
        self.needs_repair.discard(target)
        self.stats.dropped_target_removed += len(hints)
        return len(hints)

    def repaired(self, target: str) -> None:
        """Clear ``target``'s needs-repair flag: a full anti-entropy round with it completed."""
        self.needs_repair.discard(target)

    # ------------------------------------------------------------------------ internals

    def _link(self, held: _Held, *, front: bool) -> None:
        self._seq += 1
        target, namespace, key, size = held[_TARGET], held[_NAMESPACE], held[_KEY], held[_SIZE]
        held = (*held[:_SEQ], self._seq)
        hk = (namespace, key)
        q = self._queues.setdefault(target, OrderedDict())
        q[hk] = held
        if front:
            q.move_to_end(hk, last=False)
        self._target_bytes[target] = self._target_bytes.get(target, 0) + size
        self._bytes += size
        self._count += 1

    def _unlink(self, held: _Held) -> None:
        target = held[_TARGET]
        del self._queues[target][(held[_NAMESPACE], held[_KEY])]
        self._target_bytes[target] -= held[_SIZE]
        self._bytes -= held[_SIZE]
        self._count -= 1

    def _enforce(self, target: str) -> None:
        q = self._queues.get(target)
        while q and self._target_bytes[target] > self.max_bytes_per_target:
            oldest = next(iter(q.values()))
            self._drop_overflow(oldest)
        while self._bytes > self.max_bytes:
            # The oldest hint of all is at the front of one target's queue.
            fronts = [next(iter(q.values())) for q in self._queues.values() if q]
            if not fronts:
                break
            self._drop_overflow(min(fronts, key=lambda h: (h[_CREATED], h[_SEQ])))

    def _drop_overflow(self, held: _Held) -> None:
        self._unlink(held)
        self.stats.dropped_overflow += 1
        self.needs_repair.add(held[_TARGET])


__all__ = ["HINT_OVERHEAD", "Hint", "HintQueue", "HintStats", "hint_size"]
