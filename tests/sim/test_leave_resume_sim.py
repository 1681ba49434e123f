"""A LEAVE that stopped and is sent again, with owners that restarted or died in between: every
member that owns a range once the leaving member is gone ends up with every record it held.

Seeds as in test_dataplane_sim (``MESHCACHE_SIM_SEEDS``, ``MESHCACHE_SIM_SEED``); a failure
names its seed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from meshcache.control import RemoveMember
from meshcache.errors import CommandError, ErrorCode
from meshcache.node.data.replication.tombstones import read_record
from meshcache.store.policy import NamespacePolicy
from meshcache.testing.simdata import LinkFaults, SimMesh
from tests.sim.test_dataplane_sim import SEEDS

NS = "sim"
KEYS = [b"k%d" % i for i in range(200)]


def _mesh(sim_seed: int, nodes: int) -> SimMesh:
    # No anti-entropy and no read repair: only the hand-off may move a record here.
    return SimMesh(
        sim_seed,
        nodes,
        policies={NS: NamespacePolicy(replicas=2)},
        link=LinkFaults(delay=0.002, jitter=0.002),
        anti_entropy_interval=None,
    )


async def _write_all(mesh: SimMesh) -> None:
    for key in KEYS:
        assert await mesh.client("n0", NS, "SET", key, key) is not None


async def _refused_leave(mesh: SimMesh, node: str) -> str:
    with pytest.raises(CommandError) as refused:
        await mesh.client(node, NS, "LEAVE")
    assert refused.value.code == ErrorCode.UNAVAILABLE, f"seed {mesh.seed}: {refused.value}"
    return str(refused.value)


async def _wait_held(mesh: SimMesh, node: str) -> None:
    """Until ``node``'s store reflects the newest ring (its pulls are done)."""

    def held() -> bool:
        handoff = mesh.nodes[node].parts.handoff
        return handoff.held is not None and handoff.held.version == mesh.config.version

    await mesh.wait_until(held, timeout=60, what=f"{node} holds its ranges")


async def _check_every_key(mesh: SimMesh, owners: list[str]) -> None:
    for node in owners:
        store = mesh.nodes[node].store
        missing = [key for key in KEYS if read_record(store, NS, key) is None]
        assert missing == [], f"seed {mesh.seed}: {node} lacks {len(missing)} keys"
    for node in owners:
        for key in KEYS:
            got = await mesh.client(node, NS, "GET", key)
            assert got == key, f"seed {mesh.seed}: GET {key!r} via {node}: {got!r}"


async def _leave_stopped_by_a_cut(mesh: SimMesh) -> None:
    """Every key written, n1 cut off from n0, and n1's LEAVE refused for it."""
    await _write_all(mesh)
    mesh.net.partition(["n1"], ["n0"])
    await mesh.wait_until(lambda: not mesh.alive("n1", "n0"), timeout=30, what="n1 sees n0 dead")
    reason = await _refused_leave(mesh, "n1")
    assert "n0" in reason, f"seed {mesh.seed}: {reason}"


async def _leave_again(mesh: SimMesh, waiting: list[str]) -> None:
    """Once each of ``waiting`` holds what it pulled, n1's LEAVE sent again succeeds and every
    key is on n0 and n2."""
    for node in waiting:
        await _wait_held(mesh, node)
    answer = await mesh.client("n1", NS, "LEAVE")
    assert answer["node_id"] == "n1", f"seed {mesh.seed}: {answer}"
    await _check_every_key(mesh, ["n0", "n2"])


async def _run(mesh: SimMesh, scenario: Callable[[], Awaitable[None]]) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        await scenario()
        nursery.cancel_scope.cancel()


@pytest.mark.trio
@pytest.mark.parametrize("sim_seed", SEEDS[:6])
async def test_a_resumed_leave_reaches_an_owner_that_restarted_in_between(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """n2 is down, so n1's LEAVE stops after pushing to n0; n2 comes back with an empty store
    and n1's LEAVE is sent again. n2 owned the ranges it shares with n1 all along (it replaces
    n1 on none of them): it gets them all the same, and every key is on both n0 and n2."""
    mesh = _mesh(sim_seed, 3)

    async def scenario() -> None:
        await _write_all(mesh)
        mesh.crash("n2")
        await mesh.wait_until(
            lambda: not mesh.alive("n1", "n2"), timeout=30, what="n1 sees n2 dead"
        )
        reason = await _refused_leave(mesh, "n1")
        assert "n2" in reason, f"seed {sim_seed}: {reason}"
        await mesh.restart("n2")
        await mesh.wait_until(lambda: mesh.alive("n1", "n2"), timeout=30, what="n1 sees n2")
        await _leave_again(mesh, ["n2"])

    await _run(mesh, scenario)


@pytest.mark.trio
@pytest.mark.parametrize("sim_seed", SEEDS[:6])
async def test_an_owner_the_stopped_leave_reached_may_restart_before_it_is_sent_again(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """n1's LEAVE pushes to n2 and stops at n0 (cut off from n1, its store intact); n2 then
    restarts, empty, while n1 is leaving. n2 pulls everything it will own, from n1 too, and
    the LEAVE sent again leaves every key on n0 and n2."""
    mesh = _mesh(sim_seed, 3)

    async def scenario() -> None:
        await _leave_stopped_by_a_cut(mesh)
        mesh.crash("n2")
        await mesh.restart("n2")
        mesh.net.heal()
        for node in ("n0", "n2"):
            await mesh.wait_until(
                lambda node=node: mesh.alive("n1", node), timeout=30, what=f"n1 sees {node}"
            )
        await _leave_again(mesh, ["n2"])

    await _run(mesh, scenario)


@pytest.mark.trio
@pytest.mark.parametrize("sim_seed", SEEDS[:6])
async def test_a_resumed_leave_after_a_member_was_removed_reaches_every_owner(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """n1's first LEAVE cannot reach n0 (cut off from n1, its store intact) and stops; n3 is
    then removed from the ring (dead) and the cut heals. That ring change makes n0 an owner of
    some of n1's ranges in the ring's read view already, so no ring names it n1's replacement
    there any more, yet it never got those records (n3, their other holder, is gone): the
    LEAVE sent again pushes them to it. Every key is on n0 and n2."""
    mesh = _mesh(sim_seed, 4)

    async def scenario() -> None:
        await _leave_stopped_by_a_cut(mesh)
        mesh.crash("n3")
        await mesh.wait_until(
            lambda: not any(mesh.alive(node, "n3") for node in ("n0", "n1", "n2")),
            timeout=30,
            what="n3 seen dead",
        )
        mesh.commit(RemoveMember(mesh.config.version, "n3"))
        mesh.net.heal()
        await mesh.wait_until(lambda: mesh.alive("n1", "n0"), timeout=30, what="n1 sees n0")
        await _leave_again(mesh, ["n0", "n2"])

    await _run(mesh, scenario)
