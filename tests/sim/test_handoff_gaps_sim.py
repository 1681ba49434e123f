"""Hand-off alone (no anti-entropy, no read repair) brings every record to every owner: when a
namespace's replica count changes, and when a leaving member crashes mid-push and is then
removed.

Seeds as in test_dataplane_sim (``MESHCACHE_SIM_SEEDS``, ``MESHCACHE_SIM_SEED``); a failure
names its seed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools

import pytest
import trio
import trio.testing

from meshcache.control import Command, CreateNamespace, RemoveMember, UpdateNamespace, apply
from meshcache.errors import MeshcacheError
from meshcache.settings import NodeSettings
from meshcache.store.policy import NamespacePolicy
from meshcache.testing.simdata import LinkFaults, SimMesh
from tests.sim.seeds import sim_seeds

NS = "sim"
SEEDS = sim_seeds(6)


def _mesh(sim_seed: int, nodes: int, replicas: int, handoff_rate: int | None = None) -> SimMesh:
    """No anti-entropy and no read repair: only the hand-off may move a record here, throttled
    to ``handoff_rate`` bytes a second when given (a slow push or pull to act during)."""

    class Mesh(SimMesh):
        def settings(self, node_id: str) -> NodeSettings:
            settings = super().settings(node_id)
            if handoff_rate is None:
                return settings
            return dataclasses.replace(settings, handoff_rate=handoff_rate)

    return Mesh(
        sim_seed,
        nodes,
        policies={NS: NamespacePolicy(replicas=replicas)},
        link=LinkFaults(delay=0.001, jitter=0.002),
        anti_entropy_interval=None,
    )


def _commit_policies(mesh: SimMesh, command: Command) -> None:
    """Commit ``command`` as a node's config service installs it: the namespaces' policies go
    to each store first, then the config to the node."""
    config = apply(mesh.config, command)
    for node in mesh.nodes.values():
        if node.up:
            for name, policy in config.namespaces.items():
                if mesh.config.namespaces.get(name) != policy:
                    node.store.set_policy(name, policy)
    mesh.commit(command)


def _short(mesh: SimMesh, keys: list[bytes]) -> list[bytes]:
    """The keys some owner (by the newest ring and replica count) does not hold."""
    return [k for k in keys if any(mesh.held(o, NS, k) is None for o in mesh.owners(NS, k))]


@pytest.mark.trio
@pytest.mark.parametrize("counts", [(1, 2), (1, 3), (3, 2, 3)], ids=str)
@pytest.mark.parametrize("sim_seed", SEEDS)
async def test_a_raised_replica_count_copies_every_key_to_its_new_owners(
    sim_seed: int, counts: tuple[int, ...], autojump_clock: trio.testing.MockClock
) -> None:
    """Each change of the replica count leaves every key on every owner it has by the new
    count, brought by the hand-off alone."""
    mesh = _mesh(sim_seed, 3, counts[0])
    keys = [b"k%d" % i for i in range(60)]
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        for key in keys:
            assert await mesh.client("n0", NS, "SET", key, key) is not None
        await mesh.wait_until(mesh.quiet, timeout=30, what="quiet")
        for count in counts[1:]:
            _commit_policies(mesh, UpdateNamespace(mesh.config.version, NS, {"replicas": count}))
            await trio.sleep(20)
            short = _short(mesh, keys)
            assert not short, (
                f"seed {sim_seed}: replicas {counts}: {len(short)} of {len(keys)} keys miss "
                f"an owner 20 s after replicas became {count}, e.g. {short[:3]}"
            )
        nursery.cancel_scope.cancel()


@pytest.mark.trio
@pytest.mark.parametrize("sim_seed", SEEDS)
async def test_a_leaving_member_that_crashes_mid_push_and_is_removed_loses_no_owner(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """A member crashes while its LEAVE pushes, and is then removed (what auto-removal does):
    the ranges its replacements left to the push are pulled from the surviving holders, so
    every key ends on both its owners."""
    # 1 MiB/s: a LEAVE of a few MB takes seconds.
    mesh = _mesh(sim_seed, 4, 2, handoff_rate=1 << 20)
    keys = [b"k%d" % i for i in range(3000)]
    value = b"v" * 1000
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        for key in keys:
            assert await mesh.client("n0", NS, "SET", key, value) is not None
        await mesh.wait_until(mesh.quiet, timeout=60, what="quiet")

        async def leave() -> None:
            with contextlib.suppress(MeshcacheError):
                await mesh.client("n1", NS, "LEAVE")

        nursery.start_soon(leave)
        await mesh.wait_until(
            lambda: mesh.nodes["n1"].parts.handoff.leave_moved > 0,
            timeout=30,
            what="n1 pushing",
            poll=0.01,
        )
        mesh.crash("n1")
        await trio.sleep(5)
        mesh.commit(RemoveMember(mesh.config.version, "n1"))  # the auto-remover's proposal
        await trio.sleep(30)
        short = _short(mesh, keys)
        assert not short, (
            f"seed {sim_seed}: {len(short)} of {len(keys)} keys miss an owner 30 s after the "
            f"crashed leaving member was removed, e.g. {short[:3]}"
        )
        nursery.cancel_scope.cancel()


@pytest.mark.trio
@pytest.mark.parametrize("sim_seed", SEEDS)
async def test_a_leave_is_not_pushed_again_for_a_namespace_created_meanwhile(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """Namespaces created while a LEAVE pushes move none of the leaving node's records: the
    leave ends after one push (pushing again for every config change would never end while
    changes keep coming)."""
    # 100 kB/s: a LEAVE of a few MB takes about half a minute.
    mesh = _mesh(sim_seed, 4, 2, handoff_rate=100_000)
    keys = [b"k%d" % i for i in range(4000)]
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        for key in keys:
            assert await mesh.client("n0", NS, "SET", key, b"v" * 800) is not None
        await mesh.wait_until(mesh.quiet, timeout=60, what="quiet")

        async def churn() -> None:
            for i in itertools.count():
                await trio.sleep(2.5)
                mesh.commit(CreateNamespace(mesh.config.version, f"new{i}", {}))

        nursery.start_soon(churn)
        answer = await mesh.client("n1", NS, "LEAVE", {"timeout": 120})
        assert answer["node_id"] == "n1", f"seed {sim_seed}: {answer}"
        assert mesh.nodes["n1"].parts.handoff.stats["leave_ring_moved"] == 0, f"seed {sim_seed}"
        nursery.cancel_scope.cancel()
    assert not _short(mesh, keys), f"seed {sim_seed}"


@pytest.mark.trio
@pytest.mark.parametrize("sim_seed", SEEDS[:4])
async def test_a_leave_waits_for_its_own_slow_pulls_before_it_pushes(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """n1 gains a removed member's ranges and pulls them slowly; its LEAVE, sent meanwhile,
    pushes only once they are in: the other owners left those ranges to its push, and once n1
    is gone (alive) nobody pulls them again."""
    # 10 kB/s: pulls of a removed member's ranges take about a minute.
    mesh = _mesh(sim_seed, 4, 2, handoff_rate=10_000)
    keys = [b"k%d" % i for i in range(1500)]
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        for key in keys:
            assert await mesh.client("n0", NS, "SET", key, b"v" * 8000) is not None
        await mesh.wait_until(mesh.quiet, timeout=120, what="quiet")
        mesh.crash("n3")
        await mesh.wait_until(
            lambda: not any(mesh.alive(x, "n3") for x in ("n0", "n1", "n2")),
            timeout=30,
            what="n3 seen dead",
        )
        mesh.commit(RemoveMember(mesh.config.version, "n3"))
        await trio.sleep(1)
        answer = await mesh.client("n1", NS, "LEAVE", {"timeout": 3000})
        assert answer["node_id"] == "n1", f"seed {sim_seed}: {answer}"
        await mesh.wait_until(lambda: not _short(mesh, keys), timeout=900, what="every owner")
        nursery.cancel_scope.cancel()
