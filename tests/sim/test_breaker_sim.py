"""A plain client on the minority side of a cut, before gossip decides: the node's per-peer
circuit breakers (``meshcache/node/net/breakers.py``) stop it from forwarding into the cut.

The simulation runs the node's real assembly: coordinator, replicator, peer breakers and their
probes, over the simulated network, gossip an oracle that takes far longer than the cut to
call anyone dead (:data:`UNDECIDED`). A plain client reaches one node only; every op it sends
is routed by that node. For every seed of ``MESHCACHE_SIM_SEEDS`` (16 by default).
"""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from meshcache.errors import MeshcacheError
from meshcache.node.data.coordinator import FORWARD_TIMEOUT
from meshcache.node.net.breakers import MAX_BACKOFF, PROBE_TIMEOUT
from meshcache.store.policy import NamespacePolicy
from meshcache.testing.simdata import AckedWrite, SimMesh
from tests.sim.test_dataplane_sim import LAN, SEEDS, _in_mesh, _report

NS = "sim"
#: Gossip's delay to call a peer dead: longer than the cut, so it never does.
UNDECIDED = 120.0
CUT = 12.0
#: An op that takes this long waited on a peer in the cut (it completes in microseconds of
#: mesh time otherwise: the minority node stands in).
WAITED = PROBE_TIMEOUT / 2
#: The longest an op may take after the first failure: a check of a silent owner, no more.
CHECKED = PROBE_TIMEOUT + 0.25


@pytest.mark.trio
@pytest.mark.parametrize("sim_seed", SEEDS)
async def test_a_plain_client_on_the_minority_side_stops_waiting_after_the_first_failure(
    sim_seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """Five nodes, three replicas; ``n0`` is cut off from the other four, whom gossip goes on
    holding alive. A plain client on ``n0`` writes fresh keys and reads each back, one op at a
    time; one on ``n1`` writes on the majority side. The minority client's first op bound for
    an owner in the cut waits (a forward or a connection timeout, and at most a check of the
    next owner); from then on no op of it waits longer than one check (of an owner silent too,
    asked within a second), and few that long: ``n0`` stands in, its writes become hints, and
    its reads answer its own writes. After the heal the breakers' probes close them, the hints
    are replayed (gossip never called anyone dead, so no ALIVE event does it), and every
    owner holds the last writer's record, no acknowledged write lost."""
    rng = random.Random(sim_seed)
    mesh = SimMesh(
        sim_seed,
        5,
        policies={NS: NamespacePolicy(replicas=3)},
        link=LAN,
        detect_dead=UNDECIDED,
        anti_entropy_interval=5.0,
    )
    minority, majority = mesh.ids[:1], mesh.ids[1:]
    breakers = mesh.nodes[minority[0]].parts.breakers
    acked: list[AckedWrite] = []
    cut_at = 0.0
    # (what, started, took, ok) of every op of the minority client during the cut
    ops: list[tuple[str, float, float, bool]] = []

    async def timed(via: str, what: str, *args: object) -> object:
        started = trio.current_time()
        try:
            answer = await mesh.client(via, NS, what, *args)
        except MeshcacheError:
            ops.append((what, started, trio.current_time() - started, False))
            return None
        ops.append((what, started, trio.current_time() - started, True))
        return answer

    async def minority_client(until: float) -> None:
        i = 0
        while trio.current_time() < until:
            key, value = f"m{i}".encode(), f"m{i}:{sim_seed}".encode()
            if await timed(minority[0], "SET", key, value, {}) is True:
                acked.append(AckedWrite(NS, key, value))
                got = await timed(minority[0], "GET", key)
                assert got == value, f"seed {sim_seed}: read {got!r} of {key!r}, wrote {value!r}"
            i += 1
            await trio.sleep(rng.uniform(0.0, 0.05))

    async def majority_client(until: float) -> None:
        i = 0
        while trio.current_time() < until:
            key, value = f"M{i}".encode(), f"M{i}:{sim_seed}".encode()
            try:
                if await mesh.client(rng.choice(majority), NS, "SET", key, value, {}) is True:
                    acked.append(AckedWrite(NS, key, value))
            except MeshcacheError:
                pass
            i += 1
            await trio.sleep(rng.uniform(0.0, 0.1))

    async def scenario() -> None:
        nonlocal cut_at
        for i in range(20):  # every node has talked to every other before the cut
            via = mesh.ids[i % len(mesh.ids)]
            assert await mesh.client(via, NS, "SET", f"w{i}".encode(), b"w", {}) is True
        await mesh.wait_until(mesh.quiet, timeout=10.0, what="warm-up replicated")
        await trio.sleep(2.0)  # long enough that nobody's last answer is recent
        mesh.net.partition(minority, majority)
        cut_at = trio.current_time()
        async with trio.open_nursery() as clients:
            clients.start_soon(minority_client, cut_at + CUT)
            clients.start_soon(majority_client, cut_at + CUT)
        mesh.net.heal()
        # The probes find every peer again within one back-off (and a probe) of the heal.
        await mesh.wait_until(
            lambda: not breakers.open,
            timeout=MAX_BACKOFF + PROBE_TIMEOUT + 0.5,
            what="every breaker of the minority node closed after the heal",
        )
        await mesh.wait_until(
            lambda: mesh.quiet() and not mesh.replicas_converged(NS),
            timeout=60.0,
            what="hints replayed and every owner converged after the heal",
        )

    await _in_mesh(mesh, scenario)
    report = _report(mesh)
    first = next((n for n, op in enumerate(ops) if op[2] >= WAITED), None)
    assert first is not None, f"no op of the minority client met the cut: {report}"
    what, started, took, _ = ops[first]
    # One timeout, then at most a check of each further owner, done at once.
    assert took <= FORWARD_TIMEOUT + PROBE_TIMEOUT + 0.5, (ops[first], report)
    after = ops[first + 1 :]
    slow = [op for op in after if op[2] >= CHECKED]
    assert not slow, f"seed {sim_seed}: ops after the first failure waited: {slow[:5]}; {report}"
    waited = [op for op in after if op[2] >= WAITED]
    assert len(waited) <= len(majority), f"seed {sim_seed}: {waited}; {report}"
    assert all(ok for _, _, _, ok in after), f"seed {sim_seed}: {after}; {report}"
    # It went on at its pace (an op every ~25 ms) for the rest of the cut.
    assert len(after) >= (CUT - took) / 0.1, (len(after), report)
    assert breakers.stats["opened"] >= len(majority), report
    assert breakers.stats["steered"] > 0, report
    assert mesh.lost_acked_writes(acked) == [], report
    assert mesh.replicas_converged(NS) == [], report
    assert mesh.owners_agree() == [], report
    print(
        f"seed {sim_seed}: first failure {what} at +{started - cut_at:.2f}s took {took:.2f}s; "
        f"{len(after)} ops after it, {len(waited)} waited on a check, slowest "
        f"{max(op[2] for op in after) * 1000:.3f} ms; "
        f"breakers {breakers.figures()}"
    )
