"""A busy node must never look dead: stalls of a node's loop, simulated (simnet's pause).

A paused node receives nothing until it resumes; then it handles what queued up, in arrival
order, before its late timers (what the transport does too). Every assertion carries the seed.
"""

from __future__ import annotations

import random

import pytest

from meshcache.gossip import EventKind
from meshcache.gossip.suspicion import suspicion_bounds
from meshcache.testing.faults import LinkFaults
from tests.gossip.simcluster import SimCluster

LOSSY = LinkFaults(loss=0.02, delay=0.0005, jitter=0.002)


def deaths(c: SimCluster, *, of: str | None = None, by: str | None = None) -> list[str]:
    c.collect()
    return [
        f"{observer} saw {e.member.name} dead at {e.at:.2f}"
        for observer, e in c.events
        if e.kind is EventKind.DEAD
        and (of is None or e.member.name == of)
        and (by is None or observer == by)
    ]


def stall_repeatedly(
    c: SimCluster, victim: int, seconds: float, shortest: float, longest: float
) -> int:
    """Pause node ``victim`` again and again for ``seconds``: each pause between ``shortest``
    and ``longest``, then as long again running (a node busy half the time). Returns how many."""
    rng = random.Random(c.seed)
    end = c.net.now + seconds
    pauses = 0
    while c.net.now < end:
        pause = rng.uniform(shortest, longest)
        c.net.pause(c.addrs[victim], pause)
        c.net.run_for(pause + rng.uniform(0.5, 1.5) * pause)
        pauses += 1
    return pauses


@pytest.mark.parametrize("n", [3, 5])
def test_a_node_paused_longer_than_the_probe_timeout_is_never_declared_dead(
    sim_seed: int, n: int
) -> None:
    """Pauses between 1.5 probe timeouts and 0.9 of the shortest suspicion timeout: the node
    may be suspected (it missed pings), never declared dead. That rests on gossip's odds of
    the refutation reaching every suspecting member in time; they hold at these sizes, not at
    8 members (docs/gossip.md, "A paused node")."""
    c = SimCluster(sim_seed, n, link=LOSSY)
    assert c.wait(c.converged, 10.0), f"seed={sim_seed}"
    cfg = c.config
    shortest_suspicion, _ = suspicion_bounds(
        cfg.suspicion_mult, cfg.suspicion_max_timeout_mult, n, cfg.probe_interval
    )
    pauses = stall_repeatedly(c, 1, 60.0, 1.5 * cfg.probe_timeout, 0.9 * shortest_suspicion)
    assert pauses >= 50, f"seed={sim_seed}"
    assert deaths(c) == [], f"seed={sim_seed}"
    suspected = [e for _, e in c.events if e.kind is EventKind.SUSPECT and e.member.name == "n1"]
    assert suspected, f"seed={sim_seed}: the pauses were never noticed: a useless test"
    assert c.wait(c.converged, 5.0), f"seed={sim_seed}"


@pytest.mark.parametrize("n", [3, 5])
def test_a_stalled_prober_does_not_declare_others_dead(sim_seed: int, n: int) -> None:
    """n0 is held again and again, each time longer than any timeout it runs (as a node
    digesting its store in one stretch was), on lossy links. The others may declare n0 dead —
    that is detection doing its job — but n0, stalled, must not declare them dead. (The rule
    itself, against the same stall without it: tests/gossip/test_lifeguard.py.)"""
    lossy = LinkFaults(loss=0.1, delay=0.0005, jitter=0.002)
    c = SimCluster(sim_seed, n, link=lossy)
    assert c.wait(c.converged, 10.0), f"seed={sim_seed}"
    pauses = stall_repeatedly(c, 0, 60.0, 0.3, 2.0)
    by_n0 = deaths(c, by="n0")
    assert by_n0 == [], f"seed={sim_seed}: {by_n0[:5]}"
    n0 = c.node(c.addrs[0])
    assert n0.stats["local_stalls"] >= pauses // 2, f"seed={sim_seed}"
