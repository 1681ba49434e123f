"""A namespace's keys, snapshotted for a long scan, in a form the garbage collector never walks.

An anti-entropy scan reads every key of a namespace in slices over seconds (minutes, paced),
so it works from a snapshot (a hand-off or a drop, which goes through the store at full speed,
copies each table as it reaches it instead). A plain list of a million keys is one container
the collector tracks: every full collection while it lives walks its million references (the
keys themselves are not tracked, but each is touched), and on a node that froze its start-up
objects full collections come every few seconds under load — each then holds the loop for as
long as the walk takes, 100 ms and more per million keys.

:class:`KeyChunks` holds the keys as msgpack-packed chunks instead: ``bytes`` objects, which
the collector does not track. Taking one copies the keys at C speed a table per step (the
store's :meth:`~meshcache.store.Store.key_parts`; one copy of a million keys would hold the
loop for 20 ms and more) and packs them a few chunks per step, with collections held off
meanwhile so that the transient lists are never walked; reading gives each chunk back as a
fresh list of keys (equal to the stored ones, not the same objects).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from itertools import chain

import msgpack
import trio

from meshcache.store.store import Store

#: Keys per packed chunk: what a reader handles between two checkpoints at most.
CHUNK = 2000
#: Chunks packed per step while taking a snapshot. In a node that has run a while the keys lie
#: scattered in memory and every key touched is a cache miss: 10 chunks (20,000 keys packed,
#: then released) measured 2-3 ms of CPU on a loaded two-core machine.
PACK_PER_STEP = 10

_paused = 0  # snapshots being taken now (collections are held off while any is)
_was_enabled = True  # whether collections were on when the first of them began


class KeyChunks:
    """Keys in packed chunks of at most :data:`CHUNK` (see the module docstring)."""

    __slots__ = ("_chunks", "count")

    def __init__(self, chunks: list[bytes], count: int) -> None:
        self._chunks = chunks
        self.count = count
        """How many keys the snapshot holds."""

    @classmethod
    async def take(cls, store: Store, namespace: str, *, tombstones: bool = False) -> KeyChunks:
        """The keys ``namespace`` holds (and, with ``tombstones``, the keys of its tombstones
        after them), in the order :meth:`Store.key_snapshot` gives them. Taken a table per
        step: a key held throughout is in it once, one written or removed meanwhile may be
        or not (a scan reads each key anyway, and one removed reads as missing).

        Raises:
            CommandError: ``NO_SUCH_NAMESPACE``.
        """
        global _paused, _was_enabled
        parts: Iterator[list[bytes]] = store.key_parts(namespace)
        if tombstones:
            parts = chain(parts, [store.tombstone_keys(namespace)])
        packb = msgpack.Packer(use_bin_type=True).pack
        chunks: list[bytes] = []
        pending: list[bytes] = []
        count = packed = 0
        # Held off from here until the lists are gone: a collection now would walk them.
        _paused += 1
        if _paused == 1:
            _was_enabled = gc.isenabled()
            gc.disable()
        try:
            # Each table's copy starts a step (a reference to every key: a cache miss each in a
            # long-lived store); packing goes PACK_PER_STEP chunks a step.
            part = next(parts, None)
            while part is not None:
                count += len(part)
                pending += part
                del part
                full = len(pending) - len(pending) % CHUNK
                for at in range(0, full, CHUNK):
                    if packed and not packed % PACK_PER_STEP:
                        await trio.lowlevel.checkpoint()
                    chunks.append(packb(pending[at : at + CHUNK]))
                    packed += 1
                del pending[:full]
                await trio.lowlevel.checkpoint()
                part = next(parts, None)
            if pending:
                chunks.append(packb(pending))
        finally:
            _paused -= 1
            if not _paused and _was_enabled:
                gc.enable()
        return cls(chunks, count)

    def __iter__(self) -> Iterator[list[bytes]]:
        """Each chunk's keys, in snapshot order."""
        unpackb = msgpack.unpackb
        for chunk in self._chunks:
            keys: list[bytes] = unpackb(chunk, raw=False, use_list=True)
            yield keys

    def slices(self, size: int) -> Iterator[list[bytes]]:
        """The keys in lists of at most ``size`` (smaller ones at chunk ends), in order."""
        for keys in self:
            for at in range(0, len(keys), size):
                yield keys[at : at + size]

    def __len__(self) -> int:
        return self.count


__all__ = ["CHUNK", "KeyChunks"]
