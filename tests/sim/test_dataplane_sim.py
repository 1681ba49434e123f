"""Seeded simulations of the mesh data plane: real Coordinator, Replicator, AntiEntropy
and hint queues of N nodes over ``meshcache.testing.simdata``'s simulated network, in mock time.

Each scenario runs for every seed of :func:`tests.sim.seeds.sim_seeds` (16 by default: the file
stays under 30 s).
``MESHCACHE_SIM_SEEDS`` runs more: a count (``200``: seeds 0..199) or a list (``5,17``).
``MESHCACHE_SIM_SEED=17`` replays one seed; a failure prints the replay command
(tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from meshcache.errors import MeshcacheError
from meshcache.node.data.replication.tombstones import TOMBSTONE
from meshcache.store.policy import NamespacePolicy
from meshcache.testing.simdata import AckedWrite, LinkFaults, SimMesh
from tests.sim.seeds import sim_seeds

NS = "sim"
LAN = LinkFaults(delay=0.0005, jitter=0.002)


SEEDS = sim_seeds(16)


async def _in_mesh(mesh: SimMesh, scenario: Callable[[], Awaitable[None]]) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        await scenario()
        nursery.cancel_scope.cancel()


def _equal_version_keys(mesh: SimMesh) -> set[bytes]:
    """Keys whose greatest ``(version, deleted)`` was written with two different records."""
    out = set()
    for key, writes in mesh.ledger.get(NS, {}).items():
        top = max(w.order[:2] for w in writes)
        if len({w.wire for w in writes if w.order[:2] == top}) > 1:
            out.add(key)
    return out


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
        # Whatever the clients' last ops were, one key ends deleted, still under loss.
        for _ in range(20):
            with contextlib.suppress(MeshcacheError):
                await mesh.client(rng.choice(mesh.ids), NS, "DELETE", b"k0")
                break
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


@pytest.mark.trio
@pytest.mark.parametrize("sim_seed", SEEDS)
async def test_duplicated_repl_batches_change_nothing_the_second_time(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """Every REPL frame is applied twice: the second application of every record answers
    STALE (nothing changed) and the owners still converge."""
    rng = random.Random(sim_seed)
    mesh = SimMesh(
        sim_seed,
        3,
        policies={NS: NamespacePolicy(replicas=3)},
        link=LinkFaults(delay=0.0005, jitter=0.002, duplicate=1.0),
        anti_entropy_interval=None,
    )

    async def scenario() -> None:
        for i in range(60):
            key = f"k{rng.randrange(10)}".encode()
            via = rng.choice(mesh.ids)
            if rng.random() < 0.25:
                await mesh.client(via, NS, "DELETE", key)
            else:
                await mesh.client(via, NS, "SET", key, f"v{i}".encode(), {})
            await trio.sleep(rng.uniform(0.0, 0.01))
        await mesh.wait_until(mesh.quiet, timeout=10.0, what="replication drained")

    await _in_mesh(mesh, scenario)
    sent = mesh.counters()["replicator"]
    assert sent["queued"] > 0 and sent["applied"] == 0, _report(mesh)
    assert sent["stale"] == sent["queued"], _report(mesh)
    assert mesh.net.stats["duplicated"] > 0
    assert mesh.replicas_converged(NS) == [], _report(mesh)


@pytest.mark.trio
@pytest.mark.parametrize("sim_seed", SEEDS)
async def test_partition_both_sides_write_then_heal_converges_to_last_writer(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """Two sides of a partition write and delete the same keys (``one``) through their own
    nodes; after the heal (hint replay, anti-entropy) every owner holds the record with the
    greatest HLC version, tombstones included. Odd seeds cut one way only (a → b)."""
    rng = random.Random(sim_seed)
    one_way = sim_seed % 2 == 1
    mesh = SimMesh(
        sim_seed, 6, policies={NS: NamespacePolicy(replicas=3)}, link=LAN, anti_entropy_interval=5.0
    )
    side_a, side_b = mesh.ids[:3], mesh.ids[3:]
    keys = [f"k{i}".encode() for i in range(12)]

    async def client(name: str, side: list[str], ops: int) -> None:
        for i in range(ops):
            key = rng.choice(keys)
            via = rng.choice(side)
            try:
                if rng.random() < 0.25:
                    await mesh.client(via, NS, "DELETE", key)
                else:
                    await mesh.client(via, NS, "SET", key, f"{name}-{i}".encode(), {})
            except MeshcacheError:
                pass  # the ledger holds whatever did land
            await trio.sleep(rng.uniform(0.0, 0.2))

    async def scenario() -> None:
        await client("warm", mesh.ids, 20)
        await mesh.wait_until(mesh.quiet, timeout=10.0, what="warm-up replicated")
        mesh.net.partition(side_a, side_b, one_way=one_way)
        async with trio.open_nursery() as clients:
            for c in range(2):
                clients.start_soon(client, f"a{c}", side_a, 30)
                clients.start_soon(client, f"b{c}", side_b, 30)
        # Two certain outcomes: a delete after the other side's write, a write after the other
        # side's delete (each side's owners are unreachable: these land on stand-ins or owners).
        await mesh.client(side_a[0], NS, "SET", b"deleted-later", b"a", {})
        await mesh.client(side_b[0], NS, "DELETE", b"set-later")
        await trio.sleep(0.1)
        await mesh.client(side_b[1], NS, "DELETE", b"deleted-later")
        await mesh.client(side_a[1], NS, "SET", b"set-later", b"a-late", {})
        mesh.net.heal()
        # Every key converges, those written on both sides with the same version (one mock
        # millisecond, the same logical counter) too: the tie-break picks the same record on
        # every owner whatever the arrival order, and anti-entropy's digests see the difference.
        took = await mesh.wait_until(
            lambda: not mesh.replicas_converged(NS),
            timeout=60.0,
            what="convergence after heal",
        )
        ties = _equal_version_keys(mesh)
        print(f"seed {sim_seed}: converged {took:.1f}s after the heal; equal-version keys {ties}")

    await _in_mesh(mesh, scenario)
    writers = {
        key: {w.node in side_a for w in writes}
        for key, writes in mesh.ledger[NS].items()
        if any(w.at > 0 for w in writes)
    }
    assert any(len(sides) == 2 for sides in writers.values()), "no key written on both sides"
    winners = mesh.last_writes(NS)
    assert winners[b"deleted-later"][0].wire[0] == TOMBSTONE
    assert winners[b"set-later"][0].wire[1] == b"a-late"
    assert mesh.owners_agree() == []


@pytest.mark.trio
@pytest.mark.parametrize("sim_seed", SEEDS)
async def test_quorum_writes_survive_an_owner_crash(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """``quorum`` SETs from 4 clients while one node crashes (its memory lost) and restarts:
    no acknowledged write is lost, at the crash or after; the owners then agree."""
    rng = random.Random(sim_seed)
    mesh = SimMesh(
        sim_seed,
        5,
        policies={NS: NamespacePolicy(replicas=3, consistency="quorum")},
        link=LAN,
        anti_entropy_interval=5.0,
    )
    acked: list[AckedWrite] = []
    failed = 0
    lost_at_crash: list[AckedWrite] = []
    victim = rng.choice(mesh.ids)

    async def client(c: int) -> None:
        nonlocal failed
        for i in range(40):
            key = f"k{rng.randrange(20)}".encode()
            value = f"c{c}-{i}".encode()
            via = rng.choice([n for n in mesh.ids if mesh.nodes[n].up])
            try:
                await mesh.client(via, NS, "SET", key, value, {})
            except MeshcacheError:
                failed += 1
            else:
                acked.append(AckedWrite(NS, key, value))
            await trio.sleep(rng.uniform(0.0, 0.05))

    async def crasher() -> None:
        await trio.sleep(rng.uniform(0.2, 0.8))
        mesh.crash(victim)
        lost_at_crash.extend(mesh.lost_acked_writes(acked))
        await trio.sleep(rng.uniform(1.0, 4.0))
        await mesh.restart(victim)

    async def scenario() -> None:
        async with trio.open_nursery() as clients:
            clients.start_soon(crasher)
            for c in range(4):
                clients.start_soon(client, c)
        await mesh.wait_until(
            lambda: not mesh.replicas_converged(NS, survivors=True),
            timeout=60.0,
            what="owners agree after the restart",
        )
        print(f"seed {sim_seed}: {len(acked)} acked, {failed} failed, victim {victim}")

    await _in_mesh(mesh, scenario)
    assert lost_at_crash == [], f"seed {sim_seed}: acked writes lost at the crash"
    assert mesh.lost_acked_writes(acked) == [], f"seed {sim_seed}: acked writes lost"
    assert len(acked) > 100, _report(mesh)


@pytest.mark.trio
@pytest.mark.parametrize("sim_seed", SEEDS)
async def test_anti_entropy_alone_repairs_a_replica_whose_hints_were_dropped(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """A replica cut off while writes go on misses them; hint queues are too small to hold
    any hint, so on the heal only the dropped-hint repair (an anti-entropy exchange) can bring
    it up to date: it does."""
    rng = random.Random(sim_seed)
    mesh = SimMesh(
        sim_seed,
        4,
        policies={NS: NamespacePolicy(replicas=3)},
        link=LAN,
        anti_entropy_interval=None,
        hint_max_bytes=1,
    )
    victim = rng.choice(mesh.ids)
    others = [n for n in mesh.ids if n != victim]
    keys = [f"k{i}".encode() for i in range(30)]
    missed: list[bytes] = []

    async def scenario() -> None:
        for i, key in enumerate(keys):
            await mesh.client(rng.choice(mesh.ids), NS, "SET", key, f"warm-{i}".encode(), {})
        await mesh.wait_until(mesh.quiet, timeout=10.0, what="warm-up replicated")
        assert mesh.replicas_converged(NS) == []
        mesh.net.partition([victim], others)
        for i in range(40):
            key = rng.choice(keys)
            via = rng.choice(others)
            try:
                if rng.random() < 0.25:
                    await mesh.client(via, NS, "DELETE", key)
                else:
                    await mesh.client(via, NS, "SET", key, f"cut-{i}".encode(), {})
            except MeshcacheError:
                pass
            await trio.sleep(rng.uniform(0.0, 0.2))
        missed.extend({d.key for d in mesh.replicas_converged(NS) if d.node == victim})
        assert all(mesh.nodes[n].hints.pending(victim) == 0 for n in others)
        assert any(victim in mesh.nodes[n].hints.needs_repair for n in others)
        mesh.net.heal()
        await mesh.wait_until(
            lambda: not mesh.replicas_converged(NS), timeout=30.0, what="repair of the replica"
        )
        # A complete pass clears the need for repair that the dropped hints left behind.
        await mesh.wait_until(
            lambda: all(victim not in mesh.nodes[n].hints.needs_repair for n in others),
            timeout=30.0,
            what="a complete repair pass",
        )

    await _in_mesh(mesh, scenario)
    assert missed, f"seed {sim_seed}: the victim missed nothing; the scenario proves nothing"
    repaired = mesh.nodes[victim].antientropy.stats["records_applied"]
    assert repaired >= len(missed), _report(mesh)
    assert mesh.counters()["replicator"]["hints_replayed"] == 0, _report(mesh)


def _run_digest(seed: int) -> str:
    """Run a short lossy partition-and-heal scenario; fingerprint its trace and final stores."""
    rng = random.Random(seed)
    meshes: list[SimMesh] = []

    async def main() -> None:
        mesh = SimMesh(
            seed,
            4,
            policies={NS: NamespacePolicy(replicas=2)},
            link=LinkFaults(delay=0.001, jitter=0.004, loss=0.05, duplicate=0.2),
        )
        meshes.append(mesh)
        await _in_mesh(mesh, lambda: scenario(mesh))

    async def scenario(mesh: SimMesh) -> None:
        for i in range(40):
            with contextlib.suppress(MeshcacheError):
                await mesh.client(rng.choice(mesh.ids), NS, "SET", b"k%d" % (i % 7), b"v%d" % i, {})
        mesh.net.partition(mesh.ids[:2], mesh.ids[2:])
        await trio.sleep(3.0)
        mesh.net.heal()
        await mesh.wait_until(lambda: not mesh.replicas_converged(NS), timeout=30.0, what="sync")

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    mesh = meshes[0]
    held = [(n, k, mesh.held(n, NS, k)) for n in mesh.ids for k in sorted(mesh.ledger[NS])]
    return f"{mesh.net.trace_digest} {held}"


@pytest.mark.parametrize("sim_seed", SEEDS[:3])
def test_one_seed_replays_the_same_run(sim_seed: int) -> None:
    """Same seed, same network trace (every event at the same mock time) and same stores."""
    assert _run_digest(sim_seed) == _run_digest(sim_seed)


@pytest.mark.trio
@pytest.mark.parametrize("sim_seed", SEEDS[:2])
async def test_a_stand_in_write_reaches_the_owners_after_a_short_partition(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """A node cut off from both owners of a key for less than gossip takes to call them dead
    stands in for a SET and acknowledges it; after the heal the owners must get it."""
    mesh = SimMesh(
        sim_seed,
        4,
        policies={NS: NamespacePolicy(replicas=2)},
        link=LAN,
        detect_dead=5.0,
        anti_entropy_interval=5.0,
    )
    key = b"k"
    owners = mesh.owners(NS, key)
    stand_in = next(n for n in mesh.ids if n not in owners)

    async def scenario() -> None:
        await mesh.client(owners[0], NS, "SET", key, b"old", {})
        await mesh.wait_until(mesh.quiet, timeout=5.0, what="first write replicated")
        mesh.net.partition([stand_in], owners)
        await mesh.client(stand_in, NS, "SET", key, b"new", {})
        assert mesh.nodes[stand_in].coordinator.stats["stand_in"] == 1
        await trio.sleep(1.0)
        mesh.net.heal()  # 3 s after the cut: before gossip called anyone dead
        await mesh.wait_until(
            lambda: all(mesh.held(o, NS, key) == mesh.held(stand_in, NS, key) for o in owners),
            timeout=60.0,
            what="the acknowledged stand-in write on the owners",
        )

    await _in_mesh(mesh, scenario)
