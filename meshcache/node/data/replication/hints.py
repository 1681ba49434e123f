"""Hinted hand-off: writes for owners that gossip reports dead, kept to replay on their return.

A :class:`HintQueue` is a bounded store of ``(namespace, key, record wire form)`` per target
node. It does no I/O and reads no clock: every call that needs time takes ``now``.

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

import dataclasses
import heapq
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack

from meshcache.errors import ConfigError

#: Python object overhead per queued hint (the Hint object, two dict slots, a heap tuple, the
#: key and namespace objects) on top of the msgpack size of its record: a round estimate.
HINT_OVERHEAD: Final = 320
#: The heap is rebuilt when it holds this many stale items more than twice the live hints.
HEAP_SLACK: Final = 64

HintKey = tuple[str, bytes]


def hint_size(namespace: str, key: bytes, record: Any) -> int:
    """What a hint is accounted at: its record's msgpack size, key, namespace and overhead."""
    packed = msgpack.packb(record, use_bin_type=True)
    return len(packed) + len(key) + len(namespace) + HINT_OVERHEAD


@dataclass(frozen=True, slots=True)
class Hint:
    """One write (or delete) owed to ``target``.

    ``record`` is the wire form (``EntryView.to_wire()`` or ``Tombstone.to_wire()``);
    ``version``/``deleted`` are its last-writer-wins order, kept so coalescing need not parse it.
    """

    target: str
    namespace: str
    key: bytes
    version: int
    deleted: bool
    record: Any
    created: float
    size: int
    seq: int = field(default=0, compare=False)


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
        self._queues: dict[str, OrderedDict[HintKey, Hint]] = {}
        self._target_bytes: dict[str, int] = {}
        self._bytes = 0
        self._count = 0
        # (created, seq, target, namespace, key): the global age order, invalidated lazily (an
        # item is live while the queued hint of that key has that seq).
        self._order: list[tuple[float, int, str, str, bytes]] = []
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
        q = self._queues.get(target)
        return None if q is None else q.get((namespace, key))

    def hints(self, target: str) -> list[Hint]:
        """A copy of ``target``'s hints, oldest first."""
        q = self._queues.get(target)
        return [] if q is None else list(q.values())

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
        if old is not None and (old.version, old.deleted) >= (version, deleted):
            self.stats.coalesced += 1
            return False
        if size > self.max_bytes_per_target or size > self.max_bytes:
            self.stats.refused_too_large += 1
            self.needs_repair.add(target)
            return False
        if old is not None:
            self._unlink(old)
            self.stats.coalesced += 1
        self._link(Hint(target, namespace, key, version, deleted, record, now, size), front=False)
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
            if held is not None and (held.version, held.deleted) >= (hint.version, hint.deleted):
                self.stats.coalesced += 1
                continue
            if held is not None:
                self._unlink(held)
            self._link(hint, front=True)
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
            batch: list[Hint] = []
            used = 0
            for hint in q.values():
                if batch and (used + hint.size > budget_bytes or len(batch) >= max_hints):
                    break
                batch.append(hint)
                used += hint.size
            for hint in batch:
                self._unlink(hint)
            self.stats.drained += len(batch)
            yield batch

    # ------------------------------------------------------------------------ dropping

    def expire(self, now: float) -> int:
        """Drop hints queued at or before ``now - max_age_s``; return how many."""
        cutoff = now - self.max_age_s
        dropped = 0
        order = self._order
        while order and order[0][0] <= cutoff:
            _, seq, target, namespace, key = heapq.heappop(order)
            hint = self.get(target, namespace, key)
            if hint is not None and hint.seq == seq:
                self._unlink(hint)
                self.needs_repair.add(target)
                dropped += 1
        self.stats.dropped_expired += dropped
        return dropped

    def drop_target(self, target: str) -> int:
        """Forget every hint for ``target`` (it left the ring: its data is no longer owed)."""
        hints = self.hints(target)
        for hint in hints:
            self._unlink(hint)
        self._queues.pop(target, None)
        self._target_bytes.pop(target, None)
        self.needs_repair.discard(target)
        self.stats.dropped_target_removed += len(hints)
        return len(hints)

    def repaired(self, target: str) -> None:
        """Clear ``target``'s needs-repair flag: a full anti-entropy round with it completed."""
        self.needs_repair.discard(target)

    # ------------------------------------------------------------------------ internals

    def _link(self, hint: Hint, *, front: bool) -> None:
        self._seq += 1
        hint = dataclasses.replace(hint, seq=self._seq)
        hk = (hint.namespace, hint.key)
        q = self._queues.setdefault(hint.target, OrderedDict())
        q[hk] = hint
        if front:
            q.move_to_end(hk, last=False)
        self._target_bytes[hint.target] = self._target_bytes.get(hint.target, 0) + hint.size
        self._bytes += hint.size
        self._count += 1
        heapq.heappush(self._order, (hint.created, hint.seq, hint.target, hint.namespace, hint.key))
        if len(self._order) > 2 * self._count + HEAP_SLACK:
            self._order = [
                (h.created, h.seq, h.target, h.namespace, h.key)
                for q in self._queues.values()
                for h in q.values()
            ]
            heapq.heapify(self._order)

    def _unlink(self, hint: Hint) -> None:
        # Its heap item (if still there) goes stale: no queued hint has its seq any more.
        q = self._queues[hint.target]
        del q[(hint.namespace, hint.key)]
        self._target_bytes[hint.target] -= hint.size
        self._bytes -= hint.size
        self._count -= 1

    def _enforce(self, target: str) -> None:
        q = self._queues.get(target)
        while q and self._target_bytes[target] > self.max_bytes_per_target:
            oldest = next(iter(q.values()))
            self._drop_overflow(oldest)
        order = self._order
        while self._bytes > self.max_bytes and order:
            _, seq, t, namespace, key = heapq.heappop(order)
            hint = self.get(t, namespace, key)
            if hint is not None and hint.seq == seq:
                self._drop_overflow(hint)

    def _drop_overflow(self, hint: Hint) -> None:
        self._unlink(hint)
        self.stats.dropped_overflow += 1
        self.needs_repair.add(hint.target)


__all__ = ["HINT_OVERHEAD", "Hint", "HintQueue", "HintStats", "hint_size"]
