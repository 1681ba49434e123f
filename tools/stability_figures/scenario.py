"""One run of the heaviest load we generate on a real mesh, and what each node saw meanwhile.

A run: 3 node processes (``--profile`` local or lan) are filled by pipelining writers at full
speed (:mod:`tools.stability_figures.writers`); then either the writers go on (overwriting, or
a mix of reads and writes) or the mesh is left quiet; optionally a fourth node joins and pulls
its ranges while the three old nodes then drop what they no longer own, and one node leaves; a
tail follows. Then every node's INFO gives its membership events (suspicions and deaths,
counted at every observer), the claims about itself it refuted, its Lifeguard local-stall
count and its loop figures.

A join is timed from the first RING of the bootstrap node that lists the fourth member (its
``joining`` entry committed) until every node's RING shows it active; a leave from sending
``LEAVE`` until every remaining node's RING shows the ring without it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshcache.errors import MeshcacheError
from meshcache.testing.mesh import Direct, Mesh, MeshError, rings_agreed, wait_for
from meshcache.testing.nodes import NodeProcess
from tools.stability_figures.probe import Probe, ProbeCounts
from tools.stability_figures.writers import (
    AFTER,
    BASELINE,
    JOIN,
    LEAVE,
    PHASES,
    PhaseCounts,
    Writers,
)

RING_POLL = 0.01


@dataclass(frozen=True, slots=True)
class NodeFigures:
    """One node's INFO after (or, for a node that left, just before) its part of a run."""

    node_id: str
    suspicions: int  # member_suspect events this node raised or heard of
    deaths: int  # member_dead events, likewise
    refutations: int  # claims about itself this node refuted
    local_stalls: int  # late gossip ticks Lifeguard counted against itself
    lag_p99_ms: float  # over INFO's window (the last 60 s)
    lag_max_ms: float  # since the node started
    own_p99_ms: float  # the lags less the waits for a core, over INFO's window
    own_max_ms: float  # since the node started
    longest_step_ms: float
    longest_step_task: str | None
    gc_longest_ms: float
    host_steal_ms: float  # CPU time per CPU the host took from this virtual machine meanwhile
    held: int  # lags logged as loop_held (own part 25 ms or more), with where the loop was held
    held_at: str | None  # the last one's place

    @classmethod
    def of(cls, node_id: str, info: dict[str, Any]) -> NodeFigures:
        gossip = info.get("gossip", {})
        events, stats, loop = gossip.get("events", {}), gossip.get("stats", {}), info["loop"]
        return cls(
            node_id,
            int(events.get("suspect", 0)),
            int(events.get("dead", 0)),
            int(stats.get("refutations", 0)),
            int(stats.get("local_stalls", 0)),
            float(loop["lag_p99_ms"]),
            float(loop["lag_max_ever_ms"]),
            float(loop["lag_own_p99_ms"]),
            float(loop["lag_own_max_ever_ms"]),
            float(loop["longest_step_ms"]),
            loop.get("longest_step_task"),
            float(loop["gc_longest_ms"]),
            float(loop.get("host_steal_ms", 0.0)),
            int(loop.get("held", 0)),
            (loop.get("held_last") or {}).get("at"),
        )


@dataclass(slots=True)
class RunResult:
    profile: str
    keys: int
    preload_s: float
    join_s: float = math.nan
    leave_s: float = math.nan
    pulled: int = 0
    phases: list[PhaseCounts] = field(default_factory=list)
    probe: list[ProbeCounts] = field(default_factory=list)  # the probe client's, by phase
    nodes: list[NodeFigures] = field(default_factory=list)
    minutes: float = 0.0  # wall time the mesh ran, in minutes

    @property
    def deaths(self) -> int:
        return sum(n.deaths for n in self.nodes)

    @property
    def suspicions(self) -> int:
        return sum(n.suspicions for n in self.nodes)

    @property
    def refutations(self) -> int:
        return sum(n.refutations for n in self.nodes)

    def describe(self) -> str:
        """Every node's figures, one line each, then the probe's by phase (for a failure
        message or a log)."""
        lines = [
            f"{n.node_id}: suspect {n.suspicions} dead {n.deaths} refuted {n.refutations} "
            f"local stalls {n.local_stalls} lag p99 {n.lag_p99_ms} ms max {n.lag_max_ms} ms "
            f"(own p99 {n.own_p99_ms} ms max {n.own_max_ms} ms) "
            f"longest step {n.longest_step_ms} ms ({n.longest_step_task}) "
            f"gc {n.gc_longest_ms} ms host steal {n.host_steal_ms} ms"
            + (f" loop held {n.held} times, last at {n.held_at}" if n.held else "")
            for n in self.nodes
        ]
        lines += [
            f"probe in {name}: {c.answered} answered, {c.errors} errors, {c.skipped} skipped "
            f"(behind schedule), service p99 "
            f"{c.p99_ms():.1f} ms max {c.max_ms():.1f} ms, from schedule p99 "
            f"{c.scheduled_p99_ms():.1f} ms"
            for name, c in zip(PHASES, self.probe, strict=False)
            if c.answered or c.errors
        ]
        return "\n".join(lines)


class _RingPoll:
    """RING of nodes over connections kept open between polls: a poll every
    :data:`RING_POLL` through fresh connections would make every node accept hundreds of
    connections a second while the hand-off it times runs."""

    def __init__(self) -> None:
        self._kept: dict[str, Direct] = {}

    def agreed(self, nodes: list[NodeProcess], n: int) -> bool:
        """Every node of ``nodes`` holds the same ring of ``n`` active members."""
        rings = []
        for node in nodes:
            try:
                kept = self._kept.get(node.node_id)
                if kept is None:
                    kept = self._kept[node.node_id] = Direct(node.data_address)
                rings.append(kept.call("RING", []))
            except (OSError, MeshcacheError):
                broken = self._kept.pop(node.node_id, None)
                if broken is not None:
                    broken.close()
                return False
        return rings_agreed(rings, n)

    def close(self) -> None:
        for kept in self._kept.values():
            kept.close()
        self._kept.clear()


def _first_joining(mesh: Mesh, stop: threading.Event, seen: list[float]) -> None:
    """Poll the bootstrap node's RING until it lists a fourth member; note when."""
    with Direct(mesh.nodes[0].data_address) as d:
        while not stop.is_set():
            try:
                ring = d.call("RING", [])
            except (OSError, MeshcacheError):
                continue
            if len(ring["members"]) >= 4:
                seen.append(time.monotonic())
                return
            stop.wait(RING_POLL)  # the poll interval; the caller's deadline bounds it


def _figures(mesh: Mesh, node: NodeProcess) -> NodeFigures:
    return NodeFigures.of(node.node_id, mesh.call(node, "INFO", []))


def run(
    tmp: Path,
    *,
    keys: int,
    procs: int,
    profile: str = "local",
    depth: int = 100,
    get_ratio: float = 0.0,
    keep_writing: bool = True,
    load_s: float = 2.0,
    join: bool = True,
    leave: bool = False,
    tail: float = 3.0,
    timeout: float = 300.0,
    probe_rate: float = 0.0,
) -> RunResult:
    """One run (see the module docstring): preload; then, if ``keep_writing``, ``load_s``
    seconds of writes (a ``get_ratio`` share of reads) that go on through the join and the
    leave, else a quiet mesh; a join if ``join``, then a leave if ``leave``; ``tail`` seconds
    at the end. ``load_s`` and ``tail`` are parts of the schedule (nothing is awaited in them);
    ``timeout`` bounds every wait. With ``probe_rate`` > 0 a probe client
    (:mod:`tools.stability_figures.probe`) sends that many unpipelined requests a second
    throughout, its latencies kept by phase in ``RunResult.probe``.

    Raises:
        MeshError: a step did not happen within ``timeout``.
    """
    with ExitStack() as stack:
        began = time.monotonic()
        mesh = Mesh(stack, tmp, 3, "--profile", profile)
        writers = Writers(mesh, keys, procs=procs, depth=depth, get_ratio=get_ratio)
        probe = Probe(mesh.addresses, keys, rate=probe_rate) if probe_rate > 0 else None
        phases: list[PhaseCounts] | None = None
        probed: list[ProbeCounts] = []

        def set_phase(phase: int) -> None:
            if phases is None:
                writers.set_phase(phase)
            if probe is not None:
                probe.set_phase(phase)

        try:
            preload_s = wait_for(writers.preloaded, timeout, "the writers' preload", 0.05)
            set_phase(BASELINE)
            if keep_writing:
                time.sleep(load_s)  # the schedule: load running, nothing awaited
            else:
                phases = writers.stop()
            result = RunResult(profile, keys, preload_s)
            if join:
                _join(mesh, set_phase, result, timeout)
            if leave:
                set_phase(LEAVE)
                _leave(mesh, result, timeout)
                set_phase(AFTER)
            time.sleep(tail)  # the schedule's tail: the issue saw false deaths in the idle after
        finally:
            if phases is None:
                phases = writers.stop()
            if probe is not None:
                probed = probe.stop()
        result.phases = phases
        result.probe = probed
        counted = {n.node_id for n in result.nodes}
        result.nodes += [_figures(mesh, x) for x in mesh.live if x.node_id not in counted]
        result.minutes = (time.monotonic() - began) / 60
        return result


def _join(mesh: Mesh, set_phase: Callable[[int], None], result: RunResult, timeout: float) -> None:
    """A fourth node joins; timed into ``result``; returns once the old nodes have dropped
    what they no longer own."""
    set_phase(JOIN)
    seen: list[float] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_first_joining, args=(mesh, stop, seen))
    watcher.start()
    poll = _RingPoll()
    try:
        joiner = mesh.start_node("--join", mesh.nodes[0].data)
        wait_for(lambda: poll.agreed(mesh.live, 4), timeout, "the fourth node active", RING_POLL)
        active_at = time.monotonic()
    finally:
        stop.set()
        watcher.join()
        poll.close()
    if not seen:
        raise MeshError("never saw the fourth member as joining")
    result.join_s = active_at - seen[0]
    set_phase(AFTER)
    version = int(mesh.ring(joiner)["version"])
    for old in mesh.nodes[:3]:
        wait_for(
            lambda old=old: any(  # type: ignore[misc]
                int(e.get("ring_version", 0)) >= version
                for e in mesh.log_events(old, "unowned_dropped")
            ),
            timeout,
            f"{old.node_id} to drop what it no longer owns",
            0.05,
        )
    result.pulled = sum(int(e.get("records", 0)) for e in mesh.log_events(joiner, "handoff_pulled"))


def _leave(mesh: Mesh, result: RunResult, timeout: float) -> None:
    """The second node leaves (its figures are taken just before); timed into ``result``."""
    leaver = mesh.nodes[1]
    rest = [x for x in mesh.live if x is not leaver]
    result.nodes.append(_figures(mesh, leaver))
    poll = _RingPoll()
    try:
        poll.agreed(rest, len(rest) + 1)  # the connections, opened before the clock starts
        sent = time.monotonic()
        with Direct(leaver.data_address, timeout=timeout) as d:
            d.call("LEAVE", [{"timeout": timeout}])
        wait_for(lambda: poll.agreed(rest, len(rest)), timeout, "the ring without it", RING_POLL)
        result.leave_s = time.monotonic() - sent
    finally:
        poll.close()
