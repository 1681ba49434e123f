"""The chaos suite's simulation tier: the soak's fault schedules and checkers over the
deterministic data-plane simulation (:mod:`meshcache.testing.simdata`: every node's own
:class:`~meshcache.node.assembly.Assembly` over a simulated network, in mock time).

One *cycle* draws a schedule with :func:`~.scenarios.make_schedule` exactly as the soak does
(the seed ``"<seed>:sim"`` names the run: a failure prints it), plays it against three
simulated nodes while clients on each side write, read and delete through the nodes their side
can reach, heals, waits for the owners to agree, and hands the recorded history and the owners'
final records to the same checkers the real-process tier uses (:mod:`.checkers`: acknowledged
writes, resurrection, impossible reads, convergence).

How each fault kind maps onto the simulation:

* ``partition``, ``one-way``, ``bridge``, ``isolate``: links blocked between the sides; a
  client reaches only the nodes of its own side. Frames already sent into a cut are delivered
  at the heal (``SimDataNet.retransmit``), as TCP would.
* ``kill``: the node crashes (its memory is gone) and restarts empty later.
* ``pause``: the node is cut off both ways for the pause, frames held and delivered when it
  resumes. Unlike a stopped process its own timers keep running meanwhile.
* ``loss``: every link loses frames with the schedule's probability (a lost frame breaks its
  connection, like a TCP connection that gives up).
* ``skew``: the node restarts with its wall clock offset by the schedule's seconds.
* ``flapping``: the partition is set and healed at the schedule's times.

As in a real cycle, the clients work for a while before the first fault and go on for a while
after the final heal.

Gossip is the simulation's oracle (a member is held dead ``detect_dead`` seconds after it
became unreachable), so membership and ring agreement and Raft's config safety are checked in
the real-process tier only.

Run many seeds: ``python -m meshcache.testing.chaos.simtier --seeds 2000`` (a soak in mock
time); ``--seed 17 --kind bridge`` replays one cycle.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import trio
import trio.testing

from meshcache.errors import MeshcacheError
from meshcache.logs import configure_logging
from meshcache.store.policy import Consistency, NamespacePolicy
from meshcache.testing.chaos import checkers
from meshcache.testing.chaos.history import FAIL, OK, History, Op
from meshcache.testing.chaos.scenarios import Schedule, make_schedule
from meshcache.testing.chaos.workload import NAMESPACES, _outcome
from meshcache.testing.faults import LinkFaults
from meshcache.testing.simdata import SimMesh

#: The fault kinds of the simulation tier, one per seed in turn.
SIM_KINDS = (
    "partition",
    "one-way",
    "bridge",
    "isolate",
    "kill",
    "pause",
    "loss",
    "skew",
    "flapping",
)
#: Seconds of mesh time the owners get to agree after the final heal (the soak's bound).
CONVERGE_BOUND = 30.0
LAN = LinkFaults(delay=0.0005, jitter=0.002)
NODES = ("n0", "n1", "n2")
CLIENTS = ("c0", "c1", "c2")
#: Mesh seconds the clients work before the first fault and after the final heal.
BASELINE = 1.5
AFTER_HEAL = 1.0


@dataclass(slots=True)
class SimCycle:
    """One simulated cycle: its schedule, the checkers' verdicts and a few figures."""

    seed: int
    schedule: Schedule
    checks: list[checkers.Check]
    ops: int
    acked: int
    converged_after: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def summary(self) -> str:
        failed = [c.name for c in self.checks if not c.ok]
        took = "never" if self.converged_after is None else f"{self.converged_after:.1f}s"
        verdict = "ok" if not failed else "FAILED: " + ", ".join(failed)
        return (
            f"sim seed {self.seed} {self.schedule.kind:<9} ops {self.ops} acked {self.acked} "
            f"converged {took} {verdict}"
        )

    def failure(self) -> str:
        """Every failed check's findings, and how to replay the cycle."""
        lines = [self.summary()]
        for check in self.checks:
            if not check.ok:
                lines += [f"  {check.name}: {line}" for line in check.findings[:10]]
        lines.append(
            f"  replay: python -m meshcache.testing.chaos.simtier --seed {self.seed} "
            f"--kind {self.schedule.kind}"
        )
        return "\n".join(lines)


def kind_of(seed: int) -> str:
    """The fault kind seed ``seed`` runs when none is named: the kinds in turn."""
    return SIM_KINDS[seed % len(SIM_KINDS)]


def schedule_for(seed: int, kind: str) -> Schedule:
    """The cycle's schedule, drawn as the soak draws a real cycle's."""
    return make_schedule(kind, f"{seed}:sim", NODES, CLIENTS)


class _Cycle:
    """Plays one schedule on a :class:`SimMesh` and records every client op."""

    def __init__(
        self, seed: int, schedule: Schedule, *, rate: float, keys: int, replicas: int
    ) -> None:
        self.seed = seed
        self.schedule = schedule
        self.rate = rate
        self.keys = keys
        self.mesh = SimMesh(
            seed,
            len(NODES),
            policies={
                ns: NamespacePolicy(
                    replicas=replicas, consistency=cast(Consistency, level), eviction="none"
                )
                for level, ns in NAMESPACES.items()
            },
            link=LAN,
            anti_entropy_interval=5.0,
        )
        self.mesh.net.retransmit = True
        self.ops: list[Op] = []
        self.blocked: set[tuple[str, str]] = set()  # (client endpoint, node) it cannot reach
        self.paused: set[str] = set()
        self.stopping = False

    # --- faults ---------------------------------------------------------------------------

    def _cut(self, a: Sequence[str], b: Sequence[str], *, one_way: bool = False) -> None:
        nodes_a = [x for x in a if x in NODES]
        nodes_b = [x for x in b if x in NODES]
        if nodes_a and nodes_b:
            self.mesh.net.partition(nodes_a, nodes_b, one_way=one_way)
        for c in (x for x in a if x in CLIENTS):
            self.blocked |= {(c, n) for n in nodes_b}
        for c in (x for x in b if x in CLIENTS):
            if not one_way:
                self.blocked |= {(c, n) for n in nodes_a}

    def _faults(self, spec: dict[str, Any]) -> None:
        shape = spec["shape"]
        if shape == "partition":
            a, b = spec["sides"]
            self._cut(a, b)
        elif shape == "one_way":
            # A client's request and its answer cross the same link: one blocked way is enough
            # to lose the exchange, so a client keeps to the nodes it can talk to both ways.
            self._cut(spec["src"], spec["dst"], one_way=True)
            for c in (x for x in spec["dst"] if x in CLIENTS):
                self.blocked |= {(c, n) for n in spec["src"] if n in NODES}
        elif shape == "bridge":
            self._cut(spec["left"], spec["right"])
        elif shape == "isolate":
            self._cut([spec["node"]], spec["others"])
        elif shape == "loss":
            self.mesh.net.set_default_link(
                LinkFaults(delay=LAN.delay, jitter=LAN.jitter, loss=float(spec["p"]))
            )
        else:
            raise ValueError(f"the simulation has no fault shape {shape!r}")

    def _heal(self) -> None:
        self.mesh.net.heal()
        self.mesh.net.set_default_link(LAN)
        self.blocked.clear()

    async def _step(self, action: str, args: dict[str, Any]) -> None:
        mesh = self.mesh
        if action == "faults":
            self._heal()  # a new shape replaces the previous one (flapping)
            self._faults(args)
        elif action == "heal":
            self._heal()
        elif action == "kill":
            mesh.crash(args["node"])
        elif action == "restart":
            await mesh.restart(args["node"])
        elif action == "pause":
            node = args["node"]
            self.paused.add(node)
            others = [n for n in NODES if n != node]
            mesh.net.partition([node], others)
            self.blocked |= {(c, node) for c in CLIENTS}
        elif action == "resume":
            self.paused.discard(args["node"])
            self._heal()
        elif action == "skew":
            node = args["node"]
            mesh.crash(node)
            mesh.nodes[node].skew = float(args["seconds"])
            await mesh.restart(node)
        elif action == "config":
            pass  # Raft is not simulated here: the real-process tier checks config safety
        else:
            raise ValueError(f"the simulation has no step {action!r}")

    async def _nemesis(self) -> None:
        start = trio.current_time()
        for step in sorted(self.schedule.steps, key=lambda s: s.at):
            await trio.sleep_until(start + step.at)
            await self._step(step.action, dict(step.args))
        await trio.sleep_until(start + self.schedule.duration)

    # --- clients --------------------------------------------------------------------------

    def _reachable(self, client: str) -> list[str]:
        return [n for n in NODES if self.mesh.nodes[n].up and (client, n) not in self.blocked]

    async def _client(self, name: str, endpoint: str, smart: bool) -> None:
        rng = random.Random(f"{self.seed}:{name}")
        n = 0
        while True:
            await trio.sleep(rng.expovariate(self.rate))
            if self.stopping:
                break
            level = rng.choice(list(NAMESPACES))
            ns = NAMESPACES[level]
            key = f"k{rng.randrange(self.keys)}"
            roll = rng.random()
            f = "set" if roll < 0.7 else "get" if roll < 0.9 else "delete"
            reachable = self._reachable(endpoint)
            if smart:
                owners = [o for o in self.mesh.owners(ns, key.encode()) if o in reachable]
                via = owners[0] if owners else (rng.choice(reachable) if reachable else None)
            else:
                plain = self.schedule.plain[endpoint]
                via = plain if plain in reachable else None
            n += 1
            op = Op(name, n, f, ns, key, trio.current_time(), node=via)
            if f == "set":
                op.value = f"{name}:{n}"
            self.ops.append(op)
            if via is None:  # nothing it can reach: its connect would fail, nothing applied
                op.type, op.complete, op.error = FAIL, trio.current_time(), "unreachable"
                continue
            try:
                with trio.fail_after(5.0):  # the workload clients' timeout
                    if op.value is not None and f == "set":
                        await self.mesh.client(via, ns, "SET", key.encode(), op.value.encode(), {})
                    elif f == "delete":
                        await self.mesh.client(via, ns, "DELETE", key.encode())
                    else:
                        got = await self.mesh.client(via, ns, "GET", key.encode())
                        op.value = None if got is None else bytes(got).decode()
            except (MeshcacheError, trio.TooSlowError) as exc:
                op.type, op.error = _outcome(f, exc)
                op.complete = trio.current_time()
                if op.type != FAIL:
                    op.complete = None  # unknown: it may apply at any later time
            else:
                op.type, op.complete = OK, trio.current_time()

    # --- the cycle ------------------------------------------------------------------------

    def _final(self) -> checkers.FinalState:
        final = checkers.FinalState()
        for op in self.ops:
            k = (op.ns, op.key)
            if k in final.records:
                continue
            owners = self.mesh.owners(op.ns, op.key.encode())
            final.owners[k] = owners
            up = [o for o in owners if self.mesh.nodes[o].up]
            final.records[k] = {o: self.mesh.held(o, op.ns, op.key.encode()) for o in up}
        return final

    def _converged(self) -> bool:
        mesh = self.mesh
        return not any(mesh.replicas_converged(ns, survivors=True) for ns in NAMESPACES.values())

    async def run(self) -> tuple[History, checkers.FinalState, float | None]:
        mesh = self.mesh
        async with trio.open_nursery() as nursery:
            await nursery.start(mesh.run)
            async with trio.open_nursery() as clients:
                for c in CLIENTS:
                    clients.start_soon(self._client, f"{c}-smart", c, True)
                    clients.start_soon(self._client, f"{c}-plain", c, False)
                await trio.sleep(BASELINE)
                await self._nemesis()
                # The final heal: every fault removed, every node running.
                self._heal()
                self.paused.clear()
                for node in NODES:
                    if not mesh.nodes[node].up:
                        await mesh.restart(node)
                healed = trio.current_time()
                await trio.sleep(AFTER_HEAL)
                self.stopping = True
            converged_after: float | None = None
            while trio.current_time() - healed <= CONVERGE_BOUND + AFTER_HEAL:
                if mesh.quiet() and self._converged():
                    converged_after = trio.current_time() - healed
                    break
                await trio.sleep(0.1)
            final = self._final()
            nursery.cancel_scope.cancel()
        return History(sorted(self.ops, key=lambda o: o.invoke)), final, converged_after


async def sim_cycle(
    seed: int,
    kind: str | None = None,
    *,
    rate: float = 6.0,
    keys: int = 10,
    replicas: int = 3,
) -> SimCycle:
    """Run one simulated cycle in the current trio run (which must use a mock clock).

    Args:
        seed: names the cycle: its schedule, network, node and client randomness.
        kind: the fault kind (default :func:`kind_of` the seed).
        rate: each client's ops per second of mesh time (6 clients).
        keys: keys per namespace.
        replicas: owners per key. Below the checkers' assumption of 3 (every node owns every
            key) the mesh breaks its promises on purpose: tests use it to show the checkers
            notice.
    """
    kind = kind or kind_of(seed)
    schedule = schedule_for(seed, kind)
    cycle = _Cycle(seed, schedule, rate=rate, keys=keys, replicas=replicas)
    history, final, converged_after = await cycle.run()
    levels = {ns: level for level, ns in NAMESPACES.items()}
    checks = [
        checkers.check_writes(history, final, levels),
        checkers.check_reads(history),
        checkers.check_convergence(final, converged_after, CONVERGE_BOUND),
    ]
    acked = sum(1 for op in history.ops if op.is_write and op.type == OK)
    return SimCycle(seed, schedule, checks, len(history.ops), acked, converged_after)


def run_sim_cycle(seed: int, kind: str | None = None) -> SimCycle:
    """:func:`sim_cycle` in a trio run of its own, in mock time."""

    async def main() -> SimCycle:
        return await sim_cycle(seed, kind)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m meshcache.testing.chaos.simtier",
        description="The chaos schedules and checkers over the deterministic simulation.",
    )
    parser.add_argument("--seeds", type=int, default=200, help="run seeds 0..N-1 (default 200)")
    parser.add_argument("--first", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--seed", type=int, help="replay this one seed")
    parser.add_argument("--kind", choices=SIM_KINDS, help="the fault kind (default: by seed)")
    args = parser.parse_args(argv)
    configure_logging("console", "error")  # the nodes' own events would bury the verdicts
    seeds = [args.seed] if args.seed is not None else range(args.first, args.first + args.seeds)
    failed = 0
    by_kind: dict[str, list[int]] = {}
    started = time.monotonic()
    for seed in seeds:
        cycle = run_sim_cycle(seed, args.kind)
        by_kind.setdefault(cycle.schedule.kind, [0, 0])
        by_kind[cycle.schedule.kind][0] += 1
        if not cycle.ok:
            failed += 1
            by_kind[cycle.schedule.kind][1] += 1
            print(cycle.failure(), flush=True)
        elif args.seed is not None:
            print(cycle.summary())
    took = time.monotonic() - started
    kinds = ", ".join(f"{k} {n} ({bad} failed)" for k, (n, bad) in sorted(by_kind.items()))
    print(f"{len(seeds)} cycles in {took:.0f}s, {failed} failed: {kinds}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
