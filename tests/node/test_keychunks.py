"""Key snapshots for long scans: the keys as they were, in slices, and nothing for the garbage
collector to walk while they are held."""

from __future__ import annotations

import gc
import time
from typing import Any

import pytest
import trio

from meshcache.hlc import HLC
from meshcache.node.data.keychunks import CHUNK, PACK_PER_STEP, KeyChunks
from meshcache.store.policy import NamespacePolicy
from meshcache.store.store import Store
from meshcache.testing.instrument import longest_step

N = 100_000


def _store(keys: int, deleted: int = 0) -> Store:
    store = Store(
        clock=lambda: 1_700_000_000.0,
        hlc=HLC(lambda: 1_700_000_000_000),
        policies={"default": NamespacePolicy(replicas=1)},
        tombstone_grace_s=3600.0,
    )
    blob = (1 << 40).to_bytes(8, "big") + b"v" * 100
    names = [b"key:%09d" % i for i in range(keys)]
    for at in range(0, keys, 10_000):
        part = names[at : at + 10_000]
        store.apply_blobs("default", part, [blob] * len(part), 2**63)
    for key in names[:deleted]:
        store.execute("default", "DELETE", [key])
    return store


def _walked(root: Any) -> int:
    """References a full collection follows from ``root`` through the tracked containers it
    holds (classes are left out: a node freezes them at start-up)."""
    count, stack, seen = 0, [root], set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen or not gc.is_tracked(obj) or isinstance(obj, type):
            continue
        seen.add(id(obj))
        refs = gc.get_referents(obj)
        count += len(refs)
        stack += refs
    return count


@pytest.mark.trio
async def test_a_snapshot_gives_the_keys_back_in_order_and_in_slices() -> None:
    store = _store(N, deleted=500)
    chunks = await KeyChunks.take(store, "default", tombstones=True)
    expected = store.key_snapshot("default") + store.tombstone_keys("default")
    assert len(chunks) == len(expected) == N
    assert [k for part in chunks for k in part] == expected
    assert all(len(part) <= CHUNK for part in chunks)
    slices = list(chunks.slices(500))
    assert all(len(s) <= 500 for s in slices) and sum(map(len, slices)) == N
    # Taken again later, it sees what changed meanwhile; the first is unchanged.
    store.execute("default", "SET", [b"new", b"v", {}])
    assert len(await KeyChunks.take(store, "default")) == len(expected) - 500 + 1
    assert [k for part in chunks for k in part] == expected
    empty = Store(clock=time.time, hlc=HLC(lambda: 0), policies={"default": NamespacePolicy()})
    assert list(await KeyChunks.take(empty, "default")) == []


@pytest.mark.trio
async def test_a_held_snapshot_gives_the_collector_nothing_to_walk_per_key() -> None:
    store = _store(N)
    chunks = await KeyChunks.take(store, "default")
    # One reference per chunk at most, where a list of the keys costs one per key.
    assert _walked(chunks) <= 2 * (N // CHUNK) + 8
    assert _walked(store.key_snapshot("default")) >= N


@pytest.mark.trio
async def test_taking_a_snapshot_yields_and_leaves_the_collector_as_it_was() -> None:
    store = _store(N * 3)
    assert gc.isenabled()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await trio.lowlevel.checkpoint()
        before = ticks
        with longest_step(cpu=True) as probe:  # CPU time: a busy CI preempts
            await KeyChunks.take(store, "default")
        nursery.cancel_scope.cancel()
    assert gc.isenabled()
    # Packed PACK_PER_STEP chunks at a time, other tasks running in between (trio runs them
    # in batches, in random order: at least one turn per two checkpoints).
    assert ticks - before >= (3 * N // CHUNK // PACK_PER_STEP - 1) // 2
    assert probe.longest <= 0.05, probe.describe()
    gc.disable()
    try:
        await KeyChunks.take(store, "default")
        assert not gc.isenabled()  # it was off: it stays off
    finally:
        gc.enable()
    # Cancelled while packing: collections are back on.
    with trio.CancelScope() as scope:
        scope.cancel()
        await KeyChunks.take(store, "default")
    assert gc.isenabled()
