"""Replica writes from this node to the other owners: one stream per target, hints on failure.

The coordinator of a write applies it locally, reads the key's *record* (its whole state, or a
tombstone) and hands it to :meth:`Replicator.send`. Each target node has one queue and one task
that sends everything queued since its last batch as ``REPL`` frames (one per namespace) on the
pooled peer connection, so a burst of writes costs one round trip per batch, not per write.

Whatever does not reach a target — it is dead by gossip, the connection failed, it timed out,
or it refused with an error — becomes a *hint* (``HintQueue``: bounded, newest record per key)
that is replayed when gossip reports the target alive again, or — when gossip never held the
target dead (a short partition, a timeout, a refusal) — after a back-off (1 s doubling to 30 s);
a target whose hints were dropped (overflow, age) is flagged ``needs_repair`` for anti-entropy.
A caller that waits for the target's answer (``quorum``/``all`` writes) gets a
:class:`trio.Event`-backed :class:`Ack`.

A target's queue is bounded (:data:`MAX_QUEUED` records, :data:`MAX_QUEUED_BYTES`): a replica
slower than the writes its coordinators take — a node with less CPU, or one sharing its core
— would otherwise grow it without end, and every full garbage collection walks every record
queued. Past the bound a record nobody waits for becomes a hint at once (``hinted_behind``):
the hint queue keeps the newest record per key within its own bounds and replays after the
back-off, by when the stream has caught up. A record a caller waits for is queued anyway.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import structlog
import trio

from meshcache.errors import MeshcacheError
from meshcache.node.data.replication import HintQueue
from meshcache.node.net.peer_pool import Address, PeerPool

log = structlog.get_logger("meshcache.replication")

# REPL answers, one per record (docs/protocol.md).
APPLIED, STALE, REFUSED_NOT_OWNER, REFUSED_STORE = 0, 1, 2, 3
BATCH_RECORDS = 512
BATCH_BYTES = 1 << 20
REPL_TIMEOUT = 2.0
HINT_BATCH_BYTES = 256 * 1024
# Hints for a target gossip still holds alive (it timed out, refused, or the connection broke)
# are retried after a back-off that doubles up to the cap, resetting once a replay lands.
HINT_RETRY_FIRST = 1.0
HINT_RETRY_MAX = 30.0
# What one target's queue holds before records nobody waits for go to its hints instead.
MAX_QUEUED = 8 * BATCH_RECORDS
MAX_QUEUED_BYTES = 4 * BATCH_BYTES


class Ack:
    """The answer of one target for one record: ``ok`` once ``event`` is set; ``stale`` when
    the target answered ``STALE`` (it already held a record at least as new)."""

    __slots__ = ("event", "ok", "stale", "target")

    def __init__(self, target: str) -> None:
        self.target = target
        self.event = trio.Event()
        self.ok = False
        self.stale = False

    def settle(self, ok: bool, stale: bool = False) -> None:
        if not self.event.is_set():
            self.ok = ok
            self.stale = stale
            self.event.set()


class _Item:
    __slots__ = ("ack", "deleted", "key", "namespace", "record", "size", "version")

    def __init__(
        self,
        namespace: str,
        key: bytes,
        record: list[Any],
        version: int,
        deleted: bool,
        ack: Ack | None,
    ) -> None:
        self.namespace = namespace
        self.key = key
        self.record = record
        self.version = version
        self.deleted = deleted
        self.ack = ack
        self.size = len(key) + _value_size(record)


def _value_size(record: list[Any]) -> int:
    value = record[1]
    if type(value) is bytes:
        return len(value) + 24
    return 64 + (len(value) * 32 if hasattr(value, "__len__") else 0)


class _Target:
    __slots__ = ("queue", "size", "wakeup")

    def __init__(self) -> None:
        self.queue: deque[_Item] = deque()
        self.size = 0  # bytes of the queued items
        self.wakeup = trio.Event()


class Replicator:
    """Ships records to their other owners, and keeps hints for the owners it cannot reach.

    Args:
        pool: the peer connections.
        address_of: a node id's data address by the current ring (None: not on the ring).
        alive: whether gossip holds a node alive (a suspect node is still tried).
        hints: where undeliverable records wait.
        ring_version: the version of the ring this node routes by. A target that refuses a
            record as not its own while running this ring or a newer one is right: the record
            is dropped for it, not hinted (its owners have it). A target on an older ring is
            behind: the refusal is hinted and replayed later.
    """

    def __init__(
        self,
        pool: PeerPool,
        *,
        address_of: Callable[[str], Address | None],
        alive: Callable[[str], bool],
        hints: HintQueue,
        ring_version: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._pool = pool
        self._ring_version = ring_version
        self._address_of = address_of
        self._alive = alive
        self.hints = hints
        self._clock = clock
        self._targets: dict[str, _Target] = {}
        self._nursery: trio.Nursery | None = None
        self.stats: Counter[str] = Counter()
        self._replaying: set[str] = set()
        self._retry_after: dict[str, float] = {}  # target -> its next back-off, while retrying

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._expire_hints)
            task_status.started()
            await trio.sleep_forever()

    def send(
        self,
        target: str,
        namespace: str,
        key: bytes,
        record: list[Any],
        version: int,
        deleted: bool,
        *,
        want_ack: bool = False,
    ) -> Ack | None:
        """Queue ``record`` for ``target`` (never blocks), or hint it when the target's queue
        is full and nobody waits for it. With ``want_ack``, the answer."""
        ack = Ack(target) if want_ack else None
        item = _Item(namespace, key, record, version, deleted, ack)
        if not self._alive(target) or self._nursery is None:
            self._hint(target, [item], "dead")
            return ack
        state = self._targets.get(target)
        if state is None:
            state = self._targets[target] = _Target()
            self._nursery.start_soon(self._stream, target, state)
        if ack is None and (len(state.queue) >= MAX_QUEUED or state.size >= MAX_QUEUED_BYTES):
            self._hint(target, [item], "behind")
            return None
        state.queue.append(item)
        state.size += item.size
        state.wakeup.set()
        self.stats["queued"] += 1
        return ack

    def queued(self) -> int:
        """Records waiting to be sent (not counting hints)."""
        return sum(len(t.queue) for t in self._targets.values())

    async def _stream(self, target: str, state: _Target) -> None:
        while True:
            await state.wakeup.wait()
            state.wakeup = trio.Event()
            while state.queue:
                batch: list[_Item] = []
                size = 0
                while state.queue and len(batch) < BATCH_RECORDS and size < BATCH_BYTES:
                    item = state.queue.popleft()
                    batch.append(item)
                    size += item.size
                state.size -= size
                await self._deliver(target, batch)
                # A dead target's batch is hinted without a wait: a long queue (a bulk load
                # when the target died) must not be hinted in one stretch of the loop.
                await trio.lowlevel.checkpoint()

    async def _deliver(self, target: str, batch: list[_Item]) -> bool:
        """Send one batch (grouped by namespace); hint whatever did not land. True if all did."""
        address = self._address_of(target)
        if address is None or not self._alive(target):
            self._hint(target, batch, "dead")
            return False
        by_ns: dict[str, list[_Item]] = {}
        for item in batch:
            by_ns.setdefault(item.namespace, []).append(item)
        all_ok = True
        for namespace, items in by_ns.items():
            payload = [[item.key, item.record] for item in items]
            try:
                response = await self._pool.request(
                    address, "REPL", namespace, [payload], timeout=REPL_TIMEOUT
                )
                answers = response.result()
                if type(answers) is not list or len(answers) != len(items):
                    raise MeshcacheError(f"REPL answer of the wrong shape from {target}")
            except MeshcacheError as exc:
                self.stats["send_failures"] += 1
                log.debug("replica_send_failed", target=target, error=str(exc))
                self._hint(target, items, "send_failed")
                all_ok = False
                continue
            failed: list[_Item] = []
            target_current = response.ring_version >= self._ring_version()
            for item, answer in zip(items, answers, strict=True):
                if answer in (APPLIED, STALE):
                    self.stats["applied" if answer == APPLIED else "stale"] += 1
                    if item.ack is not None:
                        item.ack.settle(True, answer == STALE)
                elif answer == REFUSED_NOT_OWNER and target_current:
                    # Not the target's key on a ring at least as new as ours: nothing to retry.
                    self.stats["dropped_not_owner"] += 1
                    if item.ack is not None:
                        item.ack.settle(False)
                else:
                    self.stats["refused"] += 1
                    failed.append(item)
            if failed:
                all_ok = False
                # A refusal by a target behind our ring, or whose store is full, is kept as a
                # hint: replayed later, when the target's view may have changed.
                self._hint(target, failed, "refused")
        return all_ok

    def _hint(self, target: str, items: list[_Item], why: str) -> None:
        now = self._clock()
        for item in items:
            if item.ack is not None:
                item.ack.settle(False)
            self.hints.add(
                target,
                item.namespace,
                item.key,
                item.record,
                version=item.version,
                deleted=item.deleted,
                now=now,
            )
        self.stats[f"hinted_{why}"] += len(items)
        if why != "dead" and target not in self._retry_after and self._nursery is not None:
            # Gossip may never call this target dead (nor alive again): retry on our own.
            self._start_retry(target, self._nursery)

    def _start_retry(self, target: str, nursery: trio.Nursery) -> None:
        """Replay ``target``'s hints after the first back-off, and on (:meth:`_retry_hints`)."""
        self._retry_after[target] = HINT_RETRY_FIRST
        nursery.start_soon(self._retry_hints, target)

    async def _retry_hints(self, target: str) -> None:
        """Replay ``target``'s hints after a back-off until none are left or it is dead (then
        the ALIVE event replays them)."""
        try:
            while self.hints.pending(target) and self._address_of(target) is not None:
                delay = self._retry_after[target]
                await trio.sleep(delay)
                if not self._alive(target):
                    return
                if target in self._replaying:
                    continue
                self.stats["hint_retries"] += 1
                self._replaying.add(target)
                if await self._replay(target):
                    self._retry_after[target] = HINT_RETRY_FIRST
                else:
                    self._retry_after[target] = min(delay * 2, HINT_RETRY_MAX)
        finally:
            self._retry_after.pop(target, None)

    # --- hints --------------------------------------------------------------------------

    def target_alive(self, target: str) -> None:
        """Gossip says ``target`` is alive (again): replay its hints in the background."""
        if self.hints.pending(target) and target not in self._replaying and self._nursery:
            self._replaying.add(target)
            self._nursery.start_soon(self._replay, target)

    def target_removed(self, target: str) -> None:
        """``target`` left the ring: its hints have nowhere to go."""
        dropped = self.hints.drop_target(target)
        if dropped:
            self.stats["hints_dropped_removed"] += dropped
        state = self._targets.pop(target, None)
        if state is not None:
            state.queue.clear()
            state.size = 0

    async def _replay(self, target: str) -> bool:
        """Send ``target``'s hints (the caller put it in ``_replaying``); True if all landed."""
        try:
            for hints in self.hints.drain(target, HINT_BATCH_BYTES):
                items = [
                    _Item(h.namespace, h.key, h.record, h.version, h.deleted, None) for h in hints
                ]
                # _deliver hints again whatever fails, so nothing is lost if the target
                # went away again; stop then and wait for the next alive event or retry.
                if not await self._deliver(target, items):
                    return False
                self.stats["hints_replayed"] += len(items)
                await trio.lowlevel.checkpoint()  # between batches, even when none waited
            return True
        finally:
            self._replaying.discard(target)

    async def _expire_hints(self) -> None:
        while True:
            await trio.sleep(5.0)
            dropped = self.hints.expire(self._clock())
            if dropped:
                self.stats["hints_expired"] += dropped
                log.warning("hints_expired", count=dropped)
            self._retry_forgotten()

    def _retry_forgotten(self) -> None:
        """Retry the hints of every target gossip holds alive that nothing is replaying or
        retrying: hints queued as for a dead target wait for its ALIVE event, and one that
        came before they were queued, or while another replay ran, would leave them queued."""
        assert self._nursery is not None
        for target in self.hints.targets():
            if (
                self._alive(target)
                and target not in self._replaying
                and target not in self._retry_after
                and self._address_of(target) is not None
            ):
                self.stats["hint_retries_forgotten"] += 1
                self._start_retry(target, self._nursery)


__all__ = [
    "APPLIED",
    "MAX_QUEUED",
    "MAX_QUEUED_BYTES",
    "REFUSED_NOT_OWNER",
    "REFUSED_STORE",
    "STALE",
    "Ack",
    "Replicator",
]
