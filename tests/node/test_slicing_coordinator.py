"""Big batches reach the coordinator as one frame: a hand-off's BULK or REPL, a many-key op.
Each is applied a slice at a time, with checkpoints between, and answers as it did in one go."""

from __future__ import annotations

import gc
from types import CoroutineType, SimpleNamespace
from typing import Any

import pytest
import trio

from meshcache.control import ClusterConfig
from meshcache.hlc import HLC, make_version
from meshcache.node.data.coordinator import BULK_SLICE, REPL_SLICE, SCATTER_SLICE, Coordinator
from meshcache.node.data.replication import HintQueue, VersionClamp
from meshcache.node.data.replicator import APPLIED, Replicator
from meshcache.node.data.scan import CHUNK, KeyScan
from meshcache.node.net.peer_pool import PeerPool
from meshcache.node.routes import Routes
from meshcache.ring import RingMember
from meshcache.ring.tokens import RangeSet
from meshcache.store.keyspace import pack_version
from meshcache.store.policy import NamespacePolicy
from meshcache.store.store import Store
from meshcache.testing.instrument import longest_step
from meshcache.wire.ops import Limits

NOW_S = 1_700_000_000.0
ME, OTHER = "10.0.0.1:7400", "10.0.0.2:7400"
VERSION = make_version(int(NOW_S * 1000) - 1000)


def make_plane(replicas: int = 1) -> Coordinator:
    """This node and one other that gossip holds dead: every key is coordinated here."""
    hlc = HLC(lambda: int(NOW_S * 1000))
    store = Store(
        clock=lambda: NOW_S, hlc=hlc, policies={"default": NamespacePolicy(replicas=replicas)}
    )
    pool = PeerPool()
    replicator = Replicator(
        pool,
        address_of=lambda _: None,
        alive=lambda _: False,
        hints=HintQueue(max_bytes=1 << 30, max_bytes_per_target=1 << 30, max_age_s=60),
        clock=lambda: 0.0,
    )
    plane = Coordinator(
        store,
        ME,
        pool=pool,
        replicator=replicator,
        clamp=VersionClamp(hlc),
        alive=lambda node: node == ME,
        limits=Limits(),
    )
    members = (RingMember(node_id=ME, address=ME), RingMember(node_id=OTHER, address=OTHER))
    plane.install(ClusterConfig(version=3, members=members))
    return plane


def mine(plane: Coordinator, n: int) -> list[bytes]:
    """``n`` keys this node owns (as primary, replicas 1)."""
    keys: list[bytes] = []
    i = 0
    while len(keys) < n:
        key = b"key:%09d" % i
        if plane.ring.owners(key, 1)[0].node_id == ME:
            keys.append(key)
        i += 1
    return keys


async def settle(answer: Any) -> Any:
    return await answer if type(answer) is CoroutineType else answer


@pytest.mark.trio
async def test_a_big_bulk_batch_is_applied_in_slices() -> None:
    plane = make_plane()
    keys = mine(plane, 10 * BULK_SLICE)
    blob = pack_version(VERSION) + b"v" * 100
    payload = [x for key in keys for x in (key, blob)]
    answer = plane.apply_bulk("default", payload)
    assert type(answer) is CoroutineType
    with longest_step(cpu=True) as probe:
        counts = await answer
    assert counts == [len(keys), 0, 0, 0]
    # Ten slices: nine checkpoints (the first and last steps are only partly in the probe).
    assert probe.steps >= 8, probe.describe()
    assert probe.longest <= 0.05, probe.describe()
    assert plane.store.execute("default", "DBSIZE", []) == len(keys)
    # At most a slice: answered at once, as before.
    assert plane.apply_bulk("default", payload[: 2 * BULK_SLICE]) == [0, BULK_SLICE, 0, 0]


@pytest.mark.trio
async def test_a_big_repl_batch_is_applied_in_slices() -> None:
    plane = make_plane()
    keys = mine(plane, 5 * REPL_SLICE)
    payload = [[key, ["bytes", b"v", None, VERSION]] for key in keys]
    answer = plane.apply_replicated("default", payload)
    assert type(answer) is CoroutineType
    with longest_step(cpu=True) as probe:
        answers = await answer
    assert answers == [APPLIED] * len(keys)
    assert probe.steps >= 3, probe.describe()
    assert plane.store.execute("default", "GET", [keys[-1]]) == b"v"
    assert plane.stats["repl_applied"] == len(keys)


@pytest.mark.trio
@pytest.mark.parametrize("replicas", [1, 2])
async def test_many_key_ops_route_and_run_in_slices(replicas: int) -> None:
    plane = make_plane(replicas)
    n = 20 * SCATTER_SLICE
    keys = [b"key:%09d" % i for i in range(n)]  # owned by both nodes
    mset = [x for i, key in enumerate(keys) for x in (key, b"%d" % i)]
    # Full garbage collections (over the 20,000 hints of the dead owner) are measured by the
    # node's loop monitor, not here: only the slicing is.
    gc.disable()
    try:
        with longest_step(cpu=True) as probe:
            assert await settle(plane.execute("default", "MSET", mset)) is True
            got = await settle(plane.execute("default", "MGET", keys))
            deleted = await settle(plane.execute("default", "DELETE", keys[::2]))
    finally:
        gc.enable()
    assert got == [b"%d" % i for i in range(n)]
    assert deleted == n // 2
    assert probe.steps >= 3 * n // SCATTER_SLICE, probe.describe()
    assert probe.longest <= 0.05, probe.describe()


@pytest.mark.trio
async def test_sliced_batches_let_other_tasks_run() -> None:
    plane = make_plane()
    keys = mine(plane, 10 * BULK_SLICE)
    blob = pack_version(VERSION) + b"v" * 100
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
        await settle(plane.apply_bulk("default", [x for k in keys for x in (k, blob)]))
        assert ticks - before >= 8
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_sliced_batches_in_flight_take_turns() -> None:
    """A joining node gets BULK and REPL batches from every source at once, each applied by a
    task of its own: the batches take turns, so one pass of trio's scheduler runs one slice,
    not one slice of every batch in flight."""
    plane = make_plane()
    keys = mine(plane, 48 * BULK_SLICE)
    blob = pack_version(VERSION) + b"v" * 100
    applied = plane.store.apply_blobs
    slices = 0
    most = 0

    def counted(*args: Any) -> Any:
        nonlocal slices
        slices += 1
        return applied(*args)

    plane.store.apply_blobs = counted  # type: ignore[method-assign]

    async def ticker() -> None:
        nonlocal slices, most
        while True:
            most = max(most, slices)
            slices = 0
            await trio.lowlevel.checkpoint()

    async def batch(part: list[bytes]) -> None:
        assert await settle(plane.apply_bulk("default", [x for k in part for x in (k, blob)]))

    async def repl(part: list[bytes]) -> None:
        payload = [[key, ["bytes", b"w", None, VERSION + 1]] for key in part]
        assert await settle(plane.apply_replicated("default", payload))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        async with trio.open_nursery() as batches:
            for at in range(0, len(keys), 4 * BULK_SLICE):
                batches.start_soon(batch, keys[at : at + 4 * BULK_SLICE])
            batches.start_soon(repl, keys[: 4 * REPL_SLICE])
        nursery.cancel_scope.cancel()
    assert plane.store.execute("default", "DBSIZE", []) == len(keys)
    assert plane.store.execute("default", "GET", [keys[0]]) == b"w"
    # Each pass of the scheduler between two ticks: one slice (two where a batch hands its
    # turn to the next), whatever the twelve batches in flight.
    assert most <= 2, most


@pytest.mark.trio
async def test_an_owned_dbsize_of_a_big_store_counts_a_table_at_a_time() -> None:
    plane = make_plane()
    n = 40_000  # past the split: the keys are in the store's tables
    blobs = pack_version(VERSION) + b"v"
    for i in range(n):
        plane.store.apply_blobs("default", [b"key:%d" % i], [blobs], VERSION + 1)
    scan = KeyScan(
        ME, plane.store, ring=lambda: plane.ring, alive=lambda _: False, call=plane.pool.call
    )
    parts = SimpleNamespace(node_id=ME, coordinator=plane, scan=scan)
    routes = Routes(parts, info=None)  # type: ignore[arg-type]
    mine_ = RangeSet(plane.ring.owned_ranges(ME))
    expected = sum(mine_.mask([b"key:%d" % i for i in range(n)]))
    assert 0 < expected < n
    answer = routes.dbsize("default", [{"owned": True}])
    assert type(answer) is CoroutineType
    gc.disable()
    try:
        with longest_step(cpu=True) as probe:
            result = await answer
    finally:
        gc.enable()
    assert result == {"count": expected, "ring_version": plane.ring.version}
    assert probe.steps >= n // CHUNK, probe.describe()
    assert probe.longest <= 0.05, probe.describe()
    # A small namespace is answered at once.
    plane.store.execute("default", "FLUSH", [])
    plane.store.apply_blobs("default", [b"one"], [blobs], VERSION + 1)
    small = routes.dbsize("default", [{"owned": True}])
    assert small == {"count": sum(mine_.mask([b"one"])), "ring_version": plane.ring.version}
