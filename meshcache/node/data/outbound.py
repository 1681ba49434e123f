"""One scan of a namespace sent to several nodes, each the records of its own ranges.

A hand-off source streams the ranges a joining node asked for; a leaving node streams every
record it holds to the owners that replace it, each a part of the ring. Either way the store is
read once: :func:`stream` walks its tables a slice at a time (:meth:`Store.item_parts`), works
out each key's token once, and gives every :class:`Outbound` the keys in its ranges. The token
is most of a scan's cost — a key read from memory for its CRC-32, a cache miss in a big store —
so a leaving node with three replacements scans a third of what one pass per replacement did.

An :class:`Outbound` batches what it is given — plain values without an expiry (most of a cache)
as store blobs with ``BULK``, everything else as records with ``REPL`` — and keeps up to
:data:`WINDOW` batches in flight, so the target applies one while the source scans and packs
the next. Batches wait for the node's byte budget (``handoff_rate``). A batch that fails ends
that target's stream (its batches in flight are cancelled); the others go on.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator
from itertools import accumulate, compress, repeat
from operator import add
from typing import Any

import trio

from meshcache.errors import MeshcacheError
from meshcache.node.data.replication import ByteBudget
from meshcache.node.data.replication.tombstones import Tombstone, read_record
from meshcache.node.data.replicator import BATCH_BYTES
from meshcache.ring.tokens import RangeSet, key_token
from meshcache.store.store import Store
from meshcache.store.values import TypedValue

# The target reads a batch in one stretch of its loop, one from each source per wake-up, and
# applies it a slice at a time: these keep the reading (msgpack) under a millisecond.
BATCH_RECORDS = 500  # records per REPL batch (also stops at BATCH_BYTES)
BULK_RECORDS = 500  # plain values per BULK batch
BULK_BYTES = 64 * 1024  # ... and their bytes
RECORD_OVERHEAD = 16  # bytes a REPL record adds to its key and value on the wire (arrays, ints)
BIN_HEADER = 3  # a msgpack bin's header for up to 64 KiB; a BULK item has nothing else
WINDOW = 4  # batches in flight to one target (on two cores, about half the time of one)
SCAN_CHUNK = 2000  # keys looked at between two checkpoints (about a millisecond)

#: Sends one batch (``op``, payload) to the target; raises :class:`MeshcacheError` when it
#: could not (retries, if any, are the caller's).
Call = Callable[[str, list[Any]], Awaitable[Any]]
#: Told of every batch the target answered: ``(op, records, answer)``.
Landed = Callable[[str, int, Any], None]


class Outbound:
    """What one target of :func:`stream` is sent: the records in ``wanted`` (all, if None)."""

    def __init__(
        self,
        target: str,
        wanted: RangeSet | None,
        call: Call,
        landed: Landed,
        budget: ByteBudget,
        clock: Callable[[], float],
    ) -> None:
        self.target = target
        self.wanted = wanted
        self._call = call
        self._landed = landed
        self._budget = budget
        self._clock = clock
        self._window = trio.Semaphore(WINDOW)
        self._nursery: trio.Nursery | None = None
        self._done = trio.Event()
        self.sent = 0
        """Records the target answered for."""
        self.failed: MeshcacheError | None = None
        """Why the stream to this target ended early, or None."""
        self._blobs: list[bytes] = []  # [key, blob, key, blob, ...] for BULK
        self._blob_bytes = 0
        self._records: list[list[Any]] = []  # [key, record] for REPL
        self._record_bytes = 0

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the nursery this target's batches are delivered in until the stream ends."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await self._done.wait()

    async def take(
        self, store: Store, namespace: str, keys: list[bytes], entries: list[Any]
    ) -> None:
        """Batch ``keys`` (already in this target's ranges) and their entries as copied."""
        plain, rest = store.plain_blobs(namespace, keys, entries)
        await self._take_blobs(plain)
        for key in rest:
            wire = store.entry_wire(namespace, key)
            if wire is None:  # deleted or expired since the scan: its record, if any
                record = read_record(store, namespace, key)
                wire = None if record is None else record.to_wire()
            if wire is not None:
                value = wire[1]
                size = len(key) + RECORD_OVERHEAD + (len(value) if type(value) is bytes else 64)
                await self._add_record([key, wire], size)

    async def _take_blobs(self, plain: list[bytes]) -> None:
        """Add ``plain`` (``[key, blob, key, blob, ...]``) to the ``BULK`` batch, sending it
        each time it fills: after the record that brings it to :data:`BULK_BYTES` (each item
        with its msgpack header) or to :data:`BULK_RECORDS`. Where to cut is found by bisection
        over the running sum of the items' sizes, not record by record."""
        n = len(plain)
        # ends[i]: the bytes of plain[: i + 1], each item with its header
        ends = list(accumulate(map(add, map(len, plain), repeat(BIN_HEADER))))
        at = 0
        while at < n:
            before = ends[at - 1] if at else 0
            # The first item that brings the batch to BULK_BYTES (n if none does), and the
            # end of its record (keys sit at even indexes, blobs at odd ones).
            reached = bisect_left(ends, BULK_BYTES - self._blob_bytes + before, at)
            end = n if reached == n else reached + 2 - reached % 2
            full = reached < n
            most = at + 2 * BULK_RECORDS - len(self._blobs)
            if most <= end:
                end, full = most, True
            self._blobs += plain[at:end]
            self._blob_bytes += ends[end - 1] - before
            at = end
            if full:
                await self._send_blobs()

    async def take_tombstones(self, store: Store, namespace: str, keys: list[bytes]) -> None:
        """Batch the tombstones of ``keys`` (already in this target's ranges) still held."""
        for key in keys:
            version = store.get_tombstone(namespace, key)
            if version is not None:  # else purged, or written again since the snapshot
                await self._add_record(
                    [key, Tombstone(version).to_wire()], len(key) + RECORD_OVERHEAD
                )

    async def _add_record(self, record: list[Any], size: int) -> None:
        self._records.append(record)
        self._record_bytes += size
        if self._record_bytes >= BATCH_BYTES or len(self._records) >= BATCH_RECORDS:
            await self._send_records()

    async def _send_blobs(self) -> None:
        blobs, size = self._blobs, self._blob_bytes
        self._blobs, self._blob_bytes = [], 0
        await self._send("BULK", blobs, len(blobs) // 2, size)

    async def _send_records(self) -> None:
        records, size = self._records, self._record_bytes
        self._records, self._record_bytes = [], 0
        await self._send("REPL", records, len(records), size)

    async def _send(self, op: str, payload: list[Any], count: int, size: int) -> None:
        delay = self._budget.delay(size, self._clock())
        if delay:
            await trio.sleep(delay)
        self._budget.take(size, self._clock())
        await self._window.acquire()
        if self.failed is not None:  # it failed meanwhile: its nursery is closing
            self._window.release()
            return
        assert self._nursery is not None
        self._nursery.start_soon(self._deliver, op, payload, count)

    async def _deliver(self, op: str, payload: list[Any], count: int) -> None:
        try:
            answer = await self._call(op, payload)
            self.sent += count
            self._landed(op, count, answer)
        except MeshcacheError as exc:
            if self.failed is None:
                self.failed = exc
                assert self._nursery is not None
                self._nursery.cancel_scope.cancel()
        finally:
            self._window.release()

    async def _flush(self) -> None:
        """Send what is batched (the batches in flight end with the stream)."""
        if self.failed is None and self._blobs:
            await self._send_blobs()
        if self.failed is None and self._records:
            await self._send_records()


async def stream(
    store: Store, namespace: str, tombstones: list[bytes], outbounds: list[Outbound]
) -> None:
    """Send each of ``outbounds`` the records of ``namespace`` in its ranges, and the
    tombstones of ``tombstones`` still held: one scan for all of them, :data:`SCAN_CHUNK` keys
    at a time with a checkpoint after each. Plain values travel as each table held them when
    the scan reached it (the caller makes sure a write since then reaches the target too, and
    last-writer-wins keeps the newer); other entries are read when they are batched. Returns
    when every target has answered for its batches or failed (``Outbound.failed``)."""
    ranged = any(out.wanted is not None for out in outbounds)  # else no token is needed
    async with trio.open_nursery() as nursery:
        for out in outbounds:
            await nursery.start(out._run)
        try:
            for keys, entries in _item_slices(store.item_parts(namespace)):
                tokens = list(map(key_token, keys)) if ranged else []
                for out, inside in _shares(outbounds, tokens):
                    if inside is None:
                        await out.take(store, namespace, keys, entries)
                    elif any(inside):
                        held = list(compress(entries, inside))
                        await out.take(store, namespace, list(compress(keys, inside)), held)
                if all(out.failed is not None for out in outbounds):
                    return
                await trio.lowlevel.checkpoint()
            for start in range(0, len(tombstones), SCAN_CHUNK):
                keys = tombstones[start : start + SCAN_CHUNK]
                tokens = list(map(key_token, keys)) if ranged else []
                for out, inside in _shares(outbounds, tokens):
                    buried = keys if inside is None else list(compress(keys, inside))
                    await out.take_tombstones(store, namespace, buried)
                await trio.lowlevel.checkpoint()
            for out in outbounds:
                await out._flush()
        finally:
            for out in outbounds:
                out._done.set()


def _shares(
    outbounds: list[Outbound], tokens: list[int]
) -> Iterator[tuple[Outbound, list[bool] | None]]:
    """Each target still going, with which of the slice's keys (their ``tokens``) are in its
    ranges (None: it takes them all)."""
    for out in outbounds:
        if out.failed is None:
            yield out, None if out.wanted is None else out.wanted.mask_tokens(tokens)


def _item_slices(
    parts: Iterator[tuple[list[bytes], list[bytes | TypedValue]]],
) -> Iterator[tuple[list[bytes], list[bytes | TypedValue]]]:
    """:meth:`Store.item_parts` in slices of at most :data:`SCAN_CHUNK` keys and their entries
    (a table is copied when the first of its slices is asked for)."""
    for keys, entries in parts:
        for at in range(0, len(keys), SCAN_CHUNK):
            yield keys[at : at + SCAN_CHUNK], entries[at : at + SCAN_CHUNK]


__all__ = ["SCAN_CHUNK", "Outbound", "stream"]
