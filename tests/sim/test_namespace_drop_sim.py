"""A namespace dropped and created again starts empty everywhere: no dropped key comes back.

Two ways the dropped keys could come back, each a scenario: hints queued for a replica that
was down during the drop, replayed when it returns; and a node that learns the drop and the
re-creation in one step, holding the dropped keys, which anti-entropy would copy to the others.
Seeds as in test_dataplane_sim (``MESHCACHE_SIM_SEEDS``, ``MESHCACHE_SIM_SEED``).
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from meshcache.store.policy import NamespacePolicy
from meshcache.testing.simdata import LinkFaults, SimMesh
from tests.sim.test_dataplane_sim import SEEDS, _report

NS = "sessions"
OLD_KEYS = [b"old%d" % i for i in range(50)]
NEW_KEYS = [b"new%d" % i for i in range(20)]


def _mesh(seed: int) -> SimMesh:
    return SimMesh(
        seed,
        3,
        policies={NS: NamespacePolicy(replicas=3)},
        link=LinkFaults(delay=0.001, jitter=0.002),
        anti_entropy_interval=5.0,
    )


def _held(mesh: SimMesh, keys: list[bytes]) -> dict[str, int]:
    """How many of ``keys`` each up node's store holds."""
    return {
        n: sum(node.store.execute(NS, "GET", [k]) is not None for k in keys)
        for n, node in mesh.nodes.items()
        if node.up
    }


async def _drop_and_create(mesh: SimMesh) -> None:
    """``ns drop`` through n0, then ``ns set`` of the same name through n1."""
    assert await mesh.nodes["n0"].parts.config_source.drop_namespace(NS)
    await mesh.nodes["n1"].parts.config_source.set_namespace(NS, {"replicas": 3})


async def _write(mesh: SimMesh, keys: list[bytes]) -> None:
    for key in keys:
        await mesh.client("n0", NS, "SET", key, b"v-" + key, {})
    await mesh.wait_until(lambda: mesh.net.in_flight == 0, timeout=30, what="quiet")


@pytest.mark.trio
@pytest.mark.parametrize("sim_seed", SEEDS)
async def test_hints_for_a_dropped_namespace_do_not_refill_its_new_incarnation(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """A replica is down while 50 keys are written (they become hints on the others); the
    namespace is dropped and created again; the replica returns and the hints replay: it
    discards them, and no dropped key is on any node 30 s later. Keys written to the new
    incarnation reach every owner."""
    mesh = _mesh(sim_seed)

    async def scenario() -> None:
        await trio.sleep(1)
        mesh.crash("n2")
        await trio.sleep(3)  # gossip holds n2 dead: its writes become hints
        await _write(mesh, OLD_KEYS)
        hinted = len(mesh.nodes["n0"].hints) + len(mesh.nodes["n1"].hints)
        assert hinted == len(OLD_KEYS), _report(mesh)
        await _drop_and_create(mesh)
        await _write(mesh, NEW_KEYS)
        await mesh.restart("n2")
        await trio.sleep(30)
        assert _held(mesh, OLD_KEYS) == {"n0": 0, "n1": 0, "n2": 0}, _report(mesh)
        assert _held(mesh, NEW_KEYS) == {n: len(NEW_KEYS) for n in mesh.ids}, _report(mesh)
        assert mesh.counters()["replicator"]["hints_replayed"] >= len(OLD_KEYS), _report(mesh)
        assert mesh.nodes["n2"].store.incarnation_discarded[NS] >= len(OLD_KEYS), _report(mesh)
        for key in OLD_KEYS[:5]:
            assert await mesh.client("n1", NS, "GET", key) is None, _report(mesh)

    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        await scenario()
        nursery.cancel_scope.cancel()


@pytest.mark.trio
@pytest.mark.parametrize("sim_seed", SEEDS)
async def test_a_node_behind_the_drop_and_re_creation_drops_the_keys_it_held(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """Every node holds 50 keys; n2 installs no config while the namespace is dropped and
    created again, for two anti-entropy intervals, then learns both changes in one step. Its
    dropped keys are gone at once, no dropped key is on any node 30 s later, and keys written
    to the new incarnation reach every owner."""
    mesh = _mesh(sim_seed)

    async def scenario() -> None:
        await trio.sleep(1)
        await _write(mesh, OLD_KEYS)
        assert _held(mesh, OLD_KEYS) == {n: len(OLD_KEYS) for n in mesh.ids}, _report(mesh)
        mesh.hold("n2")
        await _drop_and_create(mesh)
        await trio.sleep(12)  # anti-entropy rounds come and go meanwhile
        assert _held(mesh, OLD_KEYS)["n2"] == len(OLD_KEYS), _report(mesh)
        assert _held(mesh, OLD_KEYS)["n0"] == 0, _report(mesh)
        mesh.release("n2")
        assert _held(mesh, OLD_KEYS)["n2"] == 0, _report(mesh)
        await _write(mesh, NEW_KEYS)
        await trio.sleep(30)
        assert _held(mesh, OLD_KEYS) == {"n0": 0, "n1": 0, "n2": 0}, _report(mesh)
        assert _held(mesh, NEW_KEYS) == {n: len(NEW_KEYS) for n in mesh.ids}, _report(mesh)

    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        await scenario()
        nursery.cancel_scope.cancel()
