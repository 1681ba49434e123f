"""Hot keys in the data-plane simulation: the nodes' own hot-key layer over a simulated network.

Scenarios drive readers and one writer per hot key; the checkers of
``meshcache.testing.hotcheck`` judge the recorded history apart from the scenario. Each test
runs for a few seeds (``MESHCACHE_SIM_SEED=N`` replays one; a failure prints it).
"""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from meshcache.errors import MeshcacheError
from meshcache.store.hotpolicy import HotKeyPolicy
from meshcache.store.policy import NamespacePolicy
from meshcache.testing.hotcheck import HotHistory, value_of
from meshcache.testing.simdata import LinkFaults, SimMesh

NS = "hot"
LEASE = 1.0
POLICY = NamespacePolicy(
    replicas=2, max_bytes=1 << 20, hot=HotKeyPolicy(share=0.05, rate=20.0, lease=LEASE)
)
LAN = LinkFaults(delay=0.0005, jitter=0.002)
#: A one-way delay of the simulated LAN at most, and a margin for the reads in flight.
SLACK = 0.05
SEEDS = [0, 1, 2]


def _copies(mesh: SimMesh, key: bytes) -> list[str]:
    return [n for n in mesh.ids if (NS, key) in mesh.nodes[n].parts.hot.area]


async def _readers(
    mesh: SimMesh, history: HotHistory, keys: list[bytes], rng: random.Random, count: int
) -> None:
    """``count`` readers through random nodes: half their reads on ``keys``, the rest cold."""

    async def reader(name: str) -> None:
        while True:
            via = rng.choice(mesh.ids)
            hot = rng.random() < 0.5
            key = rng.choice(keys) if hot else b"cold:%d" % rng.randrange(5000)
            started = trio.current_time()
            try:
                value = await mesh.client(via, NS, "GET", key)
            except MeshcacheError:
                continue
            if hot:
                history.read(name, via, key, started, value)
            await trio.sleep(0.005)

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(reader, f"r{i}")


@pytest.mark.trio
@pytest.mark.parametrize("seed", SEEDS)
async def test_a_hot_key_is_copied_everywhere_read_back_by_its_writer_and_cools(
    seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    mesh = SimMesh(seed, 4, policies={NS: POLICY}, link=LAN)
    rng = random.Random(seed)
    key = b"hot:1"
    history = HotHistory()
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        await mesh.client("n0", NS, "SET", key, value_of(key, 0))
        history.acked("w", key, 0, trio.current_time())
        readers = trio.CancelScope()

        async def read() -> None:
            with readers:
                await _readers(mesh, history, [key], rng, 4)

        nursery.start_soon(read)
        owner = mesh.owners(NS, key)[0]
        others = [n for n in mesh.ids if n != owner]
        took = await mesh.wait_until(
            lambda: _copies(mesh, key) == others, timeout=5.0, what="copies on every other node"
        )
        assert took < 2.0, f"seed {seed}: copies took {took:.2f}s of mesh time"
        for seq in range(1, 30):
            via = rng.choice(mesh.ids)
            await mesh.client(via, NS, "SET", key, value_of(key, seq))
            history.acked("w", key, seq, trio.current_time())
            for node in mesh.ids:  # the writer reads back through every node
                started = trio.current_time()
                history.read("w", node, key, started, await mesh.client(node, NS, "GET", key))
        served = sum(mesh.nodes[n].parts.hot.stats["reads_from_copies"] for n in others)
        assert served > 0, f"seed {seed}: no read was served from a copy"
        # The copies' reads are counted at the owner too: the key never cooled meanwhile.
        assert mesh.nodes[owner].parts.hot.stats["keys_turned_hot"] == 1, f"seed {seed}"
        readers.cancel()
        await mesh.wait_until(
            lambda: not _copies(mesh, key), timeout=20.0, what="the cooled key's copies lapse"
        )
        nursery.cancel_scope.cancel()
    assert history.ryw_violations() == [], f"seed {seed}"
    assert history.max_staleness() == 0.0, f"seed {seed}: {history.max_staleness()}"


@pytest.mark.trio
@pytest.mark.parametrize("seed", SEEDS)
async def test_lost_invalidations_leave_copies_at_most_one_lease_stale(
    seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """The owner's requests to the holders break their connection a third of the time (before
    or after the holder applied them), so updates and drops of copies get lost; writes reach
    the owner intact. Other readers may see a copy at most a lease old, a delete included; the
    writer, reading through the node it wrote through, always reads its write."""
    mesh = SimMesh(seed, 4, policies={NS: POLICY}, link=LAN)
    rng = random.Random(seed)
    key = b"hot:a"
    history = HotHistory()
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        await mesh.client("n0", NS, "SET", key, value_of(key, 0))
        history.acked("w", key, 0, trio.current_time())
        readers = trio.CancelScope()

        async def read() -> None:
            with readers:
                await _readers(mesh, history, [key], rng, 4)

        nursery.start_soon(read)
        owner = mesh.owners(NS, key)[0]
        others = [n for n in mesh.ids if n != owner]
        await mesh.wait_until(
            lambda: _copies(mesh, key) == others, timeout=5.0, what="copies on every other node"
        )
        lossy = LinkFaults(delay=0.0005, jitter=0.002, loss=0.3)
        for holder in others:
            mesh.net.set_link(owner, holder, lossy)
        deleted_at = 39
        for seq in range(1, deleted_at + 1):
            via = rng.choice(mesh.ids)
            if seq == deleted_at:
                await mesh.client(via, NS, "DELETE", key)
            else:
                await mesh.client(via, NS, "SET", key, value_of(key, seq))
            history.acked("w", key, seq, trio.current_time(), deleted=seq == deleted_at)
            started = trio.current_time()
            history.read("w", via, key, started, await mesh.client(via, NS, "GET", key))
            await trio.sleep(rng.uniform(0.0, 0.3))
        await trio.sleep(3 * LEASE)
        readers.cancel()
        nursery.cancel_scope.cancel()
    lost = mesh.nodes[owner].parts.hot.stats["invalidations_lost"]
    print(f"seed {seed}: invalidations lost {lost}, stalest read {history.stalest()}")
    assert lost > 0, f"seed {seed}: the scenario lost no invalidation"
    assert history.ryw_violations() == [], f"seed {seed}"
    assert history.max_staleness() <= LEASE + SLACK, f"seed {seed}: {history.max_staleness()}"
    assert history.deleted_served(LEASE + SLACK) == [], f"seed {seed}"


@pytest.mark.trio
async def test_a_flush_reaches_the_copies_within_half_a_lease(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mesh = SimMesh(5, 4, policies={NS: POLICY}, link=LAN)
    rng = random.Random(5)
    key = b"hot:f"
    history = HotHistory()
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        await mesh.client("n1", NS, "SET", key, value_of(key, 0))
        readers = trio.CancelScope()

        async def read() -> None:
            with readers:
                await _readers(mesh, history, [key], rng, 3)

        nursery.start_soon(read)
        owner = mesh.owners(NS, key)[0]
        others = [n for n in mesh.ids if n != owner]
        await mesh.wait_until(
            lambda: _copies(mesh, key) == others, timeout=5.0, what="copies on every other node"
        )
        assert await mesh.client("n2", NS, "FLUSH") is True
        await trio.sleep(LEASE / 2 + 0.25 + SLACK)
        for node in mesh.ids:
            assert await mesh.client(node, NS, "GET", key) is None, node
        readers.cancel()
        nursery.cancel_scope.cancel()
