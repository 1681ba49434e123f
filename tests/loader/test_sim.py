"""Read-through in the data-plane simulation, with a simulated source: one query per key while
the ring is stable, at most one per owner while nodes disagree on the ring, and no waiter
hangs; a source that is down fails misses fast without touching hits."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from meshcache.control.config import RemoveMember, apply
from meshcache.errors import CommandError, ErrorCode
from meshcache.store.loader_policy import LoaderPolicy
from meshcache.store.policy import NamespacePolicy
from meshcache.testing.simdata import SimMesh
from meshcache.testing.simsource import SimDatabase

NS = "items"


def make_mesh(seed: int, db: SimDatabase, nodes: int = 4) -> SimMesh:
    loader = LoaderPolicy(source="sim", query="SELECT v FROM items WHERE id = $1")
    return SimMesh(
        seed,
        nodes,
        policies={NS: NamespacePolicy(replicas=2, loader=loader)},
        sources=lambda node_id: {"sim": db.source()},
    )


async def gets(mesh: SimMesh, key: bytes, n: int) -> list[object]:
    answers: list[object] = []

    async def one(via: str) -> None:
        try:
            answers.append(await mesh.client(via, NS, "GET", key))
        except CommandError as exc:
            answers.append(exc.code)

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, mesh.ids[i % len(mesh.ids)])
    return answers


@pytest.mark.trio
async def test_misses_coalesce_at_the_owner_and_per_owner_during_a_ring_change(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    db = SimDatabase(delay=0.5)
    db.rows[b"k"] = b"v"
    db.rows[b"j"] = b"w"
    mesh = make_mesh(sim_seed, db)
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        assert await gets(mesh, b"k", 200) == [b"v"] * 200
        assert db.queries[b"k"] == 1, f"seed {sim_seed}"
        # Half the nodes run a ring without the key's first owner, the others the old ring:
        # each side's misses go to its own owner, which loads once; nobody waits on the other.
        first = mesh.ring.owners(b"j", 2)[0].node_id
        newer = apply(mesh.config, RemoveMember(mesh.config.version, first))
        for node_id in [n for n in mesh.ids if n != first][:2]:
            mesh.nodes[node_id].parts.install(newer)
        start = trio.current_time()
        assert await gets(mesh, b"j", 200) == [b"w"] * 200
        took = trio.current_time() - start
        assert 1 <= db.queries[b"j"] <= 2, f"seed {sim_seed}: {db.queries}"
        assert took < 2 * db.delay + 0.5, f"seed {sim_seed}: the misses took {took:.2f}s"
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_down_source_fails_misses_fast_and_hits_still_answer(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    db = SimDatabase(delay=0.01)
    db.rows[b"a"] = b"1"
    mesh = make_mesh(sim_seed, db, nodes=3)
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        assert await gets(mesh, b"a", 3) == [b"1"] * 3
        db.down = True
        answers = []
        for i in range(30):
            answers += await gets(mesh, f"m{i}".encode(), 3)
        assert set(answers) == {ErrorCode.LOADER_UNAVAILABLE}
        # Each owner's breaker opens after 5 failures: the rest fail without a query.
        queried = sum(v for k, v in db.queries.items() if k.startswith(b"m"))
        assert queried <= 5 * 3, f"seed {sim_seed}: the breakers let {queried} queries through"
        assert await gets(mesh, b"a", 6) == [b"1"] * 6  # hits are never affected
        # Back up: after the breaker's cooldown a probe goes through and loads resume.
        db.down = False
        db.rows[b"later"] = b"ok"
        await trio.sleep(2.0)
        assert await gets(mesh, b"later", 3) == [b"ok"] * 3
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_flood_of_distinct_misses_is_bounded_and_harms_no_hit(
    sim_seed: int, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meshcache.node.loader import loader as loader_module

    monkeypatch.setattr(loader_module, "MAX_FLIGHTS", 20)
    db = SimDatabase(delay=1.0)
    db.rows[b"a"] = b"1"
    mesh = make_mesh(sim_seed, db, nodes=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        assert await gets(mesh, b"a", 1) == [b"1"]
        answers: list[object] = []

        async def miss(i: int) -> None:
            try:
                answers.append(await mesh.client("n0", NS, "GET", f"m{i}".encode()))
            except CommandError as exc:
                answers.append(exc.code)

        async with trio.open_nursery() as flood:
            for i in range(50):
                flood.start_soon(miss, i)
            await trio.sleep(0.1)
            assert await gets(mesh, b"a", 1) == [b"1"]  # a hit while 20 loads are in flight
        assert answers.count(None) == 20  # loaded (no row)
        assert answers.count(ErrorCode.LOADER_UNAVAILABLE) == 30
        assert mesh.nodes["n0"].parts.loader.stats["overloaded"] == 30
        nursery.cancel_scope.cancel()
