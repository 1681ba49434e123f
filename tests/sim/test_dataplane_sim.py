"""Seeded simulations of the mesh data plane (issue 5): real DataPlane, Replicator, AntiEntropy
and hint queues of N nodes over ``meshcache.testing.simdata``'s simulated network, in mock time.

Each scenario runs for every seed of :func:`_seeds` (20 by default). ``MESHCACHE_SIM_SEEDS``
runs more: a count (``200``: seeds 0..199) or a list (``5,17``). ``MESHCACHE_SIM_SEED=17``
replays one seed; a failure prints the replay command (tests/conftest.py).
"""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from meshcache.errors import MeshcacheError
from meshcache.node.replication.tombstones import TOMBSTONE
from meshcache.store.policy import NamespacePolicy
from meshcache.testing.simdata import AckedWrite, LinkFaults, SimMesh

NS = "sim"
LAN = LinkFaults(delay=0.0005, jitter=0.002)


def _seeds(default: int = 20) -> list[int]:
    one = os.environ.get("MESHCACHE_SIM_SEED")
    if one:
        return [int(one, 0)]
    many = os.environ.get("MESHCACHE_SIM_SEEDS", "").strip()
    if not many:
        return list(range(default))
    if "," in many:
        return [int(s, 0) for s in many.split(",") if s.strip()]
    return list(range(int(many, 0)))


SEEDS = _seeds()


async def _in_mesh(mesh: SimMesh, scenario: Callable[[], Awaitable[None]]) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        await scenario()
        nursery.cancel_scope.cancel()


def _report(mesh: SimMesh) -> str:
    return f"seed {mesh.seed}: " + "; ".join(
        f"{part} {dict(sorted(c.items()))}" for part, c in mesh.counters().items()
    )


@pytest.mark.trio
@pytest.mark.parametrize("sim_seed", SEEDS)
async def test_writes_through_random_nodes_under_loss_converge_after_heal(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """Loss, delay and duplicated REPL batches while 4 clients write and delete through random
    nodes (``one``); once the links are clean, every owner holds the last writer's record."""
    rng = random.Random(sim_seed)
    mesh = SimMesh(
        sim_seed,
        5,
        policies={NS: NamespacePolicy(replicas=3)},
        link=LinkFaults(delay=0.001, jitter=0.004, loss=0.03, duplicate=0.2),
        anti_entropy_interval=5.0,
    )
    failed = 0

    async def client(c: int) -> None:
        nonlocal failed
        for i in range(40):
            key = f"k{rng.randrange(24)}".encode()
            via = rng.choice(mesh.ids)
            try:
                if rng.random() < 0.2:
                    await mesh.client(via, NS, "DELETE", key)
                else:
                    await mesh.client(via, NS, "SET", key, f"c{c}-{i}".encode(), {})
            except MeshcacheError:
                failed += 1
            await trio.sleep(rng.uniform(0.0, 0.05))

    async def scenario() -> None:
        async with trio.open_nursery() as clients:
            for c in range(4):
                clients.start_soon(client, c)
        mesh.net.set_default_link(LAN)
        took = await mesh.wait_until(
            lambda: not mesh.replicas_converged(NS), timeout=60.0, what="convergence"
        )
        print(f"seed {sim_seed}: converged {took:.1f}s after heal; {failed} client errors")

    await _in_mesh(mesh, scenario)
    assert mesh.owners_agree() == []
    assert mesh.net.stats["duplicated"] > 0, _report(mesh)
    assert mesh.net.stats["loss"] > 0, _report(mesh)
    deletes = [k for k, (w, _) in mesh.last_writes(NS).items() if w.wire[0] == TOMBSTONE]
    assert deletes, f"seed {sim_seed}: no key ended deleted; the scenario proves nothing on them"


__all__ = ["AckedWrite"]
