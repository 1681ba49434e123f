"""A member leaving the simulated mesh: its hand-off runs the node's real wiring.

Seeds as in test_dataplane_sim (``MESHCACHE_SIM_SEEDS``, ``MESHCACHE_SIM_SEED``).
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from meshcache.store.policy import NamespacePolicy
from meshcache.testing.simdata import LinkFaults, SimMesh
from tests.sim.test_dataplane_sim import SEEDS

NS = "sim"


@pytest.mark.trio
@pytest.mark.parametrize("sim_seed", SEEDS[:4])
async def test_a_leaving_member_counts_the_ranges_it_is_handing_over(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """While LEAVE pushes a member's ranges to their new owners, its ``ranges_moving`` gauge
    says how many are on their way; it is back at 0 when the member has left, and every key
    written before is still read from the remaining members."""
    mesh = SimMesh(
        sim_seed,
        3,
        policies={NS: NamespacePolicy(replicas=2)},
        link=LinkFaults(delay=0.002, jitter=0.002),
    )
    keys = [b"k%d" % i for i in range(200)]
    seen: list[int] = []

    async def scenario() -> None:
        for key in keys:
            assert await mesh.client("n0", NS, "SET", key, key) is not None
        leaving = mesh.nodes["n2"].parts.handoff

        async def watch() -> None:
            while True:
                seen.append(leaving.ranges_moving)
                await trio.sleep(0.0005)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            answer = await mesh.client("n2", NS, "LEAVE")
            nursery.cancel_scope.cancel()
        assert answer["node_id"] == "n2", f"seed {sim_seed}: {answer}"
        assert leaving.ranges_moving == 0, f"seed {sim_seed}"
        for key in keys:
            assert await mesh.client("n0", NS, "GET", key) == key, f"seed {sim_seed}: {key!r}"

    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        await scenario()
        nursery.cancel_scope.cancel()
    assert max(seen) > 0, f"seed {sim_seed}: the gauge never showed the hand-off"
