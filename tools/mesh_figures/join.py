"""Hit rate while a fourth node joins a loaded three-node mesh.

N keys (100-byte values) are preloaded into three nodes; worker processes run a 95% GET load
through smart clients, counting GETs and hits per 100 ms window. After a baseline, a fourth node
joins; the load goes on until every node's ring shows it active, plus a tail.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from meshcache.testing.mesh import Mesh, wait_for
from tools.bench.workload import Workload, key
from tools.mesh_figures.load import ReadLoad
from tools.mesh_figures.preload import preload_by_owner
from tools.mesh_figures.report import Flaps, flaps

VALUE_SIZE = 100


HEADER = [
    "keys",
    "load procs",
    "baseline hit rate %",
    "worst 100 ms window %",
    "GETs in that window",
    "hit rate over the join %",
    "dip %",
    "errors",
    "start to active s",
    "GETs (baseline)",
    "GETs (join)",
    "suspect events",
    "dead events",
]


@dataclass(frozen=True, slots=True)
class JoinResult:
    keys: int
    procs: int
    baseline: float
    baseline_gets: int
    worst: float
    worst_gets: int
    during: float
    during_gets: int
    errors: int
    join_s: float  # from starting the process to active on every node's ring
    flaps: Flaps

    def row(self) -> list[object]:
        return [
            self.keys,
            self.procs,
            100 * self.baseline,
            100 * self.worst,
            self.worst_gets,
            100 * self.during,
            100 * (self.baseline - self.during),
            self.errors,
            self.join_s,
            self.baseline_gets,
            self.during_gets,
            self.flaps.suspicions,
            self.flaps.deaths,
        ]


def preload_mesh(mesh: Mesh, keys: int) -> None:
    """SET ``key(0..keys-1)`` to the 100-byte value, each key on its owner."""
    preload_by_owner(mesh, keys, VALUE_SIZE)


def measure(tmp: Path, keys: int, procs: int, baseline: float, tail: float) -> JoinResult:
    with ExitStack() as stack:
        mesh = Mesh(stack, tmp, 3)
        preload_mesh(mesh, keys)
        value = Workload(value_size=VALUE_SIZE).value()
        load = ReadLoad(mesh.addresses, key, keys, value, procs=procs)
        try:
            wait_for(load.running, 30, "every load process sending")
            loaded_at = time.monotonic()
            time.sleep(baseline)  # the baseline period of the schedule
            joined_at = time.monotonic()
            mesh.start_node("--join", mesh.nodes[0].data)
            wait_for(lambda: mesh.ring_agreed(4), 120, "the fourth node active everywhere")
            active_at = time.monotonic()
            time.sleep(tail)  # the tail after the join, also part of the schedule
            end = time.monotonic()
        finally:
            windows = load.stop()
        first, joined, last = load.slot(loaded_at) + 1, load.slot(joined_at), load.slot(end)
        base, base_gets = windows.rate(first, joined)
        during, during_gets = windows.rate(joined, last)
        busy = [i for i in range(joined, min(last, len(windows.gets))) if windows.gets[i]]
        worst_i = min(busy, key=lambda i: windows.rate(i, i + 1)[0])
        worst, worst_gets = windows.rate(worst_i, worst_i + 1)
        return JoinResult(
            keys,
            procs,
            base,
            base_gets,
            worst,
            worst_gets,
            during,
            during_gets,
            sum(windows.errors),
            active_at - joined_at,
            flaps(mesh),
        )
