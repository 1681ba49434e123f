"""SCAN over the simulated mesh, with the node's real wiring: a walk through any member gives
every key of the namespace once (and a mesh-wide DBSIZE counts each once), and a member that
does not answer fails a step with ``UNAVAILABLE`` that the same cursor repeats past.

Seeds as in test_dataplane_sim (``MESHCACHE_SIM_SEEDS``, ``MESHCACHE_SIM_SEED``).
"""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from meshcache.errors import UnavailableError
from meshcache.store.policy import NamespacePolicy
from meshcache.testing.simdata import LinkFaults, SimMesh
from tests.sim.test_dataplane_sim import SEEDS

NS = "sim"


async def walk(mesh: SimMesh, via: str, options: dict[str, object]) -> tuple[list[bytes], int]:
    """Every step of one walk through ``via``: the keys in the order given, and the steps
    refused as ``UNAVAILABLE`` (each repeated with the same cursor)."""
    keys: list[bytes] = []
    refused = 0
    cursor = 0
    while True:
        try:
            cursor, page = await mesh.client(via, NS, "SCAN", cursor, dict(options))
        except UnavailableError:
            refused += 1
            await trio.sleep(0.05)
            continue
        keys += page
        if cursor == 0:
            return keys, refused


@pytest.mark.trio
@pytest.mark.parametrize("sim_seed", SEEDS)
async def test_a_walk_through_any_member_gives_every_key_once(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    rng = random.Random(sim_seed)
    mesh = SimMesh(
        sim_seed,
        5,
        policies={NS: NamespacePolicy(replicas=2)},
        link=LinkFaults(delay=0.002, jitter=0.003),
    )
    keys = {b"k%d" % i for i in range(rng.randrange(300, 900))}
    lists = {b"list%d" % i for i in range(20)}

    async def scenario() -> None:
        for key in sorted(keys):
            assert await mesh.client("n0", NS, "SET", key, b"v") is not None
        for key in sorted(lists):
            await mesh.client("n1", NS, "RPUSH", key, b"x")
        for via in ("n0", "n3"):
            count = rng.choice([1, 10, 100, 5000])
            got, refused = await walk(mesh, via, {"count": count})
            assert not refused, f"seed {sim_seed}"
            assert len(got) == len(set(got)), f"seed {sim_seed}: a key twice (count {count})"
            assert set(got) == keys | lists, f"seed {sim_seed}: count {count}"
        counted = await mesh.client("n3", NS, "DBSIZE", {"mesh": True})
        assert counted == len(keys) + len(lists), f"seed {sim_seed}"
        got, _ = await walk(mesh, "n2", {"type": "list", "count": 7})
        assert sorted(got) == sorted(lists), f"seed {sim_seed}"
        got, _ = await walk(mesh, "n4", {"match": b"k1?", "count": 3})
        assert sorted(got) == sorted(k for k in keys if len(k) == 3 and k[:2] == b"k1")

    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        await scenario()
        nursery.cancel_scope.cancel()


@pytest.mark.trio
@pytest.mark.parametrize("sim_seed", SEEDS[:8])
async def test_a_step_a_member_misses_is_refused_and_repeated(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """A member crashes in the middle of a walk and comes back later: the steps that needed it
    are refused with UNAVAILABLE and leave the cursor where it was; repeated, the walk ends with
    every key whose first read owner stayed up (the restarted one's store starts empty: its
    keys come back from their replicas by anti-entropy and reads, not by the walk)."""
    mesh = SimMesh(
        sim_seed,
        4,
        policies={NS: NamespacePolicy(replicas=2)},
        link=LinkFaults(delay=0.002, jitter=0.002),
    )
    keys = {b"k%d" % i for i in range(400)}

    async def scenario() -> None:
        for key in sorted(keys):
            await mesh.client("n0", NS, "SET", key, b"v")
        cursor, first = await mesh.client("n0", NS, "SCAN", 0, {"count": 1})
        assert cursor != 0, f"seed {sim_seed}"
        mesh.crash("n2")
        refused = 0
        got = list(first)
        while True:
            try:
                cursor, page = await mesh.client("n0", NS, "SCAN", cursor, {"count": 50})
            except UnavailableError:
                refused += 1
                if refused == 3:
                    await mesh.restart("n2")
                await trio.sleep(0.5)
                continue
            got += page
            if cursor == 0:
                break
        # The first step gave one table of the first member; the next asks that member for
        # its next table, so some step needs n2 whatever its place in the walk.
        assert refused >= 3, f"seed {sim_seed}"
        ring = mesh.nodes["n0"].parts.coordinator.ring
        kept = {k for k in keys if ring.primary(k).node_id != "n2"}
        assert kept <= set(got) <= keys, f"seed {sim_seed}: {len(kept - set(got))} missed"

    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        await scenario()
        nursery.cancel_scope.cancel()
