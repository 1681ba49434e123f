"""The chaos suite's simulation tier (meshcache/testing/chaos/simtier.py): the soak's fault
schedules and the real-process tier's checkers over the deterministic simulation of three
nodes, one cycle per seed, the fault kinds in turn.

200 seeds by default; ``MESHCACHE_SIM_SEEDS`` runs another count (``2000``) or list (``5,17``);
``MESHCACHE_SIM_SEED=17`` replays one. A failure prints its findings and the replay command.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from meshcache.testing.chaos.simtier import SIM_KINDS, kind_of, sim_cycle
from tests.sim.seeds import sim_seeds

SEEDS = sim_seeds(200)


@pytest.mark.trio
@pytest.mark.parametrize("sim_seed", SEEDS)
async def test_a_simulated_fault_cycle_passes_every_checker(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    cycle = await sim_cycle(sim_seed)
    assert cycle.ok, cycle.failure()
    assert cycle.acked > 0, cycle.summary()  # the clients did work the checkers could judge


def test_every_kind_runs_in_turn() -> None:
    assert {kind_of(s) for s in range(len(SIM_KINDS))} == set(SIM_KINDS)


@pytest.mark.trio
async def test_the_checkers_notice_a_mesh_that_loses_acknowledged_writes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One owner per key instead of three, and a node killed: the keys it owned are gone with
    it, so quorum and all writes acknowledged before the kill and never written again are lost
    (many keys: most are written once) and the cycle fails."""
    seed = next(s for s in range(100) if kind_of(s) == "kill")
    cycle = await sim_cycle(seed, replicas=1, keys=300)
    writes = next(c for c in cycle.checks if c.name == "writes")
    assert not writes.ok, cycle.summary()
    assert writes.counts["quorum_lost"] + writes.counts["all_lost"] > 0, writes.counts
